//! Stores: where a registry's timelines live, for tools that read and
//! write them (the `lockstep` command, a deploy script, a test): open one by
//! URL, fetch a registry, commit a [`Write`], see the [`Fleet`]. Those who
//! write a store of their own find the rest of the contract in [`driver`].
//!
//! A store fetches a whole registry in one call, commits a set of entries
//! atomically with the horizon checked by the store's own clock, cancels a
//! pending entry, and keeps the schema registries publish for tools.
//! Stores speak raw JSON text; decoding into the fields' types is the
//! registry's business, so a value one process cannot decode hurts no other.

mod builds;
mod contract;
pub mod driver;
mod fetch;
mod fleet;
pub(crate) mod kind;
mod member;
pub(crate) mod memory;
#[cfg(test)]
pub(crate) mod model;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod reporting;
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
pub(crate) mod sql;
mod stored;
pub(crate) mod url;
mod write;

pub use crate::error::Refusal;
pub use crate::tick::{Millis, from_datetime, to_datetime};
pub use builds::{Build, Builds};
pub use contract::Store;
pub use fetch::{FETCH_DEADLINE, Fetch, Fetched};
pub use fleet::{Fleet, PendingChange, fleet};
pub use kind::supported_schemes;
pub(crate) use member::EXPIRY_TICKS;
pub use member::{Process, Refused};
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
pub(crate) use stored::is_not_fetched;
pub use stored::{HISTORY, Origin, StoredEntry, StoredSchema};
use url::StoreUrl;
pub use url::{redact, scheme, scrub, secrets};
pub use write::{Committed, MAX_INSTANT, MAX_STEPS, Step, StepAt, Write, WriteBuilder};

use std::sync::Arc;

use crate::error::Error;

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

/// Opens the store at `url`, its clock `clock` (a memory store's: a
/// registry's manual clock).
pub(crate) fn open_with(
    url: &str,
    clock: &crate::clock::ClockSource,
) -> Result<Arc<dyn Store>, Error> {
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
