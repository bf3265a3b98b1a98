//! Applying a fetch: what the store returned becomes the engine's timelines.
//!
//! One bad entry spoils only itself: an entry this process cannot decode
//! (or whose instant is not a number) is skipped, so the value at `t` is the
//! last decodable entry at or before `t`, and the field's later good entries
//! activate as usual. Each bad entry is counted and logged once, however many
//! fetches see it, and [`Status::bad_entries`](crate::Status::bad_entries)
//! lists those the last fetch saw. A field of which nothing decodes (its
//! key has the wrong type, say) is unreadable rather than spoiled by one
//! entry: it keeps the timeline this process last knew.

use crate::contract::{FieldDef, Fields};
use crate::engine::{Decoded, SchemaNeed, State};
use crate::store::{Fetched, Held};
use crate::tick::{Millis, to_datetime};
use crate::timeline::Timeline;

/// Replaces the timelines by what the store holds, field by field.
///
/// When the store's epoch changed (it lost its data), the timelines fetched
/// before keep deciding until the horizon of the new epoch's creation, the
/// same instant on every process; when the store is empty, they keep
/// deciding until it is written again.
pub(crate) fn apply_fetched<S: Fields>(state: &mut State, fetched: Fetched, now: Millis) {
    let first = state.status.last_fetch.is_none();
    let now = answered(state, &fetched, now);
    let namespace = S::DEF.namespace;
    // Held again only once this fetch is applied whole.
    state.held = None;
    let held = fetched.held();
    match (&state.epoch, fetched.epoch) {
        (Some(old), None) => {
            if !state.status.store_lost {
                state.status.store_lost = true;
                state.status.store_losses += 1;
                crate::observe::store_lost(namespace);
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
                crate::observe::store_lost(namespace);
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
    let mut bad = Vec::new();
    for (key, unplaced) in &fetched.unplaced {
        for entry in unplaced {
            bad.push(format!(
                "`{namespace}.{key}` at `{}`: {}; skipped",
                entry.at, entry.reason
            ));
        }
    }
    let mut refused = Vec::new();
    let mut changed = false;
    let mut whole = true;
    let mut late = Vec::new();
    for (index, field) in S::DEF.fields.iter().enumerate() {
        let old = &state.timelines[index];
        let stored = fetched
            .fields
            .get(field.key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut good = Vec::with_capacity(stored.len());
        let bad_before = bad.len();
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
                Err(reason) => {
                    refused.push((field.key, entry.at));
                    bad.push(format!(
                        "`{namespace}.{}` at {}: {reason}; skipped, the entries before and after \
                     it decide",
                        field.key,
                        to_datetime(entry.at).to_rfc3339()
                    ))
                }
            }
        }
        if good.is_empty() && bad.len() > bad_before {
            // Nothing of the field can be read (a key of the wrong type, say):
            // that is the field unreadable, not one bad entry; keep what
            // this process knew of it. A full fetch is needed to read it
            // again.
            whole = false;
            continue;
        }
        let mut new: Timeline<Decoded> = good.into_iter().collect();
        if let Some((switch, before)) = &state.carry {
            new = carry_over(field, &before[index], new, *switch);
        }
        if !first && !same(old.active_at(now), new.active_at(now)) {
            state.status.late_flips += 1;
            late.push(field.key);
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
    // One warning for every field a fetch found late (after an outage, many
    // may be), not one a field.
    if !late.is_empty() {
        crate::observe::late_flips(namespace, late.len() as u64);
        tracing::warn!(
            namespace,
            fields = ?late,
            "lockstep: late flip: {} change(s) already active were learned only now (this \
             process could not reach the store in time)",
            late.len()
        );
    }
    // Each bad entry is counted and logged once, not at every fetch.
    for message in &bad {
        if !state.bad.contains(message) {
            state.status.rejected += 1;
            crate::observe::rejected(namespace, 1);
            tracing::error!(namespace, "lockstep: skipped a stored entry: {message}");
            state.status.last_rejection = Some(message.clone());
        }
    }
    state.bad = bad;
    state.refused = refused;
    state.revision = fetched.revision;
    // While timelines fetched before a store loss still decide, what this
    // process holds is not what the store holds: fetch in full until then.
    if whole && state.carry.is_none() {
        state.held = held;
    }
    if changed {
        state.generation += 1;
    }
}

/// Applies an answer that the registry is unchanged since `held`, the
/// epoch and revision this process applied whole last: the timelines, bad
/// entries and revision stay as they are (pruned of the past, as a full
/// fetch would leave them), and everything else a fetch updates is.
pub(crate) fn apply_unchanged<S: Fields>(
    state: &mut State,
    fetched: Fetched,
    held: Option<Held>,
    now: Millis,
) {
    debug_assert!(fetched.unchanged && held.as_ref().is_some_and(|h| fetched.is_at(h)));
    let now = answered(state, &fetched, now);
    state.status.store_lost = false;
    for timeline in &mut state.timelines {
        timeline.prune(now, 0);
    }
    state.held = held;
}

/// What every answer of the store updates, changed or not: the fetch's
/// time and count, the store's clock, whether to publish the schema.
/// Returns the instant it is applied at (never before one published).
fn answered(state: &mut State, fetched: &Fetched, now: Millis) -> Millis {
    let now = now.max(state.high_water);
    let status = &mut state.status;
    status.fetches += 1;
    status.consecutive_failures = 0;
    status.last_fetch = Some(now);
    status.last_store_time = fetched.store_micros.map(|us| us.div_euclid(1000));
    state.schema = match (state.schema, fetched.schema_held) {
        (SchemaNeed::Done, false) => SchemaNeed::Publish,
        (SchemaNeed::Refused, true) => SchemaNeed::Done,
        (need, _) => need,
    };
    now
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
        value: crate::value::decode_within_limit(field.decode, raw)?,
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
