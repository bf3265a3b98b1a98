//! What the database's rows say: a fetch's rows as a [`Fetched`], the
//! records' and schemas' rows as [`Records`], one stored entry as a
//! [`StoredEntry`].

use super::super::dialect::Cell;
use super::super::link::Failure;
use crate::store::fetch::Fetched;
use crate::store::stored::{
    Epoch, Origin, Records, StoredEntry, StoredRecord, StoredSchema, not_fetched,
};
use crate::tick::Millis;
use crate::value::MAX_VALUE_BYTES;

/// The rows of [`Statements::reports`](super::super::dialect::Statements::reports)
/// as [`Records`]: a schema's row has a digest, the others are the clock's
/// and the records'.
pub(super) fn assemble_records(rows: Vec<Vec<Cell>>) -> Result<Records, Failure> {
    let no_clock = || Failure::Store("the database did not say its time".to_owned());
    let mut reports = Records::default();
    let mut clock = None;
    for row in rows {
        let Ok::<[Cell; 6], _>([process, seen, revision, body, now, digest]) = row.try_into()
        else {
            return Err(Failure::Store(
                "a report row without its 6 columns".to_owned(),
            ));
        };
        if let Some(digest) = digest.text() {
            let json = body.text().unwrap_or_default();
            reports.schemas.push(StoredSchema::stored(digest, json));
            continue;
        }
        clock = Some(now.int().ok_or_else(no_clock)?);
        if let Some(process) = process.text() {
            reports.records.push(StoredRecord {
                process,
                seen: seen.int().unwrap_or_default(),
                revision: revision_of(&revision),
                body: body.text().unwrap_or_default(),
            });
        }
    }
    reports.store_now = clock.ok_or_else(no_clock)?;
    Ok(reports)
}

/// A revision as stored; `NULL` (a registry never written) is 0.
pub(super) fn revision_of(cell: &Cell) -> u64 {
    cell.int().and_then(|r| u64::try_from(r).ok()).unwrap_or(0)
}

/// The rows of a fetch as a [`Fetched`]: every key asked for, each with its
/// entries ordered by instant; an entry of a field the fetch did not ship
/// reads as [`not_fetched`].
pub(super) fn assemble(rows: Vec<Vec<Cell>>, keys: &[&str]) -> Result<Fetched, Failure> {
    let mut fetched = Fetched {
        fields: keys.iter().map(|k| ((*k).to_owned(), Vec::new())).collect(),
        ..Fetched::default()
    };
    let mut header = false;
    for row in rows {
        let Ok::<[Cell; 9], _>(
            [
                field,
                at,
                value,
                size,
                written_at,
                write_id,
                writer,
                revision,
                unshipped,
            ],
        ) = row.try_into()
        else {
            return Err(Failure::Store(
                "a fetch row without its 9 columns".to_owned(),
            ));
        };
        let (at, size, written_at) = (at.int(), size.int(), written_at.int());
        let Some(field) = field.text() else {
            header = true;
            fetched.store_micros = at;
            fetched.revision = revision_of(&revision);
            fetched.schema_held = size == Some(1);
            fetched.epoch = match (value.text(), written_at) {
                (Some(id), Some(created)) => Some(Epoch { id, created }),
                _ => None,
            };
            fetched.unchanged = write_id.text().as_deref() == Some("unchanged");
            continue;
        };
        let Some(at) = at else {
            return Err(Failure::Store(format!(
                "an entry of {field} without an instant"
            )));
        };
        let written = Written {
            write_id: write_id.text(),
            written_at,
            writer: writer.text(),
            revision: revision_of(&revision),
        };
        let entry = match unshipped.int() {
            // A field's bytes are a sum of lengths: never negative.
            Some(field_bytes) => StoredEntry {
                at,
                value: Err(not_fetched(field_bytes.max(0) as u64)),
                origin: written.origin(),
            },
            None => stored(at, value.text(), size, written),
        };
        fetched.fields.entry(field).or_default().push(entry);
    }
    if !header {
        return Err(Failure::Store("a fetch without the clock row".to_owned()));
    }
    if fetched.unchanged {
        if fetched.fields.values().any(|entries| !entries.is_empty()) {
            return Err(Failure::Store("an unchanged fetch with entries".to_owned()));
        }
        fetched.fields.clear();
    }
    for entries in fetched.fields.values_mut() {
        entries.sort_by_key(|e| e.at);
    }
    Ok(fetched)
}

/// Who wrote an entry, as the database returned it.
pub(super) struct Written {
    pub(super) write_id: Option<String>,
    pub(super) written_at: Option<i64>,
    pub(super) writer: Option<String>,
    pub(super) revision: u64,
}

impl Written {
    /// The entry's origin, when the database said who wrote it and when.
    fn origin(self) -> Option<Origin> {
        match (self.write_id, self.written_at) {
            (Some(write), Some(written_at)) => Some(Origin {
                write,
                written_at,
                by: self.writer.unwrap_or_default(),
                revision: self.revision,
            }),
            _ => None,
        }
    }
}

/// An entry as the database returned it; a value over the limit comes back
/// as its size only.
pub(super) fn stored(
    at: Millis,
    value: Option<String>,
    size: Option<i64>,
    written: Written,
) -> StoredEntry {
    let value = match (value, size) {
        (Some(v), _) => Ok(v),
        (None, Some(n)) if n > MAX_VALUE_BYTES as i64 => {
            Err(format!("{n} bytes, over the limit of {MAX_VALUE_BYTES}"))
        }
        (None, _) => Err("the entry has no value".to_owned()),
    };
    StoredEntry {
        at,
        value,
        origin: written.origin(),
    }
}
