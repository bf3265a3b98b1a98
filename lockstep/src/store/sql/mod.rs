//! SQL backends: PostgreSQL (`postgres://`) and SQLite (`sqlite://`), through
//! sqlx.
//!
//! # Layout
//!
//! Three tables, created on first use when missing (the README gives the
//! SQL, for a database administrator who would rather create them by hand):
//!
//! | table | one row per | columns |
//! |---|---|---|
//! | `lockstep_entries` | entry | `namespace`, `field`, `at_ms` (the instant, ms since the Unix epoch), `value` (JSON text, as written), `write_id`, `written_at` (ms, the database's clock), `writer`; primary key `(namespace, field, at_ms)` |
//! | `lockstep_meta` | registry | `namespace` (primary key), `epoch` (random id, `NULL` until the first write), `created` (ms, the database's clock), `schema` (JSON) |
//! | `lockstep_writes` | write | `namespace`, `write_id` (primary key together), `instants` (comma-separated ms), `written_at`; kept a day so a retried write takes effect once |
//!
//! A fetch is one `SELECT`: a row with the database's clock and the epoch,
//! `UNION ALL` the entries of the fields asked for, read through the primary
//! key. A commit is one transaction that holds the registry's write lock
//! (PostgreSQL: its `lockstep_meta` row, locked by an upsert that also
//! creates the epoch; SQLite: `BEGIN IMMEDIATE`, the database's write lock),
//! reads the database's clock, refuses instants before its horizon, writes
//! every entry (the same field and instant keeps the last write), prunes
//! history beyond the active entry plus [`HISTORY`] superseded ones, records
//! the write id, and reads the clock once more just before `COMMIT`: if a
//! tick boundary passed meanwhile and an instant is now before the horizon,
//! it rolls back and starts again, so no committed entry is ever before the
//! horizon of its commit.
//!
//! Each dialect says how one step is done in its SQL; the order of the steps
//! is here, once.

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

mod link;

use std::collections::BTreeMap;
use std::future::Future;

use sqlx::Connection;

use super::{
    Committed, Epoch, Fetched, HISTORY, Origin, StoredEntry, Write, check_cancel, check_name,
    resolve_instants,
};
use crate::error::Error;
use crate::schema::Schema;
use crate::tick::{Millis, Tick};

pub(crate) use link::Link;

/// How long the database keeps a write's id, so a retry takes effect once:
/// a day, as in Redis.
const WRITE_ID_KEPT: Millis = 86_400_000;

/// How many times a commit starts again when a tick boundary passed between
/// reading the clock and committing (it takes milliseconds; the boundaries
/// are at least a second apart).
const COMMIT_TRIES: usize = 3;

/// One row of a fetch: the entry of a field, or, with `field` `None`, the
/// database's clock (µs, in `at`) and the epoch (`value`, `written_at`).
#[derive(Debug)]
pub(crate) struct Row {
    pub field: Option<String>,
    pub at: i64,
    pub value: Option<String>,
    pub written_at: Option<i64>,
    pub write_id: Option<String>,
    pub writer: Option<String>,
}

/// One entry a commit writes.
pub(crate) struct NewEntry<'a> {
    pub field: &'a str,
    pub at: Millis,
    pub value: &'a str,
}

/// Why a call failed: the database or the connection, a refusal of
/// lockstep's own, or something lockstep found wrong in the database; the
/// last two leave the connection fine.
pub(crate) enum Failure {
    Sql(sqlx::Error),
    Refused(Error),
    Store(String),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Sql(e)
    }
}

