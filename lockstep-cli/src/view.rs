//! What the commands print: instants, countdowns, values and tables.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use lockstep::schema::FieldSchema;
use lockstep::store::StoredEntry;
use serde_json::{Value, json};

use crate::outcome::visible;

/// An instant in milliseconds since the Unix epoch, as RFC 3339 in UTC
/// (with milliseconds only when it has some).
pub fn instant(ms: i64) -> String {
    datetime(ms).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn datetime(ms: i64) -> DateTime<Utc> {
    lockstep::store::to_datetime(ms)
}

/// How far `at` is from `now`: `in 1.6s`, `4m 10s ago`.
pub fn relative(at: i64, now: i64) -> String {
    let delta = at - now;
    if delta >= 0 {
        format!("in {}", span(delta))
    } else {
        format!("{} ago", span(-delta))
    }
}

/// A span of milliseconds, short: `0.4s`, `12.0s`, `4m 10s`, `2h 5m`, `3d 4h`.
pub fn span(ms: i64) -> String {
    let secs = ms / 1000;
    match secs {
        0..=59 => format!("{:.1}s", ms as f64 / 1000.0),
        60..=3_599 => format!("{}m {}s", secs / 60, secs % 60),
        3_600..=86_399 => format!("{}h {}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

/// An entry's value for a person: compact JSON, cut short; or why it
/// cannot be read.
pub fn value_text(value: &Result<String, String>) -> String {
    match value {
        Ok(json) => match serde_json::from_str::<Value>(json) {
            Ok(v) => short(&v.to_string()),
            Err(_) => short(json),
        },
        Err(why) => format!("(unreadable: {why})"),
    }
}

/// `text` cut to 40 characters.
pub fn short(text: &str) -> String {
    if text.chars().count() <= 40 {
        return text.to_owned();
    }
    let cut: String = text.chars().take(39).collect();
    format!("{cut}…")
}

/// An entry's value as JSON for `--json`: the value, or `{"unreadable":
/// why}`.
pub fn value_json(value: &Result<String, String>) -> Value {
    match value {
        Ok(text) => serde_json::from_str(text).unwrap_or_else(|_| json!({"unreadable": text})),
        Err(why) => json!({"unreadable": why}),
    }
}

/// An entry as JSON: instant, value and who wrote it.
pub fn entry_json(entry: &StoredEntry) -> Value {
    let mut out = json!({
        "at": instant(entry.at),
        "value": value_json(&entry.value),
    });
    if let Some(origin) = &entry.origin {
        out["written_at"] = json!(instant(origin.written_at));
        out["by"] = json!(origin.by);
        out["write"] = json!(origin.write);
    }
    out
}

/// Who wrote an entry and when, for a person.
pub fn origin_text(entry: &StoredEntry) -> String {
    match &entry.origin {
        Some(origin) if origin.by.is_empty() => format!("written {}", instant(origin.written_at)),
        Some(origin) => format!("by {}, written {}", origin.by, instant(origin.written_at)),
        None => String::new(),
    }
}

/// Why no process serves `entry`, if none does: its envelope cannot be
/// read, its value is not JSON, too large, or not of the field's type (when
/// the schema says it).
pub fn bad(entry: &StoredEntry, field: Option<&FieldSchema>) -> Option<String> {
    let text = match &entry.value {
        Ok(text) => text,
        Err(why) => return Some(why.clone()),
    };
    if text.len() > lockstep::MAX_VALUE_BYTES {
        return Some(format!(
            "{} bytes, over the limit of {} bytes",
            text.len(),
            lockstep::MAX_VALUE_BYTES
        ));
    }
    let value = match serde_json::from_str::<Value>(text) {
        Ok(value) => value,
        Err(e) => return Some(format!("not JSON ({e})")),
    };
    let field = field?;
    let ty = field.value_type.as_ref()?;
    ty.check(&value)
        .err()
        .map(|e| format!("does not decode as {}: {e}", field.rust_type))
}

/// The entry active at `now` (the last one at or before it that decodes)
/// and the pending ones that decode, of entries ordered by instant; what
/// does not decode is no process's value.
pub fn split<'a>(
    entries: &'a [StoredEntry],
    now: i64,
    field: Option<&FieldSchema>,
) -> (Option<&'a StoredEntry>, Vec<&'a StoredEntry>) {
    let good = |e: &&StoredEntry| bad(e, field).is_none();
    let active = entries.iter().rev().filter(|e| e.at <= now).find(good);
    let pending = entries.iter().filter(|e| e.at > now).filter(good).collect();
    (active, pending)
}

/// What a bad entry shows as: its stored text, cut short.
pub fn stored_text(entry: &StoredEntry) -> String {
    match &entry.value {
        Ok(text) => short(text),
        Err(_) => "(unreadable)".to_owned(),
    }
}

/// Rows of cells as aligned columns, two spaces apart, each line indented
/// by `indent`.
pub fn table(rows: &[Vec<String>], indent: &str) -> String {
    // Made visible here, not only on the way out, so that the columns are
    // as wide as what the terminal shows.
    let rows: Vec<Vec<Cow<'_, str>>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| visible(cell)).collect())
        .collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = indent.to_owned();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_spans() {
        assert_eq!(instant(1_767_225_600_000), "2026-01-01T00:00:00Z");
        assert_eq!(instant(1_767_225_600_250), "2026-01-01T00:00:00.250Z");
        assert_eq!(span(1_640), "1.6s");
        assert_eq!(span(250_000), "4m 10s");
        assert_eq!(span(7_500_000), "2h 5m");
        assert_eq!(span(273_600_000), "3d 4h");
        assert_eq!(relative(2_000, 400), "in 1.6s");
        assert_eq!(relative(400, 2_000), "1.6s ago");
    }

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["a".to_owned(), "bb".to_owned(), "c".to_owned()],
            vec!["dddd".to_owned(), "e".to_owned(), "f".to_owned()],
        ];
        assert_eq!(table(&rows, "  "), "  a     bb  c\n  dddd  e   f\n");
    }

    #[test]
    fn values() {
        assert_eq!(value_text(&Ok("[1, 2]".into())), "[1,2]");
        assert_eq!(value_text(&Err("bad".into())), "(unreadable: bad)");
        assert_eq!(value_json(&Ok("{\"a\":1}".into())), json!({"a": 1}));
        assert_eq!(short(&"x".repeat(50)).chars().count(), 40);
    }
}
