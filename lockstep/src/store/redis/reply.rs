//! Reading the scripts' replies: a fetch's fields, with entries whose
//! instant is not one set apart, what became of its record, and the entry a
//! cancel removed.

use std::collections::BTreeMap;

use redis::Value;

use super::envelope::open_envelope;
use super::keys::instant;
use crate::store::fetch::Fetched;
use crate::store::stored::{Epoch, StoredEntry, Unplaced, not_fetched};
use crate::tick::Millis;
use crate::value::MAX_VALUE_BYTES;

/// What one hash field of a field's key holds: an entry on the timeline, or
/// one whose instant is not a number.
enum Read {
    Placed(StoredEntry),
    Unplaced(Unplaced),
}

/// An envelope's value as the scripts return it: the envelope, `{its
/// length}` in place of one over the limit, or `{its field's bytes, 0}` for
/// an entry of a field past the fetch's budget.
pub(super) fn value(
    value: &Value,
) -> (Result<String, String>, Option<crate::store::stored::Origin>) {
    match value {
        Value::BulkString(b) => open_envelope(b),
        Value::Array(marker) => match marker.as_slice() {
            [Value::Int(n)] => (
                Err(format!("{n} bytes, over the limit of {MAX_VALUE_BYTES}")),
                None,
            ),
            [Value::Int(n), Value::Int(0)] => {
                (Err(not_fetched(u64::try_from(*n).unwrap_or(0))), None)
            }
            _ => (Err("not a string".to_owned()), None),
        },
        _ => (Err("not a string".to_owned()), None),
    }
}

/// What became of the record a fetch was sent with.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Recorded {
    /// The fetch had no report.
    NotAsked,
    /// The store keeps it.
    Kept,
    /// The store did not keep it, and why (served all the same).
    Refused(String),
}

/// One hash field and value of a field's key.
fn read(at: &Value, stored: &Value) -> Read {
    let shown = text(at).unwrap_or_default();
    match instant(&shown) {
        Some(at) => {
            let (value, origin) = value(stored);
            Read::Placed(StoredEntry { at, value, origin })
        }
        None => Read::Unplaced(Unplaced {
            reason: format!(
                "instant {shown:?} is not a number of milliseconds since the Unix epoch"
            ),
            at: shown,
        }),
    }
}

/// A reply as text, if it is one.
pub(super) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The fetch script's reply for `keys`, or `None` if it is not one.
pub(super) fn fetched(reply: Value, keys: &[&str]) -> Option<(Fetched, Recorded)> {
    let Value::Array(items) = reply else {
        return None;
    };
    let mut items = items.into_iter();
    let secs: i64 = text(&items.next()?)?.parse().ok()?;
    let micros: i64 = text(&items.next()?)?.parse().ok()?;
    let epoch_id = text(&items.next()?);
    let created = text(&items.next()?).and_then(|c| c.parse::<Millis>().ok());
    let epoch = match (epoch_id, created) {
        (Some(id), Some(created)) => Some(Epoch { id, created }),
        _ => None,
    };
    let schema_held = matches!(items.next()?, Value::Int(1));
    let revision: u64 = text(&items.next()?)?.parse().ok()?;
    let recorded = match items.next()? {
        Value::Nil | Value::Boolean(false) => Recorded::NotAsked,
        Value::Int(1) => Recorded::Kept,
        why => Recorded::Refused(text(&why).unwrap_or_else(|| "refused".to_owned())),
    };
    let unchanged = match items.next()? {
        Value::Int(0) => false,
        Value::Int(1) => true,
        _ => return None,
    };
    if unchanged {
        let fetched = Fetched {
            store_micros: Some(secs * 1_000_000 + micros),
            epoch,
            schema_held,
            revision,
            unchanged,
            ..Fetched::default()
        };
        return Some((fetched, recorded));
    }
    let mut fields = BTreeMap::new();
    let mut unplaced = BTreeMap::new();
    for (key, item) in keys.iter().zip(items) {
        let (mut entries, mut bad) = (Vec::new(), Vec::new());
        match item {
            Value::Array(flat) => {
                for pair in flat.chunks(2) {
                    match read(&pair[0], pair.get(1).unwrap_or(&Value::Nil)) {
                        Read::Placed(entry) => entries.push(entry),
                        Read::Unplaced(entry) => bad.push(entry),
                    }
                }
            }
            other => {
                let why = text(&other).unwrap_or_else(|| "unreadable".to_owned());
                entries.push(StoredEntry {
                    at: 0,
                    value: Err(format!("the field's key cannot be read: {why}")),
                    origin: None,
                });
            }
        }
        entries.sort_by_key(|e| e.at);
        fields.insert((*key).to_owned(), entries);
        if !bad.is_empty() {
            bad.sort_by(|a, b| a.at.cmp(&b.at));
            unplaced.insert((*key).to_owned(), bad);
        }
    }
    let fetched = Fetched {
        store_micros: Some(secs * 1_000_000 + micros),
        epoch,
        fields,
        unplaced,
        schema_held,
        revision,
        unchanged,
    };
    Some((fetched, recorded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_entry_reader(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            let _ = read(&Value::BulkString(bytes.clone()), &Value::BulkString(bytes));
        }
    }

    #[test]
    fn a_fetch_sets_apart_what_has_no_instant_and_what_is_too_large() {
        let reply = Value::Array(vec![
            bulk("1700000000"),
            bulk("5"),
            bulk("e1"),
            bulk("17"),
            Value::Int(0),
            Value::Int(7),
            Value::Nil,
            Value::Int(0),
            Value::Array(vec![
                bulk("2000"),
                bulk(r#"{"f":1,"v":2}"#),
                bulk("foobar"),
                bulk("not json"),
                bulk("1000"),
                Value::Array(vec![Value::Int(10_000_000)]),
            ]),
        ]);
        let (fetched, recorded) = fetched(reply, &["a"]).unwrap();
        assert_eq!(recorded, Recorded::NotAsked);
        assert_eq!(fetched.revision, 7);
        assert_eq!(fetched.store_micros, Some(1_700_000_000_000_005));
        assert!(!fetched.schema_held);
        let a = &fetched.fields["a"];
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].at, a[1].at), (1000, 2000));
        assert_eq!(
            a[0].value,
            Err("10000000 bytes, over the limit of 65536".to_owned())
        );
        assert_eq!(a[1].value.as_deref(), Ok("2"));
        assert_eq!(fetched.unplaced["a"][0].at, "foobar");
        assert!(!fetched.unchanged);
    }

    #[test]
    fn an_unchanged_fetch_is_its_header_alone() {
        let reply = Value::Array(vec![
            bulk("1700000000"),
            bulk("5"),
            bulk("e1"),
            bulk("17"),
            Value::Int(1),
            Value::Int(7),
            Value::Int(1),
            Value::Int(1),
        ]);
        let (fetched, recorded) = fetched(reply, &["a", "b"]).unwrap();
        assert_eq!(recorded, Recorded::Kept);
        assert!(fetched.unchanged);
        assert!(fetched.schema_held);
        assert_eq!(fetched.revision, 7);
        assert_eq!(fetched.epoch.map(|e| e.id), Some("e1".to_owned()));
        assert!(fetched.fields.is_empty() && fetched.unplaced.is_empty());
        let garbled = Value::Array(vec![
            bulk("1700000000"),
            bulk("5"),
            bulk("e1"),
            bulk("17"),
            Value::Int(1),
            Value::Int(7),
            Value::Int(1),
            bulk("maybe"),
        ]);
        assert!(super::fetched(garbled, &["a"]).is_none());
    }
}
