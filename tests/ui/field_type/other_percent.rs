use lockstep::lockstep;
use serde::{Deserialize, Serialize};

mod shares {
    use super::*;

    #[derive(Clone, Copy, Default, Serialize, Deserialize)]
    pub struct Percent(pub f64);
}

use shares::Percent;

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    pub share: Percent,
}

fn main() {}
