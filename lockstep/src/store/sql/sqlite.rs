//! The SQLite backend: `sqlite://path/to/file.db` (or `sqlite:path`,
//! `sqlite:///absolute/path`), one file that the processes of one machine
//! share, with no server to run.
//!
//! The file is created if missing (unless the URL says `mode=rw` or
//! `mode=ro`) and put in write-ahead-log mode, so readers never wait for a
//! writer; a writer waits up to five seconds for another (`busy_timeout`). A
//! relative path is relative to each process's working directory. The
//! horizon is checked by SQLite's own clock (`unixepoch('subsec')`), which
//! is this machine's clock: every process sharing the file reads the same
//! one. The file must be on a local disk: SQLite's locks do not work over
//! network file systems.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteRow};
use sqlx::{Connection, Row as _};

use super::link::{Link, scrub, secrets};
use super::{Dialect, NewEntry, Row};
use crate::error::Error;
use crate::store::{Write, redact};
use crate::tick::Millis;

/// The tables lockstep creates in SQLite when they are missing.
const LAYOUT: &str = "\
CREATE TABLE IF NOT EXISTS lockstep_meta (
    namespace  TEXT PRIMARY KEY,
    epoch      TEXT,
    created    INTEGER,
    schema     TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lockstep_entries (
    namespace  TEXT    NOT NULL,
    field      TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    value      TEXT    NOT NULL,
    write_id   TEXT    NOT NULL,
    written_at INTEGER NOT NULL,
    writer     TEXT    NOT NULL,
    PRIMARY KEY (namespace, field, at_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lockstep_writes (
    namespace  TEXT    NOT NULL,
    write_id   TEXT    NOT NULL,
    instants   TEXT    NOT NULL,
    written_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, write_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS lockstep_writes_written_at ON lockstep_writes (namespace, written_at);
";

/// How long a writer waits for another to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening a file that another process is setting up may be
/// retried (switching to write-ahead logging cannot wait for a lock).
const OPEN_RETRY: Duration = Duration::from_secs(4);

const PRESENT: &str = "SELECT count(*) = 3 FROM sqlite_master WHERE type = 'table' \
    AND name IN ('lockstep_meta', 'lockstep_entries', 'lockstep_writes')";

/// SQLite's clock in ms (`'now'` has millisecond resolution and is the same
/// throughout one statement).
macro_rules! now_ms {
    () => {
        "CAST(round(unixepoch('subsec') * 1000) AS INTEGER)"
    };
}

const FETCH: &str = concat!(
    "SELECT NULL AS field, ",
    now_ms!(),
    " * 1000 AS at_ms, ",
    "m.epoch AS value, m.created AS written_at, NULL AS write_id, NULL AS writer ",
    "FROM (SELECT 1) AS clock LEFT JOIN lockstep_meta AS m ON m.namespace = ?1 ",
    "UNION ALL ",
    "SELECT field, at_ms, value, written_at, write_id, writer FROM lockstep_entries ",
    "WHERE namespace = ?1 AND field IN (SELECT value FROM json_each(?2))"
);

const LOCK: &str = concat!(
    "INSERT INTO lockstep_meta (namespace, epoch, created) VALUES (?1, ?2, ",
    now_ms!(),
    ") ON CONFLICT (namespace) DO UPDATE SET ",
    "epoch = coalesce(lockstep_meta.epoch, excluded.epoch), ",
    "created = CASE WHEN lockstep_meta.epoch IS NULL THEN excluded.created ",
    "ELSE lockstep_meta.created END"
);

const DONE: &str = "SELECT instants FROM lockstep_writes WHERE namespace = ?1 AND write_id = ?2";

const NOW: &str = concat!("SELECT ", now_ms!());

const UPSERT: &str = concat!(
    "INSERT INTO lockstep_entries (namespace, field, at_ms, value, write_id, written_at, writer) ",
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ",
    "ON CONFLICT (namespace, field, at_ms) DO UPDATE SET value = excluded.value, ",
    "write_id = excluded.write_id, written_at = excluded.written_at, writer = excluded.writer"
);

const PRUNE: &str = concat!(
    "DELETE FROM lockstep_entries WHERE namespace = ?1 AND (field, at_ms) IN (",
    "SELECT field, at_ms FROM (",
    "SELECT field, at_ms, row_number() OVER (PARTITION BY field ORDER BY at_ms DESC) AS rank ",
    "FROM lockstep_entries WHERE namespace = ?1 AND at_ms <= ?3 ",
    "AND field IN (SELECT value FROM json_each(?2))",
    ") WHERE rank > ?4)"
);

const EXPIRE: &str = "DELETE FROM lockstep_writes WHERE namespace = ?1 AND written_at < ?2";

const RECORD: &str = concat!(
    "INSERT INTO lockstep_writes (namespace, write_id, instants, written_at) ",
    "VALUES (?1, ?2, ?3, ?4) RETURNING ",
    now_ms!()
);

const DELETE: &str =
    "DELETE FROM lockstep_entries WHERE namespace = ?1 AND field = ?2 AND at_ms = ?3";

const PUBLISH: &str = "INSERT INTO lockstep_meta (namespace, schema) VALUES (?1, ?2) \
    ON CONFLICT (namespace) DO UPDATE SET schema = excluded.schema";

const SCHEMA: &str = "SELECT schema FROM lockstep_meta WHERE namespace = ?1";

const NAMESPACES: &str = "SELECT namespace FROM lockstep_meta";

/// A SQLite store (`sqlite://path`): the processes of one machine that open
/// the same file share its registries.
///
/// Does not open the file until its first call.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockstep::Error> {
/// use lockstep::store::{Store, SqliteStore};
///
/// let dir = std::env::temp_dir().join(format!("lockstep-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let store = SqliteStore::open(&format!("sqlite://{}/flags.db", dir.display()))?;
/// let fetched = store.fetch("flags", &["theme"]).await?;
/// assert_eq!(fetched.epoch, None); // nothing written yet
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    link: Arc<Link<Lite>>,
}

impl SqliteStore {
    /// The SQL of the tables lockstep creates in SQLite when they are
    /// missing, for a database administrator who prefers to create them by
    /// hand (then the connecting user needs only `SELECT`, `INSERT`, `UPDATE`
    /// and `DELETE` on them).
    ///
    /// ```
    /// assert!(lockstep::store::SqliteStore::LAYOUT.contains("CREATE TABLE IF NOT EXISTS lockstep_entries"));
    /// ```
    pub const LAYOUT: &'static str = LAYOUT;

    /// A store in the file of `url`. Does not open it yet: the first call
    /// does.
    pub fn open(url: &str) -> Result<SqliteStore, Error> {
        let refused = |reason: String| Error::Url {
            url: redact(url),
            reason: scrub(reason, &secrets(url)),
        };
        let options = SqliteConnectOptions::from_str(url).map_err(|e| {
            refused(format!(
                "{e}; expected sqlite://path/to/file.db or sqlite:path[?mode=rwc]"
            ))
        })?;
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(refused(
                "an in-memory SQLite database lives in one connection of one process; use \
                 memory:// for a store inside this process, or a file to share one"
                    .to_owned(),
            ));
        }
        let mut options = options
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        if !url.contains("mode=") {
            options = options.create_if_missing(true);
        }
        Ok(SqliteStore {
            link: Arc::new(Link::new(Lite { options }, url)),
        })
    }
}

super::backend_via_link!(SqliteStore);

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("url", &self.link.shown())
            .finish_non_exhaustive()
    }
}

