use lockstep::lockstep;

#[lockstep(tick = "10m", backend = "memory")]
pub struct Flags(pub u8, pub bool);

fn main() {}