/// A database's SQL for each step of a call.
pub(crate) trait Dialect: Send + Sync + 'static {
    /// The sqlx database.
    type Db: sqlx::Database<Connection = Self::Conn>;
    /// Its connection.
    type Conn: Connection<Database = Self::Db> + Send + 'static;

    /// The statement that starts a write transaction.
    const BEGIN_WRITE: &'static str;

    /// Opens a connection, with the tables created if they are missing.
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, sqlx::Error>> + Send;

    /// Whether `e` says a table of the layout is missing (dropped while the
    /// connection was open): the next connection creates them again.
    fn missing_layout(e: &sqlx::Error) -> bool;

    /// Whether `e` says the connection is gone rather than that the
    /// database refused a statement: any error but the database's own, and
    /// those of the database's that end the session.
    fn broken(e: &sqlx::Error) -> bool {
        !matches!(e, sqlx::Error::Database(_))
    }

    /// The fetch: the clock-and-epoch row, and the entries of `keys`.
    fn fetch(
        c: &mut Self::Conn,
        namespace: &str,
        keys: &[&str],
    ) -> impl Future<Output = Result<Vec<Row>, sqlx::Error>> + Send;

    /// Takes the registry's write lock for the rest of the transaction, and
    /// creates its epoch (`epoch`, created now by the database's clock)
    /// unless it has one.
    fn lock(
        c: &mut Self::Conn,
        namespace: &str,
        epoch: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// The instants of the write `id`, if it was committed already.
    fn done(
        c: &mut Self::Conn,
        namespace: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<String>, sqlx::Error>> + Send;

    /// The database's clock, in ms.
    fn now(c: &mut Self::Conn) -> impl Future<Output = Result<Millis, sqlx::Error>> + Send;

    /// Writes `entries`, replacing any at the same field and instant.
    fn upsert(
        c: &mut Self::Conn,
        namespace: &str,
        entries: &[NewEntry<'_>],
        write: &Write,
        now: Millis,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Deletes the entries of `keys` at or before `now` but the latest `keep`.
    fn prune(
        c: &mut Self::Conn,
        namespace: &str,
        keys: &[&str],
        now: Millis,
        keep: usize,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Records the write's id and instants, forgets the registry's ids
    /// older than `expired` (only the registry's: its lock covers them, so
    /// writers of two registries never wait for each other here), and
    /// returns the database's clock (ms) after both.
    fn record(
        c: &mut Self::Conn,
        namespace: &str,
        id: &str,
        instants: &str,
        now: Millis,
        expired: Millis,
    ) -> impl Future<Output = Result<Millis, sqlx::Error>> + Send;

    /// Deletes the entry of `key` at `at`; how many rows went.
    fn delete(
        c: &mut Self::Conn,
        namespace: &str,
        key: &str,
        at: Millis,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Stores a registry's schema (JSON).
    fn publish(
        c: &mut Self::Conn,
        namespace: &str,
        schema: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// A registry's schema (JSON), if published.
    fn schema(
        c: &mut Self::Conn,
        namespace: &str,
    ) -> impl Future<Output = Result<Option<String>, sqlx::Error>> + Send;

    /// Every namespace with a row in `lockstep_meta`.
    fn namespaces(
        c: &mut Self::Conn,
    ) -> impl Future<Output = Result<Vec<String>, sqlx::Error>> + Send;
}

/// Implements [`Store`](super::Store) for a store whose field `link`
/// is a [`Link`].
macro_rules! backend_via_link {
    ($store:ty) => {
        impl $crate::store::Store for $store {
            fn fetch<'a>(
                &'a self,
                namespace: &'a str,
                keys: &'a [&'a str],
            ) -> $crate::store::BoxFuture<'a, Result<$crate::store::Fetched, Error>> {
                Box::pin(self.link.fetch(namespace, keys))
            }

            fn commit<'a>(
                &'a self,
                write: &'a $crate::store::Write,
            ) -> $crate::store::BoxFuture<'a, Result<$crate::store::Committed, Error>> {
                Box::pin(self.link.commit(write))
            }

            fn cancel<'a>(
                &'a self,
                namespace: &'a str,
                tick: $crate::tick::Tick,
                key: &'a str,
                at: Millis,
            ) -> $crate::store::BoxFuture<'a, Result<$crate::store::StoredEntry, Error>> {
                // FOUNDATION PLACEHOLDER: the SQL helper returns the removed entry.
                Box::pin(async move {
                    self.link.cancel(namespace, tick, key, at).await?;
                    Ok($crate::store::StoredEntry {
                        at,
                        value: Err("the store did not say what it removed".to_owned()),
                        origin: None,
                    })
                })
            }

            fn purge<'a>(
                &'a self,
                _namespace: &'a str,
                _tick: $crate::tick::Tick,
                _key: &'a str,
                _at: &'a str,
                _undecodable: bool,
            ) -> $crate::store::BoxFuture<'a, Result<(), Error>> {
                // FOUNDATION PLACEHOLDER: the SQL helper implements purge.
                Box::pin(async move {
                    Err(Error::Store {
                        store: self.link.shown().to_owned(),
                        message: "purge is not implemented for this store yet".to_owned(),
                    })
                })
            }

            fn namespaces(&self) -> $crate::store::BoxFuture<'_, Result<Vec<String>, Error>> {
                Box::pin(self.link.namespaces())
            }

            fn publish_schema<'a>(
                &'a self,
                schema: &'a $crate::schema::Schema,
            ) -> $crate::store::BoxFuture<'a, Result<(), Error>> {
                Box::pin(self.link.publish_schema(schema))
            }

            fn schema<'a>(
                &'a self,
                namespace: &'a str,
            ) -> $crate::store::BoxFuture<'a, Result<Option<$crate::schema::Schema>, Error>> {
                Box::pin(self.link.schema(namespace))
            }

            fn describe(&self) -> String {
                self.link.shown().to_owned()
            }
        }
    };
}
pub(crate) use backend_via_link;

