use lockstep::lockstep;

#[lockstep(tick = "1s", store = "memory", clock = "ntp")]
struct Flags {
    level: u8,
}

fn main() {}
