//! SQL stores: PostgreSQL (`postgres://`), SQLite (`sqlite://`) and MySQL or
//! MariaDB (`mysql://`, `mariadb://`), through sqlx: one generic
//! [`SqlStore`] over a [`Dialect`](dialect::Dialect) per database.
//!
//! # Layout
//!
//! Five tables, created on first use when missing (each store's `LAYOUT`
//! and `docs/stores.md` give the SQL, for a database administrator who would
//! rather create them by hand):
//!
//! | table | one row per | columns |
//! |---|---|---|
//! | `lockstep_entries` | entry | `namespace`, `field`, `at_ms` (the instant, ms since the Unix epoch), `value` (JSON text, as written), `write_id`, `written_at` (ms, the database's clock), `writer`, `revision` (the registry's revision its write made); primary key `(namespace, field, at_ms)` |
//! | `lockstep_meta` | registry | `namespace` (primary key), `epoch` (random id, `NULL` until the first write), `created` (ms, the database's clock), `revision` (0 until the first write), `schema` (JSON) |
//! | `lockstep_writes` | write | `namespace`, `write_id` (primary key together), `instants` (comma-separated ms), `written_at`; kept a day so a retried write takes effect once |
//! | `lockstep_reports` | process fetching a registry with a report | `namespace`, `process` (primary key together), `seen` (ms, the database's clock), `revision` (the one its fetch served), `expires` (ms), `body` (JSON); index `(namespace, expires)` |
//! | `lockstep_schemas` | build of a registry ([`StoredSchema`]) | `namespace`, `digest` (primary key together), `schema` (JSON), `published` (ms, the database's clock, when it was last published) |
//!
//! Tables of an earlier layout (without `revision`, `lockstep_reports` or
//! `lockstep_schemas`) are upgraded in place when a store connects: the
//! missing tables and columns are added, and what they held reads with
//! revision 0.
//!
//! A fetch is one `SELECT`: a row with the database's clock, the epoch and
//! the revision, `UNION ALL` the entries of the fields asked for, read
//! through the primary key. A conditional fetch reads the entries only if the
//! registry's row does not have the epoch and revision held, in the same
//! statement: unchanged, it reads one row. The same statement keeps the fetch
//! within [`FETCH_BUDGET_BYTES`](crate::store::stored::FETCH_BUDGET_BYTES): each field's
//! bytes are the lengths of its values (one over
//! [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES) counts as 0: it is never
//! shipped), the fields are taken smallest first, ties by name byte for byte,
//! and a field is shipped whole while the running total of their bytes, its
//! own included, is within the budget; each entry of a field past it comes
//! back with its instant and origin, no value, and its field's bytes, and
//! reads as [`not_fetched`](crate::store::stored::not_fetched). Each dialect measures the
//! values without reading them where the database allows it (PostgreSQL:
//! `octet_length` reads a value kept apart by its pointer; SQLite: by its
//! record's header, the value the row's last column; MySQL: by the
//! `value_bytes` every write stores), and reads no value of a field not
//! shipped. A fetch with a report also records it,
//! with the revision it serves (never a newer one), and deletes a few expired
//! records of the registry, in the same round trip where the database allows
//! it (PostgreSQL: one statement; MySQL: one text of several statements;
//! SQLite: one transaction on the local file); a database that refuses the
//! record (read-only credentials) gets the fetch again without it (see
//! `store::reporting`). A commit is one transaction that holds the registry's write
//! lock (PostgreSQL and MySQL: its `lockstep_meta` row, locked by an upsert
//! that also creates the epoch and advances the revision; SQLite: `BEGIN
//! IMMEDIATE`, the database's write lock), reads the database's clock,
//! refuses instants before its horizon, sums the values of the registry's
//! pending entries (after that clock) and of those the write replaces (the
//! same field and instant; one query), and refuses a write that would take
//! them beyond [`MAX_PENDING_BYTES`](crate::store::stored::MAX_PENDING_BYTES) while adding
//! more than it replaces, unless it adds at most
//! [`SMALL_WRITE_BYTES`](crate::store::stored::SMALL_WRITE_BYTES) to a registry already
//! beyond it ([`Error::TooMuchPending`]), writes every entry with
//! the new revision (the same field and instant keeps the last write), prunes
//! history beyond the active entry plus [`HISTORY`] superseded ones, records
//! the write id, and reads the clock once more just before `COMMIT`: if a
//! tick boundary passed meanwhile and an instant is now before the horizon,
//! it rolls back and starts again, so no committed entry is ever before the
//! horizon of its commit. A cancel or purge advances the revision in its
//! transaction too; whatever is refused rolls back, revision and all.
//!
//! A fetch never ships a value over [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES):
//! the database sends its size instead, and the entry comes back as
//! unreadable ("N bytes, over the limit"); commits refuse such values.
//! The first row of a fetch also says whether the schema is held
//! ([`Fetched::schema_held`]): for a fetch that names its build's
//! ([`Fetch::publishing`]), whether `lockstep_schemas` has its digest with a
//! text of its length in bytes (one lookup of the primary key, so a schema
//! changed by hand is published again); for one that names none, whether
//! `lockstep_meta` has a schema. Publishing a schema stores it as the
//! registry's latest in `lockstep_meta` and as its build's in
//! `lockstep_schemas`, and deletes the registry's schemas nobody published
//! for [`SCHEMA_KEPT`](crate::store::stored::SCHEMA_KEPT), in one transaction;
//! [`Store::reports`] reads the records and every build's schema in one
//! `SELECT`. Instants are integers in every dialect, so
//! [`Fetched::unplaced`] stays empty.
//!
//! Each dialect (`postgres.rs`, `sqlite.rs`, `mysql.rs`) says how one step
//! is done in its SQL; the order of the steps is in `calls.rs`, once.

