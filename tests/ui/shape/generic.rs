use lockstep::lockstep;

#[lockstep(tick = "10m", backend = "memory")]
pub struct Flags<T> {
    pub value: T,
}

fn main() {}
