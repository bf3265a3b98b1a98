//! The macro's tick parser: arbitrary text never panics, and whatever it
//! accepts is a whole number of seconds from 1 s to 1 day.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../lockstep-macros/src/tick.rs"]
#[allow(dead_code)]
mod tick;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(secs) = tick::parse(text)
    {
        assert!((1..=86_400).contains(&secs), "{text:?} -> {secs}");
    }
});
