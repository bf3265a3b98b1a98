//! The engine: a started registry's state, and what it publishes into.
//!
//! The engine owns the timelines it learned from the store and publishes the
//! values of each instant into the hot-path slots it was given
//! ([`Published`]), never into its owner. [`refresh`](crate::refresh)
//! keeps the timelines current, [`flip`](crate::flip) runs the thread that
//! switches the values at their instants; both run on lockstep's own threads
//! ([`Host`]).
//!
//! What the engine knows sits behind one lock, in a [`State`] whose fields
//! are its own: each rule (a fetch answered, a fetch failed, the values of
//! an instant, a flip recorded, time never going back) is one of its
//! methods, as tokio's timer wheel keeps `elapsed` behind `set_elapsed`.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::apply::Timelines;
use crate::clock::{ClockFilter, ClockSample, ClockSource, UnixNanos};
use crate::contract::Fields;
use crate::error::Error;
use crate::host::Host;
use crate::observe;
use crate::published::{Published, Values};
use crate::report::Identity;
use crate::status::{FlipperPriority, Pending, Recovered, Status, StatusData};
use crate::store::driver::{Held, Record};
use crate::store::{Fetched, Store, StoredSchema};
use crate::tick::{Millis, to_datetime};

/// At most one warning of a kind per this interval; the next says how many
/// were suppressed.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(10);

/// A fetch that overran its deadline and is still on the wire: the next
/// fetch waits for its answer instead of sending another.
pub(crate) struct InFlight {
    /// The task awaiting the store's answer.
    pub(crate) task: tokio::task::JoinHandle<Result<Fetched, Error>>,
    /// When it was sent, by this process's clock.
    pub(crate) sent: UnixNanos,
    /// What it told the store this process held.
    pub(crate) held: Option<Held>,
}

/// A started registry's moving parts.
pub(crate) struct Engine<S: Fields> {
    store: Arc<dyn Store>,
    clock: ClockSource,
    keys: Vec<&'static str>,
    /// The registry's schema as this build publishes it: each fetch names
    /// it, so the store says when it no longer holds it.
    schema: Arc<StoredSchema>,
    state: Mutex<State>,
    /// The flipper thread, once started: woken when a fetch was applied.
    flipper: OnceLock<std::thread::Thread>,
    /// Held while fetching, so one fetch runs at a time; holds a fetch that
    /// overran its deadline and is still unanswered.
    fetching: tokio::sync::Mutex<Option<InFlight>>,
    phase: Millis,
    published: &'static Published<S>,
    host: Host,
    /// Who this process is in the fleet view; `None` when it does not
    /// report.
    identity: Option<Identity>,
    /// Whether the flipper asks for a real-time priority.
    realtime_flips: bool,
    /// The values of the next instant, made ahead of it under the lock
    /// whenever the timelines or the published values change, for the
    /// flipper to publish at the instant without the lock.
    next: ArcSwapOption<Prepared<S>>,
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
    generation: u64,
    /// Each field's active entry at `at`.
    active: Vec<Option<Millis>>,
    values: Values<S>,
}

/// What the engine knows, behind one lock. Its fields are written only by
/// its methods, each named after what happened.
pub(crate) struct State {
    /// What the fetches taught: each field's timeline and what the store
    /// said of it.
    timelines: Timelines,
    /// What was last published: the generation and each field's active entry.
    published: Option<(u64, Vec<Option<Millis>>)>,
    /// The latest instant published: the clock may step back (an NTP step, a
    /// VM resumed), values never do.
    high_water: Millis,
    /// The samples of the store's clock the offset is estimated from.
    clock_filter: ClockFilter,
    /// Whether the clock offset is beyond the threshold that is logged.
    clock_off: bool,
    /// Clock offset warnings.
    clock_warned: Warnings,
    /// Whether the schema must be published (again) after the next fetch.
    schema: SchemaNeed,
    /// Outage warnings.
    warned: Warnings,
    status: StatusData,
}

/// A new estimate of the store's clock offset, and what it means for the
/// logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClockEstimate {
    /// The store's clock minus this process's, in nanoseconds.
    pub(crate) offset: i64,
    /// The bound on its error (half the best sample's round trip), in
    /// nanoseconds.
    pub(crate) error: i64,
    /// Whether it crossed the threshold the logs watch.
    pub(crate) news: ClockNews,
}

