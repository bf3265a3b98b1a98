//! Refreshing and flipping: how a registry learns its timelines and switches
//! its values.
//!
//! Two workers keep a started registry current, both off the hot path:
//!
//! - the *refresher*, a Tokio task, fetches the whole registry once per tick
//!   at this process's own phase, with a deadline of
//!   [`Tick::fetch_timeout`](crate::Tick::fetch_timeout), retrying with
//!   jittered backoff, never two fetches at once;
//! - the *flipper*, an OS thread, sleeps until the next entry's instant by
//!   the wall clock and then publishes the values of that instant, all fields
//!   at once. It wakes a little early and spins the last few hundred
//!   microseconds, so a flip lands within microseconds after its instant and
//!   never before it.

use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::clock::{ClockSource, Driven};
use crate::contract::{FieldDef, Fields, Value};
use crate::error::Error;
use crate::registry::Registry;
use crate::status::{Pending, Status, StatusData};
use crate::store::{Epoch, Fetched, Store};
use crate::tick::{Millis, to_datetime};
use crate::timeline::Timeline;

/// How long before an instant the flipper stops sleeping and starts spinning.
const SPIN: Duration = Duration::from_micros(300);

/// The pause between two tries of the first fetch, within the boot timeout.
const BOOT_RETRY: Duration = Duration::from_millis(100);

/// The longest the flipper sleeps without looking at the clock again.
const MAX_SLEEP: Duration = Duration::from_millis(500);

/// A fetch sent to the store, running on its own task.
type InFlight = tokio::task::JoinHandle<Result<Fetched, Error>>;

/// A decoded entry value, with the JSON text it came from.
#[derive(Clone)]
struct Decoded {
    raw: Arc<str>,
    value: Value,
}

/// How many clock samples the offset estimate keeps; the one with the
/// shortest round trip wins, as in NTP's clock filter.
const CLOCK_SAMPLES: usize = 8;

/// A started registry's moving parts.
pub(crate) struct Engine<S> {
    store: Arc<dyn Store>,
    clock: ClockSource,
    keys: Vec<&'static str>,
    state: Mutex<State>,
    wake: Condvar,
    /// Held while fetching, so one fetch runs at a time; holds a fetch that
    /// overran its deadline and is still unanswered, with when it was sent.
    fetching: tokio::sync::Mutex<Option<(InFlight, i64)>>,
    phase: Millis,
    _fields: PhantomData<fn() -> S>,
}

struct State {
    timelines: Vec<Timeline<Decoded>>,
    /// Bumped whenever a fetch changes any timeline.
    generation: u64,
    /// What was last published: the generation and each field's active entry.
    published: Option<(u64, Vec<Option<Millis>>)>,
    /// Per field, the rejections it is serving its last good timeline for.
    rejecting: Vec<Vec<String>>,
    /// The latest instant published: the clock may step back (an NTP step, a
    /// VM resumed), values never do.
    high_water: Millis,
    /// The store epoch the timelines come from.
    epoch: Option<Epoch>,
    /// After the store lost its data: until this instant, the timelines
    /// fetched before the loss still decide.
    carry: Option<(Millis, Vec<Timeline<Decoded>>)>,
    /// Recent `(offset, round trip)` samples of the store's clock, in ns.
    clock_samples: Vec<(i64, i64)>,
    status: StatusData,
}

