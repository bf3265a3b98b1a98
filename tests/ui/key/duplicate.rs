use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    pub theme: String,
    #[lockstep(key = "theme")]
    pub legacy_theme: String,
}

fn main() {}
