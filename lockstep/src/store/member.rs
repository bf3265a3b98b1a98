//! A member of the fleet view: what each process reports of
//! itself with its fetches, read back as a [`Process`], and the rule by
//! which a record still counts as a live process.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    /// When the registry started, by the process's clock.
    #[serde(default, with = "chrono::serde::ts_milliseconds_option")]
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
    /// The entry's instant, in ms since the Unix epoch.
    pub at: Millis,
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