/// Whether a clock offset estimate crossed the threshold the logs watch
/// ([`observe::CLOCK_OFFSET_WARN`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClockNews {
    /// It went beyond: warn, saying how many such warnings were suppressed
    /// since the last (`None`: this one is suppressed too).
    Off(Option<u64>),
    /// It came back within half of it.
    Back,
    /// Neither.
    Same,
}

impl State {
    /// What a registry of `fields` fields knows before its first fetch.
    pub(crate) fn new(fields: usize) -> State {
        State {
            timelines: Timelines::new(fields),
            published: None,
            high_water: Millis::MIN,
            clock_filter: ClockFilter::default(),
            clock_off: false,
            clock_warned: Warnings::default(),
            schema: SchemaNeed::Publish,
            warned: Warnings::default(),
            status: StatusData::default(),
        }
    }

    /// `now`, or the latest instant published if the clock stepped back
    /// since: the one clamp that keeps values from going back in time.
    pub(crate) fn not_before_published(&self, now: Millis) -> Millis {
        now.max(self.high_water)
    }

    /// Time reached `at`: never back.
    fn reach(&mut self, at: Millis) {
        self.high_water = self.high_water.max(at);
    }

    /// What the timelines hold.
    pub(crate) fn timelines(&self) -> &Timelines {
        &self.timelines
    }

    /// What the status counts.
    pub(crate) fn status(&self) -> &StatusData {
        &self.status
    }

    /// What the next fetch says this process holds (see
    /// [`Fetch::holding`](crate::store::Fetch::holding)).
    pub(crate) fn holding(&self) -> Option<Held> {
        self.timelines.held().cloned()
    }

    /// A fetch was answered at `now` (never taken before an instant
    /// published), the fetch having said this process held `held`: the
    /// answer is applied to the timelines, the success counted, and the
    /// schema's need updated. Returns the run of failures it ended.
    pub(crate) fn answered<S: Fields>(
        &mut self,
        fetched: Fetched,
        held: Option<Held>,
        now: Millis,
    ) -> Recovered {
        let now = self.not_before_published(now);
        let store_time = fetched
            .store_micros
            .map(|micros| UnixNanos::from_micros(micros).as_millis());
        let recovered = self.status.fetch_succeeded(now, store_time);
        self.schema = self.schema.answered(fetched.schema_held);
        self.timelines
            .apply::<S>(fetched, held, now, recovered.first, &mut self.status);
        recovered
    }

    /// A fetch failed at `now` with `error`: what this process holds is
    /// claimed no more (the next fetch is full), and the failure counted.
    /// Returns how many failed in a row.
    pub(crate) fn failed(&mut self, error: &Error, now: Millis) -> u32 {
        self.timelines.failed();
        self.status.fetch_failed(now, error.to_string())
    }

    /// A fetch measured the store's clock at `now` (for the rate of
    /// warnings): the estimate of its offset, once there is one, with what
    /// it means for the logs.
    pub(crate) fn clock_sampled(
        &mut self,
        sample: ClockSample,
        now: Instant,
    ) -> Option<ClockEstimate> {
        let (offset, round_trip) = self.clock_filter.sample(sample)?;
        let error = round_trip / 2;
        self.status.clock_estimated(offset, error);
        let threshold = observe::CLOCK_OFFSET_WARN;
        let news = if !self.clock_off && observe::clock_off(offset, error) {
            self.clock_off = true;
            ClockNews::Off(self.clock_warned.due(now))
        } else if self.clock_off
            && offset.unsigned_abs().saturating_add(error.unsigned_abs())
                < threshold.as_nanos() as u64 / 2
        {
            self.clock_off = false;
            ClockNews::Back
        } else {
            ClockNews::Same
        };
        Some(ClockEstimate {
            offset,
            error,
            news,
        })
    }

    /// Whether to log an outage warning at `now`, with how many were
    /// suppressed since the last (at most one per [`WARN_EVERY`]).
    pub(crate) fn outage_warning(&mut self, now: Instant) -> Option<u64> {
        self.warned.due(now)
    }

