//! The fleet view: which live processes hold each pending change (promise 14).
//!
//! With each fetch a process sends a small record of itself ([`Process`]);
//! the store keeps it in the same round trip, stamped with the store's clock
//! and the registry's revision that fetch served. Every commit, cancel and
//! purge advances the revision and each entry carries the revision that
//! wrote it, so a process holds an entry exactly when the last fetch it was
//! served has that revision or a later one (and it did not report the entry
//! as one it cannot decode). A record expires three (see [`crate::Builder::report`]) ticks after
//! the process's last fetch: the view lists only live processes and never
//! grows without bound.
//!
//! A record says who the process is (host name, pid, program name, a random
//! id per start, lockstep's version) and how it is doing (fetch and failure
//! counts, late flips, rejected values, the clock offset): never the store's
//! URL, the environment or a value.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::builds::Builds;
use super::contract::Store;
use super::fetch::Fetched;
use super::member::{Process, record_lives, record_process};
use super::stored::{Records, StoredEntry};
use crate::error::Error;
use crate::error::Refusal;
use crate::tick::{Millis, Tick, to_datetime};

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
    /// The builds the live processes run (more than one during a rolling
    /// deploy), largest first.
    pub builds: Vec<super::builds::Build>,
    /// How many records the store returned that the view leaves out: they
    /// claim to live longer than the expiry rule allows (a last fetch more
    /// than three ticks ago, or later than the store's clock),
    /// so no process of this registry wrote them as they stand: planted by
    /// hand, or kept by a store whose clock stepped back.
    pub ignored: usize,
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
    /// The live processes that will not serve it, by build, and why: their
    /// build lacks the field or cannot decode the value, or they reported
    /// they could not decode it. They are among [`PendingChange::missing`].
    pub rejected: Vec<Refusal>,
}

impl PendingChange {
    /// Whether every live process holds it.
    pub fn held_by_all(&self) -> bool {
        self.held_by == self.of
    }
}

impl Fleet {
    /// The fleet of `namespace` from a fetch of the registry and the
    /// processes' records read after it ([`Store::records`]): what
    /// [`fleet()`] returns, for a tool that already fetched the registry
    /// for its own use, without fetching it again. With the registry's
    /// `tick` (its published schema's), a record whose last fetch is more
    /// than three ticks and a fetch timeout before the store's
    /// clock when the records were read ([`Records::store_now`]), or more
    /// than a fetch timeout after it, is left out and counted in
    /// [`Fleet::ignored`]; without, every record the store returns is taken
    /// as live.
    pub fn of(namespace: &str, tick: Option<Tick>, fetched: &Fetched, reports: Records) -> Fleet {
        let now = fetched
            .store_micros
            .map_or(reports.store_now, |us| us.div_euclid(1000));
        let written = Written::of(fetched);
        let total = reports.records.len();
        // Records are judged by the store's clock when they were read: a
        // tool may read them anew beside an older fetch.
        let read = reports.store_now;
        let schemas = reports.schemas;
        let mut processes: Vec<Process> = reports
            .records
            .into_iter()
            .filter(|record| tick.is_none_or(|tick| record_lives(record, tick, read)))
            .map(|record| {
                let mut process = record_process(record);
                process.behind = written.unheld_by(&process);
                process
            })
            .collect();
        processes.sort_by(|a, b| {
            (&a.host, &a.program, a.pid, &a.id).cmp(&(&b.host, &b.program, b.pid, &b.id))
        });
        let builds = Builds::of(&processes, &schemas);
        let mut pending: Vec<PendingChange> = fetched
            .fields
            .iter()
            .flat_map(|(field, entries)| {
                entries
                    .iter()
                    .filter(|e| e.at > now)
                    .map(|e| pending_change(field, e, &processes, &builds))
            })
            .collect();
        pending.sort_by(|a, b| (a.at, &a.field).cmp(&(b.at, &b.field)));
        Fleet {
            namespace: namespace.to_owned(),
            store_time: to_datetime(now),
            revision: fetched.revision,
            ignored: total - processes.len(),
            processes,
            pending,
            builds: builds.all().to_vec(),
        }
    }

