//! `TIME` arguments: RFC 3339 instants or durations from now. Plain chrono
//! and humantime, so the fuzz target can build this file on its own.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A `TIME`: an instant, or a duration from now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// `2026-12-01T09:00:00Z`.
    At(DateTime<Utc>),
    /// `+30m`.
    In(Duration),
}

/// The latest instant lockstep accepts, 9999-12-31T23:59:59.999Z, in
/// milliseconds (`lockstep::store::MAX_INSTANT`; this file builds without
/// lockstep for the fuzz target, and a test checks they agree).
pub const LATEST: i64 = 253_402_300_799_999;

/// What a refused `TIME` is told is accepted.
const ACCEPTED: &str = "expected RFC 3339 (2026-12-01T09:00:00Z, 2026-12-01T10:00:00+01:00) or \
     a duration from now (+30m, +4s, +1h 30m), up to 9999-12-31T23:59:59.999Z";

impl When {
    /// The instant, in milliseconds since the Unix epoch (rounded up),
    /// relative ones counted from `now`; refused past [`LATEST`].
    pub fn resolve(self, now: DateTime<Utc>) -> Result<i64, String> {
        let t = match self {
            When::At(t) => Some(t),
            When::In(d) => chrono::TimeDelta::from_std(d)
                .ok()
                .and_then(|d| now.checked_add_signed(d)),
        };
        let ms = t.map(|t| {
            // Round up to the millisecond, as lockstep does.
            let ms = t.timestamp_millis();
            if !t.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
                ms + 1
            } else {
                ms
            }
        });
        match ms {
            Some(ms) if ms <= LATEST => Ok(ms),
            _ => Err(format!(
                "the instant is after 9999-12-31T23:59:59.999Z, the latest \
                 lockstep accepts (every store and tool reads instants up to year 9999 back \
                 as written); {ACCEPTED}"
            )),
        }
    }
}

/// Parses a `TIME`; a duration from now that ends after [`LATEST`] is
/// refused here, before any store is asked.
pub fn parse_time(text: &str) -> Result<When, String> {
    if let Some(relative) = text.strip_prefix('+') {
        let when = humantime::parse_duration(relative.trim())
            .map(When::In)
            .map_err(|e| format!("{e}; {ACCEPTED}"))?;
        when.resolve(Utc::now())?;
        return Ok(when);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| When::At(t.with_timezone(&Utc)))
        .map_err(|e| format!("{e}; {ACCEPTED}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_after_year_9999_is_refused_saying_what_is_accepted() {
        for far in ["+1000000y", "+18446744073709551615s", "+8000y"] {
            let e = parse_time(far).unwrap_err();
            assert!(e.contains("after 9999-12-31T23:59:59.999Z"), "{far}: {e}");
            assert!(e.contains("expected RFC 3339"), "{far}: {e}");
        }
        let latest = parse_time("9999-12-31T23:59:59.999Z").unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(latest.resolve(now), Ok(LATEST));
        assert!(
            When::In(std::time::Duration::from_secs(1))
                .resolve(DateTime::from_timestamp_millis(LATEST).unwrap())
                .is_err()
        );
    }
}