impl<S: Fields> Engine<S> {
    pub(crate) fn new(store: Arc<dyn Store>, clock: ClockSource) -> Self {
        let tick = S::DEF.tick.as_millis();
        Engine {
            store,
            clock,
            keys: S::DEF.fields.iter().map(|f| f.key).collect(),
            state: Mutex::new(State {
                timelines: vec![Timeline::new(); S::DEF.fields.len()],
                generation: 0,
                published: None,
                high_water: Millis::MIN,
                rejecting: vec![Vec::new(); S::DEF.fields.len()],
                epoch: None,
                carry: None,
                clock_samples: Vec::new(),
                status: StatusData::default(),
            }),
            wake: Condvar::new(),
            fetching: tokio::sync::Mutex::new(None),
            phase: fastrand::i64(0..tick),
            _fields: PhantomData,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn store(&self) -> &dyn Store {
        &*self.store
    }

    pub(crate) fn now(&self) -> Millis {
        self.clock.now_millis()
    }
}

/// Start-up: publish the schema, fetch once within `boot_timeout`, publish
/// the values of now, and set the workers going.
pub(crate) async fn boot<S: Fields>(
    registry: &'static Registry<S>,
    runtime: &tokio::runtime::Handle,
    boot_timeout: Duration,
) {
    let Ok(engine) = registry.engine() else {
        return;
    };
    let namespace = S::DEF.namespace;
    let store = engine.store.describe();
    let schema = S::DEF.schema();
    let deadline = S::DEF.tick.fetch_timeout().min(boot_timeout);
    match tokio::time::timeout(deadline, engine.store.publish_schema(&schema)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(namespace, %store, error = %e, "lockstep: could not publish the schema")
        }
        Err(_) => tracing::warn!(namespace, %store, "lockstep: publishing the schema timed out"),
    }
    // The first fetch may take the whole boot timeout (a first connection,
    // a TLS handshake, a store restarting), not just one fetch deadline:
    // retry within it.
    let started = tokio::time::Instant::now();
    let deadline = started + boot_timeout;
    loop {
        match tokio::time::timeout_at(deadline, fetch(registry)).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) if tokio::time::Instant::now() + BOOT_RETRY >= deadline => {
                tracing::warn!(
                    namespace, %store, error = %e,
                    "lockstep: first fetch failed; serving defaults and retrying in the background"
                );
                break;
            }
            Ok(Err(_)) => tokio::time::sleep(BOOT_RETRY).await,
            Err(_) => {
                tracing::warn!(
                    namespace, %store, timeout = ?boot_timeout,
                    "lockstep: no answer to the first fetch; serving defaults and retrying in the \
                     background"
                );
                break;
            }
        }
    }
    flip(registry, &mut engine.lock(), engine.now());
    match &engine.clock {
        ClockSource::System | ClockSource::Adjusted(_) => {
            let spawned = std::thread::Builder::new()
                .name(format!("lockstep-flip-{namespace}"))
                .spawn(move || flipper(registry));
            if let Err(e) = spawned {
                tracing::error!(namespace, error = %e, "lockstep: cannot start the flipper thread");
            }
            runtime.spawn(refresher(registry));
        }
        ClockSource::Manual(clock) => clock.drive(registry),
    }
}

/// One fetch, applied. Never two at once for one registry.
pub(crate) async fn fetch<S: Fields>(registry: &'static Registry<S>) -> Result<(), Error> {
    let engine = registry.engine()?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
    let mut in_flight = engine.fetching.lock().await;
    let deadline = S::DEF.tick.fetch_timeout();
    // A fetch that overran its deadline is still on the wire: wait for its
    // answer instead of sending another, so a slow or frozen store never has
    // more than one fetch of this registry to answer, and no burst when it
    // wakes up.
    let (mut task, sent) = in_flight.take().unwrap_or_else(|| {
        let store = engine.store.clone();
        let keys = engine.keys.clone();
        let sent = engine.clock.local_nanos();
        let task = runtime.spawn(async move { store.fetch(S::DEF.namespace, &keys).await });
        (task, sent)
    });
    let result = match tokio::time::timeout(deadline, &mut task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(Error::Store {
            store: engine.store.describe(),
            message: format!("the fetch task failed: {join}"),
        }),
        Err(_) => {
            *in_flight = Some((task, sent));
            Err(Error::Store {
                store: engine.store.describe(),
                message: format!(
                    "no answer to a fetch within its deadline of {deadline:?}; still waiting \
                     for that one rather than sending another"
                ),
            })
        }
    };
    let received = engine.clock.local_nanos();
    let now = engine.now();
    let mut state = engine.lock();
    match result {
        Ok(fetched) => {
            if let Some(store) = fetched.store_micros
                && !matches!(engine.clock, ClockSource::Manual(_))
            {
                let offset = store.saturating_mul(1000) - (sent / 2 + received / 2);
                state.clock_samples.push((offset, received - sent));
                if state.clock_samples.len() > CLOCK_SAMPLES {
                    state.clock_samples.remove(0);
                }
                if let Some(&(offset, rtt)) = state.clock_samples.iter().min_by_key(|s| s.1) {
                    state.status.clock_offset = Some((offset, rtt / 2));
                    engine.clock.set_store_offset(offset);
                }
            }
            apply_fetched::<S>(&mut state, fetched, now);
            drop(state);
            engine.wake.notify_all();
            Ok(())
        }
        Err(e) => {
            state.status.consecutive_failures += 1;
            state.status.failed_fetches += 1;
            state.status.last_error = Some(e.to_string());
            tracing::warn!(
                namespace = S::DEF.namespace,
                failures = state.status.consecutive_failures,
                error = %e,
                "lockstep: fetch failed; serving the last fetched timeline"
            );
            Err(e)
        }
    }
}

