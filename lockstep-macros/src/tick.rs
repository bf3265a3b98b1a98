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
    let duration = humantime::parse_duration(trimmed)
        .map_err(|e| format!("tick \"{s}\" does not parse ({e}); {ACCEPTED}"))?;
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
        ] {
            let err = tick(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
