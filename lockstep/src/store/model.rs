//! The model tests' harness: a registry's store (a memory store on a
//! manual clock) and the changes a random sequence of steps makes to it —
//! writes some ticks past the horizon, cancels and purges of what it holds,
//! the loss of everything, time passing. Each model test adds the steps it
//! checks (a fetch, say) and the model it holds the code to.

use std::time::Duration;

use proptest::prelude::*;

use super::contract::Store;
use super::memory::MemoryStore;
use super::write::Write;
use crate::clock::ManualClock;
use crate::tick::{Millis, Tick};

/// One change to the store.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    /// A write of `values` (field index, JSON) `ticks` ticks past the
    /// horizon.
    Commit(Vec<(usize, serde_json::Value)>, u64),
    /// A cancel of the `n`th entry the store holds, if any (refused, and
    /// changing nothing, when it is not pending).
    Cancel(usize),
    /// A purge of the `n`th entry the store holds, if any, said to be
    /// undecodable or not.
    Purge(usize, bool),
    /// The store loses everything.
    Lose,
    /// Time passes, in ms.
    Pass(u64),
}

/// Changes, weighted as the model tests weigh them: mostly writes (of one
/// field, or now and then of every field at once), cancels, purges, a
/// loss if `loses`, and time passing up to `pass_ms`. `value` makes a
/// field's value from its index and a byte.
pub(crate) fn change(
    fields: usize,
    value: fn(usize, u8, bool) -> serde_json::Value,
    loses: bool,
    pass_ms: u64,
) -> BoxedStrategy<Change> {
    let one = (
        0..fields,
        any::<u8>(),
        proptest::bool::weighted(0.2),
        0..4u64,
    )
        .prop_map(move |(k, v, bad, t)| Change::Commit(vec![(k, value(k, v, bad))], t));
    let all = (any::<u8>(), 0..3u64).prop_map(move |(v, t)| {
        Change::Commit((0..fields).map(|k| (k, value(k, v, false))).collect(), t)
    });
    let cancel = (0..8usize).prop_map(Change::Cancel);
    let purge = (0..8usize, any::<bool>()).prop_map(|(n, u)| Change::Purge(n, u));
    let pass = (0..pass_ms).prop_map(Change::Pass);
    if loses {
        prop_oneof![4 => one, 1 => all, 1 => cancel, 1 => purge, 1 => Just(Change::Lose), 3 => pass]
            .boxed()
    } else {
        prop_oneof![4 => one, 1 => all, 1 => cancel, 1 => purge, 3 => pass].boxed()
    }
}

/// A registry's store under a model test.
pub(crate) struct Model {
    /// The clock the store and the model's processes follow.
    pub(crate) clock: ManualClock,
    /// The store.
    pub(crate) store: MemoryStore,
    namespace: &'static str,
    keys: &'static [&'static str],
}

impl Model {
    /// The registry `namespace` of the fields `keys`, in an empty store.
    pub(crate) fn new(namespace: &'static str, keys: &'static [&'static str]) -> Model {
        let clock = ManualClock::new(chrono::Utc::now());
        let store = MemoryStore::with_clock(&clock);
        Model {
            clock,
            store,
            namespace,
            keys,
        }
    }

    /// The registry's tick: one second.
    pub(crate) fn tick() -> Tick {
        Tick::from_secs(1).unwrap()
    }

    /// Makes `change`; what the store refuses changes nothing.
    pub(crate) async fn make(&self, change: &Change) {
        let s: &dyn Store = &self.store;
        match change {
            Change::Commit(values, ticks) => {
                let mut w = Write::builder(self.namespace, Model::tick())
                    .after_horizon(Duration::from_secs(*ticks));
                for (k, value) in values {
                    w = w.set(self.keys[*k], value.clone());
                }
                s.commit(&w.build().unwrap()).await.unwrap();
            }
            Change::Cancel(n) | Change::Purge(n, _) => {
                let fetched = s.fetch(self.namespace, self.keys).await.unwrap();
                let entries: Vec<(&String, Millis)> = fetched
                    .fields
                    .iter()
                    .flat_map(|(k, es)| es.iter().map(move |e| (k, e.at)))
                    .collect();
                let Some((key, at)) = entries.get(*n) else {
                    return;
                };
                let _ = match change {
                    Change::Cancel(_) => s
                        .cancel(self.namespace, Model::tick(), key, *at)
                        .await
                        .map(|_| ()),
                    Change::Purge(_, undecodable) => {
                        let at = at.to_string();
                        s.purge(self.namespace, Model::tick(), key, &at, *undecodable)
                            .await
                    }
                    _ => unreachable!(),
                };
            }
            Change::Lose => self.store.clear(),
            Change::Pass(ms) => self.clock.advance(Duration::from_millis(*ms)).await,
        }
    }
}
