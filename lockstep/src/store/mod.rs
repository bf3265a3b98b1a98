//! Stores: where a registry's timelines live, for tools and for those who
//! implement a store of their own.
//!
//! A store fetches a whole registry in one call, commits a set of entries
//! atomically with the horizon checked by the store's own clock, cancels a
//! pending entry, and keeps the schema registries publish for tools.
//! Stores speak raw JSON text; decoding into the fields' types is the
//! registry's business, so a value one process cannot decode hurts no other.

mod builds;
mod fetch;
mod fleet;
pub(crate) mod kind;
pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod reporting;
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
pub(crate) mod sql;
pub mod url;
mod write;

pub use crate::error::Refusal;
pub use crate::tick::{from_datetime, to_datetime};
pub use builds::{Build, Builds};
pub use fetch::{FETCH_DEADLINE, Fetch, Fetched, Held};
pub(crate) use fleet::EXPIRY_TICKS;
pub use fleet::{Fleet, PendingChange, Process, Refused, fleet};
pub use kind::supported_schemes;
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
pub use sql::SqlStore;
#[cfg(feature = "mysql")]
pub use sql::mysql::{Mysql, MysqlStore};
#[cfg(feature = "postgres")]
pub use sql::postgres::{Postgres, PostgresStore};
#[cfg(feature = "sqlite")]
pub use sql::sqlite::{Sqlite, SqliteStore};
use url::StoreUrl;
pub use url::redact;
pub(crate) use write::new_write_id;
pub use write::{
    Committed, MAX_INSTANT, MAX_STEPS, Step, StepAt, Write, WriteBuilder, resolve_instants,
};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Error;
use crate::schema::Schema;
use crate::tick::{Millis, Tick};

/// A boxed future, as stores return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How many superseded entries a field keeps as history. The active entry and
/// every pending one are always kept on top of these.
pub const HISTORY: usize = 16;

/// A store of registries.
pub trait Store: Send + Sync + 'static {
    /// The timelines of the fields of one registry, in one round trip, as
    /// `fetch` asks (see [`Fetch`]): with its report, the same round trip
    /// records that this process fetched them, for the fleet view
    /// ([`fleet()`]); with what the caller holds, a store may answer
    /// [`Fetched::unchanged`] (answering in full is always correct).
    fn fetch_with<'a>(&'a self, fetch: Fetch<'a>) -> BoxFuture<'a, Result<Fetched, Error>>;

    /// The fields `keys` of `namespace` in full, without a report, as
    /// tools fetch.
    fn fetch<'a>(
        &'a self,
        namespace: &'a str,
        keys: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Fetched, Error>> {
        self.fetch_with(Fetch::new(namespace, keys))
    }

    /// The records of the processes that fetched `namespace` with a report
    /// and whose record has not expired, by the store's clock, and the
    /// schemas of the registry's builds, in one round trip where the store
    /// allows it.
    fn reports<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Reports, Error>>;

    /// Commits every step of `write` atomically, or nothing. Instants are
    /// resolved and checked against the horizon by the store's clock.
    fn commit<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<Committed, Error>>;

    /// Removes the entry of `key` at `at`, which must be at or beyond the
    /// horizon; returns the entry removed, as it was stored.
    fn cancel<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        key: &'a str,
        at: Millis,
    ) -> BoxFuture<'a, Result<StoredEntry, Error>>;

    /// Removes an entry no process can use: the one of `key` stored under
    /// the instant `at`, as the store keeps it (the text of
    /// [`Unplaced::at`], or a [`StoredEntry::at`] in decimal). An entry whose
    /// instant or envelope the store cannot read goes whatever its instant;
    /// one the store can read goes only at or beyond the horizon, unless the
    /// caller found that its value does not decode as the field's type
    /// (`undecodable`): an entry any process may be serving is never removed.
    fn purge<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        key: &'a str,
        at: &'a str,
        undecodable: bool,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// The namespaces the store holds, sorted.
    fn namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, Error>>;

    /// Stores `schema` so that tools can read it: as the registry's latest
    /// ([`Store::schema`]), and as its build's among the schemas of every
    /// build, by digest ([`StoredSchema`], read back in
    /// [`Reports::schemas`]); in the same call, removes the builds' schemas
    /// nobody published in the last [`SCHEMA_KEPT`]. A live process whose
    /// build's schema is gone publishes it again after its next fetch (see
    /// [`Fetch::publishing`]).
    fn publish_schema<'a>(&'a self, schema: &'a Schema) -> BoxFuture<'a, Result<(), Error>>;

    /// The schema of `namespace` published last, if any.
    fn schema<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Option<Schema>, Error>>;

    /// The store's name for logs and errors, never with a password.
    fn describe(&self) -> String;

    /// How many fetches this store's replica could not serve, answered by
    /// another server instead (see [`Status::replica_fallbacks`](crate::Status::replica_fallbacks));
    /// 0 for a store without replicas.
    fn replica_fallbacks(&self) -> u64 {
        0
    }

    /// How many fetches a replica of this store could not serve because it
    /// was promoted or follows another primary (see
    /// [`Status::replica_failovers`](crate::Status::replica_failovers)); 0
    /// for a store without replicas.
    fn replica_failovers(&self) -> u64 {
        0
    }
}

