use lockstep::lockstep;

#[lockstep(tick = "10m", backend = "memory")]
pub struct Flags {
    #[lockstep(defualt = 0)]
    pub foobar_percent: u8,
}

fn main() {}
