//! What differs between SQL databases, and nothing else: the text of each
//! statement, the order its parameters are bound in, how a list of keys is
//! bound, how entries are upserted in batches, how a connection is opened
//! and which errors mean what. The steps of every call are in `calls.rs`,
//! once, for every database.

use std::future::Future;

use sqlx::query::Query;
use sqlx::{ColumnIndex, Connection, Database, Decode, Encode, Executor, IntoArguments, Type};

/// Which file a connection reads, where a store can tell: device and inode.
pub type FileId = Option<(u64, u64)>;

/// A value a statement takes, named by what it means; each dialect lists,
/// per statement, the parameters in the order its placeholders bind them
/// (PostgreSQL and SQLite number placeholders, MySQL's `?` are taken in
/// turn, so a value used twice is listed twice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// The registry's namespace.
    Namespace,
    /// The keys of a fetch or a prune, as one list.
    Keys,
    /// The key of a cancel or purge.
    Key,
    /// The instant of a cancel or purge.
    At,
    /// A new epoch id.
    Epoch,
    /// The write id.
    Id,
    /// The write's instants, comma-separated.
    Instants,
    /// The database's clock at the start of the commit (ms).
    Now,
    /// Write ids recorded before this (ms) are forgotten.
    Expired,
    /// How many entries at or before now a field keeps.
    Keep,
    /// The schema published (its JSON).
    Schema,
    /// The digest of the schema published, or of the one a fetch names
    /// ([`StoredSchema`](crate::store::stored::StoredSchema)); `''` for none, which
    /// no digest is.
    SchemaDigest,
    /// The length in bytes of the JSON of the schema a fetch names (-1 for
    /// none, which no text has).
    SchemaBytes,
    /// How long a build's schema nobody publishes is kept (ms):
    /// [`SCHEMA_KEPT`](crate::store::stored::SCHEMA_KEPT).
    SchemaKept,
    /// [`crate::value::MAX_VALUE_BYTES`]: larger values are never shipped.
    Limit,
    /// [`FETCH_BUDGET_BYTES`](crate::store::stored::FETCH_BUDGET_BYTES): the most
    /// bytes of values one fetch ships.
    Budget,
    /// The writer's name.
    By,
    /// An upserted entry's field (one per row, or all of them as an array).
    Field,
    /// An upserted entry's instant.
    EntryAt,
    /// An upserted entry's value.
    Value,
    /// The fields and instants a commit writes, as one list of `[field,
    /// instant]` pairs (JSON, for SQLite's `json_each` and MySQL's
    /// `JSON_TABLE`).
    Written,
    /// The reporting process's id.
    Process,
    /// The reporting process's record (JSON).
    Body,
    /// How long a record stays after its fetch (ms).
    ExpiresAfter,
    /// How many expired records a fetch deletes at most.
    Sweep,
    /// The epoch id a conditional fetch holds (`''` for none, which no
    /// epoch is).
    HeldEpoch,
    /// The revision a conditional fetch holds (-1 for none, which no
    /// revision is).
    HeldRevision,
}

/// One statement: its text and the parameters its placeholders bind, in
/// order.
pub struct Stmt {
    pub sql: &'static str,
    pub binds: &'static [Param],
}

/// How a dialect upserts a write's entries.
pub enum Upsert {
    /// One statement for all entries; [`Param::Field`], [`Param::EntryAt`]
    /// and [`Param::Value`] bind arrays (PostgreSQL's `unnest`).
    Arrays(Stmt),
    /// `head`, then `row` once per entry joined by `, `, then `tail`; the
    /// parameters of `binds` are bound once per row, at most `max` rows a
    /// statement.
    Rows {
        head: &'static str,
        row: &'static str,
        tail: &'static str,
        binds: &'static [Param],
        max: usize,
    },
}