/// Replaces the timelines by what the store holds, field by field: a field
/// with an entry this process cannot decode keeps its previous timeline.
///
/// When the store's epoch changed (it lost its data), the timelines fetched
/// before keep deciding until the horizon of the new epoch's creation, the
/// same instant on every process; when the store is empty, they keep
/// deciding until it is written again.
fn apply_fetched<S: Fields>(state: &mut State, fetched: Fetched, now: Millis) {
    let now = now.max(state.high_water);
    let first = state.status.last_fetch.is_none();
    let status = &mut state.status;
    status.fetches += 1;
    status.consecutive_failures = 0;
    status.last_fetch = Some(now);
    status.last_store_time = fetched.store_micros.map(|us| us.div_euclid(1000));
    let namespace = S::DEF.namespace;
    match (&state.epoch, fetched.epoch) {
        (Some(old), None) => {
            if !state.status.store_lost {
                state.status.store_lost = true;
                state.status.store_losses += 1;
                tracing::error!(
                    namespace,
                    epoch = %old.id,
                    "lockstep: store lost: the registry is gone from the store; serving the \
                     last fetched timeline until it is written again"
                );
            }
            return;
        }
        (Some(old), Some(new)) if *old != new => {
            let switch = S::DEF.tick.horizon(new.created);
            tracing::error!(
                namespace,
                old_epoch = %old.id,
                new_epoch = %new.id,
                switch_at = %to_datetime(switch).to_rfc3339(),
                "lockstep: store lost and written again: switching to its new state at the \
                 horizon of its new epoch, the last fetched timeline until then"
            );
            if !state.status.store_lost {
                state.status.store_losses += 1;
            }
            state.carry = Some((switch, state.timelines.clone()));
            state.epoch = Some(new);
        }
        (_, new) => state.epoch = new,
    }
    state.status.store_lost = false;
    state.status.epoch = state.epoch.as_ref().map(|e| e.id.clone());
    if state
        .carry
        .as_ref()
        .is_some_and(|(switch, _)| now >= *switch)
    {
        state.carry = None;
    }
    let mut changed = false;
    for (index, field) in S::DEF.fields.iter().enumerate() {
        let old = &state.timelines[index];
        let stored = fetched
            .fields
            .get(field.key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut good = Vec::with_capacity(stored.len());
        let mut bad = Vec::new();
        for entry in stored {
            let decoded = entry
                .value
                .as_deref()
                .map_err(Clone::clone)
                .and_then(|raw| {
                    // Reuse what an earlier fetch decoded from the same text.
                    match old
                        .active_at(entry.at)
                        .filter(|(at, d)| *at == entry.at && *d.raw == *raw)
                    {
                        Some((_, known)) => Ok(known.clone()),
                        None => decode(field, raw),
                    }
                });
            match decoded {
                Ok(d) => good.push((entry.at, d)),
                Err(reason) => bad.push(format!(
                    "`{namespace}.{}` at {}: {reason}; keeping its last good timeline",
                    field.key,
                    to_datetime(entry.at).to_rfc3339()
                )),
            }
        }
        if !bad.is_empty() {
            // Each bad entry is counted and logged once, not at every fetch.
            for message in &bad {
                if !state.rejecting[index].contains(message) {
                    state.status.rejected += 1;
                    tracing::error!(
                        namespace,
                        field = field.key,
                        "lockstep: rejected a stored value: {message}"
                    );
                    state.status.last_rejection = Some(message.clone());
                }
            }
            state.rejecting[index] = bad;
            continue;
        }
        state.rejecting[index].clear();
        let mut new: Timeline<Decoded> = good.into_iter().collect();
        if let Some((switch, before)) = &state.carry {
            new = carry_over(field, &before[index], new, *switch);
        }
        if !first && !same(old.active_at(now), new.active_at(now)) {
            state.status.late_flips += 1;
            tracing::warn!(
                namespace,
                field = field.key,
                "lockstep: late flip: a change already active was learned only now"
            );
        }
        let unchanged = old.len() == new.len()
            && old
                .entries()
                .iter()
                .zip(new.entries())
                .all(|(a, b)| same(Some(a), Some(b)));
        if !unchanged {
            changed = true;
            state.timelines[index] = new;
        }
        state.timelines[index].prune(now, 0);
    }
    if changed {
        state.generation += 1;
    }
}

/// Whether two entries are the same instant and text.
fn same(a: Option<&(Millis, Decoded)>, b: Option<&(Millis, Decoded)>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.0 == b.0 && a.1.raw == b.1.raw,
        _ => false,
    }
}

