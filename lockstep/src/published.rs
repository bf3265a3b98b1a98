//! What the hot path reads of a registry: its slots, its last published
//! struct, and the value the last flip replaced. The engine publishes into
//! it; the accessors and snapshots read it.

use std::sync::{Arc, LazyLock};

use arc_swap::{ArcSwap, Guard};

use crate::contract::Fields;
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

    /// Makes `values` what every accessor and snapshot returns.
    pub(crate) fn publish(&self, values: Arc<S>) {
        values.publish(&self.slots);
        self.retired.keep(self.current.swap(values));
    }
}