/// Every statement of the layout, in one dialect.
///
/// Fetch rows have nine columns: `field`, `at_ms`, `value` (`NULL` when
/// longer than [`Param::Limit`], or when its field is not shipped), `size`
/// (the value's length in bytes), `written_at`, `write_id`, `writer`,
/// `revision`, and `unshipped`: `NULL`, or, for each entry of a field the
/// fetch does not ship, its field's bytes. A fetch ships at most
/// [`Param::Budget`] bytes of values: the fields asked for, ordered by
/// their bytes (the sum of their values' lengths in bytes, each counted as
/// 0 when longer than [`Param::Limit`], since it is never shipped) and then
/// by name, byte for byte, are shipped whole while the running total of
/// their bytes, the field's own included, is within the budget; the fields'
/// bytes are measured without reading the values where the database allows
/// it, and no value of a field not shipped is read beyond that. The first
/// row has a `NULL` field and the database's clock in µs (`at_ms`), the
/// epoch (`value`), whether the schema is held, 1 or 0 (`size`: with a
/// [`Param::SchemaDigest`], whether `lockstep_schemas` has that digest with
/// a text of [`Param::SchemaBytes`] bytes, one lookup of its primary key;
/// without, whether `lockstep_meta` has a schema), the epoch's creation
/// (`written_at`), `'unchanged'` when the registry's epoch and revision are
/// [`Param::HeldEpoch`] and [`Param::HeldRevision`], else `NULL`
/// (`write_id`), the registry's revision, and `NULL`. The entries follow
/// only when it is not unchanged: their part of the statement is
/// conditional on the registry's row, in the same snapshot, so an unchanged
/// fetch reads one row of `lockstep_meta` and no entry.
pub struct Statements {
    /// The clock-and-epoch row `UNION ALL` the entries of the keys, within
    /// the budget.
    pub fetch: Stmt,
    /// A fetch that also records the process's report, with the revision
    /// it serves (never a newer one), and deletes at most [`Param::Sweep`]
    /// expired records of the registry: the statements
    /// [`Dialect::run_reporting`] sends, the last returning the fetch's
    /// rows.
    pub reporting: &'static [Stmt],
    /// The live records of a registry and the schemas of its builds, in
    /// six columns: `process`, `seen`, `revision`, `body`, the database's
    /// clock in ms, and `NULL` (one row with a `NULL` process when there are
    /// no records), `UNION ALL` one row per schema of `lockstep_schemas`:
    /// `NULL`, `published`, `NULL`, its JSON, `NULL`, its digest.
    pub records: Stmt,
    /// Takes the registry's write lock, creating its epoch if it has none,
    /// and advances its revision (undone with the transaction when the call
    /// is refused).
    pub lock: Stmt,
    /// The instants of a write id already committed.
    pub done: Stmt,
    /// The database's clock in ms.
    pub now: Stmt,
    /// Where a database keeps each value's length apart (MySQL's
    /// `value_bytes`): fills it in for the registry's rows written without
    /// it (by hand, or by an older lockstep), reading only those rows'
    /// values. A commit runs it first, so that the next fetches measure
    /// every value without reading it.
    pub measure: Option<Stmt>,
    /// Two integers: the bytes of the values of the registry's pending
    /// entries (those after [`Param::Now`]), and of those among them that
    /// the commit replaces (at the fields and instants it writes).
    pub pending: Stmt,
    /// Writes entries, the same field and instant replaced, each with the
    /// registry's revision as `lock` advanced it.
    pub upsert: Upsert,
    /// Deletes entries at or before now beyond the latest `Keep`.
    pub prune: Stmt,
    /// Records the write id and forgets expired ones; the last statement
    /// returns the database's clock in ms after them.
    pub record: &'static [Stmt],
    /// One entry: value (`NULL` over the limit), size, `write_id`,
    /// `written_at`, `writer`, `revision`.
    pub entry: Stmt,
    /// Deletes the entry of a key at an instant.
    pub delete: Stmt,
    /// Publishes a schema, in turn in one write transaction: as the
    /// registry's latest (`lockstep_meta`), as its build's in
    /// `lockstep_schemas` with the database's clock, and deletes the
    /// registry's schemas published before that clock less
    /// [`Param::SchemaKept`].
    pub publish: &'static [Stmt],
    /// The registry's latest schema.
    pub schema: Stmt,
    /// Every namespace.
    pub namespaces: Stmt,
}

/// Statements PostgreSQL and SQLite share word for word (sqlx binds SQLite's
/// `$N` placeholders by number, as PostgreSQL's).
pub mod standard {
    use super::Param::*;
    use super::Stmt;

