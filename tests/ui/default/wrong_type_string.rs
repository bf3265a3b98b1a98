use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    #[lockstep(default = 5)]
    pub theme: String,
}

fn main() {}
