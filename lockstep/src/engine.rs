//! The engine: a started registry's state, and what it publishes into.
//!
//! The engine owns the timelines it learned from the store and publishes the
//! values of each instant into the hot-path slots it was given
//! ([`Published`]), never into its owner. [`refresh`](crate::refresh)
//! keeps the timelines current, [`flip`](crate::flip) switches the values at
//! their instants; both run on lockstep's own threads ([`Host`]).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwapOption;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::clock::{ClockFilter, ClockSource};
use crate::contract::{Fields, Value};
use crate::error::Error;
use crate::host::Host;
use crate::published::Published;
use crate::report::Identity;
use crate::status::{Pending, Status, StatusData};
use crate::store::driver::{Epoch, Held, Record};
use crate::store::{Fetched, Store, StoredSchema};
use crate::tick::{Millis, to_datetime};
use crate::timeline::Timeline;

/// A fetch that overran its deadline and is still on the wire: the next
/// fetch waits for its answer instead of sending another.
pub(crate) struct InFlight {
    /// The task awaiting the store's answer.
    pub(crate) task: tokio::task::JoinHandle<Result<Fetched, Error>>,
    /// When it was sent, by this process's clock (ns since the Unix epoch).
    pub(crate) sent_nanos: i64,
    /// What it told the store this process held.
    pub(crate) held: Option<Held>,
}

/// A decoded entry value, and what tells the JSON text it came from: its
/// length and XXH64. The text itself is not kept, so a process holds each
/// value once (decoded), not twice.
#[derive(Clone)]
pub(crate) struct Decoded {
    text: (usize, u64),
    pub(crate) value: Value,
}

impl Decoded {
    /// `value`, decoded from `raw`.
    pub(crate) fn of(raw: &str, value: Value) -> Decoded {
        Decoded {
            text: Decoded::text_of(raw),
            value,
        }
    }

    /// Whether it was decoded from `raw`.
    pub(crate) fn is_from(&self, raw: &str) -> bool {
        self.text == Decoded::text_of(raw)
    }

    /// Whether it was decoded from the same text as `other`.
    pub(crate) fn same_text(&self, other: &Decoded) -> bool {
        self.text == other.text
    }

    fn text_of(raw: &str) -> (usize, u64) {
        (raw.len(), xxhash_rust::xxh64::xxh64(raw.as_bytes(), 0))
    }
}

/// A started registry's moving parts.
pub(crate) struct Engine<S: Fields> {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: ClockSource,
    pub(crate) keys: Vec<&'static str>,
    /// The registry's schema as this build publishes it: each fetch names
    /// it, so the store says when it no longer holds it.
    pub(crate) schema: Arc<StoredSchema>,
    pub(crate) state: Mutex<State>,
    /// The flipper thread, once started: woken when a fetch was applied.
    flipper: OnceLock<std::thread::Thread>,
    /// Held while fetching, so one fetch runs at a time; holds a fetch that
    /// overran its deadline and is still unanswered.
    pub(crate) fetching: tokio::sync::Mutex<Option<InFlight>>,
    pub(crate) phase: Millis,
    pub(crate) published: &'static Published<S>,
    pub(crate) host: Host,
    /// Who this process is in the fleet view; `None` when it does not
    /// report.
    pub(crate) identity: Option<Identity>,
    /// Whether the flipper asks for a real-time priority.
    pub(crate) realtime_flips: bool,
    /// The values of the next instant, made ahead of it under the lock
    /// whenever the timelines or the published values change, for the
    /// flipper to publish at the instant without the lock.
    pub(crate) next: ArcSwapOption<Prepared<S>>,
    /// Whether a fetch was applied since the flipper last looked.
    fetched: AtomicBool,
    _fields: PhantomData<fn() -> S>,
}

/// The values of one instant, made ahead of it under the engine's lock, so
/// that the flip itself takes no lock: a thread holding the lock (a
/// `status()` call, a fetch being applied) may be waiting for a core on a
/// busy machine, and the flip would wait with it.
pub(crate) struct Prepared<S> {
    pub(crate) at: Millis,
    /// The timelines' generation the values come from.
    pub(crate) generation: u64,
    /// Each field's active entry at `at`.
    pub(crate) active: Vec<Option<Millis>>,
    pub(crate) values: Arc<S>,
}

