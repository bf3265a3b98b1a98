//! The MySQL and MariaDB store:
//! `mysql://[user[:password]@]host[:port]/database[?ssl-mode=…]` (or
//! `mariadb://…`), through sqlx's MySQL driver. MySQL 8.0 or MariaDB 10.6
//! and later (`JSON_TABLE`, window functions).
//!
//! The horizon is checked by the server's `NOW(6)`, in UTC. The tables must
//! be InnoDB: lockstep creates them so, and refuses tables of another engine
//! (MyISAM, Aria, MEMORY keep no transaction, so a write refused midway
//! would stay half applied) as a misconfiguration. Every connection sets
//! `autocommit = 1` (a server whose `init_connect` turns it off would keep a
//! fetch inside one old snapshot forever) and `READ COMMITTED`: a commit
//! first locks the registry's `lockstep_meta` row (an upsert), and every
//! row it then reads or writes is only written under that lock, so reading
//! the latest committed rows is exactly what it needs; `REPEATABLE READ`
//! would add gap locks that make writers of neighbouring registries wait
//! for each other (and deadlock) without protecting anything more.

use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection, MySql};

use super::SqlStore;
use super::dialect::{
    Arg, Class, Dialect, Kind, Out, Param::*, SqlxQuery, Statements, Stmt, Upsert, bind_scalar,
    cells, common_class, json_keys, json_written, run_with,
};
use crate::error::Error;
use crate::store::url::{redact, scrub, secrets};
use inline::inline;
use layout::LAYOUT;

mod inline;
mod layout;

/// Set on every connection: see the module's documentation.
const SESSION: [&str; 2] = [
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "SET autocommit = 1, time_zone = '+00:00'",
];

/// The server's clock in ms, floored.
macro_rules! now_ms {
    () => {
        "CAST(FLOOR(UNIX_TIMESTAMP(NOW(6)) * 1000) AS SIGNED)"
    };
}

/// The keys bound as a JSON array, as a table.
macro_rules! keys {
    () => {
        "(SELECT k FROM JSON_TABLE(?, '$[*]' COLUMNS \
         (k VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin PATH '$')) AS keys_)"
    };
}

/// The length in bytes of the value of the entry `$row` (the table's name
/// or alias in the statement): its `value_bytes`, or, where a row was
/// written without it, its value's length, read by a lookup of its own, so
/// that only that row's value is read (the value in the outer query's
/// columns would have InnoDB read every row's).
macro_rules! measured {
    ($row:literal) => {
        concat!(
            "COALESCE(",
            $row,
            ".value_bytes, (SELECT LENGTH(unmeasured.value) FROM lockstep_entries AS unmeasured ",
            "WHERE unmeasured.namespace = ",
            $row,
            ".namespace AND unmeasured.field = ",
            $row,
            ".field AND unmeasured.at_ms = ",
            $row,
            ".at_ms))"
        )
    };
}

/// What an entry's value counts towards its field's bytes: its length in
/// bytes (one placeholder: the size limit), 0 over the limit (it is never
/// shipped).
macro_rules! counted {
    () => {
        concat!(
            "CASE WHEN ",
            measured!("lockstep_entries"),
            " > ? THEN 0 ELSE ",
            measured!("lockstep_entries"),
            " END"
        )
    };
}