#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

mod calls;
mod dialect;
mod link;

use std::sync::Arc;

use super::reporting::Reporting;
use crate::error::Error;
use crate::schema::Schema;
use crate::store::contract::{BoxFuture, Store};
use crate::store::fetch::{Fetch, Fetched};
use crate::store::stored::{Records, StoredEntry, StoredSchema, check_name};
use crate::store::write::{Committed, Write};
use crate::tick::{Millis, Tick};

use calls::Values;
use dialect::{Class, Dialect, Kind};
use link::{Failure, Link};

/// A store in a SQL database: one type for every database, aliased per
/// database ([`PostgresStore`](super::PostgresStore),
/// [`SqliteStore`](super::SqliteStore), [`MysqlStore`](super::MysqlStore)),
/// as sqlx aliases its pools.
///
/// Does not connect until its first call. Keeps up to two connections open
/// between calls; a registry that only reads holds one.
pub struct SqlStore<D: dialect::Dialect> {
    link: Arc<Link<D>>,
    reporting: Arc<Reporting>,
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        SqlStore {
            link: self.link.clone(),
            reporting: self.reporting.clone(),
        }
    }
}

impl<D: Dialect> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("url", &self.link.shown())
            .finish_non_exhaustive()
    }
}

impl<D: Dialect> SqlStore<D> {
    fn with(dialect: D, url: &str) -> SqlStore<D> {
        SqlStore {
            link: Arc::new(Link::new(dialect, url)),
            reporting: Arc::default(),
        }
    }

    /// Runs one statement with `values` on a connection, sent again after a
    /// broken idle connection.
    async fn one(
        &self,
        stmt: &'static dialect::Stmt,
        values: Values<'_>,
        kinds: &'static [Kind],
    ) -> Result<dialect::Out, Error> {
        let values = &values;
        self.link
            .call(true, |mut c| {
                Box::pin(async move {
                    let result = calls::run::<D>(&mut c, stmt, values, kinds).await;
                    (c, result.map_err(Failure::Sql))
                })
            })
            .await
    }
}