/// The calls of the [`Store`](super::Store) trait, each on a connection
/// of the link.
impl<D: Dialect> Link<D> {
    pub(crate) async fn fetch(&self, namespace: &str, keys: &[&str]) -> Result<Fetched, Error> {
        check_name("namespace", namespace)?;
        // A fetch only reads: safe to send again.
        self.call(true, |mut c| {
            Box::pin(async move {
                let result = fetch_in::<D>(&mut c, namespace, keys).await;
                (c, result)
            })
        })
        .await
    }

    pub(crate) async fn commit(&self, write: &Write) -> Result<Committed, Error> {
        check_write(write)?;
        // The write id makes a commit sent again take effect once.
        self.call(true, |mut c| {
            Box::pin(async move {
                let result = commit_in::<D>(&mut c, write).await;
                (c, result)
            })
        })
        .await
    }

    pub(crate) async fn cancel(
        &self,
        namespace: &str,
        tick: Tick,
        key: &str,
        at: Millis,
    ) -> Result<(), Error> {
        check_name("namespace", namespace)?;
        check_name("key", key)?;
        // Sent again after a lost answer, a cancel that was done would say
        // there is no such entry: sent once.
        self.call(false, |mut c| {
            Box::pin(async move {
                let result = cancel_in::<D>(&mut c, namespace, tick, key, at).await;
                (c, result)
            })
        })
        .await
    }

    pub(crate) async fn publish_schema(&self, schema: &Schema) -> Result<(), Error> {
        let namespace = schema.namespace.as_str();
        check_name("namespace", namespace)?;
        let json = serde_json::to_string(schema).map_err(|e| Error::Store {
            store: self.shown().to_owned(),
            message: format!("cannot encode the schema: {e}"),
        })?;
        let json = json.as_str();
        self.call(true, |mut c| {
            Box::pin(async move {
                let result = D::publish(&mut c, namespace, json).await;
                (c, result.map_err(Failure::Sql))
            })
        })
        .await
    }

    pub(crate) async fn schema(&self, namespace: &str) -> Result<Option<Schema>, Error> {
        check_name("namespace", namespace)?;
        let json = self
            .call(true, |mut c| {
                Box::pin(async move {
                    let result = D::schema(&mut c, namespace).await;
                    (c, result.map_err(Failure::Sql))
                })
            })
            .await?;
        json.map(|j| serde_json::from_str(&j))
            .transpose()
            .map_err(|e| Error::Store {
                store: self.shown().to_owned(),
                message: format!("unexpected reply to the schema ({e})"),
            })
    }

