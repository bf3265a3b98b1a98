//! The fleet: which live processes hold each pending change (promise 14).
//!
//! With each fetch a process sends a small record of itself ([`Process`]);
//! the store keeps it in the same round trip, stamped with the store's clock
//! and the registry's revision that fetch served. Every commit, cancel and
//! purge advances the revision and each entry carries the revision that
//! wrote it, so a process holds an entry exactly when the last fetch it was
//! served has that revision or a later one (and it did not report the entry
//! as one it cannot decode). A record expires [`EXPIRY_TICKS`] ticks after
//! the process's last fetch: the view lists only live processes and never
//! grows without bound.
//!
//! A record says who the process is (host name, pid, program name, a random
//! id per start, lockstep's version) and how it is doing (fetch and failure
//! counts, late flips, rejected values, the clock offset): never the store's
//! URL, the environment or a value.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::status::StatusData;
use crate::store::{MAX_REPORT_BYTES, Report, Reported, Store, StoredEntry};
use crate::tick::{Millis, Tick, to_datetime};

/// How many ticks a process's record outlives its last fetch.
pub const EXPIRY_TICKS: i64 = 3;

/// A registry's fleet at one moment: its live processes and, for each
/// pending change, which of them hold it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Fleet {
    /// The registry.
    pub namespace: String,
    /// The store's clock when the view was read.
    pub store_time: DateTime<Utc>,
    /// The registry's revision in the store.
    pub revision: u64,
    /// The live processes, by host, program and pid.
    pub processes: Vec<Process>,
    /// The changes waiting for their instant, soonest first.
    pub pending: Vec<PendingChange>,
}

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
    /// When it last fetched, by the store's clock.
    #[serde(skip_deserializing, default = "epoch_start")]
    pub last_fetch: DateTime<Utc>,
    /// The registry's revision that fetch served.
    #[serde(skip_deserializing)]
    pub revision: u64,
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

/// A change waiting for its instant, and who holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PendingChange {
    /// The field's key.
    pub field: String,
    /// When it activates.
    pub at: DateTime<Utc>,
    /// The value as stored (JSON text), or why the store cannot read it.
    #[serde(serialize_with = "as_json")]
    pub value: Result<String, String>,
    /// The write that made it, where the store keeps that.
    pub write: Option<String>,
    /// Who wrote it.
    pub by: Option<String>,
    /// The registry's revision that wrote it.
    pub revision: u64,
    /// How many live processes hold it.
    pub held_by: usize,
    /// How many live processes there are.
    pub of: usize,
    /// The ids of the live processes that do not hold it.
    pub missing: Vec<String>,
}

impl PendingChange {
    /// Whether every live process holds it.
    pub fn held_by_all(&self) -> bool {
        self.held_by == self.of
    }
}

impl Fleet {
    /// The process with id `id`.
    pub fn process(&self, id: &str) -> Option<&Process> {
        self.processes.iter().find(|p| p.id == id)
    }
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

/// The value as JSON where it is JSON, else as a string.
fn as_json<S: serde::Serializer>(
    value: &Result<String, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Ok(raw) => match serde_json::value::RawValue::from_string(raw.clone()) {
            Ok(raw) => raw.serialize(serializer),
            Err(_) => serializer.serialize_str(raw),
        },
        Err(reason) => serializer.serialize_str(&format!("(unreadable: {reason})")),
    }
}

/// Who this process is, fixed at start.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    id: String,
    host: String,
    pid: u32,
    program: String,
    started: Millis,
}

impl Identity {
    /// This process, started now.
    pub(crate) fn of_this_process(now: Millis) -> Identity {
        Identity {
            id: format!("{:016x}", fastrand::u64(..)),
            host: host_name(),
            pid: std::process::id(),
            program: std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default(),
            started: now,
        }
    }