impl<D: Dialect> Store for SqlStore<D> {
    fn fetch_with<'a>(&'a self, fetch: Fetch<'a>) -> BoxFuture<'a, Result<Fetched, Error>> {
        Box::pin(async move {
            let (namespace, keys, held) = (fetch.namespace(), fetch.keys(), fetch.held());
            let schema = fetch.schema();
            let report = fetch.record();
            check_name("namespace", namespace)?;
            let report = self.reporting.send(namespace, report);
            // A fetch only reads, and its record replaces the process's
            // own: safe to send again.
            self.link
                .call(true, |mut c| {
                    Box::pin(async move {
                        let result =
                            calls::fetch::<D>(&mut c, namespace, keys, report, held, schema).await;
                        let result = match result {
                            // The statement refused on a connection that
                            // is fine: read-only credentials, a read-only
                            // database or transaction, a full disk.
                            Err(Failure::Sql(e))
                                if report.is_some()
                                    && matches!(
                                        D::class(&e),
                                        Class::Misconfigured | Class::Refused
                                    ) =>
                            {
                                self.reporting.refused(namespace, &e.to_string());
                                calls::fetch::<D>(&mut c, namespace, keys, None, held, schema).await
                            }
                            result => result,
                        };
                        (c, result)
                    })
                })
                .await
        })
    }

    fn records<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Records, Error>> {
        Box::pin(async move {
            check_name("namespace", namespace)?;
            self.link
                .call(true, |mut c| {
                    Box::pin(async move {
                        let result = calls::records::<D>(&mut c, namespace).await;
                        (c, result)
                    })
                })
                .await
        })
    }

    fn commit<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<Committed, Error>> {
        Box::pin(async move {
            // The write id makes a commit sent again take effect once.
            self.link
                .call(true, |mut c| {
                    Box::pin(async move {
                        let result = calls::commit::<D>(&mut c, write).await;
                        (c, result)
                    })
                })
                .await
        })
    }

    fn cancel<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        key: &'a str,
        at: Millis,
    ) -> BoxFuture<'a, Result<StoredEntry, Error>> {
        Box::pin(async move {
            check_name("namespace", namespace)?;
            check_name("key", key)?;
            // Sent again after a lost answer, a cancel that was done would
            // say there is no such entry: sent once.
            self.link
                .call(false, |mut c| {
                    Box::pin(async move {
                        let result = calls::cancel::<D>(&mut c, namespace, tick, key, at).await;
                        (c, result)
                    })
                })
                .await
        })
    }

    fn purge<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        key: &'a str,
        at: &'a str,
        undecodable: bool,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            check_name("namespace", namespace)?;
            check_name("key", key)?;
            self.link
                .call(false, |mut c| {
                    Box::pin(async move {
                        let result =
                            calls::purge::<D>(&mut c, namespace, tick, key, at, undecodable).await;
                        (c, result)
                    })
                })
                .await
        })
    }

    fn namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        Box::pin(async move {
            let out = self
                .one(&D::SQL.namespaces, Values::default(), &[Kind::Text])
                .await?;
            let mut names: Vec<String> = out
                .rows
                .into_iter()
                .filter_map(|r| r.into_iter().next().and_then(dialect::Cell::text))
                .collect();
            // Sorted here, by bytes: a database sorts by its collation.
            names.sort();
            names.dedup();
            Ok(names)
        })
    }

    fn publish_schema<'a>(&'a self, schema: &'a Schema) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let namespace = schema.namespace.as_str();
            check_name("namespace", namespace)?;
            let stored = &StoredSchema::of(schema);
            // Publishing again is harmless: sent again as a fetch is.
            self.link
                .call(true, |mut c| {
                    Box::pin(async move {
                        let result = calls::publish::<D>(&mut c, namespace, stored).await;
                        (c, result)
                    })
                })
                .await
        })
    }

    fn schema<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Option<Schema>, Error>> {
        Box::pin(async move {
            check_name("namespace", namespace)?;
            let values = Values {
                namespace,
                ..Values::default()
            };
            let out = self.one(&D::SQL.schema, values, &[Kind::Text]).await?;
            let json = out
                .rows
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next().and_then(dialect::Cell::text));
            json.map(|j| serde_json::from_str(&j))
                .transpose()
                .map_err(|e| Error::Store {
                    store: self.link.shown().to_owned(),
                    message: format!("unexpected reply to the schema ({e})"),
                })
        })
    }

    fn describe(&self) -> String {
        self.link.shown().to_owned()
    }
}