    pub(crate) async fn namespaces(&self) -> Result<Vec<String>, Error> {
        let mut names = self
            .call(true, |mut c| {
                Box::pin(async move {
                    let result = D::namespaces(&mut c).await;
                    (c, result.map_err(Failure::Sql))
                })
            })
            .await?;
        // Sorted here, by bytes: a database sorts by its collation.
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// A fetch: one query.
async fn fetch_in<D: Dialect>(
    c: &mut D::Conn,
    namespace: &str,
    keys: &[&str],
) -> Result<Fetched, Failure> {
    let rows = D::fetch(c, namespace, keys).await?;
    Ok(assemble(rows, keys))
}

/// The rows of a fetch as a [`Fetched`]: every key asked for, each with its
/// entries ordered by instant.
fn assemble(rows: Vec<Row>, keys: &[&str]) -> Fetched {
    let mut fetched = Fetched {
        fields: keys.iter().map(|k| ((*k).to_owned(), Vec::new())).collect(),
        // FOUNDATION PLACEHOLDER: the SQL helper reports whether the schema is held.
        schema_held: true,
        ..Fetched::default()
    };
    for row in rows {
        let Some(field) = row.field else {
            fetched.store_micros = Some(row.at);
            fetched.epoch = match (row.value, row.written_at) {
                (Some(id), Some(created)) => Some(Epoch { id, created }),
                _ => None,
            };
            continue;
        };
        let origin = match (row.write_id, row.written_at) {
            (Some(write), Some(written_at)) => Some(Origin {
                write,
                written_at,
                by: row.writer.unwrap_or_default(),
            }),
            _ => None,
        };
        let value = row.value.ok_or_else(|| "the entry has no value".to_owned());
        fetched.fields.entry(field).or_default().push(StoredEntry {
            at: row.at,
            value,
            origin,
        });
    }
    for entries in fetched.fields.values_mut() {
        entries.sort_by_key(|e| e.at);
    }
    fetched
}

/// A commit: one transaction, started again if a tick boundary passed while
/// it ran and made an instant too soon.
async fn commit_in<D: Dialect>(c: &mut D::Conn, write: &Write) -> Result<Committed, Failure> {
    let namespace = write.namespace.as_str();
    let keys = written_keys(write);
    for _ in 0..COMMIT_TRIES {
        let mut tx = c.begin_with(D::BEGIN_WRITE).await?;
        D::lock(&mut tx, namespace, &super::new_write_id()).await?;
        if let Some(done) = D::done(&mut tx, namespace, &write.id).await? {
            tx.rollback().await?;
            return parse_instants(&done).map(|instants| Committed { instants });
        }
        let now = D::now(&mut tx).await?;
        // Dropping the transaction rolls it back.
        let instants = resolve_instants(write, now).map_err(Failure::Refused)?;
        let entries = last_write_wins(write, &instants);
        D::upsert(&mut tx, namespace, &entries, write, now).await?;
        D::prune(&mut tx, namespace, &keys, now, HISTORY + 1).await?;
        let joined = instants
            .iter()
            .map(Millis::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let end = D::record(
            &mut tx,
            namespace,
            &write.id,
            &joined,
            now,
            now - WRITE_ID_KEPT,
        )
        .await?;
        if instants.iter().any(|&at| at < write.tick.horizon(end)) {
            tx.rollback().await?;
            continue;
        }
        tx.commit().await?;
        return Ok(Committed { instants });
    }
    Err(Failure::Store(format!(
        "a tick boundary passed during each of {COMMIT_TRIES} tries to commit; nothing was \
         written"
    )))
}

/// A cancel: one transaction that deletes the entry, then checks the
/// horizon by the database's clock.
async fn cancel_in<D: Dialect>(
    c: &mut D::Conn,
    namespace: &str,
    tick: Tick,
    key: &str,
    at: Millis,
) -> Result<(), Failure> {
    let mut tx = c.begin_with(D::BEGIN_WRITE).await?;
    let deleted = D::delete(&mut tx, namespace, key, at).await?;
    let now = D::now(&mut tx).await?;
    check_cancel(namespace, tick, at, now).map_err(Failure::Refused)?;
    if deleted == 0 {
        return Err(Failure::Refused(Error::NoSuchEntry {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            at: crate::tick::to_datetime(at),
        }));
    }
    tx.commit().await?;
    Ok(())
}

/// Refuses names the layout would take but lockstep does not allow, as the
/// other backends do.
fn check_write(write: &Write) -> Result<(), Error> {
    check_name("namespace", &write.namespace)?;
    for step in &write.steps {
        for (key, _) in &step.values {
            check_name("key", key)?;
        }
    }
    Ok(())
}

/// The keys a write touches, each once.
fn written_keys(write: &Write) -> Vec<&str> {
    let mut keys: Vec<&str> = Vec::new();
    for step in &write.steps {
        for (key, _) in &step.values {
            if !keys.contains(&key.as_str()) {
                keys.push(key);
            }
        }
    }
    keys
}

/// The entries of a write, one per field and instant: a later value for the
/// same field and instant (in the same step, or in a step rounded up to the
/// same boundary) replaces an earlier one, as a second write would.
fn last_write_wins<'a>(write: &'a Write, instants: &[Millis]) -> Vec<NewEntry<'a>> {
    let mut slots: BTreeMap<(&str, Millis), usize> = BTreeMap::new();
    let mut entries: Vec<NewEntry<'a>> = Vec::new();
    for (step, &at) in write.steps.iter().zip(instants) {
        for (field, value) in &step.values {
            let entry = NewEntry { field, at, value };
            match slots.get(&(field.as_str(), at)) {
                Some(&i) => entries[i] = entry,
                None => {
                    slots.insert((field, at), entries.len());
                    entries.push(entry);
                }
            }
        }
    }
    entries
}

fn parse_instants(text: &str) -> Result<Vec<Millis>, Failure> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|p| p.parse::<Millis>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Failure::Store(format!("unreadable instants {text:?} in lockstep_writes")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Step, StepAt};

