//! What a store stores and returns (entries, their origins, the fleet's
//! records, the builds' schemas), the limits every store keeps, and the
//! names it accepts.

use crate::error::Error;
use crate::schema::Schema;
use crate::tick::{Millis, Tick};

/// How many superseded entries a field keeps as history. The active entry and
/// every pending one are always kept on top of these.
pub const HISTORY: usize = 16;

/// The most bytes of values a registry's pending entries (those after the
/// store's clock) may hold together: 4 MiB. Every process fetches every
/// pending entry, so a commit that would take the registry beyond it, and
/// adds more than it replaces, is refused whole ([`Error::TooMuchPending`]);
/// a registry already beyond it (data planted by hand, or written by an
/// older lockstep) still takes writes of at most [`SMALL_WRITE_BYTES`], so
/// that its kill switch can be flipped.
pub const MAX_PENDING_BYTES: u64 = 4 << 20;

/// The most bytes of values a write may add to a registry whose pending
/// entries are already beyond [`MAX_PENDING_BYTES`]: 4 KiB, a flag, a
/// number or a short string at a time.
pub const SMALL_WRITE_BYTES: u64 = 4 << 10;

/// The most bytes of values one fetch ships: 8 MiB. Whatever a store holds
/// (data written by hand, or by an older lockstep, beyond
/// [`MAX_PENDING_BYTES`]), a fetch ships its fields smallest first (by the
/// bytes of their values, each counted up to
/// [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES)); a field that does not fit
/// whole is not shipped: each of its entries comes back unreadable
/// ([`not_fetched`]), so the process keeps what it holds of that field
/// alone, and its small fields (a kill switch) still flip on time. It
/// bounds the store's time for one fetch too, so a wide registry never
/// stalls its neighbours on a single-threaded server.
pub const FETCH_BUDGET_BYTES: u64 = 8 << 20;

/// What an entry a fetch did not ship reads as ([`FETCH_BUDGET_BYTES`]),
/// the same from every store: its field's values hold `field_bytes`.
///
/// ```
/// let why = lockstep::store::driver::not_fetched(9_000_000);
/// assert!(why.starts_with("not fetched: its field holds 9000000 bytes"), "{why}");
/// ```
pub fn not_fetched(field_bytes: u64) -> String {
    format!(
        "{NOT_FETCHED}its field holds {field_bytes} bytes of values, and one fetch ships at most \
         {FETCH_BUDGET_BYTES} bytes of a registry's values (its smallest fields first); the \
         process keeps what it holds of the field"
    )
}

/// How [`not_fetched`] begins.
const NOT_FETCHED: &str = "not fetched: ";

/// Whether an entry read as `why` was left out by a fetch's budget
/// ([`not_fetched`]): the store holds it, and will ship it again only
/// once the registry changes.
pub(crate) fn is_not_fetched(why: &str) -> bool {
    why.starts_with(NOT_FETCHED)
}

/// How long the store keeps a build's schema nobody publishes: a week.
/// Only the schemas of builds with live processes count (see
/// [`Builds`](crate::store::builds::Builds)); each live process publishes its own again as soon as a
/// fetch finds it gone ([`Fetch::publishing`](crate::store::fetch::Fetch::publishing)), so the bound only keeps dead builds from piling up.
pub const SCHEMA_KEPT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// One build's schema as the store keeps it: its JSON text, under the
/// text's digest (16 hex digits of its XXH64, seed 0). Each process names
/// its build's digest in its record ([`Process::schema`](crate::store::member::Process::schema)), so tools know
/// which schemas are live and check a value against each (promise 17).
///
/// A stored text that does not hash to its digest (rewritten by hand) is
/// damaged: [`StoredSchema::read`] refuses it, tools do not trust it, and
/// the processes of that build publish theirs again (the store answers a
/// fetch of theirs as not holding it when its length differs).
///
/// ```
/// use lockstep::store::StoredSchema;
///
/// let schema = lockstep::schema::Schema { namespace: "flags".into(), tick_secs: 10, fields: vec![] };
/// let stored = StoredSchema::of(&schema);
/// assert_eq!(stored.digest().len(), 16);
/// assert_eq!(stored.read().unwrap(), schema);
///
/// let damaged = StoredSchema::stored(stored.digest(), stored.json().replace("10", "20"));
/// assert!(damaged.read().unwrap_err().contains("does not match its digest"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSchema {
    digest: String,
    json: String,
}

impl StoredSchema {
    /// `schema` as its build publishes it.
    pub fn of(schema: &Schema) -> StoredSchema {
        let json = serde_json::to_string(schema).unwrap_or_default();
        StoredSchema {
            digest: StoredSchema::digest_of(&json),
            json,
        }
    }

    /// A schema as a store holds it: `json` under `digest`, as read back,
    /// checked only by [`StoredSchema::read`].
    pub fn stored(digest: impl Into<String>, json: impl Into<String>) -> StoredSchema {
        StoredSchema {
            digest: digest.into(),
            json: json.into(),
        }
    }

