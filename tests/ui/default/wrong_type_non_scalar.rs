use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    #[lockstep(default = "1, 2, 3")]
    pub allowed_ids: Vec<u32>,
}

fn main() {}