    pub const DONE: Stmt = Stmt {
        sql: "SELECT instants FROM lockstep_writes WHERE namespace = $1 AND write_id = $2",
        binds: &[Namespace, Id],
    };
    pub const DELETE: Stmt = Stmt {
        sql: "DELETE FROM lockstep_entries WHERE namespace = $1 AND field = $2 AND at_ms = $3",
        binds: &[Namespace, Key, At],
    };
    /// A published schema as the registry's latest: the first statement of
    /// [`Statements::publish`](super::Statements::publish).
    pub const PUBLISH_LATEST: Stmt = Stmt {
        sql: "INSERT INTO lockstep_meta (namespace, schema) VALUES ($1, $2) \
            ON CONFLICT (namespace) DO UPDATE SET schema = excluded.schema",
        binds: &[Namespace, Schema],
    };
    pub const SCHEMA: Stmt = Stmt {
        sql: "SELECT schema FROM lockstep_meta WHERE namespace = $1",
        binds: &[Namespace],
    };
    pub const NAMESPACES: Stmt = Stmt {
        sql: "SELECT namespace FROM lockstep_meta",
        binds: &[],
    };
}

/// The tables that gained a `revision` column after the first layout: the
/// tables of a database created by it are upgraded in place when a store
/// connects.
pub const REVISIONED: [&str; 2] = ["lockstep_meta", "lockstep_entries"];

/// The statement that adds its `revision` column, of SQL type `ty`, to a
/// table of the first layout (SQLite and MySQL have no `ADD COLUMN IF NOT
/// EXISTS`: each checks that it is missing first).
pub fn add_revision(table: &str, ty: &str) -> String {
    format!("ALTER TABLE {table} ADD COLUMN revision {ty} NOT NULL DEFAULT 0")
}

/// A value bound to a statement.
#[derive(Clone, Debug)]
pub enum Arg<'a> {
    Text(&'a str),
    Int(i64),
    /// A list of keys, bound as the dialect binds lists.
    Keys(&'a [&'a str]),
    /// An array of texts (only for [`Upsert::Arrays`]).
    Texts(Vec<&'a str>),
    /// An array of integers (only for [`Upsert::Arrays`]).
    Ints(Vec<i64>),
    /// The fields and instants a commit writes ([`Param::Written`]), bound
    /// as [`json_written`] text.
    Written(Vec<(&'a str, i64)>),
}

/// What a column of a result is read as (always nullable).
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Int,
    Text,
}

/// One cell of a result.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Int(Option<i64>),
    Text(Option<String>),
}

impl Cell {
    pub fn int(&self) -> Option<i64> {
        match self {
            Cell::Int(i) => *i,
            Cell::Text(_) => None,
        }
    }

    pub fn text(self) -> Option<String> {
        match self {
            Cell::Text(t) => t,
            Cell::Int(_) => None,
        }
    }
}

/// What a statement returned: its rows (read as the kinds asked for), or,
/// asked for none, how many rows it changed.
#[derive(Debug, Default)]
pub struct Out {
    pub rows: Vec<Vec<Cell>>,
    pub affected: u64,
}

/// How a fault of a database is to be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Retrying cannot fix it: credentials, permissions, no such database
    /// or schema, a refused certificate, a file that cannot be opened.
    Misconfigured,
    /// The connection is gone or the server is going away: a fault that
    /// may pass, and a call on an idle connection may be sent again.
    Broken,
    /// A table of the layout is missing (dropped while the connection was
    /// open): the next connection creates them again.
    MissingLayout,
    /// The database refused a statement; the connection is fine.
    Refused,
}

/// A database's SQL.
pub trait Dialect: Send + Sync + 'static {
    /// The sqlx database.
    type Db: Database<Connection = Self::Conn>;
    /// Its connection.
    type Conn: Connection<Database = Self::Db> + Send + 'static;

    /// The statement that starts a write transaction.
    const BEGIN_WRITE: &'static str;

    /// Every statement.
    const SQL: Statements;

    /// Opens a connection, with the tables created if they are missing.
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, sqlx::Error>> + Send;

    /// What the file a new connection would open is now, for a store that
    /// can tell (SQLite: device and inode of the path); a connection opened
    /// when it was something else no longer reads the store the URL names.
    fn file_id(&self) -> FileId {
        None
    }

    /// How `e` is to be taken.
    fn class(e: &sqlx::Error) -> Class;

    /// Runs `sql` with `args`, reading each row as `kinds` (or, with no
    /// kinds, counting the rows changed): [`run_with`] with the dialect's
    /// way of binding.
    fn run<'c>(
        c: &'c mut Self::Conn,
        sql: &'c str,
        args: Vec<Arg<'c>>,
        kinds: &'c [Kind],
    ) -> impl Future<Output = Result<Out, sqlx::Error>> + Send + 'c;

    /// Sends the statements of a fetch with a report
    /// ([`Statements::reporting`]) as the database allows them in one round
    /// trip, atomically with what the fetch reads or recording a revision no
    /// newer than it served; the rows of the last one, read as `kinds`.
    fn run_reporting<'c>(
        c: &'c mut Self::Conn,
        stmts: Vec<(&'static str, Vec<Arg<'c>>)>,
        kinds: &'c [Kind],
    ) -> impl Future<Output = Result<Out, sqlx::Error>> + Send + 'c;
}

