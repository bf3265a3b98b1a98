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

impl When {
    /// The instant, in milliseconds since the Unix epoch, relative ones
    /// counted from `now`.
    pub fn resolve(self, now: DateTime<Utc>) -> i64 {
        let t = match self {
            When::At(t) => t,
            // Saturating: `+999999999d` is far, not a panic.
            When::In(d) => chrono::TimeDelta::from_std(d)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        };
        // Round up to the millisecond, as lockstep does.
        let ms = t.timestamp_millis();
        if !t.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
            ms + 1
        } else {
            ms
        }
    }
}

pub fn parse_time(text: &str) -> Result<When, String> {
    const ACCEPTED: &str = "expected RFC 3339 (2026-12-01T09:00:00Z, 2026-12-01T10:00:00+01:00) or a duration from \
         now (+30m, +4s, +1h 30m)";
    if let Some(relative) = text.strip_prefix('+') {
        return humantime::parse_duration(relative.trim())
            .map(When::In)
            .map_err(|e| format!("{e}; {ACCEPTED}"));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| When::At(t.with_timezone(&Utc)))
        .map_err(|e| format!("{e}; {ACCEPTED}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_far_away_saturates_instead_of_panicking() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        for far in ["+1000000y", "+18446744073709551615s"] {
            let when = parse_time(far).unwrap();
            // The latest instant chrono knows, rounded up to the millisecond.
            let latest = DateTime::<Utc>::MAX_UTC.timestamp_millis();
            assert!(when.resolve(now) >= latest, "{far}");
        }
    }
}
