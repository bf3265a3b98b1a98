//! One forwarding store for tests that intercept a call.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use lockstep::schema::Schema;
use lockstep::store::MemoryStore;
use lockstep::store::driver::{BoxFuture, Held, Records, Unplaced};
use lockstep::store::{Committed, Fetch, Fetched, Store, StoredEntry, Write};
use lockstep::{Error, Tick};

/// What one fetch told the store the process held, and whether the store
/// answered unchanged.
pub type Seen = (Option<Held>, bool);

/// A store that forwards every call to a memory store, for tests that
/// intercept one: it may refuse fetches or schemas with a
/// misconfiguration, counts schema publishes, keeps what each fetch said
/// it held, and adds an entry whose instant is not a number to every fetch
/// when asked.
#[derive(Clone)]
pub struct Forwarding {
    inner: MemoryStore,
    /// Fetches fail as with credentials that may not read.
    pub refuse_fetch: bool,
    /// Schema publishes fail as with credentials that may not write.
    pub refuse_schema: bool,
    /// Every fetch answers an entry whose instant is not a number.
    pub unplaced: bool,
    /// Fetches and schema publishes fail as a store that is down does.
    pub down: Arc<AtomicBool>,
    /// How many schema publishes were asked.
    pub schema_publishes: Arc<AtomicUsize>,
    /// Per fetch answered, what it told the store the process held, and
    /// whether the store answered unchanged.
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Forwarding {
    /// Forwards to `inner`, refusing nothing.
    pub fn new(inner: MemoryStore) -> Forwarding {
        Forwarding {
            inner,
            refuse_fetch: false,
            refuse_schema: false,
            unplaced: false,
            down: Arc::default(),
            schema_publishes: Arc::default(),
            seen: Arc::default(),
        }
    }

    /// The memory store it forwards to.
    pub fn inner(&self) -> &MemoryStore {
        &self.inner
    }

    /// What [`seen`](Forwarding::seen) holds, emptied.
    pub fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    fn outage(&self) -> Error {
        Error::Store {
            store: self.describe(),
            message: "connection refused (a test store)".to_owned(),
        }
    }

    fn refused(&self, what: &str) -> Error {
        Error::Misconfigured {
            store: self.describe(),
            message: format!("permission denied to {what} (a test store)"),
        }
    }
}

impl Store for Forwarding {
    fn fetch_with<'a>(&'a self, fetch: Fetch<'a>) -> BoxFuture<'a, Result<Fetched, Error>> {
        Box::pin(async move {
            if self.refuse_fetch {
                return Err(self.refused("read"));
            }
            if self.down.load(Ordering::SeqCst) {
                return Err(self.outage());
            }
            if !self.unplaced {
                let held = fetch.held().cloned();
                let fetched = self.inner.fetch_with(fetch).await?;
                self.seen.lock().unwrap().push((held, fetched.unchanged));
                return Ok(fetched);
            }
            // In full: the entry it adds goes with the registry's.
            let mut fetched = self.inner.fetch_with(fetch.holding(None)).await?;
            fetched.unplaced.insert(
                "value".to_owned(),
                vec![Unplaced {
                    at: "soon".to_owned(),
                    reason: "the instant is not a number".to_owned(),
                }],
            );
            Ok(fetched)
        })
    }

    fn records<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Records, Error>> {
        self.inner.records(namespace)
    }

    fn commit<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<Committed, Error>> {
        self.inner.commit(write)
    }

    fn cancel<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        key: &'a str,
        at: i64,
    ) -> BoxFuture<'a, Result<StoredEntry, Error>> {
        self.inner.cancel(namespace, tick, key, at)
    }

    fn purge<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        key: &'a str,
        at: &'a str,
        undecodable: bool,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.inner.purge(namespace, tick, key, at, undecodable)
    }

    fn namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        self.inner.namespaces()
    }

    fn publish_schema<'a>(&'a self, schema: &'a Schema) -> BoxFuture<'a, Result<(), Error>> {
        self.schema_publishes.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async move { Err(self.outage()) });
        }
        if self.refuse_schema {
            return Box::pin(async move { Err(self.refused("write")) });
        }
        self.inner.publish_schema(schema)
    }

    fn schema<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Option<Schema>, Error>> {
        self.inner.schema(namespace)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
