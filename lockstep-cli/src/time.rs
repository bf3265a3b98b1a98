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
    /// [`When::resolve`], refusing an instant before `now`: a write only
    /// ever touches future instants.
    pub fn resolve_future(self, now: DateTime<Utc>) -> Result<i64, String> {
        let ms = self.resolve(now)?;
        if ms < now.timestamp_millis() {
            let at = DateTime::from_timestamp_millis(ms).unwrap_or(now);
            return Err(format!(
                "{} is in the past (it is now {}): a write only touches instants at or after \
                 the horizon, between one and two ticks from now; give a later instant, or a \
                 duration from now such as +10m",
                at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        Ok(ms)
    }

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
/// refused here, before any store is asked. A refusal says what is wrong
/// when it can tell: a duration without its `+`, a negative one, a date and
/// time without a time zone.
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
        .map_err(|e| match what_is_wrong(text.trim()) {
            Some(wrong) => format!("{wrong}; {ACCEPTED}"),
            None => format!("{e}; {ACCEPTED}"),
        })
}

/// Why `text`, which is not RFC 3339, is not a `TIME`, when it looks like
/// one: a duration without `+` or with `-`, or a local date and time.
fn what_is_wrong(text: &str) -> Option<String> {
    if let Some(back) = text.strip_prefix('-')
        && humantime::parse_duration(back.trim()).is_ok()
    {
        return Some(format!(
            "`{text}` is in the past: a write only touches future instants (at or after the \
             horizon)"
        ));
    }
    if humantime::parse_duration(text).is_ok() {
        return Some(format!(
            "`{text}` is a duration without its `+`: did you mean +{text} (from now)?"
        ));
    }
    let local = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok());
    if let Some(local) = local {
        let utc = local.format("%Y-%m-%dT%H:%M:%S%.fZ");
        return Some(format!(
            "`{text}` is missing a time zone: write {utc} for UTC, or add the offset \
             (e.g. +01:00)"
        ));
    }
    if chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok() {
        return Some(format!(
            "`{text}` is a date without a time and a time zone: write e.g. {text}T09:00:00Z"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_time_says_what_is_wrong() {
        let e = parse_time("10m").unwrap_err();
        assert!(e.contains("did you mean +10m (from now)?"), "{e}");
        let e = parse_time("1h 30m").unwrap_err();
        assert!(e.contains("did you mean +1h 30m"), "{e}");
        let e = parse_time("2026-12-01T09:00:00").unwrap_err();
        assert!(e.contains("missing a time zone"), "{e}");
        assert!(e.contains("2026-12-01T09:00:00Z for UTC"), "{e}");
        let e = parse_time("2026-12-01 09:00").unwrap_err();
        assert!(e.contains("missing a time zone"), "{e}");
        let e = parse_time("2026-12-01").unwrap_err();
        assert!(e.contains("a date without a time and a time zone"), "{e}");
        let e = parse_time("-5m").unwrap_err();
        assert!(e.contains("`-5m` is in the past"), "{e}");
        for e in [
            parse_time("10m").unwrap_err(),
            parse_time("soon").unwrap_err(),
        ] {
            assert!(e.contains("expected RFC 3339"), "{e}");
        }
    }

    #[test]
    fn an_instant_in_the_past_is_refused_as_such() {
        let now = DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let past = parse_time("2026-06-01T11:59:00Z").unwrap();
        let e = past.resolve_future(now).unwrap_err();
        assert!(
            e.starts_with("2026-06-01T11:59:00Z is in the past (it is now 2026-06-01T12:00:00Z)"),
            "{e}"
        );
        assert!(e.contains("+10m"), "{e}");
        let later = parse_time("2026-06-01T12:10:00Z").unwrap();
        assert_eq!(later.resolve_future(now), later.resolve(now));
        // A past instant still resolves where the past is allowed (purge).
        assert!(past.resolve(now).is_ok());
    }

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
