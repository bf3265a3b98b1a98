use lockstep::lockstep;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Limits {
    pub per_second: u32,
}

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    pub limits: Limits,
}

fn main() {}
