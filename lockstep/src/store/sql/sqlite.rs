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
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sqlx::{Connection, Sqlite as Lite};

use super::SqlStore;
use super::dialect::{
    Arg, Class, Dialect, FileId, Kind, Out, Param::*, REVISIONED, SqlxQuery, Statements, Stmt,
    Upsert, add_revision, bind_scalar, common_class, in_turn, json_keys, json_written, run_with,
    standard,
};
use crate::error::Error;
use crate::store::url::{redact, scrub, secrets};

/// The entries' table, named `$name`: a table with a rowid, its `value`
/// last (see [`ENTRIES_BEFORE`]).
macro_rules! entries {
    ($name:literal) => {
        concat!(
            "CREATE TABLE IF NOT EXISTS ",
            $name,
            " (
    namespace  TEXT    NOT NULL,
    field      TEXT    NOT NULL,
    at_ms      INTEGER NOT NULL,
    write_id   TEXT    NOT NULL,
    written_at INTEGER NOT NULL,
    writer     TEXT    NOT NULL,
    revision   INTEGER NOT NULL DEFAULT 0,
    value      TEXT    NOT NULL,
    PRIMARY KEY (namespace, field, at_ms)
);
"
        )
    };
}

/// The tables lockstep creates in SQLite when they are missing.
const LAYOUT: &str = concat!(
    "\
CREATE TABLE IF NOT EXISTS lockstep_meta (
    namespace  TEXT PRIMARY KEY,
    epoch      TEXT,
    created    INTEGER,
    revision   INTEGER NOT NULL DEFAULT 0,
    schema     TEXT
) WITHOUT ROWID;
",
    entries!("lockstep_entries"),
    "\
CREATE TABLE IF NOT EXISTS lockstep_writes (
    namespace  TEXT    NOT NULL,
    write_id   TEXT    NOT NULL,
    instants   TEXT    NOT NULL,
    written_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, write_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS lockstep_writes_written_at ON lockstep_writes (namespace, written_at);
CREATE TABLE IF NOT EXISTS lockstep_reports (
    namespace  TEXT    NOT NULL,
    process    TEXT    NOT NULL,
    seen       INTEGER NOT NULL,
    revision   INTEGER NOT NULL,
    expires    INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    PRIMARY KEY (namespace, process)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS lockstep_reports_expires ON lockstep_reports (namespace, expires);
CREATE TABLE IF NOT EXISTS lockstep_schemas (
    namespace  TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    schema     TEXT    NOT NULL,
    published  INTEGER NOT NULL,
    PRIMARY KEY (namespace, digest)
) WITHOUT ROWID;
"
);

/// Whether the table `?1` lacks its `revision` column: SQLite has no `ADD
/// COLUMN IF NOT EXISTS`.
const MISSING: &str = "SELECT count(*) = 0 FROM pragma_table_info(?1) WHERE name = 'revision'";

/// How long a writer waits for another to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening a file that another process is setting up may be
/// retried (switching to write-ahead logging cannot wait for a lock).
const OPEN_RETRY: Duration = Duration::from_secs(4);

/// Whether the layout is there already, columns and all, the entries'
/// `value` last.
const PRESENT: &str = "SELECT (SELECT count(*) = 5 FROM sqlite_master WHERE type = 'table' \
    AND name IN ('lockstep_meta', 'lockstep_entries', 'lockstep_writes', 'lockstep_reports', \
        'lockstep_schemas')) \
    AND (SELECT count(*) FROM pragma_table_info('lockstep_meta') WHERE name = 'revision') \
    AND (SELECT count(*) FROM pragma_table_info('lockstep_entries') WHERE name = 'revision') \
    AND coalesce(( \
        SELECT name = 'value' FROM pragma_table_info('lockstep_entries') ORDER BY cid DESC LIMIT 1 \
    ), 0)";

/// Whether the entries' table is of an older layout: a `WITHOUT ROWID`
/// table with its `value` before other columns. Such a table measures a
/// value by reading it: a range of an index b-tree compares each row's
/// whole record, overflow pages and all, and the columns after a long
/// value are read through its overflow pages.
const ENTRIES_BEFORE: &str = "SELECT coalesce(( \
    SELECT name <> 'value' FROM pragma_table_info('lockstep_entries') ORDER BY cid DESC LIMIT 1 \
), 0)";

