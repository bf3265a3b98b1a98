use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags<T> {
    pub value: T,
}

fn main() {}