    /// The digest of a schema's JSON text: 16 lowercase hex digits of its
    /// XXH64 (seed 0).
    pub fn digest_of(json: &str) -> String {
        format!("{:016x}", xxhash_rust::xxh64::xxh64(json.as_bytes(), 0))
    }

    /// The digest it is stored under.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Its JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The schema, if its text hashes to its digest and reads as one.
    pub fn read(&self) -> Result<Schema, String> {
        let digest = StoredSchema::digest_of(&self.json);
        if digest != self.digest {
            return Err(format!(
                "the schema stored under digest {} does not match its digest (its text hashes \
                 to {digest}): it was changed in the store, and is not trusted",
                self.digest
            ));
        }
        serde_json::from_str(&self.json).map_err(|e| {
            format!(
                "the schema stored under digest {} does not read: {e}",
                self.digest
            )
        })
    }
}

/// What a process tells the store about itself with each fetch, for the
/// fleet view: the store keeps it, with the store's clock and the
/// registry's revision the fetch served, until its
/// [`expires_after`](Record::expires_after) has passed without another
/// fetch of that process. Made with [`Record::new`] and never changed
/// after: whether a store can keep it is decided once, by the rule every
/// store shares (a process id that is a name, a body of at most
/// [`MAX_RECORD_BYTES`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    process: String,
    body: String,
    expires_after: Millis,
}

impl Record {
    /// The record of the process `process` (its id, new at each start),
    /// whose `body` is a JSON object (see
    /// [`Process`](crate::store::member::Process) for its fields), kept for
    /// `expires_after` ms after the process's last fetch.
    ///
    /// ```
    /// let record = lockstep::store::driver::Record::new("p1", "{}", 60_000);
    /// assert_eq!(record.process(), "p1");
    /// ```
    pub fn new(
        process: impl Into<String>,
        body: impl Into<String>,
        expires_after: Millis,
    ) -> Record {
        Record {
            process: process.into(),
            body: body.into(),
            expires_after,
        }
    }

    /// The process's id, new at each start.
    pub fn process(&self) -> &str {
        &self.process
    }

    /// The record itself: a JSON object.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// How long the record stays after the process's last fetch (ms).
    pub fn expires_after(&self) -> Millis {
        self.expires_after
    }
}

/// The largest [`Record::body`] a store keeps.
pub const MAX_RECORD_BYTES: usize = 4096;

/// The records of one registry's live processes, and the schemas of its
/// builds, from [`Store::records`](crate::store::contract::Store::records).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    /// The store's clock when it answered, in ms since the Unix epoch.
    pub store_now: Millis,
    /// One per live process, in no particular order.
    pub records: Vec<StoredRecord>,
    /// The schemas the store keeps for the registry's builds, by digest
    /// (see [`Store::publish_schema`](crate::store::contract::Store::publish_schema)), in no particular order; empty from a
    /// store that keeps only the latest.
    pub schemas: Vec<StoredSchema>,
}

/// One process's record, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// [`Record::process`].
    pub process: String,
    /// When the process last fetched, by the store's clock (ms).
    pub seen: Millis,
    /// The registry's revision that fetch served: the process holds every
    /// entry of that revision or older.
    pub revision: u64,
    /// [`Record::body`].
    pub body: String,
}

/// A stored entry whose instant is not a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    /// The instant as stored.
    pub at: String,
    /// Why it cannot be placed.
    pub reason: String,
}

/// A registry's incarnation in a store: a new epoch means the store lost
/// what it held (a restart without persistence, a flush, a failover to an
/// empty replica) and was written again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Epoch {
    /// A random id.
    pub id: String,
    /// When it was created, by the store's clock.
    pub created: Millis,
}

/// One entry as stored: its instant and its value as JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// When it activates.
    pub at: Millis,
    /// The value as JSON text, or why the stored entry cannot be read.
    pub value: Result<String, String>,
    /// Who wrote it and when, where the store keeps that.
    pub origin: Option<Origin>,
}

/// Who wrote an entry, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The write's id.
    pub write: String,
    /// When it was committed, by the store's clock.
    pub written_at: Millis,
    /// The writer (see [`Write::by`](crate::store::write::Write::by)).
    pub by: String,
    /// The registry's revision this write made (see
    /// [`Fetched::revision`](crate::store::fetch::Fetched::revision)); 0 for entries written before stores kept it.
    pub revision: u64,
}

/// Refuses names the store layout cannot hold: a namespace or key is 1 to
/// 100 ASCII letters, digits, `_` and `-`.
pub fn check_name(what: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: what.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// Refuses a cancel of an entry before the horizon of `now`.
pub fn check_cancel(namespace: &str, tick: Tick, at: Millis, now: Millis) -> Result<(), Error> {
    let horizon = tick.horizon(now);
    if at < horizon {
        return Err(Error::BeforeHorizon {
            namespace: namespace.to_owned(),
            requested: crate::tick::to_datetime(at),
            earliest: crate::tick::to_datetime(horizon),
            tick,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("namespace", "flags_2-b").is_ok());
        for bad in ["", "a.b", "{x}", "a*", "a b", &"x".repeat(101)] {
            assert!(check_name("namespace", bad).is_err(), "{bad}");
        }
    }
}
