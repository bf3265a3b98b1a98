use lockstep::lockstep;

#[lockstep(store = "memory")]
pub struct Flags {
    #[lockstep(default = 0)]
    pub foobar_percent: u8,
}

fn main() {}