/// SQLite's SQL.
pub(crate) struct Lite {
    options: SqliteConnectOptions,
}

fn row(r: &SqliteRow) -> Result<Row, sqlx::Error> {
    Ok(Row {
        field: r.try_get(0)?,
        at: r.try_get(1)?,
        value: r.try_get(2)?,
        written_at: r.try_get(3)?,
        write_id: r.try_get(4)?,
        writer: r.try_get(5)?,
    })
}

/// `keys` as the JSON array `json_each` reads.
fn json_keys(keys: &[&str]) -> String {
    serde_json::to_string(keys).unwrap_or_else(|_| "[]".to_owned())
}

/// SQLITE_BUSY or SQLITE_LOCKED, with any extended code.
fn busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        _ => false,
    }
}

impl Lite {
    async fn open(&self) -> Result<SqliteConnection, sqlx::Error> {
        let mut c = SqliteConnection::connect_with(&self.options).await?;
        let present: bool = sqlx::query_scalar(PRESENT).fetch_one(&mut c).await?;
        if !present {
            let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
            sqlx::Executor::execute(&mut *tx, LAYOUT).await?;
            tx.commit().await?;
        }
        Ok(c)
    }
}

impl Dialect for Lite {
    type Db = sqlx::Sqlite;
    type Conn = SqliteConnection;

    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";

