//! The store contract: what a store does for registries and tools, the
//! [`Store`] trait. Its required methods are the calls a store makes; the
//! rest are provided, and an `Arc` of a store is one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::fetch::{Fetch, Fetched};
use super::stored::{Records, StoredEntry};
use super::write::{Committed, Write};
use crate::error::Error;
use crate::schema::Schema;
use crate::tick::{Millis, Tick};

/// A boxed future, as stores return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store of registries.
pub trait Store: Send + Sync + 'static {
    /// The timelines of the fields of one registry, in one round trip, as
    /// `fetch` asks (see [`Fetch`]): with its record, the same round trip
    /// keeps that this process fetched them, for the fleet view
    /// ([`fleet()`](crate::store::fleet::fleet)); with what the caller holds, a store may answer
    /// [`Fetched::unchanged`] (answering in full is always correct).
    fn fetch_with<'a>(&'a self, fetch: Fetch<'a>) -> BoxFuture<'a, Result<Fetched, Error>>;

    /// The fields `keys` of `namespace` in full, without a record, as
    /// tools fetch.
    fn fetch<'a>(
        &'a self,
        namespace: &'a str,
        keys: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Fetched, Error>> {
        self.fetch_with(Fetch::new(namespace, keys))
    }

    /// The records of the processes that fetched `namespace` with one
    /// and whose record has not expired, by the store's clock, and the
    /// schemas of the registry's builds, in one round trip where the store
    /// allows it.
    fn records<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Records, Error>>;

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
    /// [`Unplaced::at`](crate::store::stored::Unplaced::at), or a [`StoredEntry::at`] in decimal). An entry whose
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
    /// build, by digest ([`StoredSchema`](crate::store::stored::StoredSchema), read back in
    /// [`Records::schemas`]); in the same call, removes the builds' schemas
    /// nobody published in the last [`SCHEMA_KEPT`](crate::store::stored::SCHEMA_KEPT). A live process whose
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

    fn records<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Records, Error>> {
        (**self).records(namespace)
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
