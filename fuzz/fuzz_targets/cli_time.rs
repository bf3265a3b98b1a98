//! The CLI's TIME parser: arbitrary text never panics, and whatever it
//! accepts resolves to an instant no later than 9999-12-31T23:59:59.999Z,
//! or is refused saying so.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

#[path = "../../lockstep-cli/src/time.rs"]
#[allow(dead_code)]
mod time;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(when) = time::parse_time(text)
    {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        if let Ok(ms) = when.resolve(now) {
            assert!(ms <= time::LATEST, "{text:?} resolved to {ms}");
        }
    }
});