/// What the engine knows, behind one lock.
pub(crate) struct State {
    pub(crate) timelines: Vec<Timeline<Decoded>>,
    /// Bumped whenever a fetch changes any timeline.
    pub(crate) generation: u64,
    /// What was last published: the generation and each field's active entry.
    pub(crate) published: Option<(u64, Vec<Option<Millis>>)>,
    /// The bad entries seen by the last fetch, as messages: each is counted
    /// and logged once, when first seen.
    pub(crate) bad: Vec<String>,
    /// The entries of the last fetch this process could not decode, by
    /// field and instant: the fleet view counts them as not held.
    pub(crate) refused: Vec<(&'static str, Millis)>,
    /// The registry's revision of the last fetch applied.
    pub(crate) revision: u64,
    /// What the next fetch says this process holds, so that an unchanged
    /// registry answers with its header alone: the epoch and revision of
    /// the last fetch applied whole. `None` after a fetch that failed, found
    /// the store lost, could not read a field at all, or while timelines
    /// fetched before a store loss still decide: the next fetch is full.
    pub(crate) held: Option<Held>,
    /// The latest instant published: the clock may step back (an NTP step, a
    /// VM resumed), values never do.
    pub(crate) high_water: Millis,
    /// The store epoch the timelines come from.
    pub(crate) epoch: Option<Epoch>,
    /// After the store lost its data: until this instant, the timelines
    /// fetched before the loss still decide.
    pub(crate) carry: Option<(Millis, Vec<Timeline<Decoded>>)>,
    /// The samples of the store's clock the offset is estimated from.
    pub(crate) clock_filter: ClockFilter,
    /// Whether the schema must be published (again) after the next fetch.
    pub(crate) schema: SchemaNeed,
    /// Outage warnings: when the last was logged, and how many
    /// were suppressed since.
    pub(crate) warned: Option<(std::time::Instant, u64)>,
    pub(crate) status: StatusData,
}

impl State {
    /// What a registry of `fields` fields knows before its first fetch.
    pub(crate) fn new(fields: usize) -> State {
        State {
            timelines: vec![Timeline::new(); fields],
            generation: 0,
            published: None,
            high_water: Millis::MIN,
            bad: Vec::new(),
            refused: Vec::new(),
            revision: 0,
            held: None,
            epoch: None,
            carry: None,
            clock_filter: ClockFilter::default(),
            schema: SchemaNeed::Publish,
            warned: None,
            status: StatusData::default(),
        }
    }

    /// `now`, or the latest instant published if the clock stepped back
    /// since: the one clamp that keeps values from going back in time.
    pub(crate) fn not_before_published(&self, now: Millis) -> Millis {
        now.max(self.high_water)
    }
}

/// Whether this process must publish its registry's schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SchemaNeed {
    /// Publish after the next successful fetch (at start, or the store
    /// said it holds none).
    Publish,
    /// Published, or the store holds one.
    Done,
    /// The store refused it for good (read-only credentials): try again
    /// only once the store has held a schema and lost it.
    Refused,
}

impl<S: Fields> Engine<S> {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        clock: ClockSource,
        published: &'static Published<S>,
        host: Host,
        schema: StoredSchema,
        identity: Option<Identity>,
        realtime_flips: bool,
    ) -> Self {
        let tick = S::DEF.tick.as_millis();
        Engine {
            store,
            clock,
            keys: S::DEF.fields.iter().map(|f| f.key).collect(),
            schema: Arc::new(schema),
            state: Mutex::new(State::new(S::DEF.fields.len())),
            flipper: OnceLock::new(),
            fetching: tokio::sync::Mutex::new(None),
            phase: fastrand::i64(0..tick),
            published,
            host,
            identity,
            realtime_flips,
            next: ArcSwapOption::empty(),
            fetched: AtomicBool::new(false),
            _fields: PhantomData,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `thread` the flipper that [`wake_flipper`](Self::wake_flipper)
    /// wakes.
    pub(crate) fn set_flipper(&self, thread: std::thread::Thread) {
        let _ = self.flipper.set(thread);
    }

    /// Wakes the flipper after a fetch was applied, so it publishes what
    /// changed now rather than at its next instant.
    pub(crate) fn wake_flipper(&self) {
        self.fetched.store(true, Ordering::Release);
        if let Some(flipper) = self.flipper.get() {
            flipper.unpark();
        }
    }

    /// Whether a fetch was applied since the last call.
    pub(crate) fn take_fetched(&self) -> bool {
        self.fetched.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn now(&self) -> Millis {
        self.clock.now_millis()
    }

    /// The record this process sends with its next fetch, if it reports.
    pub(crate) fn report(&self) -> Option<Record> {
        let identity = self.identity.as_ref()?;
        let state = self.lock();
        Some(identity.report(S::DEF.tick, &state.status, &state.refused))
    }

    /// The registry's health now.
    pub(crate) fn status(&self) -> Status {
        let now = self.now();
        let state = self.lock();
        let mut pending: Vec<Pending> = state
            .timelines
            .iter()
            .zip(S::DEF.fields)
            .flat_map(|(timeline, field)| {
                timeline.pending_after(now).iter().map(|(at, d)| Pending {
                    key: field.key,
                    at: to_datetime(*at),
                    value: (field.encode)(&d.value),
                })
            })
            .collect();
        pending.sort_by_key(|p| p.at);
        let mut status = state
            .status
            .report(S::DEF.namespace, self.store.describe(), now, pending);
        status.bad_entries = state.bad.clone();
        status.replica_fallbacks = self.store.replica_fallbacks();
        status.replica_failovers = self.store.replica_failovers();
        status
    }
}
