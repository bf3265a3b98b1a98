use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    #[lockstep(key = "site.theme")]
    pub theme: String,
}

fn main() {}