/// Rebuilds an older layout's entries as [`LAYOUT`] has them, in the
/// transaction that creates the layout: every row kept, `revision` added
/// first if it lacked it.
const ENTRIES_REBUILT: &str = concat!(
    entries!("lockstep_entries_rebuilt"),
    "\
INSERT INTO lockstep_entries_rebuilt
    (namespace, field, at_ms, write_id, written_at, writer, revision, value)
    SELECT namespace, field, at_ms, write_id, written_at, writer, revision, value
    FROM lockstep_entries;
DROP TABLE lockstep_entries;
ALTER TABLE lockstep_entries_rebuilt RENAME TO lockstep_entries;
"
);

/// SQLite's clock in ms (`'now'` has millisecond resolution and is the same
/// throughout one statement).
macro_rules! now_ms {
    () => {
        "CAST(round(unixepoch('subsec') * 1000) AS INTEGER)"
    };
}

/// A text column's length in bytes (`length` counts characters of a
/// text): of `value` unless another column is named. `octet_length` of a
/// column reads its length from the record's header, not the text from the
/// overflow pages a long one fills.
macro_rules! size {
    () => {
        size!("value")
    };
    ($column:literal) => {
        concat!("octet_length(", $column, ")")
    };
}

/// What an entry's value counts towards its field's bytes: its length in
/// bytes (`?3` the size limit), 0 over the limit (it is never shipped).
macro_rules! counted {
    () => {
        concat!("CASE WHEN ", size!(), " > ?3 THEN 0 ELSE ", size!(), " END")
    };
}

/// The fetch (`?1` the namespace, `?2` the keys, `?3` the size limit, `?4`
/// and `?5` the epoch and revision held, `?6` and `?7` the digest and
/// length in bytes of the schema the fetch names, looked up by its primary
/// key, `?8` the budget), in three parts `UNION ALL`: the clock-and-epoch
/// row, the entries of the fields shipped, the entries of the fields not.
///
/// `sized` holds the entries asked for without their values (each value's
/// length, from its record's header), read only when the registry's row is
/// not at the epoch and revision held: that check is the outer loop
/// (`CROSS JOIN` keeps SQLite's join order), so unchanged it yields no row,
/// and neither the list of keys nor the entries are read (as a `WHERE`
/// term, SQLite built the list of keys first). `ranked` sums each field's
/// bytes and the running total of the fields' bytes, smallest field first,
/// ties by name (a window over the fields alone). The fields within the
/// budget are read again, by their primary key, with their values; the
/// others' entries come from `sized`. Both are `MATERIALIZED`: SQLite
/// would otherwise copy each row, value and all, into the sorters of the
/// windows. The range is read through the primary key's index, and each
/// row up to its `value`, the last column, whose length its record's header
/// gives: a value is read only when it is shipped.
const FETCH: Stmt = Stmt {
    sql: concat!(
        "WITH sized AS MATERIALIZED (SELECT field, at_ms, ",
        size!(),
        " AS size, ",
        counted!(),
        " AS counted, written_at, write_id, writer, revision FROM (SELECT 1 WHERE NOT EXISTS (",
        "SELECT 1 FROM lockstep_meta AS h WHERE h.namespace = ?1 AND h.epoch = ?4 ",
        "AND h.created IS NOT NULL AND h.revision = ?5)) AS changed ",
        "CROSS JOIN lockstep_entries ",
        "WHERE namespace = ?1 AND field IN (SELECT value FROM json_each(?2))), ",
        "ranked AS MATERIALIZED (SELECT field, field_bytes, ",
        "sum(field_bytes) OVER (ORDER BY field_bytes, field) AS shipped ",
        "FROM (SELECT field, sum(counted) AS field_bytes FROM sized GROUP BY field)) ",
        "SELECT NULL AS field, ",
        now_ms!(),
        " * 1000 AS at_ms, m.epoch AS value, CASE WHEN ?6 = '' THEN m.schema IS NOT NULL ",
        "ELSE m.schema IS NOT NULL AND EXISTS (SELECT 1 FROM lockstep_schemas AS s ",
        "WHERE s.namespace = ?1 ",
        "AND s.digest = ?6 AND ",
        size!("s.schema"),
        " = ?7) END AS size, ",
        "m.created AS written_at, CASE WHEN m.epoch = ?4 AND m.created IS NOT NULL ",
        "AND m.revision = ?5 THEN 'unchanged' END AS write_id, NULL AS writer, ",
        "coalesce(m.revision, 0) AS revision, NULL AS unshipped ",
        "FROM (SELECT 1) AS clock LEFT JOIN lockstep_meta AS m ON m.namespace = ?1 ",
        "UNION ALL ",
        "SELECT e.field, e.at_ms, CASE WHEN ",
        size!("e.value"),
        " > ?3 THEN NULL ELSE e.value END, ",
        size!("e.value"),
        ", e.written_at, e.write_id, e.writer, e.revision, NULL ",
        "FROM ranked AS r CROSS JOIN lockstep_entries AS e ",
        "ON e.namespace = ?1 AND e.field = r.field WHERE r.shipped <= ?8 ",
        "UNION ALL ",
        "SELECT s.field, s.at_ms, NULL, s.size, s.written_at, s.write_id, s.writer, ",
        "s.revision, r.field_bytes FROM ranked AS r CROSS JOIN sized AS s ",
        "ON s.field = r.field WHERE r.shipped > ?8"
    ),
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
};