/// The fetch: the entries are read only when the registry's row is not at
/// the epoch and revision held (an uncorrelated `NOT EXISTS` on its
/// primary key, epochs compared byte for byte, on the outermost `SELECT`
/// of the entries: the server evaluates it once, first, and unchanged it
/// neither reads the entries nor sets up the windows' tables). Each entry
/// gets its field's bytes (a window over the field), then the running
/// total of the fields' bytes, smallest field first, ties by name
/// (`ascii_bin`, byte for byte; the default frame takes in the whole
/// field); the windows see the values' lengths only (the stored
/// `value_bytes`, so no value is read to be measured), and a value is looked
/// up by its primary key only when its field's total is within the budget,
/// so no value not shipped goes through the windows' temporary tables. The
/// schema the fetch names is looked up by its primary key, its length in
/// bytes compared.
const FETCH: Stmt = Stmt {
    sql: concat!(
        "SELECT NULL AS field, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED) AS at_ms, ",
        "m.epoch AS value, CAST(CASE WHEN ? = '' THEN m.`schema` IS NOT NULL ",
        "ELSE m.`schema` IS NOT NULL AND EXISTS (SELECT 1 FROM lockstep_schemas AS s ",
        "WHERE s.namespace = ? ",
        "AND s.digest = ? AND OCTET_LENGTH(s.`schema`) = ?) END AS SIGNED) AS size, ",
        "m.created AS written_at, CASE WHEN m.epoch = ? COLLATE utf8mb4_bin ",
        "AND m.created IS NOT NULL ",
        "AND m.revision = ? THEN 'unchanged' END AS write_id, NULL AS writer, ",
        "CAST(COALESCE(m.revision, 0) AS SIGNED) AS revision, NULL AS unshipped ",
        "FROM (SELECT 1) AS clock LEFT JOIN lockstep_meta AS m ON m.namespace = ? ",
        "UNION ALL ",
        // Names are read as utf8mb4: sqlx reads `ascii_bin` as bytes.
        "SELECT CONVERT(field USING utf8mb4), at_ms, ",
        "CASE WHEN shipped > ? OR size > ? THEN NULL ELSE (SELECT v.value ",
        "FROM lockstep_entries AS v WHERE v.namespace = ? AND v.field = ranked.field ",
        "AND v.at_ms = ranked.at_ms) END, size, written_at, write_id, writer, revision, ",
        "CASE WHEN shipped > ? THEN field_bytes END ",
        "FROM (SELECT sized.*, CAST(SUM(counted) OVER (ORDER BY field_bytes, field) ",
        "AS SIGNED) AS shipped FROM (SELECT field, at_ms, CAST(",
        measured!("lockstep_entries"),
        " AS SIGNED) AS size, ",
        "written_at, write_id, writer, revision, ",
        counted!(),
        " AS counted, CAST(SUM(",
        counted!(),
        ") OVER (PARTITION BY field) AS SIGNED) AS field_bytes ",
        "FROM lockstep_entries WHERE namespace = ? AND field IN ",
        keys!(),
        ") AS sized) AS ranked ",
        "WHERE NOT EXISTS (SELECT 1 FROM lockstep_meta AS h WHERE h.namespace = ? ",
        "AND h.epoch = ? COLLATE utf8mb4_bin AND h.created IS NOT NULL AND h.revision = ?)"
    ),
    binds: &[
        SchemaDigest,
        Namespace,
        SchemaDigest,
        SchemaBytes,
        HeldEpoch,
        HeldRevision,
        Namespace,
        Budget,
        Limit,
        Namespace,
        Budget,
        Limit,
        Limit,
        Namespace,
        Keys,
        Namespace,
        HeldEpoch,
        HeldRevision,
    ],
};

