use lockstep::lockstep;

#[lockstep(tick = "10", store = "mongodb", namespace = "a.b", colour = "red", tick = "1m")]
pub struct Flags {
    #[lockstep(default = 0, defualt = 1)]
    pub foobar_percent: u8,
    #[lockstep(key = "foobar_percent")]
    pub other: u8,
}

fn main() {}