/// Decodes one stored value of `field`, within the size limit.
fn decode(field: &FieldDef, raw: &str) -> Result<Decoded, String> {
    Ok(Decoded {
        raw: raw.into(),
        value: crate::value::decode_field(field, raw)?,
    })
}

/// The timeline before the switch instant, the new one from it on.
fn carry_over(
    field: &FieldDef,
    before: &Timeline<Decoded>,
    after: Timeline<Decoded>,
    switch: Millis,
) -> Timeline<Decoded> {
    let at_switch = after.value_at(switch).cloned().or_else(|| {
        let default = (field.default_json)().to_string();
        decode(field, &default).ok()
    });
    let earlier = before
        .entries()
        .iter()
        .filter(|(at, _)| *at < switch)
        .cloned();
    let later = after
        .entries()
        .iter()
        .filter(|(at, _)| *at > switch)
        .cloned();
    earlier
        .chain(at_switch.map(|d| (switch, d)))
        .chain(later)
        .collect()
}

/// Publishes the values at `now` unless they are already published; returns
/// the next instant anything changes.
fn flip<S: Fields>(registry: &Registry<S>, state: &mut State, now: Millis) -> Option<Millis> {
    let now = now.max(state.high_water);
    state.high_water = now;
    let active: Vec<Option<Millis>> = state
        .timelines
        .iter()
        .map(|t| t.active_at(now).map(|e| e.0))
        .collect();
    let fresh = match &state.published {
        Some((generation, published)) => *generation != state.generation || *published != active,
        None => true,
    };
    if fresh {
        let mut values = S::defaults();
        for (index, timeline) in state.timelines.iter().enumerate() {
            if let Some(decoded) = timeline.value_at(now) {
                values.assign(index, &*decoded.value);
            }
        }
        registry.publish(values);
        if let Some((_, published)) = &state.published
            && *published != active
        {
            state.status.flips += 1;
            state.status.last_flip = Some(now);
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
                at = %to_datetime(now).to_rfc3339(),
                "lockstep: flipped"
            );
        }
        state.published = Some((state.generation, active));
    }
    state
        .timelines
        .iter()
        .filter_map(|t| t.next_change_after(now))
        .min()
}

/// The flipper thread: sleep until the next instant, publish, repeat.
fn flipper<S: Fields>(registry: &'static Registry<S>) {
    let Ok(engine) = registry.engine() else {
        return;
    };
    let mut state = engine.lock();
    loop {
        let now = engine.clock.now_nanos();
        let next = flip(registry, &mut state, now.div_euclid(1_000_000));
        let until = next.map(|at| at.saturating_mul(1_000_000));
        let wait = until.map_or(MAX_SLEEP, |until| {
            Duration::from_nanos(until.saturating_sub(now).max(0) as u64).min(MAX_SLEEP)
        });
        if wait > SPIN {
            state = engine
                .wake
                .wait_timeout(state, wait - SPIN)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        } else if let Some(until) = until {
            drop(state);
            // Spin without yielding: a thread that just woke keeps its core
            // for these few hundred microseconds, where yielding on a busy
            // machine hands it to another thread for a whole time slice
            // (about 3 ms late, measured).
            while engine.clock.now_nanos() < until {
                std::hint::spin_loop();
            }
            state = engine.lock();
        }
    }
}