    async fn connect(&self) -> Result<SqliteConnection, sqlx::Error> {
        let started = tokio::time::Instant::now();
        loop {
            match self.open().await {
                Err(e) if busy(&e) && started.elapsed() < OPEN_RETRY => {
                    tokio::time::sleep(Duration::from_millis(10 + fastrand::u64(..40))).await;
                }
                other => return other,
            }
        }
    }

    fn missing_layout(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(db) if db.message().starts_with("no such table"))
    }

    async fn fetch(
        c: &mut SqliteConnection,
        namespace: &str,
        keys: &[&str],
    ) -> Result<Vec<Row>, sqlx::Error> {
        sqlx::query(FETCH)
            .bind(namespace)
            .bind(json_keys(keys))
            .fetch_all(c)
            .await?
            .iter()
            .map(row)
            .collect()
    }

    async fn lock(
        c: &mut SqliteConnection,
        namespace: &str,
        epoch: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(LOCK)
            .bind(namespace)
            .bind(epoch)
            .execute(c)
            .await?;
        Ok(())
    }

    async fn done(
        c: &mut SqliteConnection,
        namespace: &str,
        id: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar(DONE)
            .bind(namespace)
            .bind(id)
            .fetch_optional(c)
            .await
    }

    async fn now(c: &mut SqliteConnection) -> Result<Millis, sqlx::Error> {
        sqlx::query_scalar(NOW).fetch_one(c).await
    }

    async fn upsert(
        c: &mut SqliteConnection,
        namespace: &str,
        entries: &[NewEntry<'_>],
        write: &Write,
        now: Millis,
    ) -> Result<(), sqlx::Error> {
        for entry in entries {
            sqlx::query(UPSERT)
                .bind(namespace)
                .bind(entry.field)
                .bind(entry.at)
                .bind(entry.value)
                .bind(&write.id)
                .bind(now)
                .bind(&write.by)
                .execute(&mut *c)
                .await?;
        }
        Ok(())
    }

    async fn prune(
        c: &mut SqliteConnection,
        namespace: &str,
        keys: &[&str],
        now: Millis,
        keep: usize,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(PRUNE)
            .bind(namespace)
            .bind(json_keys(keys))
            .bind(now)
            .bind(keep as i64)
            .execute(c)
            .await?;
        Ok(())
    }

    async fn record(
        c: &mut SqliteConnection,
        namespace: &str,
        id: &str,
        instants: &str,
        now: Millis,
        expired: Millis,
    ) -> Result<Millis, sqlx::Error> {
        sqlx::query(EXPIRE)
            .bind(namespace)
            .bind(expired)
            .execute(&mut *c)
            .await?;
        sqlx::query_scalar(RECORD)
            .bind(namespace)
            .bind(id)
            .bind(instants)
            .bind(now)
            .fetch_one(c)
            .await
    }

    async fn delete(
        c: &mut SqliteConnection,
        namespace: &str,
        key: &str,
        at: Millis,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(DELETE)
            .bind(namespace)
            .bind(key)
            .bind(at)
            .execute(c)
            .await?;
        Ok(done.rows_affected())
    }

    async fn publish(
        c: &mut SqliteConnection,
        namespace: &str,
        schema: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(PUBLISH)
            .bind(namespace)
            .bind(schema)
            .execute(c)
            .await?;
        Ok(())
    }

    async fn schema(
        c: &mut SqliteConnection,
        namespace: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let schema: Option<Option<String>> = sqlx::query_scalar(SCHEMA)
            .bind(namespace)
            .fetch_optional(c)
            .await?;
        Ok(schema.flatten())
    }

    async fn namespaces(c: &mut SqliteConnection) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(NAMESPACES).fetch_all(c).await
    }
}
