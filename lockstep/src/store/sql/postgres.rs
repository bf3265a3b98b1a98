//! The PostgreSQL backend:
//! `postgres://[user[:password]@]host[:port]/database[?param=value&…]`.
//!
//! The horizon is checked by the server's `clock_timestamp()`. Tables go in
//! the first schema of the connection's `search_path` (choose one with
//! `options=-c%20search_path%3Dmy_schema`); other parameters are those of
//! sqlx (`sslmode`, `sslrootcert`, `application_name`, `host` for a Unix
//! socket directory, …), and user, password, host, port and database left
//! out of the URL come from `PGUSER`, `PGPASSWORD`, `PGHOST`, `PGPORT` and
//! `PGDATABASE`, as for `psql`.

use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{Connection, Row as _};

use super::link::{Link, scrub, secrets};
use super::{Dialect, NewEntry, Row};
use crate::error::Error;
use crate::store::{Write, redact};
use crate::tick::Millis;

/// The tables lockstep creates in PostgreSQL when they are missing: the
/// same SQL a database administrator can run by hand beforehand (then the
/// connecting user needs only `SELECT`, `INSERT`, `UPDATE` and `DELETE` on
/// them).
const LAYOUT: &str = "\
CREATE TABLE IF NOT EXISTS lockstep_meta (
    namespace  text PRIMARY KEY,
    epoch      text,
    created    bigint,
    schema     text
);
CREATE TABLE IF NOT EXISTS lockstep_entries (
    namespace  text   NOT NULL,
    field      text   NOT NULL,
    at_ms      bigint NOT NULL,
    value      text   NOT NULL,
    write_id   text   NOT NULL,
    written_at bigint NOT NULL,
    writer     text   NOT NULL,
    PRIMARY KEY (namespace, field, at_ms)
);
CREATE TABLE IF NOT EXISTS lockstep_writes (
    namespace  text   NOT NULL,
    write_id   text   NOT NULL,
    instants   text   NOT NULL,
    written_at bigint NOT NULL,
    PRIMARY KEY (namespace, write_id)
);
CREATE INDEX IF NOT EXISTS lockstep_writes_written_at ON lockstep_writes (namespace, written_at);
";

/// Whether the layout is there already (then nothing is created, and the
/// user needs no `CREATE` privilege).
const PRESENT: &str = "SELECT to_regclass('lockstep_meta') IS NOT NULL \
    AND to_regclass('lockstep_entries') IS NOT NULL \
    AND to_regclass('lockstep_writes') IS NOT NULL";

/// The advisory lock that keeps processes starting together from creating
/// the tables at once (`CREATE TABLE IF NOT EXISTS` races otherwise):
/// "lockstep" in ASCII.
const LAYOUT_LOCK: i64 = 7_813_573_191_660_758_384;

