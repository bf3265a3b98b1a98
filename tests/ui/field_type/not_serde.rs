use lockstep::lockstep;

#[derive(Clone, Default)]
pub struct Limits {
    pub per_second: u32,
}

#[lockstep(tick = "10m", backend = "memory")]
pub struct Flags {
    pub limits: Limits,
}

fn main() {}
