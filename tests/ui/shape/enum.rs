use lockstep::lockstep;

#[lockstep(tick = "10m", backend = "memory")]
pub enum Flags {
    Classic,
    Dark,
}

fn main() {}
