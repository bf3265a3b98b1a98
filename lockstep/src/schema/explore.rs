//! Which enum variants a trace explores: serde-reflection explores an
//! enum's variants only when it traces the enum on its own, so each pass of
//! a trace offers every enum it meets one variant, and the [`Explorer`]
//! picks which, until every variant of every enum has been seen.

use std::collections::{BTreeMap, BTreeSet};

/// What the passes of one `trace` learnt about the enums they met.
#[derive(Default)]
pub(super) struct Explorer {
    enums: BTreeMap<&'static str, EnumState>,
    /// The enum variants the current pass is inside of.
    stack: Vec<(&'static str, usize)>,
    /// The variant picked for each enum in the current pass.
    picked: BTreeMap<&'static str, usize>,
}

struct EnumState {
    variants: &'static [&'static str],
    seen: BTreeSet<usize>,
    /// The enums met inside each variant.
    reaches: Vec<BTreeSet<&'static str>>,
}

impl Explorer {
    fn incomplete(&self, name: &str) -> bool {
        self.enums
            .get(name)
            .is_some_and(|e| e.seen.len() < e.variants.len())
    }

    /// Meets enum `name` in this pass: which variant to explore, and
    /// whether serde-reflection explores it (only at the first meeting in a
    /// pass; later ones take variant 0).
    pub(super) fn enter(
        &mut self,
        name: &'static str,
        variants: &'static [&'static str],
    ) -> (usize, bool) {
        for (outer, index) in &self.stack {
            if let Some(state) = self.enums.get_mut(outer)
                && let Some(reaches) = state.reaches.get_mut(*index)
            {
                reaches.insert(name);
            }
        }
        if self.picked.contains_key(name) {
            self.stack.push((name, 0));
            return (0, false);
        }
        let state = self.enums.entry(name).or_insert_with(|| EnumState {
            variants,
            seen: BTreeSet::new(),
            reaches: vec![BTreeSet::new(); variants.len()],
        });
        let count = state.variants.len();
        let unseen = (0..count).find(|i| !state.seen.contains(i));
        let state = &self.enums[name];
        let leading = || (0..count).find(|&i| state.reaches[i].iter().any(|e| self.incomplete(e)));
        let index = unseen.or_else(leading).unwrap_or(0);
        if let Some(state) = self.enums.get_mut(name) {
            state.seen.insert(index);
        }
        self.picked.insert(name, index);
        self.stack.push((name, index));
        (index, true)
    }

    pub(super) fn leave(&mut self) {
        self.stack.pop();
    }

    /// Ends a pass; whether every enum met is complete.
    pub(super) fn finish_pass(&mut self) -> bool {
        self.picked.clear();
        self.stack.clear();
        self.enums
            .values()
            .all(|e| e.seen.len() == e.variants.len())
    }

    pub(super) fn order(&self) -> Vec<(&'static str, &'static [&'static str])> {
        self.enums
            .iter()
            .map(|(name, e)| (*name, e.variants))
            .collect()
    }
}
