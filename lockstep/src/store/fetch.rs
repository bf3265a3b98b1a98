//! One fetch: what a process asks of a store each tick ([`Fetch`]), and
//! what the store answers ([`Fetched`]).

use std::collections::BTreeMap;
use std::time::Duration;

use super::stored::{
    Epoch, FETCH_BUDGET_BYTES, Record, StoredEntry, StoredSchema, Unplaced, not_fetched,
};
use crate::value::MAX_VALUE_BYTES;

/// How long a fetch waits for its answer unless told otherwise: the
/// longest deadline of any tick ([`Tick::fetch_timeout`](crate::Tick::fetch_timeout)).
pub const FETCH_DEADLINE: Duration = Duration::from_secs(5);

/// One fetch of a registry's fields, as [`Store::fetch_with`](super::Store::fetch_with)
/// takes it: which fields, and optionally the process's record, what it
/// already holds, and how long it waits.
///
/// ```
/// use std::time::Duration;
/// use lockstep::store::Fetch;
/// use lockstep::store::driver::Held;
///
/// let held = Held { epoch: "e1".into(), revision: 7 };
/// let fetch = Fetch::new("flags", &["percent"])
///     .holding(Some(&held))
///     .within(Duration::from_millis(250));
/// assert_eq!(fetch.namespace(), "flags");
/// assert_eq!(fetch.held(), Some(&held));
/// assert_eq!(fetch.record(), None);
/// assert_eq!(fetch.deadline(), Duration::from_millis(250));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Fetch<'a> {
    namespace: &'a str,
    keys: &'a [&'a str],
    record: Option<&'a Record>,
    held: Option<&'a Held>,
    schema: Option<&'a StoredSchema>,
    deadline: Duration,
}

impl<'a> Fetch<'a> {
    /// The fields `keys` of `namespace`, in full, without a record, within
    /// [`FETCH_DEADLINE`].
    pub fn new(namespace: &'a str, keys: &'a [&'a str]) -> Fetch<'a> {
        Fetch {
            namespace,
            keys,
            record: None,
            held: None,
            schema: None,
            deadline: FETCH_DEADLINE,
        }
    }

    /// Reporting the process's [`Record`], which the store keeps in the
    /// same round trip; `None` reports nothing.
    pub fn reporting(mut self, record: Option<&'a Record>) -> Fetch<'a> {
        self.record = record;
        self
    }

    /// Conditional on what the caller holds: when the registry's epoch and
    /// revision are still those of `held`, the store may answer
    /// [`Fetched::unchanged`], with its clock, the epoch, the revision and
    /// [`Fetched::schema_held`] but no entries, at a cost that does not
    /// grow with the registry. Still one round trip, and the report is
    /// recorded either way. `None` asks for everything.
    pub fn holding(mut self, held: Option<&'a Held>) -> Fetch<'a> {
        self.held = held;
        self
    }

    /// With the schema the caller's build publishes: then
    /// [`Fetched::schema_held`] says whether the store holds that very
    /// schema (its digest, with a text of its length), and the caller
    /// publishes it again when not. `None` (tools): whether the store holds
    /// any schema of the namespace.
    pub fn publishing(mut self, schema: Option<&'a StoredSchema>) -> Fetch<'a> {
        self.schema = schema;
        self
    }

    /// Waits at most `deadline` for the answer. The caller keeps the
    /// deadline; a store that can answer from more than one server gives
    /// each a share of it, so that one that does not answer leaves time to
    /// ask another.
    pub fn within(mut self, deadline: Duration) -> Fetch<'a> {
        self.deadline = deadline;
        self
    }

    /// The registry's namespace.
    pub fn namespace(&self) -> &'a str {
        self.namespace
    }

    /// The fields' keys.
    pub fn keys(&self) -> &'a [&'a str] {
        self.keys
    }

    /// The record to keep, if any.
    pub fn record(&self) -> Option<&'a Record> {
        self.record
    }

    /// What the caller holds, if it asks conditionally.
    pub fn held(&self) -> Option<&'a Held> {
        self.held
    }

    /// The schema the caller's build publishes, if it said.
    pub fn schema(&self) -> Option<&'a StoredSchema> {
        self.schema
    }

    /// How long the caller waits for the answer.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}

/// What one fetch returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fetched {
    /// The store's clock when it answered, in microseconds since the Unix
    /// epoch, if it said.
    pub store_micros: Option<i64>,
    /// The registry's epoch: created when it was first written, it changes
    /// only when the store lost its data.
    pub epoch: Option<Epoch>,
    /// Each field's entries by key, ordered by instant.
    pub fields: BTreeMap<String, Vec<StoredEntry>>,
    /// Per key, the entries whose instant is not a number: they have no
    /// place on a timeline, and tools show them so they can be purged.
    pub unplaced: BTreeMap<String, Vec<Unplaced>>,
    /// Whether the store holds a schema of the namespace and, when the
    /// fetch named one ([`Fetch::publishing`]), that very schema (its
    /// digest, with a text of its length); a registry publishes its own again when it does not (a
    /// store that was down at start-up, lost its data, dropped a schema
    /// nobody published for [`SCHEMA_KEPT`](super::stored::SCHEMA_KEPT), or holds it
    /// changed by hand).
    pub schema_held: bool,
    /// The registry's revision: every commit, cancel and purge advances it,
    /// and each entry carries the revision that wrote it
    /// ([`Origin::revision`](super::Origin::revision)). 0 for a registry never written.
    pub revision: u64,
    /// Whether the store answered a conditional fetch
    /// ([`Fetch::holding`]) with "unchanged": the registry's
    /// epoch and revision are those the caller holds, so `fields` and
    /// `unplaced` are left empty, and what the caller holds is what a full
    /// fetch would return.
    pub unchanged: bool,
}

