//! The manual clock tests start from: one instant for every test, far
//! enough ahead that no real clock reaches it while a test runs.

use chrono::{TimeZone, Utc};
use lockstep::ManualClock;

/// A manual clock at 2030-01-01T00:00:00Z; give it to the registry
/// (`Builder::manual_clock`) and to its memory store
/// (`MemoryStore::with_clock`), then advance it.
pub fn manual_clock() -> ManualClock {
    ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap())
}