    /// Whether the schema must be published after this fetch.
    pub(crate) fn must_publish_schema(&self) -> bool {
        self.schema == SchemaNeed::Publish
    }

    /// The store took the schema.
    pub(crate) fn schema_published(&mut self) {
        self.schema = SchemaNeed::Done;
    }

    /// The store refused the schema for good (read-only credentials): it
    /// is tried again only once the store has held one and lost it.
    pub(crate) fn schema_refused(&mut self) {
        self.schema = SchemaNeed::Refused;
    }

    /// The flipper thread started, scheduled as `priority` says.
    pub(crate) fn flipper_started(&mut self, priority: FlipperPriority) {
        self.status.flipper_started(priority);
    }

    /// The values of `at` and what they come from, ready to publish.
    fn prepare<S: Fields>(&self, at: Millis) -> Prepared<S> {
        Prepared {
            at,
            generation: self.timelines.generation(),
            active: self.timelines.active_at(at),
            values: self.timelines.values_at(at),
        }
    }

    /// Whether the entries `active`, from the current timelines, are not
    /// what was published last.
    fn unpublished(&self, active: &[Option<Millis>]) -> bool {
        match &self.published {
            Some((generation, published)) => {
                *generation != self.timelines.generation() || published.as_slice() != active
            }
            None => true,
        }
    }

    /// The values of `active` (from the timelines of `generation`) were
    /// published as of `at`: counts, logs and metrics of a flip, and time
    /// reaches `at`. Nothing is recorded for values a fetch made stale
    /// (older timelines), or for an instant before one published.
    fn flipped<S: Fields>(&mut self, generation: u64, active: Vec<Option<Millis>>, at: Millis) {
        if generation != self.timelines.generation() || at < self.high_water {
            return;
        }
        if let Some((_, published)) = &self.published
            && *published != active
        {
            self.status.flipped(at);
            observe::flipped(S::DEF.namespace);
            observe::pending(S::DEF.namespace, self.timelines.fields(), at);
            let changed: Vec<&str> = S::DEF
                .fields
                .iter()
                .zip(published.iter().zip(&active))
                .filter(|(_, (old, new))| old != new)
                .map(|(field, _)| field.key)
                .collect();
            tracing::info!(
                namespace = S::DEF.namespace,
                fields = ?changed,
                at = %to_datetime(at).to_rfc3339(),
                "lockstep: flipped"
            );
        }
        self.published = Some((generation, active));
        self.reach(at);
    }
}

/// Warnings of one kind, rate-limited: at most one per [`WARN_EVERY`],
/// each saying how many were suppressed since the last.
#[derive(Debug, Default)]
pub(crate) struct Warnings {
    /// When the last was logged, and how many were suppressed since.
    last: Option<(Instant, u64)>,
}

impl Warnings {
    /// Whether to log one at `now`, with how many were suppressed since
    /// the last.
    pub(crate) fn due(&mut self, now: Instant) -> Option<u64> {
        match &mut self.last {
            Some((last, suppressed)) if now.duration_since(*last) < WARN_EVERY => {
                *suppressed += 1;
                None
            }
            last => {
                let suppressed = last.map_or(0, |(_, n)| n);
                *last = Some((now, 0));
                Some(suppressed)
            }
        }
    }
}

/// Whether this process must publish its registry's schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SchemaNeed {
    /// Publish after the next successful fetch (at start, or the store
    /// said it holds none).
    Publish,
    /// Published, or the store holds one.
    Done,
    /// The store refused it for good (read-only credentials): try again
    /// only once the store has held a schema and lost it.
    Refused,
}

impl SchemaNeed {
    /// The need after a fetch that found the store holding this build's
    /// schema or not (`held`).
    fn answered(self, held: bool) -> SchemaNeed {
        match (self, held) {
            (SchemaNeed::Done, false) => SchemaNeed::Publish,
            (SchemaNeed::Refused, true) => SchemaNeed::Done,
            (need, _) => need,
        }
    }
}

impl<S: Fields> Engine<S> {
    /// A registry's engine, working with `store` by `clock`, publishing
    /// into `published`, on `host`.
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

    /// The store it fetches from.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock it flips by.
    pub(crate) fn clock(&self) -> &ClockSource {
        &self.clock
    }