const SQL: Statements = Statements {
    fetch: FETCH,
    // In one transaction that holds the write lock (see `run_reporting`):
    // the record takes the revision the fetch then serves.
    reporting: &[
        Stmt {
            sql: concat!(
                "INSERT INTO lockstep_reports (namespace, process, seen, revision, expires, body) ",
                "SELECT ?1, ?2, now, coalesce((SELECT revision FROM lockstep_meta ",
                "WHERE namespace = ?1), 0), now + ?3, ?4 FROM (SELECT ",
                now_ms!(),
                " AS now) WHERE true ON CONFLICT (namespace, process) DO UPDATE SET ",
                "seen = excluded.seen, revision = excluded.revision, ",
                "expires = excluded.expires, body = excluded.body"
            ),
            binds: &[Namespace, Process, ExpiresAfter, Body],
        },
        Stmt {
            sql: concat!(
                "DELETE FROM lockstep_reports WHERE (namespace, process) IN (",
                "SELECT namespace, process FROM lockstep_reports WHERE namespace = ?1 ",
                "AND process <> ?2 AND expires <= ",
                now_ms!(),
                " ORDER BY expires LIMIT ?3)"
            ),
            binds: &[Namespace, Process, Sweep],
        },
        FETCH,
    ],
    records: Stmt {
        sql: concat!(
            "SELECT r.process, r.seen, r.revision, r.body, clock.now, NULL AS digest ",
            "FROM (SELECT ",
            now_ms!(),
            " AS now) AS clock LEFT JOIN lockstep_reports AS r ON r.namespace = ?1 ",
            "AND r.expires > clock.now ",
            "UNION ALL SELECT NULL, published, NULL, schema, NULL, digest ",
            "FROM lockstep_schemas WHERE namespace = ?1"
        ),
        binds: &[Namespace],
    },
    lock: Stmt {
        sql: concat!(
            "INSERT INTO lockstep_meta (namespace, epoch, created, revision) VALUES (?1, ?2, ",
            now_ms!(),
            ", 1) ON CONFLICT (namespace) DO UPDATE SET ",
            "epoch = coalesce(lockstep_meta.epoch, excluded.epoch), ",
            "created = CASE WHEN lockstep_meta.epoch IS NULL THEN excluded.created ",
            "ELSE lockstep_meta.created END, revision = lockstep_meta.revision + 1"
        ),
        binds: &[Namespace, Epoch],
    },
    done: standard::DONE,
    now: Stmt {
        sql: concat!("SELECT ", now_ms!()),
        binds: &[],
    },
    // The entries written as `[field, instant]` pairs (`json_each`), each
    // looked up by its primary key.
    measure: None,
    pending: Stmt {
        sql: concat!(
            "SELECT coalesce(sum(",
            size!(),
            "), 0), (SELECT coalesce(sum(",
            size!("e.value"),
            "), 0) FROM json_each(?2) AS w JOIN lockstep_entries AS e ",
            "ON e.namespace = ?1 AND e.field = w.value ->> 0 AND e.at_ms = w.value ->> 1 ",
            "AND e.at_ms > ?3) FROM lockstep_entries WHERE namespace = ?1 AND at_ms > ?3"
        ),
        binds: &[Namespace, Written, Now],
    },
    upsert: Upsert::Rows {
        head: "INSERT INTO lockstep_entries \
            (namespace, field, at_ms, value, write_id, written_at, writer, revision) VALUES ",
        row: "(?, ?, ?, ?, ?, ?, ?, (SELECT revision FROM lockstep_meta WHERE namespace = ?))",
        tail: " ON CONFLICT (namespace, field, at_ms) DO UPDATE SET value = excluded.value, \
            write_id = excluded.write_id, written_at = excluded.written_at, \
            writer = excluded.writer, revision = excluded.revision",
        binds: &[Namespace, Field, EntryAt, Value, Id, Now, By, Namespace],
        // SQLite binds at most 32 766 parameters a statement.
        max: 1_000,
    },
    prune: Stmt {
        sql: concat!(
            "DELETE FROM lockstep_entries WHERE namespace = ?1 AND (field, at_ms) IN (",
            "SELECT field, at_ms FROM (",
            "SELECT field, at_ms, row_number() OVER (PARTITION BY field ORDER BY at_ms DESC) ",
            "AS rank FROM lockstep_entries WHERE namespace = ?1 AND at_ms <= ?3 ",
            "AND field IN (SELECT value FROM json_each(?2))",
            ") WHERE rank > ?4)"
        ),
        binds: &[Namespace, Keys, Now, Keep],
    },
    record: &[
        Stmt {
            sql: "DELETE FROM lockstep_writes WHERE namespace = ?1 AND written_at < ?2",
            binds: &[Namespace, Expired],
        },
        Stmt {
            sql: concat!(
                "INSERT INTO lockstep_writes (namespace, write_id, instants, written_at) ",
                "VALUES (?1, ?2, ?3, ?4) RETURNING ",
                now_ms!()
            ),
            binds: &[Namespace, Id, Instants, Now],
        },
    ],
    entry: Stmt {
        sql: concat!(
            "SELECT CASE WHEN ",
            size!(),
            " > ?4 THEN NULL ELSE value END, ",
            size!(),
            ", write_id, written_at, writer, revision FROM lockstep_entries ",
            "WHERE namespace = ?1 AND field = ?2 AND at_ms = ?3"
        ),
        binds: &[Namespace, Key, At, Limit],
    },
    delete: standard::DELETE,
    publish: &[
        standard::PUBLISH_LATEST,
        Stmt {
            sql: concat!(
                "INSERT INTO lockstep_schemas (namespace, digest, schema, published) ",
                "VALUES (?1, ?2, ?3, ",
                now_ms!(),
                ") ON CONFLICT (namespace, digest) DO UPDATE SET schema = excluded.schema, ",
                "published = excluded.published"
            ),
            binds: &[Namespace, SchemaDigest, Schema],
        },
        Stmt {
            sql: concat!(
                "DELETE FROM lockstep_schemas WHERE namespace = ?1 AND published < ",
                now_ms!(),
                " - ?2"
            ),
            binds: &[Namespace, SchemaKept],
        },
    ],
    schema: standard::SCHEMA,
    namespaces: standard::NAMESPACES,
};