/// A shared store is a store: `Arc<RedisStore>` and `Arc<dyn Store>` serve
/// wherever a store is asked for.
impl<S: Store + ?Sized> Store for Arc<S> {
    fn fetch_with<'a>(&'a self, fetch: Fetch<'a>) -> BoxFuture<'a, Result<Fetched, Error>> {
        (**self).fetch_with(fetch)
    }

    fn reports<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Reports, Error>> {
        (**self).reports(namespace)
    }

    fn commit<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<Committed, Error>> {
        (**self).commit(write)
    }

    fn cancel<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        key: &'a str,
        at: Millis,
    ) -> BoxFuture<'a, Result<StoredEntry, Error>> {
        (**self).cancel(namespace, tick, key, at)
    }

    fn purge<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        key: &'a str,
        at: &'a str,
        undecodable: bool,
    ) -> BoxFuture<'a, Result<(), Error>> {
        (**self).purge(namespace, tick, key, at, undecodable)
    }

    fn namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        (**self).namespaces()
    }

    fn publish_schema<'a>(&'a self, schema: &'a Schema) -> BoxFuture<'a, Result<(), Error>> {
        (**self).publish_schema(schema)
    }

    fn schema<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Option<Schema>, Error>> {
        (**self).schema(namespace)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }

    fn replica_fallbacks(&self) -> u64 {
        (**self).replica_fallbacks()
    }

    fn replica_failovers(&self) -> u64 {
        (**self).replica_failovers()
    }
}

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
/// let why = lockstep::store::not_fetched(9_000_000);
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
/// [`Builds`]); each live process publishes its own again as soon as a
/// fetch finds it gone ([`Fetch::publishing`]), so the bound only keeps dead builds from piling up.
pub const SCHEMA_KEPT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// One build's schema as the store keeps it: its JSON text, under the
/// text's digest (16 hex digits of its XXH64, seed 0). Each process names
/// its build's digest in its record ([`Process::schema`]), so tools know
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
/// let schema = lockstep::Schema { namespace: "flags".into(), tick_secs: 10, fields: vec![] };
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
/// registry's revision the fetch served, until `expires_after` has passed
/// without another fetch of that process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The process's id, new at each start (see [`Process`]).
    pub process: String,
    /// The process's record: a JSON object of at most [`MAX_REPORT_BYTES`]
    /// (see [`Process`] for its fields).
    pub body: String,
    /// How long the record stays after the process's last fetch.
    pub expires_after: Millis,
}

/// The largest [`Report::body`] a store keeps.
pub const MAX_REPORT_BYTES: usize = 4096;

/// The records of one registry's live processes, and the schemas of its
/// builds, from [`Store::reports`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reports {
    /// The store's clock when it answered, in ms since the Unix epoch.
    pub store_now: Millis,
    /// One per live process, in no particular order.
    pub records: Vec<Reported>,
    /// The schemas the store keeps for the registry's builds, by digest
    /// (see [`Store::publish_schema`]), in no particular order; empty from a
    /// store that keeps only the latest.
    pub schemas: Vec<StoredSchema>,
}

/// One process's record, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    /// [`Report::process`].
    pub process: String,
    /// When the process last fetched, by the store's clock (ms).
    pub seen: Millis,
    /// The registry's revision that fetch served: the process holds every
    /// entry of that revision or older.
    pub revision: u64,
    /// [`Report::body`].
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
    /// The writer (see [`Write::by`]).
    pub by: String,
    /// The registry's revision this write made (see
    /// [`Fetched::revision`]); 0 for entries written before stores kept it.
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

/// Opens the store at `url` (`memory://…`, `redis://…`, `rediss://…`,
/// `redis+unix://…`, `redis+cluster://…`, `postgres://…`, `sqlite://…`), as
/// registries do: for tools that read and write stores without a registry,
/// like the `lockstep` command. The URL's scheme picks the store, whatever
/// store a registry declares; a scheme whose cargo feature is off is
/// refused, naming the feature. Does not connect yet: the first call does.
/// Call it within a Tokio runtime (the Redis client keeps its connection on
/// it).
///
/// ```
/// let store = lockstep::store::open("memory://docs").unwrap();
/// assert_eq!(store.describe(), "memory://docs");
/// assert!(lockstep::store::open("mongodb://db").is_err());
/// ```
pub fn open(url: &str) -> Result<Arc<dyn Store>, Error> {
    open_with(url, &crate::clock::ClockSource::System)
}

/// Opens the store at `url`.
pub(crate) async fn connect(
    url: &str,
    clock: &crate::clock::ClockSource,
) -> Result<Arc<dyn Store>, Error> {
    open_with(url, clock)
}

fn open_with(url: &str, clock: &crate::clock::ClockSource) -> Result<Arc<dyn Store>, Error> {
    let parsed = StoreUrl::parse(url);
    let (kind, scheme) = kind::check(&parsed)?;
    let Some(open) = kind.open else {
        return Err(Error::Url {
            url: parsed.redacted(),
            reason: format!(
                "{}: URLs need the cargo feature `{}` of lockstep",
                scheme.name, kind.feature
            ),
        });
    };
    // Whatever a driver said about the URL, its secrets go.
    open(url, clock).map_err(|e| url::scrub_error(e, &parsed))
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
