use lockstep::lockstep;

#[lockstep(tick = "10m", backend = "memory")]
pub fn flags() -> u8 {
    0
}

fn main() {}