/// Runs `stmts` in turn with [`Dialect::run`], the last one's rows read as
/// `kinds`: its result.
pub async fn in_turn<D: Dialect>(
    c: &mut D::Conn,
    stmts: Vec<(&'static str, Vec<Arg<'_>>)>,
    kinds: &[Kind],
) -> Result<Out, sqlx::Error> {
    let last = stmts.len().saturating_sub(1);
    let mut out = Out::default();
    for (i, (sql, args)) in stmts.into_iter().enumerate() {
        out = D::run(c, sql, args, if i == last { kinds } else { &[] }).await?;
    }
    Ok(out)
}

/// The classes every driver shares: anything but the database's own error is
/// a connection gone, a TLS failure is a certificate refused, a bad option is
/// a configuration that retrying cannot fix.
pub fn common_class(e: &sqlx::Error) -> Option<Class> {
    match e {
        sqlx::Error::Database(_) => None,
        sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => Some(Class::Misconfigured),
        _ => Some(Class::Broken),
    }
}

/// A sqlx query of database `DB`.
pub type SqlxQuery<'q, DB> = Query<'q, DB, <DB as Database>::Arguments<'q>>;

/// Runs `sql` on `c` with `args` bound by `bind`, reading each row as
/// `kinds`; with no kinds, counts the rows changed (by `affected`).
pub async fn run_with<'q, DB>(
    c: &'q mut DB::Connection,
    sql: &'q str,
    args: Vec<Arg<'q>>,
    kinds: &[Kind],
    bind: fn(SqlxQuery<'q, DB>, Arg<'q>) -> SqlxQuery<'q, DB>,
    affected: fn(&DB::QueryResult) -> u64,
) -> Result<Out, sqlx::Error>
where
    DB: Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
    <DB as Database>::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    &'q str: Encode<'q, DB> + Type<DB>,
{
    let mut query = sqlx::query::<DB>(sql);
    for arg in args {
        query = bind(query, arg);
    }
    if kinds.is_empty() {
        let done = query.execute(c).await?;
        return Ok(Out {
            rows: Vec::new(),
            affected: affected(&done),
        });
    }
    let rows = query.fetch_all(c).await?;
    cells(&rows, kinds)
}

/// `rows` read as `kinds`.
pub fn cells<R>(rows: &[R], kinds: &[Kind]) -> Result<Out, sqlx::Error>
where
    R: sqlx::Row,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    usize: ColumnIndex<R>,
{
    let mut out = Out::default();
    for r in rows {
        let mut cells = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            cells.push(match kind {
                Kind::Int => Cell::Int(r.try_get(i)?),
                Kind::Text => Cell::Text(r.try_get(i)?),
            });
        }
        out.rows.push(cells);
    }
    Ok(out)
}

/// Binds the arguments every driver binds alike: texts and integers.
pub fn bind_scalar<'q, DB>(query: SqlxQuery<'q, DB>, arg: &Arg<'q>) -> SqlxQuery<'q, DB>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
{
    match *arg {
        Arg::Text(t) => query.bind(t),
        Arg::Int(i) => query.bind(i),
        Arg::Keys(_) | Arg::Texts(_) | Arg::Ints(_) | Arg::Written(_) => query,
    }
}

/// `keys` as the JSON array SQLite's `json_each` and MySQL's `JSON_TABLE`
/// read.
pub fn json_keys(keys: &[&str]) -> String {
    serde_json::to_string(keys).unwrap_or_else(|_| "[]".to_owned())
}

/// The fields and instants a commit writes as the JSON array of `[field,
/// instant]` pairs SQLite's `json_each` and MySQL's `JSON_TABLE` read.
pub fn json_written(written: &[(&str, i64)]) -> String {
    serde_json::to_string(written).unwrap_or_else(|_| "[]".to_owned())
}
