use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    #[lockstep(default = "ok")]
    pub status: String,
}

fn main() {}
