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

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Postgres as Pg};

use super::SqlStore;
use super::dialect::{
    Arg, Class, Dialect, Kind, Out, Param::*, SqlxQuery, Statements, Stmt, Upsert, bind_scalar,
    common_class, in_turn, json_written, run_with, standard,
};
use crate::error::Error;
use crate::store::url::{redact, scrub, secrets};

/// The tables lockstep creates in PostgreSQL when they are missing: the
/// same SQL a database administrator can run by hand beforehand (then the
/// connecting user needs only `SELECT`, `INSERT`, `UPDATE` and `DELETE` on
/// them).
const LAYOUT: &str = "\
CREATE TABLE IF NOT EXISTS lockstep_meta (
    namespace  text PRIMARY KEY,
    epoch      text,
    created    bigint,
    revision   bigint NOT NULL DEFAULT 0,
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
    revision   bigint NOT NULL DEFAULT 0,
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
CREATE TABLE IF NOT EXISTS lockstep_reports (
    namespace  text   NOT NULL,
    process    text   NOT NULL,
    seen       bigint NOT NULL,
    revision   bigint NOT NULL,
    expires    bigint NOT NULL,
    body       text   NOT NULL,
    PRIMARY KEY (namespace, process)
);
CREATE INDEX IF NOT EXISTS lockstep_reports_expires ON lockstep_reports (namespace, expires);
CREATE TABLE IF NOT EXISTS lockstep_schemas (
    namespace  text   NOT NULL,
    digest     text   NOT NULL,
    schema     text   NOT NULL,
    published  bigint NOT NULL,
    PRIMARY KEY (namespace, digest)
);
";

/// What turns tables of the first layout (before revisions) into this one,
/// in place: run after [`LAYOUT`], which adds the missing tables.
const UPGRADE: &str = "\
ALTER TABLE lockstep_meta ADD COLUMN IF NOT EXISTS revision bigint NOT NULL DEFAULT 0;
ALTER TABLE lockstep_entries ADD COLUMN IF NOT EXISTS revision bigint NOT NULL DEFAULT 0;
";

/// Whether the layout is there already, columns and all (then nothing is
/// created, and the user needs no `CREATE` privilege).
const PRESENT: &str = "SELECT to_regclass('lockstep_meta') IS NOT NULL \
    AND to_regclass('lockstep_entries') IS NOT NULL \
    AND to_regclass('lockstep_writes') IS NOT NULL \
    AND to_regclass('lockstep_reports') IS NOT NULL \
    AND to_regclass('lockstep_schemas') IS NOT NULL \
    AND (SELECT count(*) FROM pg_attribute WHERE attname = 'revision' AND NOT attisdropped \
        AND attrelid IN (to_regclass('lockstep_meta'), to_regclass('lockstep_entries'))) = 2";

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

/// What an entry's value counts towards its field's bytes: its length in
/// bytes (`$3` the size limit), 0 over the limit (it is never shipped).
/// `octet_length` reads the stored length, not the text: of a value kept
/// apart (TOAST), only the pointer that stands for it.
macro_rules! counted {
    () => {
        "CASE WHEN octet_length(value) > $3 THEN 0 ELSE octet_length(value) END"
    };
}

