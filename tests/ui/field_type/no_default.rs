use lockstep::lockstep;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub enum Theme {
    Classic,
    Dark,
}

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    pub theme: Theme,
}

fn main() {}
