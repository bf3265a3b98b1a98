//! Tick strings: `"10m"` into whole seconds, or a message that says what is
//! wrong and what is accepted. Plain std and humantime, no syn, so the fuzz
//! target can build this file on its own.

use std::time::Duration;

/// The tick in whole seconds, or a message saying what is wrong and what is
/// accepted.
pub fn parse(s: &str) -> Result<u32, String> {
    const ACCEPTED: &str =
        "write a number and a unit from \"1s\" to \"1d\", e.g. \"1s\", \"30s\", \"10m\", \"1h\"";
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(format!("the tick is empty; {ACCEPTED}"));
    }
    if trimmed.starts_with('-') {
        return Err(format!("tick \"{s}\" is negative; {ACCEPTED}"));
    }
    if trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "tick \"{s}\" has no unit; {ACCEPTED} (did you mean \"{trimmed}s\"?)"
        ));
    }
    let duration = humantime::parse_duration(trimmed).map_err(|e| {
        let why = match &e {
            // humantime's own texts suggest units a tick refuses ("30ms",
            // weeks, years): say what is wrong in the tick's terms.
            humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
                "a number has no unit".to_owned()
            }
            humantime::DurationError::UnknownUnit { unit, .. } => {
                format!("unknown unit {unit:?}; the units are s, m, h and d")
            }
            other => other.to_string(),
        };
        let hint = suggestion(trimmed)
            .map(|fixed| format!(" (did you mean \"{fixed}\"?)"))
            .unwrap_or_default();
        format!("tick \"{s}\" does not parse ({why}); {ACCEPTED}{hint}")
    })?;
    if duration.is_zero() {
        return Err(format!("tick \"{s}\" is zero; {ACCEPTED}"));
    }
    if duration < Duration::from_secs(1) {
        return Err(format!(
            "tick \"{s}\" is shorter than 1s: a fetch per process per tick would overload the \
             store and its deadline would be shorter than a round trip; {ACCEPTED}"
        ));
    }
    if duration > Duration::from_secs(86_400) {
        return Err(format!(
            "tick \"{s}\" is longer than 1d: every write would wait more than a day to take \
             effect; {ACCEPTED}"
        ));
    }
    if duration.subsec_nanos() != 0 {
        return Err(format!(
            "tick \"{s}\" is not a whole number of seconds; {ACCEPTED}"
        ));
    }
    Ok(duration.as_secs() as u32)
}

/// A tick that `s` likely means and that [`parse`] accepts: a trailing
/// number without a unit takes the unit after the one before it
/// (`"1h30"` is `"1h30m"`, `"2m30"` is `"2m30s"`).
fn suggestion(s: &str) -> Option<String> {
    let head = s.trim_end_matches(|c: char| c.is_ascii_digit());
    if head.len() == s.len() || head.is_empty() {
        return None;
    }
    let head = head.trim_end();
    let letters = head.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &head[letters.len()..] {
        "d" | "day" | "days" => "h",
        "h" | "hr" | "hrs" | "hour" | "hours" => "m",
        "m" | "min" | "mins" | "minute" | "minutes" => "s",
        _ => return None,
    };
    let fixed = format!("{s}{unit}");
    parse(&fixed).ok().map(|_| fixed)
}

#[cfg(test)]
mod tests {
    use super::parse as tick;

    #[test]
    fn ticks() {
        assert_eq!(tick("1s"), Ok(1));
        assert_eq!(tick("10m"), Ok(600));
        assert_eq!(tick("1h 30m"), Ok(5400));
        assert_eq!(tick("1d"), Ok(86_400));
        for (bad, says) in [
            ("", "empty"),
            ("10", "no unit"),
            ("-5s", "negative"),
            ("0s", "zero"),
            ("500ms", "shorter than 1s"),
            ("2d", "longer than 1d"),
            ("1500ms", "whole number"),
            ("ten minutes", "does not parse"),
            ("1h30", "a number has no unit"),
            ("1h30", "did you mean \"1h30m\"?"),
            ("2m30", "did you mean \"2m30s\"?"),
            ("10 minutess", "unknown unit"),
        ] {
            let err = tick(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        // Only what would be accepted is suggested.
        for bad in ["1h30", "1d30", "10s5", "5 fortnights", "1m 30", "1h 90000"] {
            let err = tick(bad).unwrap_err();
            for unit in ["ms", "ns", "us", "weeks", "months", "years", "sec or"] {
                assert!(!err.contains(unit), "{bad}: {err}");
            }
            if let Some(start) = err.find("did you mean \"") {
                let rest = &err[start + 14..];
                let fixed = &rest[..rest.find('"').unwrap()];
                assert!(tick(fixed).is_ok(), "{bad}: suggests {fixed}, refused");
            }
        }
    }
}
