use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    pub new: bool,
}

fn main() {}
