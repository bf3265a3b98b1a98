use lockstep::lockstep;

#[lockstep(tick = "10m", backend = "memory")]
pub struct Flags {
    #[lockstep(default = 5)]
    pub theme: String,
}

fn main() {}
