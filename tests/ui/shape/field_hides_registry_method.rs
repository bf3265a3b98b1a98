use lockstep::lockstep;

#[lockstep(tick = "10m", backend = "memory")]
pub struct Flags {
    #[lockstep(default = "ok")]
    pub status: String,
}

fn main() {}
