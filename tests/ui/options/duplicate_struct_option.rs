use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory", tick = "1m")]
pub struct Flags {
    #[lockstep(default = 0)]
    pub foobar_percent: u8,
}

fn main() {}
