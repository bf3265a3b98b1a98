use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub enum Flags {
    Classic,
    Dark,
}

fn main() {}
