//! The memory backend: a real store that lives in this process.
//!
//! It keeps timelines the way a networked store does (the same horizon
//! checks, history bound, write ids and epochs), so single-process apps, unit
//! tests and the quick start use every code path but the network.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};

use super::contract::BoxFuture;
use super::fetch::{Fetch, Fetched, Held};
use super::reporting::Reporting;
use super::stored::{
    Epoch, HISTORY, Origin, Record, Records, StoredEntry, StoredRecord, StoredSchema, check_cancel,
    check_name,
};
use super::write::{Committed, Write, resolve_instants};
use crate::clock::{ClockSource, ManualClock};
use crate::error::Error;
use crate::schema::Schema;
use crate::tick::{Millis, Tick};
use crate::timeline::Timeline;

/// How many write ids a store remembers to make retries take effect once.
const REMEMBERED_WRITES: usize = 4096;

/// An in-process store. Clones share the same data.
///
/// The URL `memory://NAME` names a store shared by every registry of the
/// process that uses the same name; `memory://` is the store named `default`.
///
/// ```
/// use lockstep::store::MemoryStore;
///
/// let a = MemoryStore::named("demo");
/// let b = MemoryStore::named("demo");
/// assert!(a.same_store(&b));
/// assert!(!a.same_store(&MemoryStore::new()));
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    name: Arc<str>,
    state: Arc<Mutex<State>>,
    clock: ClockSource,
    reporting: Arc<Reporting>,
}

#[derive(Default)]
struct State {
    namespaces: HashMap<String, Namespace>,
    writes: HashMap<String, Vec<Millis>>,
    write_order: VecDeque<String>,
}

struct Namespace {
    epoch: Option<Epoch>,
    schema: Option<Schema>,
    /// Every build's schema by digest, with when it was last published.
    schemas: HashMap<String, (StoredSchema, Millis)>,
    revision: u64,
    fields: BTreeMap<String, Timeline<(String, Origin)>>,
    /// The processes' records by id, each with when it expires.
    reports: HashMap<String, (StoredRecord, Millis)>,
}

impl Namespace {
    /// A write at `now`: the registry has an epoch from its first write on,
    /// and each write is a revision. Returns the revision.
    fn written(&mut self, now: Millis) -> u64 {
        self.epoch.get_or_insert_with(|| Epoch {
            id: super::write::new_write_id(),
            created: now,
        });
        self.revision += 1;
        self.revision
    }
}

static NAMED: LazyLock<Mutex<HashMap<String, MemoryStore>>> = LazyLock::new(Default::default);

impl MemoryStore {
    /// A new, empty store of its own, on the system clock.
    pub fn new() -> MemoryStore {
        MemoryStore::build("anonymous", ClockSource::System)
    }

    /// A new, empty store whose horizon follows `clock`.
    pub fn with_clock(clock: &ManualClock) -> MemoryStore {
        MemoryStore::build("anonymous", ClockSource::Manual(clock.clone()))
    }

