use lockstep::lockstep;

#[lockstep(tick = "10m", backend = "memory")]
pub struct Flags {
    #[lockstep(default = "1, 2, 3")]
    pub allowed_ids: Vec<u32>,
}

fn main() {}