/// The fetch: the clock-and-epoch row `UNION ALL` the entries of the keys
/// (`$1` the namespace, `$2` the keys, `$3` the size limit, `$e` and `$r`
/// the epoch and revision held, `$d` and `$n` the digest and length in
/// bytes of the schema the fetch names, `$b` the budget). The entries are
/// read only when the registry's row is not at the epoch and revision held:
/// an uncorrelated `NOT EXISTS`, evaluated once before the scan (a
/// one-time filter), so an unchanged fetch reads one row. Each entry gets
/// its field's bytes (a window over the field), then the running total of
/// the fields' bytes, smallest field first, ties by name byte for byte
/// (`COLLATE "C"`; the default frame takes in the whole field); a value is
/// shipped only when its field's total is within the budget. The values
/// travel through the windows as they are stored (a value kept apart, as
/// its pointer): only those shipped are read. The schema named is looked
/// up by its primary key (`octet_length` reads the stored length, not the
/// text).
macro_rules! fetch {
    ($e:literal, $r:literal, $d:literal, $n:literal, $b:literal) => {
        concat!(
            "SELECT NULL::text AS field, ",
            "floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS at_ms, ",
            "m.epoch AS value, (CASE WHEN ",
            $d,
            " = '' THEN m.schema IS NOT NULL ELSE m.schema IS NOT NULL AND EXISTS (",
            "SELECT 1 FROM lockstep_schemas AS s ",
            "WHERE s.namespace = $1 AND s.digest = ",
            $d,
            " AND octet_length(s.schema) = ",
            $n,
            ") END)::int::bigint AS size, ",
            "m.created AS written_at, ",
            "CASE WHEN m.epoch = ",
            $e,
            " AND m.created IS NOT NULL AND m.revision = ",
            $r,
            " THEN 'unchanged' END::text AS write_id, NULL::text AS writer, ",
            "coalesce(m.revision, 0) AS revision, NULL::bigint AS unshipped ",
            "FROM (SELECT 1) AS clock LEFT JOIN lockstep_meta AS m ON m.namespace = $1 ",
            "UNION ALL ",
            "SELECT field, at_ms, CASE WHEN shipped > ",
            $b,
            " OR size > $3 THEN NULL ELSE value END, size, written_at, write_id, writer, ",
            "revision, CASE WHEN shipped > ",
            $b,
            " THEN field_bytes END ",
            "FROM (SELECT sized.*, sum(counted) OVER (ORDER BY field_bytes, field COLLATE \"C\") ",
            "AS shipped FROM (SELECT field, at_ms, value, octet_length(value)::bigint AS size, ",
            "written_at, write_id, writer, revision, ",
            counted!(),
            " AS counted, sum(",
            counted!(),
            ") OVER (PARTITION BY field) AS field_bytes ",
            "FROM lockstep_entries WHERE namespace = $1 AND field = ANY($2) ",
            "AND NOT EXISTS (SELECT 1 FROM lockstep_meta AS h WHERE h.namespace = $1 ",
            "AND h.epoch = ",
            $e,
            " AND h.created IS NOT NULL AND h.revision = ",
            $r,
            ")) AS sized) AS ranked"
        )
    };
}