    /// The fields' keys, in order.
    pub(crate) fn keys(&self) -> &[&'static str] {
        &self.keys
    }

    /// The registry's schema as this build publishes it.
    pub(crate) fn schema(&self) -> &Arc<StoredSchema> {
        &self.schema
    }

    /// Held while fetching, so one fetch runs at a time; holds a fetch that
    /// overran its deadline and is still unanswered.
    pub(crate) fn fetching(&self) -> &tokio::sync::Mutex<Option<InFlight>> {
        &self.fetching
    }

    /// This process's phase: how far into each tick it fetches.
    pub(crate) fn phase(&self) -> Millis {
        self.phase
    }

    /// Lockstep's own thread and runtime for this registry.
    pub(crate) fn host(&self) -> &Host {
        &self.host
    }

    /// Whether the flipper asks for a real-time priority.
    pub(crate) fn realtime_flips(&self) -> bool {
        self.realtime_flips
    }

    /// The state, locked.
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

    /// Now, by the registry's clock, in milliseconds.
    pub(crate) fn now(&self) -> Millis {
        self.clock.now_millis()
    }

    /// Publishes the values at `now` unless they are already published;
    /// returns the next instant anything changes.
    pub(crate) fn flip(&self, state: &mut State, now: Millis) -> Option<Millis> {
        let now = state.not_before_published(now);
        let active = state.timelines.active_at(now);
        if state.unpublished(&active) {
            self.published.publish(&state.timelines.values_at(now));
            state.flipped::<S>(state.timelines.generation(), active, now);
        }
        state.reach(now);
        self.prepare_next(state, now)
    }

    /// Makes the values of the next instant after `now` at which anything
    /// changes, for the flipper to publish then without the lock
    /// ([`Engine::prepared`]); returns that instant. Called under the lock
    /// whenever the timelines or the published values change.
    pub(crate) fn prepare_next(&self, state: &State, now: Millis) -> Option<Millis> {
        let next = state
            .timelines
            .next_change_after(state.not_before_published(now));
        self.next
            .store(next.map(|at| Arc::new(state.prepare::<S>(at))));
        next
    }

    /// The values made last for the next instant, if anything changes.
    pub(crate) fn prepared(&self) -> Option<Arc<Prepared<S>>> {
        self.next.load_full()
    }

    /// Publishes `prepared` at its instant, without the lock, then records
    /// the flip under it (unless a fetch made newer values meanwhile).
    pub(crate) fn publish_prepared(&self, prepared: &Prepared<S>) {
        self.published.publish(&prepared.values);
        self.lock()
            .flipped::<S>(prepared.generation, prepared.active.clone(), prepared.at);
    }

    /// The record this process sends with its next fetch, if it reports.
    pub(crate) fn record(&self) -> Option<Record> {
        let identity = self.identity.as_ref()?;
        let state = self.lock();
        Some(identity.record(S::DEF.tick, &state.status, state.timelines.refused()))
    }

    /// The registry's health now.
    pub(crate) fn status(&self) -> Status {
        let now = self.now();
        let state = self.lock();
        let mut pending: Vec<Pending> = state
            .timelines
            .fields()
            .iter()
            .zip(S::DEF.fields)
            .flat_map(|(timeline, field)| {
                timeline.pending_after(now).iter().map(|(at, d)| Pending {
                    key: field.key,
                    at: to_datetime(*at),
                    value: (field.encode)(d.value()),
                })
            })
            .collect();
        pending.sort_by_key(|p| p.at);
        let mut status = state
            .status
            .status(S::DEF.namespace, self.store.describe(), now, pending);
        status.bad_entries = state.timelines.bad().to_vec();
        status.replica_fallbacks = self.store.replica_fallbacks();
        status.replica_failovers = self.store.replica_failovers();
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_warnings_are_one_per_interval_with_a_count_of_the_rest() {
        let start = Instant::now();
        let mut warned = Warnings::default();
        assert_eq!(warned.due(start), Some(0));
        for ms in 1..=30 {
            assert_eq!(warned.due(start + Duration::from_millis(ms * 280)), None);
        }
        assert_eq!(warned.due(start + WARN_EVERY), Some(30));
        assert_eq!(warned.due(start + WARN_EVERY), None);
    }
}