    /// The process-wide store called `name`, created empty on first use.
    pub fn named(name: &str) -> MemoryStore {
        NAMED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| MemoryStore::build(name, ClockSource::System))
            .clone()
    }

    fn build(name: &str, clock: ClockSource) -> MemoryStore {
        MemoryStore {
            name: name.into(),
            state: Arc::default(),
            clock,
            reporting: Arc::default(),
        }
    }

    pub(crate) fn from_url(url: &str, clock: &ClockSource) -> Result<MemoryStore, Error> {
        let name = url.strip_prefix("memory://").unwrap_or_default();
        let name = if name.is_empty() { "default" } else { name };
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(Error::Url {
                url: url.to_owned(),
                reason: "a memory store name is letters, digits, `-`, `_` and `.`".into(),
            });
        }
        let store = MemoryStore::named(name);
        Ok(match clock {
            ClockSource::System | ClockSource::Adjusted(_) => store,
            ClockSource::Manual(_) => MemoryStore {
                clock: clock.clone(),
                ..store
            },
        })
    }

    /// Whether `self` and `other` share their data.
    pub fn same_store(&self, other: &MemoryStore) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }

    /// Puts `entries` (instant, value's text) for `key` of the registry
    /// `namespace` as they are, without the checks a write passes (the
    /// horizon, the size limit, JSON): as a hand or another program writes
    /// into a shared store, for tests of what a registry does with what it
    /// finds there. Each counts as a change of the registry.
    ///
    /// ```
    /// use lockstep::store::{MemoryStore, Store};
    ///
    /// let store = MemoryStore::new();
    /// store.place("flags", "limit", &[(1_000, "not json")]);
    /// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let fetched = runtime.block_on(store.fetch("flags", &["limit"])).unwrap();
    /// assert_eq!(fetched.fields["limit"][0].value.as_deref(), Ok("not json"));
    /// ```
    pub fn place(&self, registry: &str, key: &str, entries: &[(Millis, &str)]) {
        let now = self.clock.now_millis();
        let mut state = self.lock();
        let ns = namespace(&mut state, registry);
        let revision = ns.written(now);
        let timeline = ns.fields.entry(key.to_owned()).or_default();
        for (at, value) in entries {
            let origin = Origin {
                write: "placed".to_owned(),
                written_at: now,
                by: "place".to_owned(),
                revision,
            };
            timeline.insert(*at, ((*value).to_owned(), origin));
        }
    }

    /// Forgets everything, as a store restarted without persistence would.
    pub fn clear(&self) {
        *self.lock() = State::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fetch_now(
        &self,
        namespace: &str,
        keys: &[&str],
        report: Option<&Record>,
        held: Option<&Held>,
        published: Option<&StoredSchema>,
    ) -> Fetched {
        let mut state = self.lock();
        let now = self.clock.now_millis();
        if let Some(report) = report {
            let ns = self::namespace(&mut state, namespace);
            ns.reports.retain(|_, (_, expires)| *expires > now);
            let record = StoredRecord {
                process: report.process().to_owned(),
                seen: now,
                revision: ns.revision,
                body: report.body().to_owned(),
            };
            ns.reports.insert(
                report.process().to_owned(),
                (record, now.saturating_add(report.expires_after())),
            );
        }
        let Some(ns) = state.namespaces.get(namespace) else {
            return Fetched {
                store_micros: Some(now * 1000),
                ..Fetched::default()
            };
        };
        let header = Fetched {
            store_micros: Some(now * 1000),
            epoch: ns.epoch.clone(),
            unplaced: BTreeMap::new(),
            schema_held: match published {
                Some(own) => ns
                    .schemas
                    .get(own.digest())
                    .is_some_and(|(stored, _)| stored.json().len() == own.json().len()),
                None => ns.schema.is_some(),
            },
            revision: ns.revision,
            fields: BTreeMap::new(),
            unchanged: false,
        };
        if held.is_some_and(|held| header.is_at(held)) {
            return Fetched {
                unchanged: true,
                ..header
            };
        }
        let mut fetched = Fetched {
            fields: ns
                .fields
                .iter()
                .filter(|(key, _)| keys.is_empty() || keys.contains(&key.as_str()))
                .map(|(key, timeline)| {
                    let entries = timeline
                        .entries()
                        .iter()
                        .map(|(at, (value, origin))| StoredEntry {
                            at: *at,
                            value: Ok(value.clone()),
                            origin: Some(origin.clone()),
                        })
                        .collect();
                    (key.clone(), entries)
                })
                .collect(),
            ..header
        };
        super::fetch::within_budget(&mut fetched.fields);
        fetched
    }

    fn commit_now(&self, write: &Write) -> Result<Committed, Error> {
        let mut state = self.lock();
        if let Some(instants) = state.writes.get(write.id()) {
            return Ok(Committed::at(instants.clone()));
        }
        let now = self.clock.now_millis();
        let instants = resolve_instants(write, now)?;
        let ns = namespace(&mut state, write.namespace());
        let pending = |key: &str, at: Millis| -> u64 {
            ns.fields
                .get(key)
                .and_then(|t| t.entries().iter().find(|(a, _)| *a == at))
                .map_or(0, |(_, (value, _))| value.len() as u64)
        };
        let before: u64 = ns
            .fields
            .values()
            .flat_map(|t| t.entries().iter())
            .filter(|(at, _)| *at > now)
            .map(|(_, (value, _))| value.len() as u64)
            .sum();
        let (mut replaced, mut added) = (0u64, 0u64);
        for (step, &at) in write.steps().iter().zip(&instants) {
            for (key, value) in step.values() {
                replaced += pending(key, at);
                added += value.len() as u64;
            }
        }
        super::write::check_pending(write.namespace(), before, replaced, added)?;
        let revision = ns.written(now);
        for (step, &at) in write.steps().iter().zip(&instants) {
            for (key, value) in step.values() {
                let timeline = ns.fields.entry(key.clone()).or_default();
                let origin = Origin {
                    write: write.id().to_owned(),
                    written_at: now,
                    by: write.by().to_owned(),
                    revision,
                };
                timeline.insert(at, (value.clone(), origin));
                timeline.prune(now, HISTORY);
            }
        }
        state.writes.insert(write.id().to_owned(), instants.clone());
        state.write_order.push_back(write.id().to_owned());
        if state.write_order.len() > REMEMBERED_WRITES
            && let Some(old) = state.write_order.pop_front()
        {
            state.writes.remove(&old);
        }
        Ok(Committed::at(instants))
    }

    fn cancel_now(
        &self,
        namespace: &str,
        tick: Tick,
        key: &str,
        at: Millis,
    ) -> Result<StoredEntry, Error> {
        let mut state = self.lock();
        check_cancel(namespace, tick, at, self.clock.now_millis())?;
        let removed = remove(&mut state, namespace, key, at);
        match removed {
            Some((value, origin)) => Ok(StoredEntry {
                at,
                value: Ok(value),
                origin: Some(origin),
            }),
            None => Err(no_such_entry(namespace, key, at)),
        }
    }

    fn purge_now(
        &self,
        namespace: &str,
        tick: Tick,
        key: &str,
        at: &str,
        undecodable: bool,
    ) -> Result<(), Error> {
        // Every instant this store holds is a number.
        let Ok(at) = at.parse::<Millis>() else {
            return Err(Error::NoSuchEntry {
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                at: crate::tick::to_datetime(Millis::MIN),
            });
        };
        let mut state = self.lock();
        if !undecodable {
            check_cancel(namespace, tick, at, self.clock.now_millis())?;
        }
        match remove(&mut state, namespace, key, at) {
            Some(_) => Ok(()),
            None => Err(no_such_entry(namespace, key, at)),
        }
    }
}

