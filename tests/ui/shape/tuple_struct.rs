use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags(pub u8, pub bool);

fn main() {}
