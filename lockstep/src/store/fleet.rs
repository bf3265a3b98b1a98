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
use serde::{Deserialize, Serialize};

use super::{Fetched, Reported, Reports, Store, StoredEntry};
use crate::error::Error;
use crate::tick::{Millis, Tick, to_datetime};

/// How many ticks a process's record outlives its last fetch.
pub(crate) const EXPIRY_TICKS: i64 = 3;

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
    /// How many records the store returned that the view leaves out: they
    /// claim to live longer than the expiry rule allows (a last fetch more
    /// than [`EXPIRY_TICKS`] ticks ago, or later than the store's clock),
    /// so no process of this registry wrote them as they stand: planted by
    /// hand, or kept by a store whose clock stepped back.
    pub ignored: usize,
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
    /// The fleet of `namespace` from a fetch of the registry and the
    /// processes' records read after it ([`Store::reports`]): what
    /// [`fleet()`] returns, for a tool that already fetched the registry
    /// for its own use, without fetching it again. With the registry's
    /// `tick` (its published schema's), a record whose last fetch is more
    /// than [`EXPIRY_TICKS`] ticks and a fetch timeout before the store's
    /// clock when the records were read ([`Reports::store_now`]), or more
    /// than a fetch timeout after it, is left out and counted in
    /// [`Fleet::ignored`]; without, every record the store returns is taken
    /// as live.
    pub fn of(namespace: &str, tick: Option<Tick>, fetched: &Fetched, reports: Reports) -> Fleet {
        let now = fetched
            .store_micros
            .map_or(reports.store_now, |us| us.div_euclid(1000));
        let written = Written::of(fetched);
        let total = reports.records.len();
        // Records are judged by the store's clock when they were read: a
        // tool may read them anew beside an older fetch.
        let read = reports.store_now;
        let mut processes: Vec<Process> = reports
            .records
            .into_iter()
            .filter(|record| tick.is_none_or(|tick| live(record, tick, read)))
            .map(|record| {
                let mut process = process(record);
                process.behind = written.unheld_by(&process);
                process
            })
            .collect();
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
        Fleet {
            namespace: namespace.to_owned(),
            store_time: to_datetime(now),
            revision: fetched.revision,
            ignored: total - processes.len(),
            processes,
            pending,
        }
    }

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
    let reports = store.reports(namespace).await?;
    Ok(Fleet::of(namespace, tick, &fetched, reports))
}