fn no_such_entry(namespace: &str, key: &str, at: Millis) -> Error {
    Error::NoSuchEntry {
        namespace: namespace.to_owned(),
        key: key.to_owned(),
        at: crate::tick::to_datetime(at),
    }
}

/// Removes the entry of `key` at `at`, advancing the revision if there was
/// one.
fn remove(state: &mut State, namespace: &str, key: &str, at: Millis) -> Option<(String, Origin)> {
    let ns = state.namespaces.get_mut(namespace)?;
    let removed = ns.fields.get_mut(key)?.remove(at)?;
    ns.revision += 1;
    Some(removed)
}

fn namespace<'a>(state: &'a mut State, name: &str) -> &'a mut Namespace {
    state
        .namespaces
        .entry(name.to_owned())
        .or_insert_with(|| Namespace {
            epoch: None,
            schema: None,
            schemas: HashMap::new(),
            revision: 0,
            fields: BTreeMap::new(),
            reports: HashMap::new(),
        })
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl super::contract::Store for MemoryStore {
    fn fetch_with<'a>(&'a self, fetch: Fetch<'a>) -> BoxFuture<'a, Result<Fetched, Error>> {
        Box::pin(async move {
            check_name("namespace", fetch.namespace())?;
            Ok(self.fetch_now(
                fetch.namespace(),
                fetch.keys(),
                self.reporting.send(fetch.namespace(), fetch.record()),
                fetch.held(),
                fetch.schema(),
            ))
        })
    }

    fn records<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Records, Error>> {
        Box::pin(async move {
            let now = self.clock.now_millis();
            let state = self.lock();
            let records = state
                .namespaces
                .get(namespace)
                .map(|ns| {
                    ns.reports
                        .values()
                        .filter(|(_, expires)| *expires > now)
                        .map(|(record, _)| record.clone())
                        .collect()
                })
                .unwrap_or_default();
            let schemas = state
                .namespaces
                .get(namespace)
                .map(|ns| ns.schemas.values().map(|(s, _)| s.clone()).collect())
                .unwrap_or_default();
            Ok(Records {
                store_now: now,
                records,
                schemas,
            })
        })
    }

    fn commit<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<Committed, Error>> {
        Box::pin(async move { self.commit_now(write) })
    }

    fn cancel<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        key: &'a str,
        at: Millis,
    ) -> BoxFuture<'a, Result<StoredEntry, Error>> {
        Box::pin(async move {
            check_name("namespace", namespace)?;
            check_name("key", key)?;
            self.cancel_now(namespace, tick, key, at)
        })
    }

    fn purge<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        key: &'a str,
        at: &'a str,
        undecodable: bool,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            check_name("namespace", namespace)?;
            check_name("key", key)?;
            self.purge_now(namespace, tick, key, at, undecodable)
        })
    }

    fn publish_schema<'a>(&'a self, schema: &'a Schema) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let now = self.clock.now_millis();
            let stored = StoredSchema::of(schema);
            let kept = super::stored::SCHEMA_KEPT.as_millis() as Millis;
            let mut state = self.lock();
            let ns = namespace(&mut state, &schema.namespace);
            ns.schema = Some(schema.clone());
            ns.schemas
                .retain(|_, (_, published)| *published > now.saturating_sub(kept));
            ns.schemas.insert(stored.digest().to_owned(), (stored, now));
            Ok(())
        })
    }

    fn namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        Box::pin(async move {
            // A namespace only processes reported to is not a registry yet.
            let mut names: Vec<String> = self
                .lock()
                .namespaces
                .iter()
                .filter(|(_, ns)| ns.epoch.is_some() || ns.schema.is_some())
                .map(|(name, _)| name.clone())
                .collect();
            names.sort();
            Ok(names)
        })
    }

    fn schema<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Schema>, Error>> {
        Box::pin(async move {
            Ok(self
                .lock()
                .namespaces
                .get(name)
                .and_then(|ns| ns.schema.clone()))
        })
    }

    fn describe(&self) -> String {
        format!("memory://{}", self.name)
    }
}