const SQL: Statements = Statements {
    fetch: FETCH,
    // Sent as one text of four statements (see `run_reporting`), each its
    // own transaction: the revision is read before the fetch reads, so the
    // one recorded is never newer than the one served. It is read by a
    // plain `SELECT` into a session variable: an `INSERT` reading
    // `lockstep_meta` would lock its row and wait for a commit holding it.
    reporting: &[
        Stmt {
            sql: "SELECT COALESCE(MAX(revision), 0) INTO @lockstep_revision FROM lockstep_meta \
                WHERE namespace = ?",
            binds: &[Namespace],
        },
        Stmt {
            sql: concat!(
                "INSERT INTO lockstep_reports (namespace, process, seen, revision, expires, body) ",
                "VALUES (?, ?, ",
                now_ms!(),
                ", @lockstep_revision, ",
                now_ms!(),
                " + ?, ?) ON DUPLICATE KEY UPDATE seen = VALUES(seen), ",
                "revision = VALUES(revision), expires = VALUES(expires), body = VALUES(body)"
            ),
            binds: &[Namespace, Process, ExpiresAfter, Body],
        },
        Stmt {
            sql: concat!(
                "DELETE FROM lockstep_reports WHERE namespace = ? AND process <> ? ",
                "AND expires <= ",
                now_ms!(),
                " ORDER BY expires LIMIT ?"
            ),
            binds: &[Namespace, Process, Sweep],
        },
        FETCH,
    ],
    records: Stmt {
        sql: concat!(
            "SELECT CONVERT(r.process USING utf8mb4), r.seen, r.revision, r.body, clock.now, ",
            "NULL AS digest FROM (SELECT ",
            now_ms!(),
            " AS now) AS clock LEFT JOIN lockstep_reports AS r ON r.namespace = ? ",
            "AND r.expires > clock.now ",
            "UNION ALL SELECT NULL, published, NULL, `schema`, NULL, ",
            "CONVERT(digest USING utf8mb4) FROM lockstep_schemas WHERE namespace = ?"
        ),
        binds: &[Namespace, Namespace],
    },
    lock: Stmt {
        sql: concat!(
            "INSERT INTO lockstep_meta (namespace, epoch, created, revision) VALUES (?, ?, ",
            now_ms!(),
            // Assignments run in order: `created` reads the old epoch.
            ", 1) ON DUPLICATE KEY UPDATE created = IF(epoch IS NULL, VALUES(created), created), ",
            "epoch = COALESCE(epoch, VALUES(epoch)), revision = revision + 1"
        ),
        binds: &[Namespace, Epoch],
    },
    done: Stmt {
        sql: "SELECT instants FROM lockstep_writes WHERE namespace = ? AND write_id = ?",
        binds: &[Namespace, Id],
    },
    now: Stmt {
        sql: concat!("SELECT ", now_ms!()),
        binds: &[],
    },
    // The rows without a length, found without reading any value (a
    // derived table, kept apart: MySQL refuses to merge into an `UPDATE` a
    // table it updates), then each joined by its primary key: with none,
    // no row is read whole (`WHERE … IN (…)` had MariaDB read every row,
    // value and all, 1 s for the 180 MB of `wide_fetch_cost`).
    measure: Some(Stmt {
        sql: "UPDATE /*+ NO_MERGE(unmeasured) */ lockstep_entries AS e JOIN (\
            SELECT field, at_ms FROM lockstep_entries WHERE namespace = ? \
            AND value_bytes IS NULL) AS unmeasured ON e.namespace = ? \
            AND e.field = unmeasured.field AND e.at_ms = unmeasured.at_ms \
            SET e.value_bytes = LENGTH(e.value)",
        binds: &[Namespace, Namespace],
    }),
    // The entries written as `[field, instant]` pairs (`JSON_TABLE`), each
    // looked up by its primary key.
    pending: Stmt {
        sql: concat!(
            "SELECT CAST(COALESCE(SUM(",
            measured!("lockstep_entries"),
            "), 0) AS SIGNED), (SELECT CAST(COALESCE(SUM(",
            measured!("e"),
            "), 0) AS SIGNED) FROM JSON_TABLE(?, '$[*]' \
            COLUMNS (f VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin PATH '$[0]', \
            a BIGINT PATH '$[1]')) AS w JOIN lockstep_entries AS e ON e.namespace = ? \
            AND e.field = w.f AND e.at_ms = w.a AND e.at_ms > ?) \
            FROM lockstep_entries WHERE namespace = ? AND at_ms > ?"
        ),
        binds: &[Written, Namespace, Now, Namespace, Now],
    },
    upsert: Upsert::Rows {
        head: "INSERT INTO lockstep_entries \
            (namespace, field, at_ms, value, value_bytes, write_id, written_at, writer, revision) \
            VALUES ",
        // `LENGTH(value)`: the value this row sets, earlier in its list.
        row: "(?, ?, ?, ?, LENGTH(value), ?, ?, ?, \
            (SELECT revision FROM lockstep_meta WHERE namespace = ?))",
        tail: " ON DUPLICATE KEY UPDATE value = VALUES(value), \
            value_bytes = VALUES(value_bytes), write_id = VALUES(write_id), \
            written_at = VALUES(written_at), writer = VALUES(writer), \
            revision = VALUES(revision)",
        binds: &[Namespace, Field, EntryAt, Value, Id, Now, By, Namespace],
        // A prepared statement binds at most 65 535 parameters.
        max: 1_000,
    },
    // The entries to delete, found among the fields written (a derived
    // table, kept apart as `measure`'s), each then joined by its primary
    // key: `WHERE (field, at_ms) IN (…)` had MariaDB read every row of the
    // registry, value and all (a commit to the 180 MB of `wide_fetch_cost`
    // took 950 ms).
    prune: Stmt {
        sql: concat!(
            "DELETE /*+ NO_MERGE(old) */ e FROM lockstep_entries AS e JOIN (",
            "SELECT field, at_ms FROM (",
            "SELECT field, at_ms, row_number() OVER (PARTITION BY field ORDER BY at_ms DESC) ",
            "AS rnk FROM lockstep_entries WHERE namespace = ? AND at_ms <= ? AND field IN ",
            keys!(),
            ") AS past WHERE rnk > ?) AS old ON e.namespace = ? AND e.field = old.field ",
            "AND e.at_ms = old.at_ms"
        ),
        binds: &[Namespace, Now, Keys, Keep, Namespace],
    },
    // No `RETURNING` on MySQL: the clock is read by a statement of its own.
    record: &[
        Stmt {
            sql: "DELETE FROM lockstep_writes WHERE namespace = ? AND written_at < ?",
            binds: &[Namespace, Expired],
        },
        Stmt {
            sql: "INSERT INTO lockstep_writes (namespace, write_id, instants, written_at) \
                VALUES (?, ?, ?, ?)",
            binds: &[Namespace, Id, Instants, Now],
        },
        Stmt {
            sql: concat!("SELECT ", now_ms!()),
            binds: &[],
        },
    ],
    entry: Stmt {
        sql: "SELECT CASE WHEN LENGTH(value) > ? THEN NULL ELSE value END, \
            CAST(LENGTH(value) AS SIGNED), write_id, written_at, writer, revision \
            FROM lockstep_entries WHERE namespace = ? AND field = ? AND at_ms = ?",
        binds: &[Limit, Namespace, Key, At],
    },
    delete: Stmt {
        sql: "DELETE FROM lockstep_entries WHERE namespace = ? AND field = ? AND at_ms = ?",
        binds: &[Namespace, Key, At],
    },
    publish: &[
        Stmt {
            sql: "INSERT INTO lockstep_meta (namespace, `schema`) VALUES (?, ?) \
                ON DUPLICATE KEY UPDATE `schema` = VALUES(`schema`)",
            binds: &[Namespace, Schema],
        },
        Stmt {
            sql: concat!(
                "INSERT INTO lockstep_schemas (namespace, digest, `schema`, published) ",
                "VALUES (?, ?, ?, ",
                now_ms!(),
                ") ON DUPLICATE KEY UPDATE `schema` = VALUES(`schema`), ",
                "published = VALUES(published)"
            ),
            binds: &[Namespace, SchemaDigest, Schema],
        },
        Stmt {
            sql: concat!(
                "DELETE FROM lockstep_schemas WHERE namespace = ? AND published < ",
                now_ms!(),
                " - ?"
            ),
            binds: &[Namespace, SchemaKept],
        },
    ],
    schema: Stmt {
        sql: "SELECT `schema` FROM lockstep_meta WHERE namespace = ?",
        binds: &[Namespace],
    },
    namespaces: Stmt {
        sql: "SELECT CONVERT(namespace USING utf8mb4) FROM lockstep_meta",
        binds: &[],
    },
};