/// A SQLite store (`sqlite://path`): the processes of one machine that open
/// the same file share its registries.
///
/// Does not open the file until its first call. Before each call it checks
/// that the path still names the file its connections have open (device
/// and inode): a file deleted and created again, or replaced, is opened
/// anew, and registries see a lost store (a new epoch).
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
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
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
            reason: scrub(&reason, &secrets(url)),
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
        Ok(SqlStore::with(Sqlite { options }, url))
    }
}

/// SQLite's dialect of the SQL stores.
pub struct Sqlite {
    options: SqliteConnectOptions,
}

fn bind<'q>(query: SqlxQuery<'q, Lite>, arg: Arg<'q>) -> SqlxQuery<'q, Lite> {
    match arg {
        Arg::Keys(keys) => query.bind(json_keys(keys)),
        Arg::Written(written) => query.bind(json_written(&written)),
        scalar => bind_scalar(query, &scalar),
    }
}

/// The primary result code of a SQLite error (the low byte of an extended
/// one).
fn primary(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff),
        _ => None,
    }
}

impl Sqlite {
    async fn open(&self) -> Result<SqliteConnection, sqlx::Error> {
        let mut c = SqliteConnection::connect_with(&self.options).await?;
        let present: bool = sqlx::query_scalar(PRESENT).fetch_one(&mut c).await?;
        if !present {
            let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
            sqlx::Executor::execute(&mut *tx, LAYOUT).await?;
            for table in REVISIONED {
                let missing: bool = sqlx::query_scalar(MISSING)
                    .bind(table)
                    .fetch_one(&mut *tx)
                    .await?;
                if missing {
                    let add = add_revision(table, "INTEGER");
                    sqlx::Executor::execute(&mut *tx, add.as_str()).await?;
                }
            }
            let before: bool = sqlx::query_scalar(ENTRIES_BEFORE)
                .fetch_one(&mut *tx)
                .await?;
            if before {
                sqlx::Executor::execute(&mut *tx, ENTRIES_REBUILT).await?;
            }
            tx.commit().await?;
        }
        Ok(c)
    }
}

