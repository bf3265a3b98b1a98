use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub union Flags {
    pub percent: u8,
    pub enabled: bool,
}

fn main() {}
