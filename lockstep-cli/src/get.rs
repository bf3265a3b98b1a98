//! `get` and `history`: one field's entries, the bad ones shown as bad.

use std::time::Duration;

use lockstep::store::StoredEntry;
use lockstep::store::driver::Unplaced;
use serde_json::{Value, json};

use crate::args::FieldPath;
use crate::context::{Ctx, FieldEntries};
use crate::failure::Failure;
use crate::outcome::Outcome;
use crate::view::{self, instant, relative, split, table};

/// An entry no process serves, as `get` and `history` show it.
struct Bad {
    /// Its instant, when the store holds a number.
    at: Option<i64>,
    /// The instant as stored, when it is not a number.
    stored_instant: Option<String>,
    stored: String,
    reason: String,
}

impl Bad {
    /// Its instant for a person, and for `purge --at`: RFC 3339, or the
    /// text that is not a number.
    fn shown_at(&self) -> String {
        match (self.at, &self.stored_instant) {
            (Some(at), _) => instant(at),
            (None, text) => text.clone().unwrap_or_default(),
        }
    }

    fn json(&self) -> Value {
        json!({"at": self.at.map(instant), "stored_instant": self.stored_instant,
               "stored": self.stored, "reason": self.reason})
    }
}

/// Every bad entry of a field: those that do not decode, then those whose
/// instant is not a number.
fn bad_entries(path: &FieldPath, seen: &FieldEntries) -> Vec<Bad> {
    let field = seen.field(&path.key);
    let placed = seen.entries.iter().filter_map(|e| {
        view::bad(e, field).map(|reason| Bad {
            at: Some(e.at),
            stored_instant: None,
            stored: view::stored_text(e),
            reason,
        })
    });
    let unplaced = seen.unplaced.iter().map(|u: &Unplaced| Bad {
        at: None,
        stored_instant: Some(u.at.clone()),
        stored: String::new(),
        reason: u.reason.clone(),
    });
    placed.chain(unplaced).collect()
}

/// How to remove `bad`, for a person.
fn purge_hint(path: &FieldPath, bad: &Bad) -> String {
    format!("remove: lockstep purge {path} --at '{}'", bad.shown_at())
}

/// `get`: the value now (the last entry that decodes), pending changes,
/// and the entries no process serves.
pub async fn get(ctx: &Ctx, path: &FieldPath) -> Result<Outcome, Failure> {
    let seen = ctx.field_entries(path).await?;
    let now = seen.now;
    let field = seen.field(&path.key);
    let (active, pending) = split(&seen.entries, now, field);
    let bad = bad_entries(path, &seen);
    let value = match (active, field) {
        (Some(e), _) => view::value_json(&e.value),
        (None, Some(f)) => f.default.clone(),
        (None, None) => Value::Null,
    };
    let json = json!({
        "namespace": path.namespace,
        "field": path.key,
        "rust_type": field.map(|f| f.rust_type.clone()),
        "value_type": field.and_then(|f| f.value_type.clone()),
        "tick_ms": seen.schema.as_ref().map(|s| u64::from(s.tick_secs) * 1000),
        "now": instant(now),
        "value": value,
        "default": active.is_none(),
        "since": active.map(|e| instant(e.at)),
        "pending": pending.iter().map(|e| view::entry_json(e)).collect::<Vec<_>>(),
        "bad": bad.iter().map(Bad::json).collect::<Vec<_>>(),
    });
    let mut text = match (field, &seen.schema) {
        (Some(f), Some(s)) => {
            let ty = f
                .value_type
                .as_ref()
                .map(|t| format!(": {}", t.expected()))
                .unwrap_or_default();
            format!(
                "{path}  {}{ty}  (tick {})\n",
                f.rust_type,
                humantime::format_duration(Duration::from_secs(u64::from(s.tick_secs)))
            )
        }
        _ => format!("{path}  (no published schema)\n"),
    };
    let mut rows = Vec::new();
    match (active, field) {
        (Some(e), _) => rows.push(vec![
            "now".to_owned(),
            view::value_text(&e.value),
            format!("since {} ({})", instant(e.at), relative(e.at, now)),
            view::origin_text(e),
        ]),
        (None, Some(f)) => rows.push(vec![
            "now".to_owned(),
            view::short(&f.default.to_string()),
            "the default: nothing written is active yet".to_owned(),
        ]),
        (None, None) => rows.push(vec!["now".to_owned(), "(nothing written)".to_owned()]),
    }
    for e in &pending {
        rows.push(vec![
            "pending".to_owned(),
            view::value_text(&e.value),
            format!("at {} ({})", instant(e.at), relative(e.at, now)),
            view::origin_text(e),
        ]);
    }
    for b in &bad {
        rows.push(vec![
            "bad".to_owned(),
            b.stored.clone(),
            format!("at {}", b.shown_at()),
            format!(
                "{}; no process serves it ({})",
                b.reason,
                purge_hint(path, b)
            ),
        ]);
    }
    text.push_str(&table(&rows, "  "));
    Ok(Outcome::new(text, json))
}

/// `history`: every entry, past, active, pending or bad, with who wrote it.
pub async fn history(ctx: &Ctx, path: &FieldPath) -> Result<Outcome, Failure> {
    let seen = ctx.field_entries(path).await?;
    let now = seen.now;
    let field = seen.field(&path.key);
    let (active, _) = split(&seen.entries, now, field);
    let state = |e: &StoredEntry| {
        if view::bad(e, field).is_some() {
            "bad"
        } else if e.at > now {
            "pending"
        } else if active.is_some_and(|a| a.at == e.at) {
            "active"
        } else {
            "past"
        }
    };
    let mut shown: Vec<Value> = seen
        .entries
        .iter()
        .map(|e| {
            let mut out = view::entry_json(e);
            out["state"] = json!(state(e));
            if let Some(reason) = view::bad(e, field) {
                out["reason"] = json!(reason);
                out["stored"] = json!(view::stored_text(e));
            }
            out
        })
        .collect();
    shown.extend(
        seen.unplaced.iter().map(
            |u| json!({"at": null, "stored_instant": u.at, "state": "bad", "reason": u.reason}),
        ),
    );
    let json = json!({
        "namespace": path.namespace,
        "field": path.key,
        "now": instant(now),
        "entries": shown,
    });
    if seen.entries.is_empty() && seen.unplaced.is_empty() {
        return Ok(Outcome::new(
            format!("{path}: no entries (it reads as its default)\n"),
            json,
        ));
    }
    let mut rows = vec![
        ["AT", "VALUE", "STATE", "WRITTEN", "BY"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for e in &seen.entries {
        let (written, by) = match &e.origin {
            Some(o) => (instant(o.written_at), o.by.clone()),
            None => ("?".to_owned(), "?".to_owned()),
        };
        let state = match view::bad(e, field) {
            Some(reason) => format!("bad: {reason}"),
            None => state(e).to_owned(),
        };
        rows.push(vec![
            instant(e.at),
            view::value_text(&e.value),
            state,
            written,
            by,
        ]);
    }
    for u in &seen.unplaced {
        rows.push(vec![
            u.at.clone(),
            "?".to_owned(),
            format!("bad: {}", u.reason),
            "?".to_owned(),
            "?".to_owned(),
        ]);
    }
    let mut text = format!("{path} at {}\n", instant(now));
    text.push_str(&table(&rows, "  "));
    Ok(Outcome::new(text, json))
}