impl Fetched {
    /// What a caller holds once it has applied this fetch whole: its epoch
    /// and revision, to pass to the next conditional fetch ([`Fetch::holding`]).
    /// `None` for a registry never written (nothing to hold).
    ///
    /// ```
    /// use lockstep::store::Fetched;
    /// use lockstep::store::driver::{Epoch, Held};
    ///
    /// let fetched = Fetched {
    ///     epoch: Some(Epoch { id: "e1".into(), created: 0 }),
    ///     revision: 7,
    ///     ..Fetched::default()
    /// };
    /// assert_eq!(fetched.held(), Some(Held { epoch: "e1".into(), revision: 7 }));
    /// assert_eq!(Fetched::default().held(), None);
    /// ```
    pub fn held(&self) -> Option<Held> {
        self.epoch.as_ref().map(|epoch| Held {
            epoch: epoch.id.clone(),
            revision: self.revision,
        })
    }

    /// Whether this answer is for the registry as `held` says: its epoch and
    /// revision.
    ///
    /// ```
    /// use lockstep::store::Fetched;
    /// use lockstep::store::driver::{Epoch, Held};
    ///
    /// let fetched = Fetched {
    ///     epoch: Some(Epoch { id: "e1".into(), created: 0 }),
    ///     revision: 7,
    ///     ..Fetched::default()
    /// };
    /// assert!(fetched.is_at(&Held { epoch: "e1".into(), revision: 7 }));
    /// assert!(!fetched.is_at(&Held { epoch: "e2".into(), revision: 7 }));
    /// assert!(!fetched.is_at(&Held { epoch: "e1".into(), revision: 8 }));
    /// ```
    pub fn is_at(&self, held: &Held) -> bool {
        self.revision == held.revision && self.epoch.as_ref().is_some_and(|e| e.id == held.epoch)
    }
}

/// What a process holds of a registry, for a conditional fetch
/// ([`Fetch::holding`]): the epoch and revision of the last fetch
/// it applied whole. The epoch is compared too: a store that lost its data
/// and was written again starts its revisions over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// [`Epoch::id`].
    pub epoch: String,
    /// [`Fetched::revision`].
    pub revision: u64,
}

/// Keeps a fetch within [`FETCH_BUDGET_BYTES`]: the fields of `fields`,
/// smallest first by the bytes of their values (each counted as 0 when over
/// [`MAX_VALUE_BYTES`], since such a value is never shipped; ties by key),
/// are shipped while the running total stays within the budget; every
/// entry of a field past it becomes unreadable ([`not_fetched`]). What every
/// store does, here for one that has its entries at hand (the memory
/// store); the others do it on the server, so that what is not shipped is
/// not read either.
pub(crate) fn within_budget(fields: &mut BTreeMap<String, Vec<StoredEntry>>) {
    let bytes = |entries: &[StoredEntry]| -> u64 {
        entries
            .iter()
            .filter_map(|e| e.value.as_ref().ok())
            .map(|v| {
                if v.len() > MAX_VALUE_BYTES {
                    0
                } else {
                    v.len() as u64
                }
            })
            .sum()
    };
    let mut sizes: Vec<(u64, String)> = fields
        .iter()
        .map(|(key, entries)| (bytes(entries), key.clone()))
        .collect();
    sizes.sort();
    let mut total = 0u64;
    for (size, key) in sizes {
        total = total.saturating_add(size);
        if total > FETCH_BUDGET_BYTES
            && let Some(entries) = fields.get_mut(&key)
        {
            for entry in entries {
                entry.value = Err(not_fetched(size));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(values: &[usize]) -> Vec<StoredEntry> {
        values
            .iter()
            .enumerate()
            .map(|(i, len)| StoredEntry {
                at: i as i64,
                value: Ok("x".repeat(*len)),
                origin: None,
            })
            .collect()
    }

    #[test]
    fn a_fetch_ships_the_smallest_fields_whole_within_its_budget() {
        let big = 50_000;
        // 100 entries of 50 000 bytes: 5 MB a field.
        let mut fields = BTreeMap::from([
            ("kill".to_owned(), entries(&[4])),
            ("b".to_owned(), entries(&[big; 100])),
            ("a".to_owned(), entries(&[big; 100])),
            // Over the value limit: never shipped, so it weighs nothing.
            ("huge".to_owned(), entries(&[MAX_VALUE_BYTES + 1])),
        ]);
        within_budget(&mut fields);
        let shipped = |key: &str| fields[key].iter().all(|e| e.value.is_ok());
        assert!(shipped("kill") && shipped("a") && shipped("huge"));
        // `b` ties `a` and comes after it: 10 MB would not fit.
        assert!(
            fields["b"]
                .iter()
                .all(|e| e.value.as_ref().unwrap_err() == &not_fetched(5_000_000))
        );
        assert!(crate::store::stored::is_not_fetched(&not_fetched(1)));
    }
}
