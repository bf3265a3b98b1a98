//! A member of the fleet view: what each process reports of
//! itself with its fetches, read back as a [`Process`], and the rule by
//! which a record still counts as a live process.
//!
//! A record is written by every build of a fleet during a rolling deploy,
//! each with its own version of lockstep: its instants are milliseconds
//! since the Unix epoch on the wire (see `report.rs`), and are read back as
//! milliseconds or RFC 3339 text alike. A [`Process`] serializes for people
//! and tools (the fleet view, `lockstep fleet --json`) with its instants as
//! RFC 3339 text.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::store::stored::StoredRecord;
use crate::tick::{Millis, Tick, to_datetime};

/// How many ticks a process's record outlives its last fetch.
pub(crate) const EXPIRY_TICKS: i64 = 3;

/// One live process, as it reported itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Process {
    /// A random id, new at each start of the registry.
    pub id: String,
    /// The machine's host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// The program's file name.
    pub program: String,
    /// The lockstep version it runs.
    #[serde(default)]
    pub version: String,
    /// When the registry started, by the process's clock. Serialized as
    /// `started_at` (RFC 3339); read from a record's `started`.
    #[serde(
        default,
        rename(serialize = "started_at", deserialize = "started"),
        deserialize_with = "instant_option"
    )]
    pub started: Option<DateTime<Utc>>,
    /// The registry's tick, in ms, as this process declares it.
    #[serde(default)]
    pub tick_ms: i64,
    /// The digest of its build's schema ([`StoredSchema`](crate::store::stored::StoredSchema)):
    /// processes with the same one run the same build of the registry.
    /// `None` from lockstep versions that did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// When it last fetched, by the store's clock.
    #[serde(skip_deserializing, default = "epoch_start")]
    pub last_fetch: DateTime<Utc>,
    /// The registry's revision that fetch served.
    #[serde(skip_deserializing)]
    pub revision: u64,
    /// The registry's revision this process should hold and does not, if
    /// any: the newest revision written over a fetch timeout (of its tick)
    /// before its last fetch, when that fetch was served an older one. It
    /// reads a server that lags far behind or no longer follows the primary
    /// (a replica after a failover its URL does not name); it will not
    /// switch to what it lacks.
    #[serde(skip_deserializing)]
    pub behind: Option<u64>,
    /// Successful fetches since start.
    #[serde(default)]
    pub fetches: u64,
    /// Failed fetches since start.
    #[serde(default)]
    pub failed_fetches: u64,
    /// Changes it learned only once active.
    #[serde(default)]
    pub late_flips: u64,
    /// Stored entries it could not decode, counted once each.
    #[serde(default)]
    pub rejected: u64,
    /// The entries of its last fetch it could not decode.
    #[serde(default)]
    pub refused: Vec<Refused>,
    /// The store's clock minus its own, in ms, where it measured it.
    #[serde(default)]
    pub clock_offset_ms: Option<f64>,
    /// Whether it is serving what it held before the store lost its data.
    #[serde(default)]
    pub store_lost: bool,
}

fn epoch_start() -> DateTime<Utc> {
    DateTime::UNIX_EPOCH
}

/// An entry a process could not decode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The field's key.
    pub field: String,
    /// The entry's instant, in ms since the Unix epoch; serialized as RFC
    /// 3339 text.
    #[serde(serialize_with = "rfc3339", deserialize_with = "instant_ms")]
    pub at: Millis,
}

/// An instant in a record, as any lockstep version wrote it.
#[derive(Deserialize)]
#[serde(untagged)]
enum WireInstant {
    /// Milliseconds since the Unix epoch, as records are written.
    Millis(Millis),
    /// RFC 3339 text.
    Text(DateTime<Utc>),
}

impl WireInstant {
    fn millis(self) -> Millis {
        match self {
            WireInstant::Millis(ms) => ms,
            WireInstant::Text(t) => t.timestamp_millis(),
        }
    }
}

/// An instant read as milliseconds or RFC 3339 text.
fn instant_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
    WireInstant::deserialize(d).map(WireInstant::millis)
}

/// An optional instant read as milliseconds or RFC 3339 text.
fn instant_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Ok(Option::<WireInstant>::deserialize(d)?.map(|t| to_datetime(t.millis())))
}

/// Milliseconds since the Unix epoch as RFC 3339 text.
fn rfc3339<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    to_datetime(*ms).serialize(s)
}

impl Process {
    /// How messages name it: `host pid 123 (program, id)`.
    pub fn name(&self) -> String {
        format!(
            "{} pid {} ({}, {})",
            self.host, self.pid, self.program, self.id
        )
    }
}

/// Whether `record` lives by the expiry rule of a registry ticking every
/// `tick`, at `now` (the store's clock): its last fetch at most
/// [`EXPIRY_TICKS`] ticks ago, and not later than now, each give or take a
/// fetch timeout.
pub(crate) fn record_lives(record: &StoredRecord, tick: Tick, now: Millis) -> bool {
    let margin = tick.fetch_timeout().as_millis() as Millis;
    let expiry = tick.as_millis().saturating_mul(EXPIRY_TICKS);
    record.seen > now.saturating_sub(expiry).saturating_sub(margin)
        && record.seen <= now.saturating_add(margin)
}

/// A stored record as a process; one whose body cannot be read still
/// counts, under its id.
pub(crate) fn record_process(record: StoredRecord) -> Process {
    let mut process: Process = serde_json::from_str(&record.body).unwrap_or_else(|e| Process {
        id: record.process.clone(),
        host: format!("(unreadable record: {e})"),
        pid: 0,
        program: String::new(),
        version: String::new(),
        started: None,
        tick_ms: 0,
        schema: None,
        last_fetch: DateTime::UNIX_EPOCH,
        revision: 0,
        behind: None,
        fetches: 0,
        failed_fetches: 0,
        late_flips: 0,
        rejected: 0,
        refused: Vec::new(),
        clock_offset_ms: None,
        store_lost: false,
    });
    process.id = record.process;
    process.last_fetch = to_datetime(record.seen);
    process.revision = record.revision;
    process
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(body: serde_json::Value) -> StoredRecord {
        StoredRecord {
            process: "a".into(),
            seen: 1_893_456_001_000,
            revision: 4,
            body: body.to_string(),
        }
    }

    #[test]
    fn a_record_is_read_with_its_instants_in_ms_or_rfc3339_and_printed_in_rfc3339() {
        let as_written = record(json!({"id": "a", "host": "vm", "pid": 7, "program": "shop",
            "started": 1_893_456_000_250_i64, "refused": [{"field": "limit", "at": 1_893_456_002_000_i64}]}));
        let as_text = record(json!({"id": "a", "host": "vm", "pid": 7, "program": "shop",
            "started": "2030-01-01T00:00:00.250Z",
            "refused": [{"field": "limit", "at": "2030-01-01T00:00:02Z"}]}));
        let process = record_process(as_written);
        assert_eq!(process, record_process(as_text));
        assert_eq!(process.started, Some(to_datetime(1_893_456_000_250)));
        assert_eq!(process.refused[0].at, 1_893_456_002_000);

        let printed = serde_json::to_value(&process).unwrap();
        assert_eq!(printed["started_at"], "2030-01-01T00:00:00.250Z");
        assert_eq!(printed.get("started"), None);
        assert_eq!(printed["refused"][0]["at"], "2030-01-01T00:00:02Z");
        assert_eq!(printed["last_fetch"], "2030-01-01T00:00:01Z");
    }
}
