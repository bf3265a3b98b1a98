use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory", namespace = "{flags}")]
pub struct Flags {
    #[lockstep(default = 0)]
    pub foobar_percent: u8,
}

fn main() {}
