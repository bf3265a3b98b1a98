//! Refreshing: how a registry learns its timelines.
//!
//! The *refresher*, a task on the registry's own runtime
//! ([`Host`](crate::host::Host)), fetches the whole registry once per tick at
//! this process's own phase, with a deadline of
//! [`Tick::fetch_timeout`](crate::Tick::fetch_timeout), retrying with
//! jittered backoff, never two fetches at once. Boot is the first fetch,
//! retried within the boot timeout; a fault retrying cannot fix
//! ([`Error::is_transient`]) fails it at once. After every fetch that finds
//! the store without the registry's schema, the schema is published again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::{ClockSample, ClockSource, Driven, UnixNanos};
use crate::contract::Fields;
use crate::engine::{ClockEstimate, ClockNews, Engine, InFlight};
use crate::error::Error;
use crate::flip::{flip_now, spawn_flipper};
use crate::observe;
use crate::store::driver::Held;
use crate::store::{Fetch, Fetched};
use crate::tick::Millis;
use tracing::Instrument;

/// The pause between two tries of the first fetch, within the boot timeout.
const BOOT_RETRY: Duration = Duration::from_millis(100);

/// Start-up, on the registry's own runtime: fetch once within
/// `boot_timeout`, publish the schema, publish the values of now, and set
/// the workers going. Fails only on a fault retrying cannot fix.
pub(crate) async fn boot<S: Fields>(
    engine: Arc<Engine<S>>,
    boot_timeout: Duration,
) -> Result<(), Error> {
    let namespace = S::DEF.namespace;
    let store = engine.store().describe();
    observe::describe();
    // The first fetch may take the whole boot timeout (a first connection,
    // a TLS handshake, a store restarting), not just one fetch deadline:
    // retry within it.
    let deadline = tokio::time::Instant::now() + boot_timeout;
    loop {
        match tokio::time::timeout_at(deadline, fetch(&engine)).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) if !e.is_transient() => return Err(e),
            Ok(Err(e)) if tokio::time::Instant::now() + BOOT_RETRY >= deadline => {
                tracing::warn!(
                    namespace, %store, error = %e,
                    "lockstep: the first fetch failed; serving defaults and retrying in the \
                     background"
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
    flip_now(&*engine);
    match engine.clock().clone() {
        ClockSource::Manual(clock) => clock.drive(engine),
        ClockSource::System | ClockSource::Adjusted(_) => {
            spawn_flipper(engine.clone(), engine.realtime_flips());
            let runtime = engine.host().handle().clone();
            runtime.spawn(refresher(engine));
        }
    }
    Ok(())
}

/// One fetch, applied, then the schema published if the store lacks it.
/// Never two at once for one registry; the store is called on the
/// registry's own runtime, whichever runtime awaits this. In a span
/// `lockstep.fetch` with the registry, the store and the outcome.
///
/// The fetch is conditional (see [`Fetch::holding`]): it says what this
/// process holds, and an unchanged registry answers with its header alone.
pub(crate) async fn fetch<S: Fields>(engine: &Engine<S>) -> Result<(), Error> {
    fetch_as(engine, true).await
}

/// [`fetch`], but in full whatever this process holds, as
/// [`Registry::refresh`](crate::Registry::refresh) asks: what it holds is
/// read again (after entries were changed behind lockstep's back, say,
/// which no revision tells).
pub(crate) async fn fetch_full<S: Fields>(engine: &Engine<S>) -> Result<(), Error> {
    fetch_as(engine, false).await
}

/// [`fetch`], conditional or not.
async fn fetch_as<S: Fields>(engine: &Engine<S>, conditional: bool) -> Result<(), Error> {
    let span = tracing::info_span!(
        "lockstep.fetch",
        namespace = S::DEF.namespace,
        store = %engine.store().describe(),
        outcome = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    let result = fetch_once(engine, conditional)
        .instrument(span.clone())
        .await;
    match &result {
        Ok(()) => span.record("outcome", "ok"),
        Err(e) => span
            .record("outcome", "error")
            .record("error", tracing::field::display(e)),
    };
    result
}

/// [`fetch`], outside its span.
async fn fetch_once<S: Fields>(engine: &Engine<S>, conditional: bool) -> Result<(), Error> {
    let mut in_flight = engine.fetching().lock().await;
    let deadline = S::DEF.tick.fetch_timeout();
    // A fetch that overran its deadline is still on the wire: wait for its
    // answer instead of sending another, so a slow or frozen store never has
    // more than one fetch of this registry to answer, and no burst when it
    // wakes up.
    let InFlight {
        mut task,
        sent,
        held,
    } = in_flight.take().unwrap_or_else(|| {
        let store = engine.store().clone();
        let keys = engine.keys().to_vec();
        let schema = engine.schema().clone();
        let report = engine.record();
        let held = conditional.then(|| engine.lock().holding()).flatten();
        let asked = held.clone();
        let sent = engine.clock().local_now();
        let task = engine.host().handle().spawn(async move {
            let fetch = Fetch::new(S::DEF.namespace, &keys)
                .reporting(report.as_ref())
                .holding(asked.as_ref())
                .publishing(Some(&schema))
                .within(deadline);
            store.fetch_with(fetch).await
        });
        InFlight { task, sent, held }
    });
    let result = match tokio::time::timeout(deadline, &mut task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(Error::Store {
            store: engine.store().describe(),
            message: format!("the fetch task failed: {join}"),
        }),
        Err(_) => {
            *in_flight = Some(InFlight {
                task,
                sent,
                held: held.clone(),
            });
            Err(Error::Store {
                store: engine.store().describe(),
                message: format!(
                    "no answer to a fetch within its deadline of {deadline:?}; still waiting \
                     for that one rather than sending another"
                ),
            })
        }
    };
    let received = engine.clock().local_now();
    let recorded = record(engine, result, sent, received, held);
    drop(in_flight);
    let publish = recorded?;
    engine.wake_flipper();
    if publish {
        publish_schema(engine).await;
    }
    Ok(())
}

/// Applies the result of a fetch sent at `sent` and answered at `received`
/// (this process's clock), which said this process held `held`; returns
/// whether to publish the schema.
fn record<S: Fields>(
    engine: &Engine<S>,
    result: Result<Fetched, Error>,
    sent: UnixNanos,
    received: UnixNanos,
    held: Option<Held>,
) -> Result<bool, Error> {
    let result = result.and_then(|fetched| {
        crate::apply::check_unchanged(&fetched, held.as_ref())
            .map(|()| fetched)
            .map_err(|message| Error::Store {
                store: engine.store().describe(),
                message,
            })
    });
    let now = engine.now();
    let namespace = S::DEF.namespace;
    let mut state = engine.lock();
    match result {
        Ok(fetched) => {
            if let Some(store) = fetched.store_micros
                && !matches!(engine.clock(), ClockSource::Manual(_))
            {
                let sample = ClockSample::of(sent, UnixNanos::from_micros(store), received);
                if let Some(estimate) = state.clock_sampled(sample, Instant::now()) {
                    engine.clock().set_store_offset(estimate.offset);
                    observe::clock_offset(namespace, estimate.offset);
                    log_clock(engine, estimate);
                }
            }
            let recovered = state.answered::<S>(fetched, held, now);
            engine.prepare_next(&state, now);
            observe::fetched(
                namespace,
                Some(received.duration_since(sent)),
                Some(Duration::ZERO),
            );
            observe::pending(namespace, state.timelines().fields(), now);
            let failures = recovered.failures;
            let down_for = recovered.failing_since.map(|since| {
                humantime::format_duration(Duration::from_millis(
                    now.saturating_sub(since).max(0) as u64
                ))
            });
            if recovered.first {
                tracing::info!(
                    namespace, store = %engine.store().describe(), failures_before = failures,
                    "lockstep: connected: first fetch done"
                );
            } else if let Some(down_for) = down_for {
                tracing::info!(
                    namespace, failures, down_for = %down_for,
                    "lockstep: recovered: fetching again after {failures} failed fetches over \
                     {down_for}"
                );
            }
            Ok(state.must_publish_schema())
        }
        Err(e) => {
            let age = state
                .status()
                .last_fetch()
                .map(|last| Duration::from_millis(now.saturating_sub(last).max(0) as u64));
            observe::fetched(namespace, None, age);
            let failures = state.failed(&e, now);
            if let Some(suppressed) = state.outage_warning(Instant::now()) {
                tracing::warn!(
                    namespace = S::DEF.namespace,
                    failures,
                    suppressed,
                    error = %e,
                    "lockstep: fetch failed; serving the last fetched timeline"
                );
            }
            Err(e)
        }
    }
}

/// Logs a clock offset estimate crossing [`observe::CLOCK_OFFSET_WARN`]:
/// a warning when it goes beyond (rate-limited), an info when it is back
/// within half of it.
fn log_clock<S: Fields>(engine: &Engine<S>, estimate: ClockEstimate) {
    let namespace = S::DEF.namespace;
    let threshold = observe::CLOCK_OFFSET_WARN;
    let ClockEstimate {
        offset,
        error,
        news,
    } = estimate;
    let offset_ms = offset as f64 / 1e6;
    match news {
        ClockNews::Off(Some(suppressed)) => {
            let following = matches!(engine.clock(), ClockSource::Adjusted(a) if a.follow_store);
            let effect = if following {
                "flips follow the store's clock, as this registry asks"
            } else {
                "this process flips that much early or late (fix NTP, or follow the store's \
                 clock: `clock = \"store\"`)"
            };
            tracing::warn!(
                namespace,
                offset_ms,
                error_ms = error as f64 / 1e6,
                suppressed,
                "lockstep: this process's clock is {offset_ms:+.0} ms off the store's, beyond \
                 {threshold:?}: {effect}"
            );
        }
        ClockNews::Back => {
            tracing::info!(
                namespace,
                offset_ms,
                "lockstep: this process's clock is back within {threshold:?} of the store's \
                 ({offset_ms:+.1} ms)"
            );
        }
        ClockNews::Off(None) | ClockNews::Same => {}
    }
}

/// Publishes the registry's schema, once per need: a refusal retrying
/// cannot fix (read-only credentials) is logged once and not retried until
/// the store has held a schema again; it never stops the registry.
async fn publish_schema<S: Fields>(engine: &Engine<S>) {
    let store = engine.store().clone();
    let deadline = S::DEF.tick.fetch_timeout();
    let publish = engine
        .host()
        .run(async move { store.publish_schema(&S::DEF.schema()).await });
    let result = match tokio::time::timeout(deadline, publish).await {
        Ok(result) => result,
        Err(_) => Err(Error::Store {
            store: engine.store().describe(),
            message: format!("no answer to publishing the schema within {deadline:?}"),
        }),
    };
    let namespace = S::DEF.namespace;
    let mut state = engine.lock();
    match result {
        Ok(()) => state.schema_published(),
        Err(e) if !e.is_transient() => {
            state.schema_refused();
            tracing::warn!(
                namespace, error = %e,
                "lockstep: the store refused this registry's schema; values are read as usual, \
                 but tools cannot check writes against it until a process with write access \
                 publishes it"
            );
        }
        Err(e) => {
            if let Some(suppressed) = state.outage_warning(Instant::now()) {
                tracing::warn!(
                    namespace, suppressed, error = %e,
                    "lockstep: could not publish the schema; trying again after the next fetch"
                );
            }
        }
    }
}

/// The refresher task: one fetch per tick at this process's phase; after a
/// failure, jittered exponential backoff capped at half a tick.
async fn refresher<S: Fields>(engine: Arc<Engine<S>>) {
    let tick = S::DEF.tick.as_millis();
    let mut failures = 0u32;
    loop {
        let now = engine.now();
        let delay = if failures == 0 {
            next_phase(now, tick, engine.phase()) - now
        } else {
            backoff(failures, tick)
        };
        tokio::time::sleep(Duration::from_millis(delay.max(0) as u64)).await;
        failures = match fetch(&engine).await {
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

impl<S: Fields> Driven for Engine<S> {
    fn advanced(
        &self,
        now: Millis,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let tick = S::DEF.tick;
            let due = self
                .lock()
                .status()
                .last_fetch()
                .is_none_or(|last| tick.floor(now) > tick.floor(last));
            if due {
                let _ = fetch(self).await;
            }
            self.flip(&mut self.lock(), now);
        })
    }
}

#[cfg(test)]
mod tests;
