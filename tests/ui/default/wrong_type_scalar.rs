use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    #[lockstep(default = "x")]
    pub foobar_percent: u8,
}

fn main() {}