    /// The record sent with the next fetch.
    pub(crate) fn report(
        &self,
        tick: Tick,
        status: &StatusData,
        refused: &[(&'static str, Millis)],
    ) -> Report {
        let mut process = Process {
            id: self.id.clone(),
            host: self.host.clone(),
            pid: self.pid,
            program: self.program.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started: Some(to_datetime(self.started)),
            tick_ms: tick.as_millis(),
            last_fetch: DateTime::UNIX_EPOCH,
            revision: 0,
            fetches: status.fetches,
            failed_fetches: status.failed_fetches,
            late_flips: status.late_flips,
            rejected: status.rejected,
            refused: refused
                .iter()
                .map(|(field, at)| Refused {
                    field: (*field).to_owned(),
                    at: *at,
                })
                .collect(),
            clock_offset_ms: status.clock_offset.map(|(ns, _)| ns as f64 / 1e6),
            store_lost: status.store_lost,
        };
        let mut body = body_of(&process);
        // A record stays small whatever the process saw: the refused
        // entries are the only part that can grow.
        while body.len() > MAX_REPORT_BYTES && process.refused.pop().is_some() {
            body = body_of(&process);
        }
        Report {
            process: self.id.clone(),
            body,
            expires_after: tick.as_millis().saturating_mul(EXPIRY_TICKS),
        }
    }
}

/// The JSON a process sends: what it is and how it does, without the
/// fields the store fills in.
fn body_of(process: &Process) -> String {
    let mut value = serde_json::to_value(process).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.remove("last_fetch");
        object.remove("revision");
    }
    value.to_string()
}

/// The machine's host name, where the system says it.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The fleet of `namespace` in `store`, for tools: its live processes and,
/// for every pending change of the fields its published schema lists, which
/// of them hold it. Two calls: the registry's fetch, then the processes'
/// records (a process that fetches between them is seen holding more, never
/// less).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockstep::Error> {
/// let store = lockstep::store::open("memory://fleet-docs")?;
/// let fleet = lockstep::store::fleet(&*store, "flags", &["theme"]).await?;
/// assert!(fleet.processes.is_empty() && fleet.pending.is_empty());
/// # Ok(())
/// # }
/// ```
pub async fn fleet(store: &dyn Store, namespace: &str, keys: &[&str]) -> Result<Fleet, Error> {
    let fetched = store.fetch(namespace, keys).await?;
    let reports = store.reports(namespace).await?;
    let now = fetched
        .store_micros
        .map_or(reports.store_now, |us| us.div_euclid(1000));
    let mut processes: Vec<Process> = reports.records.into_iter().map(process).collect();
    processes.sort_by(|a, b| {
        (&a.host, &a.program, a.pid, &a.id).cmp(&(&b.host, &b.program, b.pid, &b.id))
    });
    let mut pending: Vec<PendingChange> = fetched
        .fields
        .iter()
        .flat_map(|(field, entries)| {
            entries
                .iter()
                .filter(|e| e.at > now)
                .map(|e| pending_change(field, e, &processes))
        })
        .collect();
    pending.sort_by(|a, b| (a.at, &a.field).cmp(&(b.at, &b.field)));
    Ok(Fleet {
        namespace: namespace.to_owned(),
        store_time: to_datetime(now),
        revision: fetched.revision,
        processes,
        pending,
    })
}

/// A stored record as a process; one whose body cannot be read still
/// counts, under its id.
fn process(record: Reported) -> Process {
    let mut process: Process = serde_json::from_str(&record.body).unwrap_or_else(|e| Process {
        id: record.process.clone(),
        host: format!("(unreadable record: {e})"),
        pid: 0,
        program: String::new(),
        version: String::new(),
        started: None,
        tick_ms: 0,
        last_fetch: DateTime::UNIX_EPOCH,
        revision: 0,
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

fn pending_change(field: &str, entry: &StoredEntry, processes: &[Process]) -> PendingChange {
    let revision = entry.origin.as_ref().map_or(0, |o| o.revision);
    let missing: Vec<String> = processes
        .iter()
        .filter(|p| !holds(p, field, entry.at, revision))
        .map(|p| p.id.clone())
        .collect();
    PendingChange {
        field: field.to_owned(),
        at: to_datetime(entry.at),
        value: entry.value.clone(),
        write: entry.origin.as_ref().map(|o| o.write.clone()),
        by: entry.origin.as_ref().map(|o| o.by.clone()),
        revision,
        held_by: processes.len() - missing.len(),
        of: processes.len(),
        missing,
    }
}

/// Whether `process` holds the entry of `field` at `at` written at
/// `revision`.
fn holds(process: &Process, field: &str, at: Millis, revision: u64) -> bool {
    process.revision >= revision
        && !process
            .refused
            .iter()
            .any(|r| r.field == field && r.at == at)
}
