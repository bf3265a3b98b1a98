//! Flipping: switching a registry's values at their instants.
//!
//! The *flipper*, an OS thread per registry, sleeps until the next entry's
//! instant by the registry's clock and then publishes the values of that
//! instant, all fields at once. It wakes a little early and spins the last
//! few hundred microseconds, so a flip lands within microseconds after its
//! instant and never before it.

use std::sync::Arc;
use std::time::Duration;

use crate::contract::Fields;
use crate::engine::{Engine, State};
use crate::tick::{Millis, to_datetime};

/// How long before an instant the flipper stops sleeping and starts spinning.
const SPIN: Duration = Duration::from_micros(300);

/// The longest the flipper sleeps without looking at the clock again.
const MAX_SLEEP: Duration = Duration::from_millis(500);

/// Publishes the values at `now` unless they are already published; returns
/// the next instant anything changes.
pub(crate) fn flip<S: Fields>(
    engine: &Engine<S>,
    state: &mut State,
    now: Millis,
) -> Option<Millis> {
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
        engine.published.publish(values);
        if let Some((_, published)) = &state.published
            && *published != active
        {
            state.status.flips += 1;
            state.status.last_flip = Some(now);
            crate::observe::flipped(S::DEF.namespace);
            crate::observe::pending(S::DEF.namespace, &state.timelines, now);
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

/// Publishes the values of now.
pub(crate) fn flip_now<S: Fields>(engine: &Engine<S>) {
    let now = engine.now();
    flip(engine, &mut engine.lock(), now);
}

/// Starts the flipper thread of `engine`.
pub(crate) fn spawn_flipper<S: Fields>(engine: Arc<Engine<S>>) {
    let namespace = S::DEF.namespace;
    let spawned = std::thread::Builder::new()
        .name(format!("lockstep-flip-{namespace}"))
        .spawn(move || flipper(&engine));
    if let Err(e) = spawned {
        tracing::error!(namespace, error = %e, "lockstep: cannot start the flipper thread");
    }
}

/// The flipper thread: sleep until the next instant, publish, repeat.
fn flipper<S: Fields>(engine: &Engine<S>) {
    let mut state = engine.lock();
    loop {
        let now = engine.clock.now_nanos();
        let next = flip(engine, &mut state, now.div_euclid(1_000_000));
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
