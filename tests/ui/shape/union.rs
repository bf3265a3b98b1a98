use lockstep::lockstep;

#[lockstep(tick = "10m", backend = "memory")]
pub union Flags {
    pub percent: u8,
    pub enabled: bool,
}

fn main() {}
