//! Timelines: a field's entries `(at, value)` ordered by `at`.
//!
//! The value of a field at instant `t` is the value of the last entry with
//! `at <= t`, or the field's default when there is none. Everything here is
//! pure: no clock, no I/O.

use crate::tick::Millis;

/// The entries of one field, ordered by instant, at most one per instant
/// (see `tests::an_entry_decides_from_its_instant_to_the_next`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Timeline<V> {
    entries: Vec<(Millis, V)>,
}

impl<V> Default for Timeline<V> {
    fn default() -> Self {
        Timeline {
            entries: Vec::new(),
        }
    }
}

impl<V> FromIterator<(Millis, V)> for Timeline<V> {
    /// Builds a timeline from entries in any order; of two entries at the same
    /// instant the later one in the iterator wins.
    fn from_iter<I: IntoIterator<Item = (Millis, V)>>(iter: I) -> Self {
        let mut entries: Vec<(Millis, V)> = iter.into_iter().collect();
        // A stable sort keeps the iterator's order among equal instants, so the
        // last of each run is the last written.
        entries.sort_by_key(|e| e.0);
        let mut out: Vec<(Millis, V)> = Vec::with_capacity(entries.len());
        for entry in entries {
            match out.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => out.push(entry),
            }
        }
        Timeline { entries: out }
    }
}

impl<V> Timeline<V> {
    /// An empty timeline: the field has its default at every instant.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entries, ordered by instant.
    pub fn entries(&self) -> &[(Millis, V)] {
        &self.entries
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The index of the entry active at `t`: the last with `at <= t`.
    fn active_index(&self, t: Millis) -> Option<usize> {
        self.entries.partition_point(|e| e.0 <= t).checked_sub(1)
    }

    /// The entry active at `t`, if any.
    pub fn active_at(&self, t: Millis) -> Option<&(Millis, V)> {
        self.active_index(t).map(|i| &self.entries[i])
    }

    /// The value at `t`, or `None` where the default applies.
    pub fn value_at(&self, t: Millis) -> Option<&V> {
        self.active_at(t).map(|e| &e.1)
    }

    /// The first instant after `t` at which an entry activates.
    pub fn next_change_after(&self, t: Millis) -> Option<Millis> {
        let i = self.entries.partition_point(|e| e.0 <= t);
        self.entries.get(i).map(|e| e.0)
    }

    /// The entries that activate after `t`.
    pub fn pending_after(&self, t: Millis) -> &[(Millis, V)] {
        let i = self.entries.partition_point(|e| e.0 <= t);
        &self.entries[i..]
    }

    /// Adds an entry; an entry at the same instant is replaced (the last write
    /// wins). Returns the replaced value.
    pub fn insert(&mut self, at: Millis, value: V) -> Option<V> {
        match self.entries.binary_search_by_key(&at, |e| e.0) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (at, value));
                None
            }
        }
    }

    /// Removes the entry at exactly `at`.
    pub fn remove(&mut self, at: Millis) -> Option<V> {
        let i = self.entries.binary_search_by_key(&at, |e| e.0).ok()?;
        Some(self.entries.remove(i).1)
    }

    /// Drops superseded entries (those activated before the entry active at
    /// `now`), keeping the `keep` most recent of them as history. The active
    /// entry and every pending one always stay, so the value at any instant
    /// from `now` on is unchanged.
    pub fn prune(&mut self, now: Millis, keep: usize) -> usize {
        let Some(active) = self.active_index(now) else {
            return 0;
        };
        let superseded = active.saturating_sub(keep);
        self.entries.drain(..superseded);
        superseded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn entries() -> impl Strategy<Value = Vec<(Millis, u8)>> {
        proptest::collection::vec((0i64..50, any::<u8>()), 0..30)
    }

    /// The definition, straight from DESIGN.md: the last entry with at <= t.
    fn reference(entries: &[(Millis, u8)], t: Millis) -> Option<u8> {
        let mut latest: BTreeMap<Millis, u8> = BTreeMap::new();
        for &(at, v) in entries {
            latest.insert(at, v);
        }
        latest.range(..=t).next_back().map(|(_, v)| *v)
    }

    #[test]
    fn same_instant_keeps_the_last_write() {
        let t: Timeline<u8> = [(5, 1), (5, 2), (3, 9), (5, 3)].into_iter().collect();
        assert_eq!(t.entries(), &[(3, 9), (5, 3)]);
        let mut t = t;
        assert_eq!(t.insert(5, 4), Some(3));
        assert_eq!(t.value_at(5), Some(&4));
    }

    #[test]
    fn prune_keeps_active_and_pending() {
        let mut t: Timeline<u8> = [(1, 1), (2, 2), (3, 3), (10, 10)].into_iter().collect();
        assert_eq!(t.prune(5, 0), 2);
        assert_eq!(t.entries(), &[(3, 3), (10, 10)]);
        // Nothing is active before the first entry: nothing to prune.
        let mut t: Timeline<u8> = [(10, 10)].into_iter().collect();
        assert_eq!(t.prune(5, 0), 0);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn an_entry_decides_from_its_instant_to_the_next() {
        let mut t = Timeline::new();
        t.insert(10, "a");
        t.insert(20, "b");
        assert_eq!(t.value_at(9), None);
        assert_eq!(t.value_at(15), Some(&"a"));
        assert_eq!(t.next_change_after(15), Some(20));
    }

    proptest! {
        #[test]
        fn value_at_is_the_last_entry_at_or_before(es in entries(), t in -5i64..60) {
            let tl: Timeline<u8> = es.iter().copied().collect();
            prop_assert_eq!(tl.value_at(t).copied(), reference(&es, t));
        }

        #[test]
        fn inserting_one_by_one_equals_collecting(es in entries()) {
            let mut one_by_one = Timeline::new();
            for &(at, v) in &es {
                one_by_one.insert(at, v);
            }
            let collected: Timeline<u8> = es.iter().copied().collect();
            prop_assert_eq!(one_by_one, collected);
        }

        #[test]
        fn entries_are_strictly_ordered(es in entries()) {
            let tl: Timeline<u8> = es.into_iter().collect();
            prop_assert!(tl.entries().windows(2).all(|w| w[0].0 < w[1].0));
        }

        #[test]
        fn prune_never_changes_the_present_or_future(es in entries(), now in -5i64..60, keep in 0usize..3) {
            let before: Timeline<u8> = es.into_iter().collect();
            let mut after = before.clone();
            after.prune(now, keep);
            for t in now..70 {
                prop_assert_eq!(before.value_at(t), after.value_at(t));
            }
            // At most `keep` superseded entries remain.
            let superseded = after.entries().iter().filter(|e| e.0 <= now).count().saturating_sub(1);
            prop_assert!(superseded <= keep);
        }

        #[test]
        fn next_change_is_the_first_entry_after(es in entries(), t in -5i64..60) {
            let tl: Timeline<u8> = es.into_iter().collect();
            let expected = tl.entries().iter().map(|e| e.0).find(|&at| at > t);
            prop_assert_eq!(tl.next_change_after(t), expected);
            if let Some(next) = expected {
                // Nothing changes strictly between t and the next change.
                for u in t..next {
                    prop_assert_eq!(tl.value_at(u), tl.value_at(t));
                }
            }
        }
    }
}
