use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    #[lockstep(default = std::process::id())]
    pub pid: u32,
}

fn main() {}
