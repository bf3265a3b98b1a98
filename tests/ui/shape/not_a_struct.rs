use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub fn flags() -> u8 {
    0
}

fn main() {}