/// Whether `record` lives by the expiry rule of a registry ticking every
/// `tick`, at `now` (the store's clock): its last fetch at most
/// [`EXPIRY_TICKS`] ticks ago, and not later than now, each give or take a
/// fetch timeout.
fn live(record: &Reported, tick: Tick, now: Millis) -> bool {
    let margin = tick.fetch_timeout().as_millis() as Millis;
    let expiry = tick.as_millis().saturating_mul(EXPIRY_TICKS);
    record.seen > now.saturating_sub(expiry).saturating_sub(margin)
        && record.seen <= now.saturating_add(margin)
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::clock::ManualClock;
    use crate::store::{Fetch, MemoryStore, Report, Write};
    use crate::tick::Tick;

    const KEYS: [&str; 2] = ["a", "b"];

    fn tick() -> Tick {
        Tick::from_secs(1).unwrap()
    }

    fn report_of(id: &str) -> Report {
        Report {
            process: id.to_owned(),
            body: format!(r#"{{"id":"{id}","host":"h","pid":1,"program":"p"}}"#),
            expires_after: 600_000,
        }
    }

    /// What one step of the model does.
    #[derive(Clone, Debug)]
    enum Op {
        /// A commit of `key` = `value` this many ticks past the horizon.
        Commit(usize, u8, i64),
        /// A cancel of the `n`th pending entry, if any.
        Cancel(usize),
        /// A purge of the `n`th pending entry, if any.
        Purge(usize),
        /// Process `p` fetches with its report.
        Fetch(usize),
        /// Time passes, in ms.
        Pass(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..KEYS.len(), any::<u8>(), 0..4i64).prop_map(|(k, v, t)| Op::Commit(k, v, t)),
            1 => (0..8usize).prop_map(Op::Cancel),
            1 => (0..8usize).prop_map(Op::Purge),
            4 => (0..3usize).prop_map(Op::Fetch),
            1 => (0..2_500u64).prop_map(Op::Pass),
        ]
    }

    /// An entry as a process holds it: field, instant, value, write.
    type Held = (String, Millis, Result<String, String>, Option<String>);

    fn held(fetched: &crate::store::Fetched) -> BTreeSet<Held> {
        fetched
            .fields
            .iter()
            .flat_map(|(key, entries)| {
                entries.iter().map(move |e| {
                    (
                        key.clone(),
                        e.at,
                        e.value.clone(),
                        e.origin.as_ref().map(|o| o.write.clone()),
                    )
                })
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever commits, overwrites, cancels, purges and fetches
        /// interleave, the view says a process holds a pending change
        /// exactly when that very entry (field, instant, value, write) was in
        /// the last fetch the process was served.
        #[test]
        fn the_view_says_held_exactly_when_the_last_fetch_served_it(
            ops in proptest::collection::vec(op(), 1..60)
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            runtime.block_on(async {
                let clock = ManualClock::new(chrono::Utc::now());
                let store = MemoryStore::with_clock(&clock);
                let s: &dyn Store = &store;
                let mut served: BTreeMap<String, BTreeSet<Held>> = BTreeMap::new();
                for op in ops {
                    match op {
                        Op::Commit(k, v, t) => {
                            let w = Write::builder("m", tick())
                                .set(KEYS[k], serde_json::json!(v))
                                .after_horizon(Duration::from_secs(t as u64))
                                .build()
                                .unwrap();
                            s.commit(&w).await.unwrap();
                        }
                        Op::Cancel(n) | Op::Purge(n) => {
                            let view = fleet(s, "m", &KEYS, None).await.unwrap();
                            if let Some(c) = view.pending.get(n) {
                                let at = crate::tick::from_datetime(c.at);
                                // Too close to the horizon by now: refused,
                                // which changes nothing.
                                let _ = match op {
                                    Op::Cancel(_) => s.cancel("m", tick(), &c.field, at).await.map(|_| ()),
                                    _ => s.purge("m", tick(), &c.field, &at.to_string(), false).await,
                                };
                            }
                        }
                        Op::Fetch(p) => {
                            let id = format!("p{p}");
                            let fetched = s
                                .fetch_with(Fetch::new("m", &KEYS).reporting(Some(&report_of(&id))))
                                .await
                                .unwrap();
                            served.insert(id, held(&fetched));
                        }
                        Op::Pass(ms) => clock.advance(Duration::from_millis(ms)).await,
                    }
                    let view = fleet(s, "m", &KEYS, None).await.unwrap();
                    prop_assert_eq!(view.processes.len(), served.len());
                    for change in &view.pending {
                        let entry: Held = (
                            change.field.clone(),
                            crate::tick::from_datetime(change.at),
                            change.value.clone(),
                            change.write.clone(),
                        );
                        for process in &view.processes {
                            let holds = !change.missing.contains(&process.id);
                            prop_assert_eq!(
                                holds,
                                served[&process.id].contains(&entry),
                                "{} and {:?}", process.id, entry
                            );
                        }
                        prop_assert_eq!(change.held_by + change.missing.len(), change.of);
                    }
                }
                Ok(())
            })?;
        }
    }

    #[test]
    fn an_entry_a_process_refused_is_not_held() {
        let mut process = process(Reported {
            process: "x".into(),
            seen: 0,
            revision: 5,
            body:
                r#"{"id":"x","host":"h","pid":1,"program":"p","refused":[{"field":"a","at":1000}]}"#
                    .into(),
        });
        assert!(!holds(&process, "a", 1000, 3));
        assert!(holds(&process, "a", 2000, 3));
        assert!(!holds(&process, "b", 2000, 6));
        process.refused.clear();
        assert!(holds(&process, "a", 1000, 5));
    }

    #[test]
    fn an_unreadable_record_still_counts_under_its_id() {
        let process = process(Reported {
            process: "odd".into(),
            seen: 1_000,
            revision: 2,
            body: "not json".into(),
        });
        assert_eq!((process.id.as_str(), process.revision), ("odd", 2));
        assert!(
            process.host.contains("unreadable record"),
            "{}",
            process.host
        );
    }

    #[test]
    fn a_process_served_an_older_revision_than_was_written_a_fetch_timeout_before_is_behind() {
        let entry = |at: Millis, written_at: Millis, revision: u64| StoredEntry {
            at,
            value: Ok("1".into()),
            origin: Some(crate::store::Origin {
                write: format!("w{revision}"),
                written_at,
                by: "test".into(),
                revision,
            }),
        };
        // Revisions 1, 2 and 3 written at 1 s, 2 s and 3 s.
        let fetched = Fetched {
            store_micros: Some(3_400_000),
            revision: 3,
            fields: BTreeMap::from([
                (
                    "f".to_owned(),
                    vec![entry(0, 1_000, 1), entry(5_000, 2_000, 2)],
                ),
                ("g".to_owned(), vec![entry(9_000, 3_000, 3)]),
            ]),
            ..Fetched::default()
        };
        let record = |id: &str, seen: Millis, revision: u64, tick_ms: i64| Reported {
            process: id.into(),
            seen,
            revision,
            body: serde_json::json!({
                "id": id, "host": "h", "pid": 1, "program": "p", "tick_ms": tick_ms
            })
            .to_string(),
        };
        // A 1 s tick: a fetch timeout of 250 ms.
        let records = vec![
            // Fetched 100 ms after revision 3: a replica may not hold it yet.
            record("fresh", 3_100, 2, 1_000),
            // Fetched 300 ms after it, and served revision 1.
            record("behind", 3_300, 1, 1_000),
            record("current", 3_300, 3, 1_000),
            // A record that does not say its tick is not judged.
            record("untold", 3_300, 1, 0),
        ];
        let fleet = Fleet::of(
            "ns",
            None,
            &fetched,
            Reports {
                store_now: 3_400,
                records,
            },
        );
        let behind: BTreeMap<&str, Option<u64>> = fleet
            .processes
            .iter()
            .map(|p| (p.id.as_str(), p.behind))
            .collect();
        assert_eq!(
            behind,
            BTreeMap::from([
                ("behind", Some(3)),
                ("current", None),
                ("fresh", None),
                ("untold", None)
            ])
        );
    }

    #[test]
    fn records_that_outlive_the_expiry_rule_are_ignored() {
        let record = |id: &str, seen: Millis| Reported {
            process: id.into(),
            seen,
            revision: 1,
            body: serde_json::json!({"id": id, "host": "h", "pid": 1, "program": "p"}).to_string(),
        };
        let now = 100_000;
        // A 1 s tick: records live 3 s, give or take a fetch timeout (250 ms).
        let records = vec![
            record("now", now),
            record("three ticks ago", now - 3_000),
            record("just in the margin", now - 3_249),
            record("older", now - 3_251),
            record("a year old", now - 31_536_000_000),
            record("clocks a little apart", now + 250),
            record("from the future", now + 251),
        ];
        let reports = || Reports {
            store_now: now,
            records: records.clone(),
        };
        // A fetch made a while before the records were read (a tool that
        // reads them anew each frame): they are judged when read.
        let fetched = Fetched {
            store_micros: Some((now - 900) * 1000),
            ..Fetched::default()
        };
        let tick = Tick::new(Duration::from_secs(1)).ok();
        let view = Fleet::of("ns", tick, &fetched, reports());
        let ids: BTreeSet<&str> = view.processes.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            BTreeSet::from([
                "now",
                "three ticks ago",
                "just in the margin",
                "clocks a little apart"
            ])
        );
        assert_eq!(view.ignored, 3);
        // Without the registry's tick, every record the store returns.
        let view = Fleet::of("ns", None, &fetched, reports());
        assert_eq!((view.processes.len(), view.ignored), (7, 0));
    }
}
