//! The CLI's TIME parser: arbitrary text never panics, and whatever it
//! accepts resolves to an instant, however far.
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
        let _ = when.resolve(now);
    }
});