/// The server's clock in ms, floored.
macro_rules! now_ms {
    () => {
        "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    };
}

const FETCH: &str = concat!(
    "SELECT NULL::text AS field, ",
    "floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS at_ms, ",
    "m.epoch AS value, m.created AS written_at, NULL::text AS write_id, NULL::text AS writer ",
    "FROM (SELECT 1) AS clock LEFT JOIN lockstep_meta AS m ON m.namespace = $1 ",
    "UNION ALL ",
    "SELECT field, at_ms, value, written_at, write_id, writer FROM lockstep_entries ",
    "WHERE namespace = $1 AND field = ANY($2)"
);

const LOCK: &str = concat!(
    "INSERT INTO lockstep_meta AS m (namespace, epoch, created) VALUES ($1, $2, ",
    now_ms!(),
    ") ON CONFLICT (namespace) DO UPDATE SET epoch = coalesce(m.epoch, excluded.epoch), ",
    "created = CASE WHEN m.epoch IS NULL THEN excluded.created ELSE m.created END"
);

const DONE: &str = "SELECT instants FROM lockstep_writes WHERE namespace = $1 AND write_id = $2";

const NOW: &str = concat!("SELECT ", now_ms!());

const UPSERT: &str = concat!(
    "INSERT INTO lockstep_entries (namespace, field, at_ms, value, write_id, written_at, writer) ",
    "SELECT $1, t.field, t.at_ms, t.value, $5, $6, $7 ",
    "FROM unnest($2::text[], $3::bigint[], $4::text[]) AS t(field, at_ms, value) ",
    "ON CONFLICT (namespace, field, at_ms) DO UPDATE SET value = excluded.value, ",
    "write_id = excluded.write_id, written_at = excluded.written_at, writer = excluded.writer"
);

const PRUNE: &str = concat!(
    "DELETE FROM lockstep_entries WHERE namespace = $1 AND (field, at_ms) IN (",
    "SELECT field, at_ms FROM (",
    "SELECT field, at_ms, row_number() OVER (PARTITION BY field ORDER BY at_ms DESC) AS rank ",
    "FROM lockstep_entries WHERE namespace = $1 AND field = ANY($2) AND at_ms <= $3",
    ") AS past WHERE rank > $4)"
);

const RECORD: &str = concat!(
    "WITH expired AS (DELETE FROM lockstep_writes WHERE namespace = $1 AND written_at < $5) ",
    "INSERT INTO lockstep_writes (namespace, write_id, instants, written_at) ",
    "VALUES ($1, $2, $3, $4) RETURNING ",
    now_ms!()
);

const DELETE: &str =
    "DELETE FROM lockstep_entries WHERE namespace = $1 AND field = $2 AND at_ms = $3";

const PUBLISH: &str = "INSERT INTO lockstep_meta (namespace, schema) VALUES ($1, $2) \
    ON CONFLICT (namespace) DO UPDATE SET schema = excluded.schema";

const SCHEMA: &str = "SELECT schema FROM lockstep_meta WHERE namespace = $1";

const NAMESPACES: &str = "SELECT namespace FROM lockstep_meta";

/// A PostgreSQL store (`postgres://…`, `postgresql://…`).
///
/// Does not connect until its first call. Keeps up to two connections open
/// between calls; a registry that only reads holds one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use lockstep::store::{Store, PostgresStore};
///
/// let store = PostgresStore::open("postgres://app:s3cret@db.internal/flags").unwrap();
/// assert_eq!(store.describe(), "postgres://app:***@db.internal/flags");
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    link: Arc<Link<Pg>>,
}

impl PostgresStore {
    /// The SQL of the tables lockstep creates in PostgreSQL when they are
    /// missing, for a database administrator who prefers to create them by
    /// hand (then the connecting user needs only `SELECT`, `INSERT`, `UPDATE`
    /// and `DELETE` on them).
    ///
    /// ```
    /// assert!(lockstep::store::PostgresStore::LAYOUT.contains("CREATE TABLE IF NOT EXISTS lockstep_entries"));
    /// ```
    pub const LAYOUT: &'static str = LAYOUT;

    /// A store at `url`. Does not connect yet: the first call does.
    pub fn open(url: &str) -> Result<PostgresStore, Error> {
        let options = PgConnectOptions::from_str(url).map_err(|e| Error::Url {
            url: redact(url),
            reason: scrub(
                format!(
                    "{e}; expected postgres://[user[:password]@]host[:port]/database[?sslmode=…]"
                ),
                &secrets(url),
            ),
        })?;
        let options = if url.contains("application_name=") {
            options
        } else {
            options.application_name("lockstep")
        };
        Ok(PostgresStore {
            link: Arc::new(Link::new(Pg { options }, url)),
        })
    }
}

super::backend_via_link!(PostgresStore);

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.link.shown())
            .finish_non_exhaustive()
    }
}

/// PostgreSQL's SQL.
pub(crate) struct Pg {
    options: PgConnectOptions,
}

fn row(r: &PgRow) -> Result<Row, sqlx::Error> {
    Ok(Row {
        field: r.try_get(0)?,
        at: r.try_get(1)?,
        value: r.try_get(2)?,
        written_at: r.try_get(3)?,
        write_id: r.try_get(4)?,
        writer: r.try_get(5)?,
    })
}