/// A MySQL or MariaDB store (`mysql://…`, `mariadb://…`).
///
/// Does not connect until its first call. Keeps up to two connections open
/// between calls; a registry that only reads holds one.
///
/// ```
/// use lockstep::store::{MysqlStore, Store};
///
/// let store = MysqlStore::open("mysql://app:s3cret@db.internal/flags").unwrap();
/// assert_eq!(store.describe(), "mysql://app:***@db.internal/flags");
/// assert!(MysqlStore::open("mysql://db.internal").is_err()); // no database
/// ```
pub type MysqlStore = SqlStore<Mysql>;

impl SqlStore<Mysql> {
    /// The SQL of the tables lockstep creates in MySQL when they are
    /// missing, for a database administrator who prefers to create them by
    /// hand (then the connecting user needs only `SELECT`, `INSERT`, `UPDATE`
    /// and `DELETE` on them, and `SELECT` on `information_schema.tables`).
    ///
    /// ```
    /// assert!(lockstep::store::MysqlStore::LAYOUT.contains("ENGINE=InnoDB"));
    /// ```
    pub const LAYOUT: &'static str = LAYOUT;

    /// A store in the database of `url`. Does not connect yet: the first
    /// call does.
    pub fn open(url: &str) -> Result<MysqlStore, Error> {
        let refused = |reason: String| Error::Url {
            url: redact(url),
            reason: scrub(
                &format!("{reason}; expected mysql://[user[:password]@]host[:port]/database"),
                &secrets(url),
            ),
        };
        let options = MySqlConnectOptions::from_str(url).map_err(|e| refused(e.to_string()))?;
        if options.get_database().is_none_or(str::is_empty) {
            return Err(refused("no database named".to_owned()));
        }
        Ok(SqlStore::with(Mysql { options }, url))
    }
}

