//! What the hot path reads of a registry: its slots, its last published
//! struct, and the value the last flip replaced. The engine publishes into
//! it; the accessors and snapshots read it.

use std::sync::{Arc, LazyLock};

use arc_swap::{ArcSwap, Guard};

use crate::contract::{Fields, Value};
use crate::slot::Retired;

/// What the hot path reads of one registry: the per-field slots the
/// accessors load, the whole struct for snapshots, and the value a flip
/// replaced. The engine publishes into it; nothing else writes it.
pub(crate) struct Published<S: Fields> {
    pub(crate) slots: S::Slots,
    current: LazyLock<ArcSwap<S>, fn() -> ArcSwap<S>>,
    retired: Retired<S>,
}

fn defaults<S: Fields>() -> ArcSwap<S> {
    ArcSwap::from_pointee(S::defaults())
}

impl<S: Fields> Published<S> {
    /// Every field at its default until the first publish.
    pub(crate) const fn new(slots: S::Slots) -> Self {
        Published {
            slots,
            current: LazyLock::new(defaults::<S>),
            retired: Retired::new(),
        }
    }

    /// The struct last published.
    #[inline]
    pub(crate) fn load(&self) -> Guard<Arc<S>> {
        self.current.load()
    }

    /// Makes `values` what every accessor and snapshot returns: each slot
    /// takes its field's decoded value and the snapshots the struct, all by
    /// reference count, so that publishing copies no value.
    pub(crate) fn publish(&self, values: &Values<S>) {
        S::publish(&values.fields, &self.slots);
        self.retired
            .keep(self.current.swap(Arc::clone(&values.all)));
    }
}

/// The values of one instant, made ready to publish: each field's decoded
/// value (`None`: its default), which its slot takes as it is, and the
/// struct the snapshots return, made of clones of them once, here, rather
/// than when they are published.
pub(crate) struct Values<S> {
    fields: Vec<Option<Value>>,
    all: Arc<S>,
}

impl<S: Fields> Values<S> {
    /// The values of `fields`, each field's decoded value in order (`None`:
    /// its default).
    pub(crate) fn new(fields: Vec<Option<Value>>) -> Values<S> {
        let mut all = S::defaults();
        for (index, value) in fields.iter().enumerate() {
            if let Some(value) = value {
                all.assign(index, &**value);
            }
        }
        Values {
            fields,
            all: Arc::new(all),
        }
    }
}