impl Dialect for Pg {
    type Db = sqlx::Postgres;
    type Conn = PgConnection;

    const BEGIN_WRITE: &'static str = "BEGIN";

    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let mut c = PgConnection::connect_with(&self.options).await?;
        let present: bool = sqlx::query_scalar(PRESENT).fetch_one(&mut c).await?;
        if !present {
            let mut tx = c.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(LAYOUT_LOCK)
                .execute(&mut *tx)
                .await?;
            sqlx::Executor::execute(&mut *tx, LAYOUT).await?;
            tx.commit().await?;
        }
        Ok(c)
    }

    fn missing_layout(e: &sqlx::Error) -> bool {
        // undefined_table
        matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01"))
    }

    fn broken(e: &sqlx::Error) -> bool {
        match e {
            // connection_exception, and the server shutting the session
            // down (admin_shutdown, crash_shutdown, cannot_connect_now):
            // sent just before it closes the connection.
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            _ => true,
        }
    }

    async fn fetch(
        c: &mut PgConnection,
        namespace: &str,
        keys: &[&str],
    ) -> Result<Vec<Row>, sqlx::Error> {
        sqlx::query(FETCH)
            .bind(namespace)
            .bind(keys)
            .fetch_all(c)
            .await?
            .iter()
            .map(row)
            .collect()
    }

    async fn lock(c: &mut PgConnection, namespace: &str, epoch: &str) -> Result<(), sqlx::Error> {
        sqlx::query(LOCK)
            .bind(namespace)
            .bind(epoch)
            .execute(c)
            .await?;
        Ok(())
    }

    async fn done(
        c: &mut PgConnection,
        namespace: &str,
        id: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar(DONE)
            .bind(namespace)
            .bind(id)
            .fetch_optional(c)
            .await
    }

    async fn now(c: &mut PgConnection) -> Result<Millis, sqlx::Error> {
        sqlx::query_scalar(NOW).fetch_one(c).await
    }

    async fn upsert(
        c: &mut PgConnection,
        namespace: &str,
        entries: &[NewEntry<'_>],
        write: &Write,
        now: Millis,
    ) -> Result<(), sqlx::Error> {
        let fields: Vec<&str> = entries.iter().map(|e| e.field).collect();
        let ats: Vec<i64> = entries.iter().map(|e| e.at).collect();
        let values: Vec<&str> = entries.iter().map(|e| e.value).collect();
        sqlx::query(UPSERT)
            .bind(namespace)
            .bind(fields)
            .bind(ats)
            .bind(values)
            .bind(&write.id)
            .bind(now)
            .bind(&write.by)
            .execute(c)
            .await?;
        Ok(())
    }

    async fn prune(
        c: &mut PgConnection,
        namespace: &str,
        keys: &[&str],
        now: Millis,
        keep: usize,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(PRUNE)
            .bind(namespace)
            .bind(keys)
            .bind(now)
            .bind(keep as i64)
            .execute(c)
            .await?;
        Ok(())
    }

    async fn record(
        c: &mut PgConnection,
        namespace: &str,
        id: &str,
        instants: &str,
        now: Millis,
        expired: Millis,
    ) -> Result<Millis, sqlx::Error> {
        sqlx::query_scalar(RECORD)
            .bind(namespace)
            .bind(id)
            .bind(instants)
            .bind(now)
            .bind(expired)
            .fetch_one(c)
            .await
    }

    async fn delete(
        c: &mut PgConnection,
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
        c: &mut PgConnection,
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

    async fn schema(c: &mut PgConnection, namespace: &str) -> Result<Option<String>, sqlx::Error> {
        let schema: Option<Option<String>> = sqlx::query_scalar(SCHEMA)
            .bind(namespace)
            .fetch_optional(c)
            .await?;
        Ok(schema.flatten())
    }

    async fn namespaces(c: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(NAMESPACES).fetch_all(c).await
    }
}
