use lockstep::lockstep;

#[lockstep(tick = "10m", backend = "memory")]
pub struct Flags {
    #[lockstep(key = "site.theme")]
    pub theme: String,
}

fn main() {}