const SQL: Statements = Statements {
    fetch: Stmt {
        sql: fetch!("$4", "$5", "$6", "$7", "$8"),
        binds: &[
            Namespace,
            Keys,
            Limit,
            HeldEpoch,
            HeldRevision,
            SchemaDigest,
            SchemaBytes,
            Budget,
        ],
    },
    // One statement, one snapshot: the record takes the revision of the
    // meta row the fetch reads. Data-modifying CTEs run whether or not the
    // fetch reads them; expired records another fetch is deleting are
    // skipped, not waited for. A record is not worth a flush of the log:
    // this statement's own transaction commits without waiting for it
    // (`synchronous_commit` off for it alone; a crash may lose the last
    // records, which the next fetches write again).
    reporting: &[Stmt {
        sql: concat!(
            "WITH served AS (SELECT ",
            now_ms!(),
            " AS now, coalesce((SELECT revision FROM lockstep_meta WHERE namespace = $1), 0) ",
            "AS revision, set_config('synchronous_commit', 'off', true) AS unflushed), ",
            "recorded AS (INSERT INTO lockstep_reports ",
            "(namespace, process, seen, revision, expires, body) ",
            "SELECT $1, $4, now, revision, now + $5, $6 FROM served ",
            "ON CONFLICT (namespace, process) DO UPDATE SET seen = excluded.seen, ",
            "revision = excluded.revision, expires = excluded.expires, body = excluded.body), ",
            "swept AS (DELETE FROM lockstep_reports WHERE (namespace, process) IN (",
            "SELECT namespace, process FROM lockstep_reports WHERE namespace = $1 ",
            "AND process <> $4 AND expires <= (SELECT now FROM served) ",
            "ORDER BY expires LIMIT $7 FOR UPDATE SKIP LOCKED)) ",
            fetch!("$8", "$9", "$10", "$11", "$12")
        ),
        binds: &[
            Namespace,
            Keys,
            Limit,
            Process,
            ExpiresAfter,
            Body,
            Sweep,
            HeldEpoch,
            HeldRevision,
            SchemaDigest,
            SchemaBytes,
            Budget,
        ],
    }],
    records: Stmt {
        sql: concat!(
            "SELECT r.process, r.seen, r.revision, r.body, clock.now, NULL::text AS digest ",
            "FROM (SELECT ",
            now_ms!(),
            " AS now) AS clock LEFT JOIN lockstep_reports AS r ON r.namespace = $1 ",
            "AND r.expires > clock.now ",
            "UNION ALL SELECT NULL, published, NULL, schema, NULL, digest ",
            "FROM lockstep_schemas WHERE namespace = $1"
        ),
        binds: &[Namespace],
    },
    lock: Stmt {
        sql: concat!(
            "INSERT INTO lockstep_meta AS m (namespace, epoch, created, revision) VALUES ($1, $2, ",
            now_ms!(),
            ", 1) ON CONFLICT (namespace) DO UPDATE SET epoch = coalesce(m.epoch, excluded.epoch), ",
            "created = CASE WHEN m.epoch IS NULL THEN excluded.created ELSE m.created END, ",
            "revision = m.revision + 1"
        ),
        binds: &[Namespace, Epoch],
    },
    done: standard::DONE,
    now: Stmt {
        sql: concat!("SELECT ", now_ms!()),
        binds: &[],
    },
    // The entries written, as arrays (`unnest`), each looked up by its
    // primary key; `octet_length` reads no value kept apart.
    measure: None,
    pending: Stmt {
        sql: concat!(
            "SELECT coalesce(sum(octet_length(value)), 0)::bigint, ",
            "(SELECT coalesce(sum(octet_length(e.value)), 0)::bigint ",
            "FROM unnest($2::text[], $3::bigint[]) AS w(field, at_ms) ",
            "JOIN lockstep_entries AS e ON e.namespace = $1 AND e.field = w.field ",
            "AND e.at_ms = w.at_ms AND e.at_ms > $4) ",
            "FROM lockstep_entries WHERE namespace = $1 AND at_ms > $4"
        ),
        binds: &[Namespace, Field, EntryAt, Now],
    },
    upsert: Upsert::Arrays(Stmt {
        sql: concat!(
            "INSERT INTO lockstep_entries ",
            "(namespace, field, at_ms, value, write_id, written_at, writer, revision) ",
            "SELECT $1, t.field, t.at_ms, t.value, $5, $6, $7, ",
            "(SELECT revision FROM lockstep_meta WHERE namespace = $1) ",
            "FROM unnest($2::text[], $3::bigint[], $4::text[]) AS t(field, at_ms, value) ",
            "ON CONFLICT (namespace, field, at_ms) DO UPDATE SET value = excluded.value, ",
            "write_id = excluded.write_id, written_at = excluded.written_at, ",
            "writer = excluded.writer, revision = excluded.revision"
        ),
        binds: &[Namespace, Field, EntryAt, Value, Id, Now, By],
    }),
    prune: Stmt {
        sql: concat!(
            "DELETE FROM lockstep_entries WHERE namespace = $1 AND (field, at_ms) IN (",
            "SELECT field, at_ms FROM (",
            "SELECT field, at_ms, row_number() OVER (PARTITION BY field ORDER BY at_ms DESC) ",
            "AS rank FROM lockstep_entries WHERE namespace = $1 AND field = ANY($2) ",
            "AND at_ms <= $3) AS past WHERE rank > $4)"
        ),
        binds: &[Namespace, Keys, Now, Keep],
    },
    record: &[Stmt {
        sql: concat!(
            "WITH expired AS (DELETE FROM lockstep_writes WHERE namespace = $1 ",
            "AND written_at < $5) ",
            "INSERT INTO lockstep_writes (namespace, write_id, instants, written_at) ",
            "VALUES ($1, $2, $3, $4) RETURNING ",
            now_ms!()
        ),
        binds: &[Namespace, Id, Instants, Now, Expired],
    }],
    entry: Stmt {
        sql: concat!(
            "SELECT CASE WHEN octet_length(value) > $4 THEN NULL ELSE value END, ",
            "octet_length(value)::bigint, write_id, written_at, writer, revision ",
            "FROM lockstep_entries ",
            "WHERE namespace = $1 AND field = $2 AND at_ms = $3"
        ),
        binds: &[Namespace, Key, At, Limit],
    },
    delete: standard::DELETE,
    publish: &[
        standard::PUBLISH_LATEST,
        Stmt {
            sql: concat!(
                "INSERT INTO lockstep_schemas (namespace, digest, schema, published) ",
                "VALUES ($1, $2, $3, ",
                now_ms!(),
                ") ON CONFLICT (namespace, digest) DO UPDATE SET schema = excluded.schema, ",
                "published = excluded.published"
            ),
            binds: &[Namespace, SchemaDigest, Schema],
        },
        Stmt {
            sql: concat!(
                "DELETE FROM lockstep_schemas WHERE namespace = $1 AND published < ",
                now_ms!(),
                " - $2"
            ),
            binds: &[Namespace, SchemaKept],
        },
    ],
    schema: standard::SCHEMA,
    namespaces: standard::NAMESPACES,
};

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
pub type PostgresStore = SqlStore<Postgres>;