/// The refresher task: one fetch per tick at this process's phase; after a
/// failure, jittered exponential backoff capped at half a tick.
async fn refresher<S: Fields>(registry: &'static Registry<S>) {
    let Ok(engine) = registry.engine() else {
        return;
    };
    let tick = S::DEF.tick.as_millis();
    let mut failures = 0u32;
    loop {
        let now = engine.now();
        let delay = if failures == 0 {
            next_phase(now, tick, engine.phase) - now
        } else {
            backoff(failures, tick)
        };
        tokio::time::sleep(Duration::from_millis(delay.max(0) as u64)).await;
        failures = match fetch(registry).await {
            Ok(()) => 0,
            Err(_) => failures.saturating_add(1),
        };
    }
}

/// The first instant after `now` at `phase` into a tick.
fn next_phase(now: Millis, tick: Millis, phase: Millis) -> Millis {
    (now - phase).div_euclid(tick) * tick + phase + tick
}

/// The wait before retry number `failures`: exponential from 1/16 of a tick
/// (at most 250 ms), capped at half a tick so that a store that answers
/// again is caught up with within a tick, with the upper half jittered.
fn backoff(failures: u32, tick: Millis) -> Millis {
    let base = (tick / 16).clamp(1, 250);
    let ceiling = base
        .saturating_mul(1 << failures.min(20).saturating_sub(1))
        .min(tick / 2);
    ceiling / 2 + fastrand::i64(0..=ceiling / 2)
}

impl<S: Fields> Driven for Registry<S> {
    fn advanced(
        &'static self,
        now: Millis,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            let Ok(engine) = self.engine() else {
                return;
            };
            let tick = S::DEF.tick;
            let due = {
                let state = engine.lock();
                state
                    .status
                    .last_fetch
                    .is_none_or(|last| tick.floor(now) > tick.floor(last))
            };
            if due {
                let _ = fetch(self).await;
            }
            flip(self, &mut engine.lock(), now);
        })
    }
}

impl<S: Fields> Registry<S> {
    /// Fetches now, outside the schedule, and applies what it got. Waits for
    /// a fetch already under way rather than starting a second one.
    pub async fn refresh(&'static self) -> Result<(), Error> {
        fetch(self).await?;
        let engine = self.engine()?;
        flip(self, &mut engine.lock(), engine.now());
        Ok(())
    }

    /// How the registry is doing: its last fetch, failures, pending changes,
    /// late flips and rejected values.
    pub fn status(&self) -> Status {
        let Ok(engine) = self.engine() else {
            return Status::not_started(S::DEF.namespace);
        };
        let now = engine.now();
        let state = engine.lock();
        let mut pending: Vec<Pending> = state
            .timelines
            .iter()
            .zip(S::DEF.fields)
            .flat_map(|(timeline, field)| {
                timeline.pending_after(now).iter().map(|(at, d)| Pending {
                    key: field.key,
                    at: to_datetime(*at),
                    value: d.raw.to_string(),
                })
            })
            .collect();
        pending.sort_by_key(|p| p.at);
        state
            .status
            .report(S::DEF.namespace, engine.store.describe(), now, pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_one_tick_apart_and_in_the_future() {
        assert_eq!(next_phase(10_000, 1_000, 300), 10_300);
        assert_eq!(next_phase(10_300, 1_000, 300), 11_300);
        assert_eq!(next_phase(10_299, 1_000, 300), 10_300);
        for now in 0..3_000 {
            let next = next_phase(now, 1_000, 123);
            assert!(next > now && next <= now + 1_000 && next % 1_000 == 123);
        }
    }

    #[test]
    fn backoff_grows_and_stays_under_a_tick() {
        for failures in 1..40 {
            for _ in 0..50 {
                let b = backoff(failures, 1_000);
                assert!((31..=500).contains(&b), "{failures}: {b}");
            }
        }
        assert!(backoff(1, 600_000) <= 250);
        assert!(backoff(30, 600_000) >= 150_000);
    }
}