    /// The process with id `id`.
    pub fn process(&self, id: &str) -> Option<&Process> {
        self.processes.iter().find(|p| p.id == id)
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

/// The fleet of `namespace` in `store`, for tools: its live processes and,
/// for every pending change of the fields `keys`, which of them hold it;
/// with the registry's `tick`, records that outlive the expiry rule are
/// left out (see [`Fleet::of`]). Two calls: the registry's fetch, then the
/// processes' records (a process that fetches between them is seen holding
/// more, never less).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockstep::Error> {
/// let store = lockstep::store::open("memory://fleet-docs")?;
/// let tick = lockstep::Tick::new(std::time::Duration::from_secs(1)).ok();
/// let fleet = lockstep::store::fleet(&*store, "flags", &["theme"], tick).await?;
/// assert!(fleet.processes.is_empty() && fleet.pending.is_empty());
/// # Ok(())
/// # }
/// ```
pub async fn fleet(
    store: &dyn Store,
    namespace: &str,
    keys: &[&str],
    tick: Option<Tick>,
) -> Result<Fleet, Error> {
    let fetched = store.fetch(namespace, keys).await?;
    let reports = store.records(namespace).await?;
    Ok(Fleet::of(namespace, tick, &fetched, reports))
}

/// When each revision of a fetch's entries was written: for
/// [`Process::behind`].
struct Written {
    /// `(written at, the newest revision written by then)`, by time.
    newest_by: Vec<(Millis, u64)>,
}

impl Written {
    fn of(fetched: &Fetched) -> Written {
        let mut dated: Vec<(Millis, u64)> = fetched
            .fields
            .values()
            .flatten()
            .filter_map(|e| e.origin.as_ref())
            .map(|o| (o.written_at, o.revision))
            .collect();
        dated.sort_unstable();
        let mut newest = 0;
        for (_, revision) in &mut dated {
            newest = newest.max(*revision);
            *revision = newest;
        }
        Written { newest_by: dated }
    }

    /// The newest revision written a fetch timeout of `process`'s tick
    /// before its last fetch, if that fetch was served an older one.
    fn unheld_by(&self, process: &Process) -> Option<u64> {
        let tick = std::time::Duration::from_millis(u64::try_from(process.tick_ms).ok()?);
        let margin = crate::tick::Tick::new(tick)
            .ok()?
            .fetch_timeout()
            .as_millis() as Millis;
        let by = crate::tick::from_datetime(process.last_fetch).saturating_sub(margin);
        let written = self.newest_by.partition_point(|(at, _)| *at < by);
        let due = self.newest_by[..written].last()?.1;
        (process.revision < due).then_some(due)
    }
}

fn pending_change(
    field: &str,
    entry: &StoredEntry,
    processes: &[Process],
    builds: &Builds,
) -> PendingChange {
    let revision = entry.origin.as_ref().map_or(0, |o| o.revision);
    let mut rejected = match &entry.value {
        Ok(raw) => match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(value) => builds.refusals(field, &value),
            Err(e) => vec![Refusal {
                build: "every build".to_owned(),
                processes: processes.iter().map(|p| p.id.clone()).collect(),
                reason: format!("the stored value is not JSON: {e}"),
            }],
        },
        Err(_) => Vec::new(),
    };
    let refusing: std::collections::HashSet<&str> = rejected
        .iter()
        .flat_map(|r| r.processes.iter().map(String::as_str))
        .collect();
    // What processes reported they could not decode, by build, beside what
    // their build's schema refuses.
    let mut reported: Vec<Refusal> = Vec::new();
    for process in processes {
        if refusing.contains(process.id.as_str()) || !reported_refused(process, field, entry.at) {
            continue;
        }
        let build = builds
            .of_process(&process.id)
            .map_or_else(|| "a build".to_owned(), super::builds::Build::name);
        match reported.iter_mut().find(|r| r.build == build) {
            Some(refusal) => refusal.processes.push(process.id.clone()),
            None => reported.push(Refusal {
                build,
                processes: vec![process.id.clone()],
                reason: "its processes reported they could not decode it".to_owned(),
            }),
        }
    }
    rejected.extend(reported);
    let refusing: std::collections::HashSet<&str> = rejected
        .iter()
        .flat_map(|r| r.processes.iter().map(String::as_str))
        .collect();
    let missing: Vec<String> = processes
        .iter()
        .filter(|p| p.revision < revision || refusing.contains(p.id.as_str()))
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
        rejected,
    }
}

/// Whether `process` reported the entry of `field` at `at` as one it could
/// not decode.
fn reported_refused(process: &Process, field: &str, at: Millis) -> bool {
    process
        .refused
        .iter()
        .any(|r| r.field == field && r.at == at)
}

#[cfg(test)]
mod tests;
