//! The fleet's records in Redis: what a fetch with a report adds to the
//! fetch (`report.lua`), how the records are read back (`reports.lua`), and
//! what the store does when a server will not keep them.
//!
//! A record lives in the hash `lockstep:{ns}:fleet` under its process's id,
//! as `{"seen":<store ms>,"revision":<the revision served>,"body":"<the
//! report's body>"}`, and its expiry in the sorted set
//! `lockstep:{ns}:fleet:expiry`. Each fetch with a report deletes at most
//! [`SWEEP`] expired records, and sets both keys to expire with the last
//! record, so a registry no process fetches any more leaves nothing behind.
//!
//! A server may refuse to keep a record: a read-only ACL user, a replica, a
//! server refusing writes (`MISCONF`, `NOREPLICAS`), a fleet key of the
//! wrong type, a body over [`MAX_RECORD_BYTES`]. The fetch is served all
//! the same (by the read-only script when the server refused the reporting
//! one whole, which costs that one fetch a second round trip), as every
//! store's [`Reporting`](crate::store::reporting) rule has it.

use std::sync::atomic::{AtomicBool, Ordering};

use redis::{RedisError, Value};
use serde::Deserialize;

use super::reply::text;
use crate::store::stored::{MAX_RECORD_BYTES, Record, Records, StoredRecord, StoredSchema};
use crate::tick::Millis;

/// How many expired records a fetch deletes at most.
pub(super) const SWEEP: usize = 32;

/// The longest a record is kept after its fetch (about 31 years): an
/// instant the scripts compute exactly.
const LONGEST: Millis = 1_000_000_000_000;

/// Whether a store's records go in a script of their own, which names only
/// the fleet's keys (the server refused the fetch with a report for a key
/// the user may only read).
#[derive(Default)]
pub(super) struct RecordApart(AtomicBool);

impl RecordApart {
    /// Whether records go apart from the fetch.
    pub(super) fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The server refused a fetch with a report of `namespace` for a key
    /// the user may not write (`why`): from now on the record goes in a
    /// script of its own naming only the fleet's keys, pipelined with the
    /// read-only fetch, which a user allowed to write those keys alone
    /// (docs/stores.md, "a reader that reports") may run.
    pub(super) fn turn_on(&self, namespace: &str, why: &str) {
        if !self.0.swap(true, Ordering::Relaxed) {
            tracing::info!(
                namespace,
                reason = why,
                "lockstep: this store's user may not write the registry's keys; its fleet record \
                 goes in a script of its own, in the same round trip as the fetch"
            );
        }
    }
}

/// Whether the server refused a fetch with a report whole because it may
/// write: the fetch without one is served.
pub(super) fn refused_whole(e: &RedisError) -> bool {
    matches!(
        e.code(),
        Some("NOPERM" | "READONLY" | "OOM" | "MISCONF" | "NOREPLICAS")
    )
}

/// Whether the server refused a script for a key its user may not write
/// (`NOPERM`, naming the keys): a record apart, naming only the fleet's
/// keys, may be allowed.
pub(super) fn refused_for_keys(e: &RedisError) -> bool {
    e.code() == Some("NOPERM") && e.detail().is_some_and(|d| d.contains("keys"))
}

/// The arguments `report.lua` reads after `fetch.lua`'s (`ARGV[3..]`).
pub(super) fn args(report: &Record) -> [String; 5] {
    [
        report.process().to_owned(),
        report.body().to_owned(),
        report.expires_after().clamp(0, LONGEST).to_string(),
        MAX_RECORD_BYTES.to_string(),
        SWEEP.to_string(),
    ]
}

#[derive(Deserialize)]
/// A record as `report.lua` keeps it.
struct Kept {
    seen: Millis,
    revision: u64,
    body: String,
}

/// The reply of `reports.lua`, or `None` if it is not one. A record that
/// does not read as one (written by something else) is left out.
pub(super) fn records(reply: Value) -> Option<Records> {
    let Value::Array(items) = reply else {
        return None;
    };
    let secs: i64 = text(items.first()?)?.parse().ok()?;
    let micros: i64 = text(items.get(1)?)?.parse().ok()?;
    let Value::Array(flat) = items.get(2)? else {
        return None;
    };
    let schemas = flat
        .chunks(2)
        .filter_map(|pair| {
            Some(StoredSchema::stored(
                text(pair.first()?)?,
                text(pair.get(1)?)?,
            ))
        })
        .collect();
    let records = items[3..]
        .chunks(2)
        .filter_map(|pair| {
            let process = text(pair.first()?)?;
            let record: Kept = serde_json::from_str(&text(pair.get(1)?)?).ok()?;
            Some(StoredRecord {
                process,
                seen: record.seen,
                revision: record.revision,
                body: record.body,
            })
        })
        .collect();
    Some(Records {
        store_now: secs * 1000 + micros / 1000,
        records,
        schemas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn records_read_back_as_kept_and_garbage_is_left_out() {
        let reply = Value::Array(vec![
            bulk("1700000000"),
            bulk("250999"),
            Value::Array(vec![bulk("0123456789abcdef"), bulk("{}")]),
            bulk("p1"),
            bulk(r#"{"seen":1700000000100,"revision":3,"body":"{\"id\":\"p1\",\"a\":\"x\/y\"}"}"#),
            bulk("p2"),
            bulk("not a record"),
        ]);
        let reports = records(reply).unwrap();
        assert_eq!(reports.store_now, 1_700_000_000_250);
        assert_eq!(
            reports.records,
            [StoredRecord {
                process: "p1".to_owned(),
                seen: 1_700_000_000_100,
                revision: 3,
                body: r#"{"id":"p1","a":"x/y"}"#.to_owned(),
            }]
        );
        assert_eq!(
            reports.schemas,
            [StoredSchema::stored("0123456789abcdef", "{}")]
        );
    }

    #[test]
    fn what_a_server_refuses_to_write_falls_back_to_the_read_only_fetch() {
        let error = |reply: &str| {
            redis::parse_redis_value(format!("-{reply}\r\n").as_bytes())
                .and_then(Value::extract_error)
                .unwrap_err()
        };
        for refused in [
            "NOPERM this user has no permissions to access one of the keys used as arguments",
            "READONLY You can't write against a read only replica.",
            "OOM command not allowed when used memory > 'maxmemory'.",
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to \
             persist to disk.",
            "NOREPLICAS Not enough good replicas to write.",
        ] {
            assert!(refused_whole(&error(refused)), "{refused}");
        }
        for other in [
            "LOADING Redis is loading the dataset in memory",
            "ERR Error running script",
            "NOSCRIPT No matching script.",
        ] {
            assert!(!refused_whole(&error(other)), "{other}");
        }
    }
}