impl SqlStore<Postgres> {
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
                &format!(
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
        Ok(SqlStore::with(Postgres { options }, url))
    }
}

/// PostgreSQL's dialect of the SQL stores.
pub struct Postgres {
    options: PgConnectOptions,
}

fn bind<'q>(query: SqlxQuery<'q, Pg>, arg: Arg<'q>) -> SqlxQuery<'q, Pg> {
    match arg {
        Arg::Keys(keys) => query.bind(keys),
        Arg::Texts(texts) => query.bind(texts),
        Arg::Ints(ints) => query.bind(ints),
        Arg::Written(written) => query.bind(json_written(&written)),
        scalar => bind_scalar(query, &scalar),
    }
}

impl Dialect for Postgres {
    type Db = Pg;
    type Conn = PgConnection;

    const BEGIN_WRITE: &'static str = "BEGIN";

    const SQL: Statements = SQL;

    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let mut c = PgConnection::connect_with(&self.options).await?;
        let present: bool = sqlx::query_scalar(PRESENT).fetch_one(&mut c).await?;
        if !present {
            let mut tx = c.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(LAYOUT_LOCK)
                .execute(&mut *tx)
                .await?;
            // Whoever held the lock before may have done it all: `ALTER
            // TABLE` locks the table even when the column is there, and
            // every fetch would wait for it.
            let present: bool = sqlx::query_scalar(PRESENT).fetch_one(&mut *tx).await?;
            if !present {
                sqlx::Executor::execute(&mut *tx, LAYOUT).await?;
                sqlx::Executor::execute(&mut *tx, UPGRADE).await?;
            }
            tx.commit().await?;
        }
        Ok(c)
    }

    fn class(e: &sqlx::Error) -> Class {
        if let Some(class) = common_class(e) {
            return class;
        }
        let sqlx::Error::Database(db) = e else {
            return Class::Broken;
        };
        match db.code().as_deref().unwrap_or_default() {
            // undefined_table
            "42P01" => Class::MissingLayout,
            // invalid_authorization_specification, invalid_password,
            // invalid_catalog_name (no such database), invalid_schema_name
            // (`no schema has been selected to create in`),
            // insufficient_privilege
            "28000" | "28P01" | "3D000" | "3F000" | "42501" => Class::Misconfigured,
            // connection_exception, and the server shutting the session
            // down (admin_shutdown, crash_shutdown, cannot_connect_now):
            // sent just before it closes the connection.
            c if c.starts_with("08") || c.starts_with("57P") => Class::Broken,
            _ => Class::Refused,
        }
    }

    fn run<'c>(
        c: &'c mut PgConnection,
        sql: &'c str,
        args: Vec<Arg<'c>>,
        kinds: &'c [Kind],
    ) -> impl Future<Output = Result<Out, sqlx::Error>> + Send + 'c {
        run_with::<Pg>(
            c,
            sql,
            args,
            kinds,
            bind,
            sqlx::postgres::PgQueryResult::rows_affected,
        )
    }

    /// One statement: one round trip, one snapshot.
    fn run_reporting<'c>(
        c: &'c mut PgConnection,
        stmts: Vec<(&'static str, Vec<Arg<'c>>)>,
        kinds: &'c [Kind],
    ) -> impl Future<Output = Result<Out, sqlx::Error>> + Send + 'c {
        in_turn::<Self>(c, stmts, kinds)
    }
}
