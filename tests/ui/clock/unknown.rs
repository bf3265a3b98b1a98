use lockstep::lockstep;

#[lockstep(tick = "1s", backend = "memory", clock = "ntp")]
struct Flags {
    level: u8,
}

fn main() {}