/// MySQL's and MariaDB's dialect of the SQL stores.
pub struct Mysql {
    options: MySqlConnectOptions,
}

fn bind<'q>(query: SqlxQuery<'q, MySql>, arg: Arg<'q>) -> SqlxQuery<'q, MySql> {
    match arg {
        Arg::Keys(keys) => query.bind(json_keys(keys)),
        Arg::Written(written) => query.bind(json_written(&written)),
        scalar => bind_scalar(query, &scalar),
    }
}

impl Dialect for Mysql {
    type Db = MySql;
    type Conn = MySqlConnection;

    const BEGIN_WRITE: &'static str = "START TRANSACTION";

    const SQL: Statements = SQL;

    async fn connect(&self) -> Result<MySqlConnection, sqlx::Error> {
        let mut c = MySqlConnection::connect_with(&self.options).await?;
        for set in SESSION {
            sqlx::Executor::execute(&mut c, set).await?;
        }
        layout::prepare(&mut c).await?;
        Ok(c)
    }

    fn class(e: &sqlx::Error) -> Class {
        if let Some(class) = common_class(e) {
            return class;
        }
        let sqlx::Error::Database(db) = e else {
            return Class::Broken;
        };
        let number = db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map_or(0, |e| e.number());
        match number {
            // ER_NO_SUCH_TABLE
            1146 => Class::MissingLayout,
            // access denied to the database, the user, a table, a column or
            // a privilege; no such database; none selected; an unknown
            // engine; an authentication method refused; the server
            // read-only (a replica); secure transport required
            1044 | 1045 | 1049 | 1046 | 1142 | 1143 | 1227 | 1698 | 1286 | 1251 | 1290 | 3159 => {
                Class::Misconfigured
            }
            // the server shutting down, the connection killed (MariaDB,
            // MySQL)
            1053 | 1927 | 3169 => Class::Broken,
            _ => Class::Refused,
        }
    }

    fn run<'c>(
        c: &'c mut MySqlConnection,
        sql: &'c str,
        args: Vec<Arg<'c>>,
        kinds: &'c [Kind],
    ) -> impl Future<Output = Result<Out, sqlx::Error>> + Send + 'c {
        run_with::<MySql>(
            c,
            sql,
            args,
            kinds,
            bind,
            sqlx::mysql::MySqlQueryResult::rows_affected,
        )
    }

    /// One text of several statements (one round trip; placeholders are
    /// only for one statement, so the values are written in, see
    /// [`inline`]), each its own transaction in turn: the server stops at
    /// the first that fails.
    async fn run_reporting<'c>(
        c: &'c mut MySqlConnection,
        stmts: Vec<(&'static str, Vec<Arg<'c>>)>,
        kinds: &'c [Kind],
    ) -> Result<Out, sqlx::Error> {
        let text = stmts
            .into_iter()
            .map(|(sql, args)| inline(sql, args))
            .collect::<Vec<_>>()
            .join(";\n");
        // A text without arguments goes as a text query, not prepared.
        let rows = sqlx::Executor::fetch_all(c, text.as_str()).await?;
        cells(&rows, kinds)
    }
}