impl Dialect for Sqlite {
    type Db = Lite;
    type Conn = SqliteConnection;

    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";

    const SQL: Statements = SQL;

    async fn connect(&self) -> Result<SqliteConnection, sqlx::Error> {
        let started = tokio::time::Instant::now();
        loop {
            match self.open().await {
                // SQLITE_BUSY, SQLITE_LOCKED
                Err(e) if matches!(primary(&e), Some(5 | 6)) && started.elapsed() < OPEN_RETRY => {
                    tokio::time::sleep(Duration::from_millis(10 + fastrand::u64(..40))).await;
                }
                other => return other,
            }
        }
    }

    fn file_id(&self) -> FileId {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(self.options.get_filename()).ok()?;
        Some((meta.dev(), meta.ino()))
    }

    fn class(e: &sqlx::Error) -> Class {
        if let Some(class) = common_class(e) {
            return class;
        }
        if matches!(e, sqlx::Error::Database(db) if db.message().starts_with("no such table")) {
            return Class::MissingLayout;
        }
        if let sqlx::Error::Database(db) = e
            && db.code().as_deref() == Some("1032")
        {
            // SQLITE_READONLY_DBMOVED: the file was deleted or renamed under
            // the connection; the next one opens what the path names now.
            return Class::Broken;
        }
        match primary(e) {
            // SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN (no permission,
            // no such directory), SQLITE_NOTADB, SQLITE_AUTH
            Some(3 | 8 | 14 | 26 | 23) => Class::Misconfigured,
            // SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL: the file under the
            // connection is in trouble; open it again.
            Some(10 | 11 | 13) => Class::Broken,
            // SQLITE_BUSY and SQLITE_LOCKED (`database is locked`) pass.
            _ => Class::Refused,
        }
    }

    fn run<'c>(
        c: &'c mut SqliteConnection,
        sql: &'c str,
        args: Vec<Arg<'c>>,
        kinds: &'c [Kind],
    ) -> impl Future<Output = Result<Out, sqlx::Error>> + Send + 'c {
        run_with::<Lite>(
            c,
            sql,
            args,
            kinds,
            bind,
            sqlx::sqlite::SqliteQueryResult::rows_affected,
        )
    }

    /// A transaction that takes the write lock first: a local file, where
    /// round trips cost no network.
    async fn run_reporting<'c>(
        c: &'c mut SqliteConnection,
        stmts: Vec<(&'static str, Vec<Arg<'c>>)>,
        kinds: &'c [Kind],
    ) -> Result<Out, sqlx::Error> {
        let mut tx = c.begin_with(Self::BEGIN_WRITE).await?;
        let out = in_turn::<Self>(&mut tx, stmts, kinds).await?;
        tx.commit().await?;
        Ok(out)
    }
}
