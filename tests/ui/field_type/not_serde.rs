use lockstep::lockstep;

#[derive(Clone, Default)]
pub struct Limits {
    pub per_second: u32,
}

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    pub limits: Limits,
}

fn main() {}
