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

use std::sync::Arc;

use crate::contract::{FieldDef, Fields, Value};
use crate::published::Values;
use crate::status::StatusData;
use crate::store::Fetched;
use crate::store::driver::{Epoch, Held};
use crate::tick::{Millis, to_datetime};
use crate::timeline::Timeline;

/// A decoded entry value, and what tells the JSON text it came from: its
/// length and XXH64. The text itself is not kept, so a process holds each
/// value once (decoded), not twice. The value sits behind the `Arc` it was
/// decoded into: timelines, the values made ahead of an instant and the
/// slots a flip publishes to all share it.
#[derive(Clone)]
pub(crate) struct Decoded {
    text: (usize, u64),
    value: Value,
}

impl Decoded {
    /// `value`, decoded from `raw`.
    pub(crate) fn of(raw: &str, value: Value) -> Decoded {
        Decoded {
            text: Decoded::text_of(raw),
            value,
        }
    }

    /// The value.
    pub(crate) fn value(&self) -> &Value {
        &self.value
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

/// What this process learned of its registry from the store: each field's
/// timeline, and what the fetches it comes from said (the epoch, the
/// revision, the bad entries). Only a fetch applied here changes it.
pub(crate) struct Timelines {
    fields: Vec<Timeline<Decoded>>,
    /// Bumped whenever a fetch changes any timeline.
    generation: u64,
    /// The bad entries seen by the last fetch, as messages: each is counted
    /// and logged once, when first seen.
    bad: Vec<String>,
    /// The entries of the last fetch this process could not decode, by
    /// field and instant: the fleet view counts them as not held.
    refused: Vec<(&'static str, Millis)>,
    /// The registry's revision of the last fetch applied.
    revision: u64,
    /// What the next fetch says this process holds, so that an unchanged
    /// registry answers with its header alone: the epoch and revision of
    /// the last fetch applied whole. `None` after a fetch that failed, found
    /// the store lost, could not read a field at all, or while timelines
    /// fetched before a store loss still decide: the next fetch is full.
    held: Option<Held>,
    /// The store epoch the timelines come from.
    epoch: Option<Epoch>,
    /// After the store lost its data: until this instant, the timelines
    /// fetched before the loss still decide.
    carry: Option<(Millis, Vec<Timeline<Decoded>>)>,
}

impl Timelines {
    /// What a registry of `fields` fields knows before its first fetch:
    /// every field at its default.
    pub(crate) fn new(fields: usize) -> Timelines {
        Timelines {
            fields: vec![Timeline::new(); fields],
            generation: 0,
            bad: Vec::new(),
            refused: Vec::new(),
            revision: 0,
            held: None,
            epoch: None,
            carry: None,
        }
    }

    /// Each field's timeline, in the registry's order.
    pub(crate) fn fields(&self) -> &[Timeline<Decoded>] {
        &self.fields
    }

    /// Bumped whenever a fetch changes any timeline.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// What the next fetch says this process holds (see [`Fetch::holding`](crate::store::Fetch::holding)).
    pub(crate) fn held(&self) -> Option<&Held> {
        self.held.as_ref()
    }

    /// The bad entries the last fetch saw, as messages.
    pub(crate) fn bad(&self) -> &[String] {
        &self.bad
    }

    /// The entries of the last fetch this process could not decode.
    pub(crate) fn refused(&self) -> &[(&'static str, Millis)] {
        &self.refused
    }

    /// Each field's active entry at `at`.
    pub(crate) fn active_at(&self, at: Millis) -> Vec<Option<Millis>> {
        self.fields
            .iter()
            .map(|t| t.active_at(at).map(|e| e.0))
            .collect()
    }

    /// Every field's value at `at`, ready to publish: the decoded values
    /// themselves (shared, not cloned) for the slots, and the struct.
    pub(crate) fn values_at<S: Fields>(&self, at: Millis) -> Values<S> {
        Values::new(
            self.fields
                .iter()
                .map(|t| t.value_at(at).map(|d| Arc::clone(&d.value)))
                .collect(),
        )
    }

    /// The next instant after `at` at which any field changes.
    pub(crate) fn next_change_after(&self, at: Millis) -> Option<Millis> {
        self.fields
            .iter()
            .filter_map(|t| t.next_change_after(at))
            .min()
    }

    /// Applies the store's answer to a fetch that said this process held
    /// `held` (checked by [`check_unchanged`]), at `now` (never before an
    /// instant published); `first` if no fetch succeeded before. Counts
    /// what it finds (late flips, rejected entries, a store lost) in
    /// `status`.
    pub(crate) fn apply<S: Fields>(
        &mut self,
        fetched: Fetched,
        held: Option<Held>,
        now: Millis,
        first: bool,
        status: &mut StatusData,
    ) {
        if fetched.unchanged {
            self.unchanged(fetched, held, now, status);
        } else {
            self.replace::<S>(fetched, now, first, status);
        }
    }

    /// A fetch failed: what this process holds is still what it applied,
    /// but it claims nothing until a fetch is applied whole again (the next
    /// one is full).
    pub(crate) fn failed(&mut self) {
        self.held = None;
    }

    /// Replaces the timelines by what the store holds, field by field.
    ///
    /// When the store's epoch changed (it lost its data), the timelines
    /// fetched before keep deciding until the horizon of the new epoch's
    /// creation, the same instant on every process; when the store is
    /// empty, they keep deciding until it is written again.
    fn replace<S: Fields>(
        &mut self,
        fetched: Fetched,
        now: Millis,
        first: bool,
        status: &mut StatusData,
    ) {
        let namespace = S::DEF.namespace;
        // Held again only once this fetch is applied whole.
        self.held = None;
        let held = fetched.held();
        match (&self.epoch, fetched.epoch) {
            (Some(old), None) => {
                if status.lost_store() {
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
                if status.store_replaced() {
                    crate::observe::store_lost(namespace);
                }
                self.carry = Some((switch, self.fields.clone()));
                self.epoch = Some(new);
            }
            (_, new) => self.epoch = new,
        }
        status.store_holds(self.epoch.as_ref().map(|e| e.id.clone()));
        if self
            .carry
            .as_ref()
            .is_some_and(|(switch, _)| now >= *switch)
        {
            self.carry = None;
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
            let old = &self.fields[index];
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
                            .filter(|(at, d)| *at == entry.at && d.is_from(raw))
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
                // again, unless the fetch's budget left it out: the store ships
                // it again only once the registry changes, as a conditional
                // fetch then finds.
                let left_out = stored.iter().all(|e| {
                    e.value
                        .as_ref()
                        .is_err_and(|why| crate::store::is_not_fetched(why))
                });
                whole &= left_out;
                continue;
            }
            let mut new: Timeline<Decoded> = good.into_iter().collect();
            if let Some((switch, before)) = &self.carry {
                new = carry_over(field, &before[index], new, *switch);
            }
            if !first && !same(old.active_at(now), new.active_at(now)) {
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
                self.fields[index] = new;
            }
            self.fields[index].prune(now, 0);
        }
        // One warning for every field a fetch found late (after an outage, many
        // may be), not one a field.
        if !late.is_empty() {
            status.learned_late(late.len() as u64);
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
            if !self.bad.contains(message) {
                status.entry_rejected(message.clone());
                crate::observe::rejected(namespace, 1);
                tracing::error!(namespace, "lockstep: skipped a stored entry: {message}");
            }
        }
        self.bad = bad;
        self.refused = refused;
        self.revision = fetched.revision;
        // While timelines fetched before a store loss still decide, what this
        // process holds is not what the store holds: fetch in full until then.
        if whole && self.carry.is_none() {
            self.held = held;
        }
        if changed {
            self.generation += 1;
        }
    }

    /// Applies an answer that the registry is unchanged since `held`, the
    /// epoch and revision this process applied whole last: the timelines,
    /// bad entries and revision stay as they are (pruned of the past, as a
    /// full fetch would leave them), and everything else a fetch updates
    /// is.
    fn unchanged(
        &mut self,
        fetched: Fetched,
        held: Option<Held>,
        now: Millis,
        status: &mut StatusData,
    ) {
        debug_assert!(fetched.unchanged && held.as_ref().is_some_and(|h| fetched.is_at(h)));
        status.store_unchanged();
        for timeline in &mut self.fields {
            timeline.prune(now, 0);
        }
        self.held = held;
    }
}

/// Refuses an unchanged answer that is not for `held`, what the fetch said
/// this process held: it stands for those timelines alone (they have not
/// changed since it was sent: only a fetch applied whole changes them, and
/// there is one fetch at a time). Anything else is a store's mistake, and
/// the fetch fails (the next one is full).
pub(crate) fn check_unchanged(fetched: &Fetched, held: Option<&Held>) -> Result<(), String> {
    match held {
        _ if !fetched.unchanged => Ok(()),
        Some(held) if fetched.is_at(held) => Ok(()),
        Some(held) => Err(format!(
            "the store answered \"unchanged\" at epoch {:?} revision {}, but this process \
             holds epoch {:?} revision {}",
            fetched.epoch.as_ref().map(|e| e.id.as_str()),
            fetched.revision,
            held.epoch,
            held.revision
        )),
        None => Err("the store answered \"unchanged\" to a fetch that held nothing".to_owned()),
    }
}

/// Whether two entries are the same instant and text.
fn same(a: Option<&(Millis, Decoded)>, b: Option<&(Millis, Decoded)>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.0 == b.0 && a.1.same_text(&b.1),
        _ => false,
    }
}

/// Decodes one stored value of `field`, within the size limit.
fn decode(field: &FieldDef, raw: &str) -> Result<Decoded, String> {
    let value = crate::value::decode_within_limit(field.decode, raw)?;
    Ok(Decoded::of(raw, value))
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

#[cfg(test)]
mod tests;
