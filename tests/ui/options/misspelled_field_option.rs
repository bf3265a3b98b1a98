use lockstep::lockstep;

#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    #[lockstep(defualt = 0)]
    pub foobar_percent: u8,
}

fn main() {}