    #[test]
    fn the_same_field_and_instant_keeps_the_last_value() {
        let write = Write {
            namespace: "ns".into(),
            tick: Tick::__from_secs(1),
            id: "w".into(),
            by: "test".into(),
            steps: vec![
                Step {
                    at: StepAt::At(1_500),
                    values: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
                },
                Step {
                    at: StepAt::At(1_900),
                    values: vec![("a".into(), "3".into()), ("b".into(), "4".into())],
                },
            ],
        };
        let entries = last_write_wins(&write, &[2_000, 2_000]);
        let got: Vec<_> = entries.iter().map(|e| (e.field, e.at, e.value)).collect();
        assert_eq!(got, vec![("a", 2_000, "3"), ("b", 2_000, "4")]);
        assert_eq!(written_keys(&write), vec!["a", "b"]);
    }

    #[test]
    fn rows_become_a_fetch() {
        let row = |field: Option<&str>, at, value: Option<&str>, written_at| Row {
            field: field.map(str::to_owned),
            at,
            value: value.map(str::to_owned),
            written_at,
            write_id: field.map(|_| "w".to_owned()),
            writer: Some("me".to_owned()),
        };
        let fetched = assemble(
            vec![
                row(Some("a"), 3_000, Some("3"), Some(1)),
                row(None, 7_000_123, Some("epoch"), Some(5)),
                row(Some("a"), 2_000, Some("2"), Some(1)),
            ],
            &["a", "b"],
        );
        assert_eq!(fetched.store_micros, Some(7_000_123));
        assert_eq!(
            fetched.epoch,
            Some(Epoch {
                id: "epoch".into(),
                created: 5
            })
        );
        let ats: Vec<_> = fetched.fields["a"].iter().map(|e| e.at).collect();
        assert_eq!(ats, vec![2_000, 3_000]);
        assert!(fetched.fields["b"].is_empty());
        assert_eq!(fetched.fields["a"][0].origin.as_ref().unwrap().by, "me");
        let empty = assemble(vec![row(None, 1, None, None)], &[]);
        assert_eq!(empty.epoch, None);
        assert_eq!(parse_instants("").ok(), Some(vec![]));
        assert_eq!(parse_instants("1,2").ok(), Some(vec![1, 2]));
        assert!(parse_instants("x").is_err());
    }
}
