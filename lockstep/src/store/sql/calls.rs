//! The steps of each call, once for every SQL database: which statements
//! run, in which order, in which transaction, and what their rows mean.

use std::collections::BTreeMap;

use sqlx::Connection;

use super::dialect::{Arg, Cell, Dialect, Kind, Param, Stmt, Upsert};
use super::link::Failure;
use crate::error::Error;
use crate::store::fetch::{Fetched, Held};
use crate::store::stored::{
    FETCH_BUDGET_BYTES, HISTORY, Record, Records, SCHEMA_KEPT, StoredEntry, StoredSchema,
    check_cancel,
};
use crate::store::write::{Committed, Write, resolve_instants};
use crate::tick::{Millis, Tick};
use crate::value::MAX_VALUE_BYTES;
use rows::{Written, assemble, assemble_records, revision_of, stored};

/// How long the database keeps a write's id, so a retry takes effect once:
/// a day, as in Redis.
const WRITE_ID_KEPT: Millis = 86_400_000;

/// How many times a commit starts again when a tick boundary passed between
/// reading the clock and committing (it takes milliseconds; the boundaries
/// are at least a second apart).
const COMMIT_TRIES: usize = 3;

/// How many expired records of a registry a fetch with a report deletes at
/// most: enough to keep up with a fleet that restarts all at once, little
/// enough to keep every fetch cheap.
const SWEEP: i64 = 32;

const FETCH_KINDS: &[Kind] = &[
    Kind::Text,
    Kind::Int,
    Kind::Text,
    Kind::Int,
    Kind::Int,
    Kind::Text,
    Kind::Text,
    Kind::Int,
    Kind::Int,
];
const ENTRY_KINDS: &[Kind] = &[
    Kind::Text,
    Kind::Int,
    Kind::Text,
    Kind::Int,
    Kind::Text,
    Kind::Int,
];
const RECORD_KINDS: &[Kind] = &[
    Kind::Text,
    Kind::Int,
    Kind::Int,
    Kind::Text,
    Kind::Int,
    Kind::Text,
];

/// The values a call binds, by [`Param`]; a statement takes those its
/// dialect lists.
#[derive(Default)]
pub(crate) struct Values<'a> {
    pub namespace: &'a str,
    pub keys: &'a [&'a str],
    pub key: &'a str,
    pub at: Millis,
    pub epoch: &'a str,
    pub id: &'a str,
    pub instants: &'a str,
    pub now: Millis,
    pub expired: Millis,
    pub keep: i64,
    /// The schema a publish stores, or the one a fetch names (its build's).
    pub schema: Option<&'a StoredSchema>,
    pub by: &'a str,
    pub entry: Option<&'a NewEntry<'a>>,
    pub entries: &'a [NewEntry<'a>],
    pub report: Option<&'a Record>,
    pub held: Option<&'a Held>,
}

impl<'a> Values<'a> {
    fn arg(&self, p: Param) -> Arg<'a> {
        match p {
            Param::Namespace => Arg::Text(self.namespace),
            Param::Keys => Arg::Keys(self.keys),
            Param::Key => Arg::Text(self.key),
            Param::At => Arg::Int(self.at),
            Param::Epoch => Arg::Text(self.epoch),
            Param::Id => Arg::Text(self.id),
            Param::Instants => Arg::Text(self.instants),
            Param::Now => Arg::Int(self.now),
            Param::Expired => Arg::Int(self.expired),
            Param::Keep => Arg::Int(self.keep),
            Param::Schema => Arg::Text(self.schema.map_or("", StoredSchema::json)),
            Param::SchemaDigest => Arg::Text(self.schema.map_or("", StoredSchema::digest)),
            // A length beyond i64 is none the database can hold.
            Param::SchemaBytes => Arg::Int(
                self.schema
                    .and_then(|s| i64::try_from(s.json().len()).ok())
                    .unwrap_or(-1),
            ),
            Param::SchemaKept => Arg::Int(SCHEMA_KEPT.as_millis() as i64),
            Param::Limit => Arg::Int(MAX_VALUE_BYTES as i64),
            Param::Budget => Arg::Int(FETCH_BUDGET_BYTES as i64),
            Param::By => Arg::Text(self.by),
            Param::Field => match self.entry {
                Some(e) => Arg::Text(e.field),
                None => Arg::Texts(self.entries.iter().map(|e| e.field).collect()),
            },
            Param::EntryAt => match self.entry {
                Some(e) => Arg::Int(e.at),
                None => Arg::Ints(self.entries.iter().map(|e| e.at).collect()),
            },
            Param::Value => match self.entry {
                Some(e) => Arg::Text(e.value),
                None => Arg::Texts(self.entries.iter().map(|e| e.value).collect()),
            },
            Param::Written => Arg::Written(self.entries.iter().map(|e| (e.field, e.at)).collect()),
            Param::Process => Arg::Text(self.report.map_or("", |r| r.process())),
            Param::Body => Arg::Text(self.report.map_or("", |r| r.body())),
            Param::ExpiresAfter => Arg::Int(self.report.map_or(0, |r| r.expires_after())),
            Param::Sweep => Arg::Int(SWEEP),
            Param::HeldEpoch => Arg::Text(self.held.map_or("", |h| h.epoch.as_str())),
            // A revision beyond i64 is none the database can hold.
            Param::HeldRevision => Arg::Int(
                self.held
                    .and_then(|h| i64::try_from(h.revision).ok())
                    .unwrap_or(-1),
            ),
        }
    }
}

/// One entry a commit writes.
pub(crate) struct NewEntry<'a> {
    pub field: &'a str,
    pub at: Millis,
    pub value: &'a str,
}

/// Runs `stmt` with `values`, reading rows as `kinds`.
pub(crate) async fn run<D: Dialect>(
    c: &mut D::Conn,
    stmt: &Stmt,
    values: &Values<'_>,
    kinds: &[Kind],
) -> Result<super::dialect::Out, sqlx::Error> {
    D::run(c, stmt.sql, args(stmt, values), kinds).await
}

/// The values `stmt` binds, in order.
fn args<'a>(stmt: &Stmt, values: &Values<'a>) -> Vec<Arg<'a>> {
    stmt.binds.iter().map(|p| values.arg(*p)).collect()
}

/// The first cell of the first row, as an integer.
async fn scalar<D: Dialect>(
    c: &mut D::Conn,
    stmt: &Stmt,
    values: &Values<'_>,
) -> Result<Option<Cell>, sqlx::Error> {
    let out = run::<D>(c, stmt, values, &[Kind::Int]).await?;
    Ok(out
        .rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next()))
}

/// A fetch: one query, or with a report the statements that also record
/// it, sent as the dialect sends them; with `held`, its entries are read
/// only if the registry changed since; with `schema` (the fetching build's),
/// it says whether the store holds that very schema.
pub(crate) async fn fetch<D: Dialect>(
    c: &mut D::Conn,
    namespace: &str,
    keys: &[&str],
    report: Option<&Record>,
    held: Option<&Held>,
    schema: Option<&StoredSchema>,
) -> Result<Fetched, Failure> {
    let values = Values {
        namespace,
        keys,
        report,
        held,
        schema,
        ..Values::default()
    };
    let out = match report {
        None => run::<D>(c, &D::SQL.fetch, &values, FETCH_KINDS).await?,
        Some(_) => {
            let stmts = D::SQL
                .reporting
                .iter()
                .map(|stmt| (stmt.sql, args(stmt, &values)))
                .collect();
            D::run_reporting(c, stmts, FETCH_KINDS).await?
        }
    };
    assemble(out.rows, keys)
}

/// The live records of `namespace`, by the database's clock, and the
/// schemas of its builds: one statement.
pub(crate) async fn records<D: Dialect>(
    c: &mut D::Conn,
    namespace: &str,
) -> Result<Records, Failure> {
    let values = Values {
        namespace,
        ..Values::default()
    };
    let out = run::<D>(c, &D::SQL.records, &values, RECORD_KINDS).await?;
    assemble_records(out.rows)
}

/// Publishes `schema` of `namespace`: the dialect's statements in turn, in
/// one write transaction (each is idempotent, so a publish sent again is
/// harmless).
pub(crate) async fn publish<D: Dialect>(
    c: &mut D::Conn,
    namespace: &str,
    schema: &StoredSchema,
) -> Result<(), Failure> {
    let values = Values {
        namespace,
        schema: Some(schema),
        ..Values::default()
    };
    let mut tx = c.begin_with(D::BEGIN_WRITE).await?;
    for stmt in D::SQL.publish {
        run::<D>(&mut tx, stmt, &values, &[]).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A commit: one transaction, started again if a tick boundary passed while
/// it ran and made an instant too soon; before it writes, refused whole
/// (rolled back, revision and all) if it would take the registry's pending
/// entries beyond [`MAX_PENDING_BYTES`](crate::store::stored::MAX_PENDING_BYTES).
pub(crate) async fn commit<D: Dialect>(
    c: &mut D::Conn,
    write: &Write,
) -> Result<Committed, Failure> {
    let keys = written_keys(write);
    let epoch = crate::store::write::new_write_id();
    let mut values = Values {
        namespace: write.namespace(),
        keys: &keys,
        epoch: &epoch,
        id: write.id(),
        by: write.by(),
        keep: (HISTORY + 1) as i64,
        ..Values::default()
    };
    let sql = &D::SQL;
    for _ in 0..COMMIT_TRIES {
        let mut tx = c.begin_with(D::BEGIN_WRITE).await?;
        run::<D>(&mut tx, &sql.lock, &values, &[]).await?;
        let done = run::<D>(&mut tx, &sql.done, &values, &[Kind::Text]).await?;
        if let Some(done) = done.rows.into_iter().next() {
            tx.rollback().await?;
            let text = done
                .into_iter()
                .next()
                .and_then(Cell::text)
                .unwrap_or_default();
            return parse_instants(&text).map(Committed::at);
        }
        let now = clock::<D>(&mut tx, &sql.now, &values).await?;
        // Dropping the transaction rolls it back.
        let instants = resolve_instants(write, now).map_err(Failure::Refused)?;
        let entries = last_write_wins(write, &instants);
        values.now = now;
        values.expired = now - WRITE_ID_KEPT;
        if let Some(measure) = &sql.measure {
            run::<D>(&mut tx, measure, &values, &[]).await?;
        }
        pending::<D>(&mut tx, &values, &entries).await?;
        upsert::<D>(&mut tx, &values, &entries).await?;
        run::<D>(&mut tx, &sql.prune, &values, &[]).await?;
        let joined = instants
            .iter()
            .map(Millis::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let record = Values {
            instants: &joined,
            ..values
        };
        let (last, first) = sql.record.split_last().expect("a record statement");
        for stmt in first {
            run::<D>(&mut tx, stmt, &record, &[]).await?;
        }
        let end = clock::<D>(&mut tx, last, &record).await?;
        if instants.iter().any(|&at| at < write.tick().horizon(end)) {
            tx.rollback().await?;
            continue;
        }
        tx.commit().await?;
        return Ok(Committed::at(instants));
    }
    Err(Failure::Store(format!(
        "a tick boundary passed during each of {COMMIT_TRIES} tries to commit; nothing was \
         written"
    )))
}

/// Refuses `entries` when writing them would take the values of the
/// registry's pending entries (after `values.now`, the database's clock)
/// beyond [`MAX_PENDING_BYTES`](crate::store::stored::MAX_PENDING_BYTES): the dialect's
/// [`pending`](super::dialect::Statements::pending) says what they hold and
/// what of it the entries replace (every instant written is beyond the
/// horizon, so each entry written is pending), the store's one rule
/// (`write::check_pending`) judges.
async fn pending<D: Dialect>(
    c: &mut D::Conn,
    values: &Values<'_>,
    entries: &[NewEntry<'_>],
) -> Result<(), Failure> {
    let values = Values { entries, ..*values };
    let out = run::<D>(c, &D::SQL.pending, &values, &[Kind::Int, Kind::Int]).await?;
    let bytes = |cell: Option<&Cell>| {
        cell.and_then(Cell::int)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| {
                Failure::Store("the database did not say what the pending entries hold".to_owned())
            })
    };
    let row = out.rows.first();
    let before = bytes(row.and_then(|r| r.first()))?;
    let replaced = bytes(row.and_then(|r| r.get(1)))?;
    let added = entries.iter().map(|e| e.value.len() as u64).sum();
    crate::store::write::check_pending(values.namespace, before, replaced, added)
        .map_err(Failure::Refused)
}

/// The database's clock in ms, as the statement returns it.
async fn clock<D: Dialect>(
    c: &mut D::Conn,
    stmt: &Stmt,
    values: &Values<'_>,
) -> Result<Millis, Failure> {
    scalar::<D>(c, stmt, values)
        .await?
        .and_then(|cell| cell.int())
        .ok_or_else(|| Failure::Store("the database did not say its time".to_owned()))
}

/// Writes `entries` as the dialect batches them.
async fn upsert<D: Dialect>(
    c: &mut D::Conn,
    values: &Values<'_>,
    entries: &[NewEntry<'_>],
) -> Result<(), sqlx::Error> {
    match &D::SQL.upsert {
        Upsert::Arrays(stmt) => {
            let values = Values { entries, ..*values };
            run::<D>(c, stmt, &values, &[]).await?;
        }
        Upsert::Rows {
            head,
            row,
            tail,
            binds,
            max,
        } => {
            for chunk in entries.chunks(*max) {
                let sql = format!("{head}{}{tail}", vec![*row; chunk.len()].join(", "));
                let mut args = Vec::with_capacity(chunk.len() * binds.len());
                for entry in chunk {
                    let values = Values {
                        entry: Some(entry),
                        ..*values
                    };
                    args.extend(binds.iter().map(|p| values.arg(*p)));
                }
                D::run(c, &sql, args, &[]).await?;
            }
        }
    }
    Ok(())
}

/// Takes the entry of `key` at `at` in a transaction holding the registry's
/// write lock: the entry as it was, once `allowed` (given the database's
/// clock and the entry) said it may go; the transaction is committed.
async fn take<D: Dialect>(
    c: &mut D::Conn,
    values: &Values<'_>,
    allowed: impl FnOnce(Millis, &StoredEntry) -> Result<(), Error>,
) -> Result<StoredEntry, Failure> {
    let sql = &D::SQL;
    let mut tx = c.begin_with(D::BEGIN_WRITE).await?;
    run::<D>(&mut tx, &sql.lock, values, &[]).await?;
    let found = run::<D>(&mut tx, &sql.entry, values, ENTRY_KINDS).await?;
    let now = clock::<D>(&mut tx, &sql.now, values).await?;
    let Some(Ok::<[Cell; 6], _>([value, size, write_id, written_at, writer, revision])) =
        found.rows.into_iter().next().map(|r| r.try_into())
    else {
        return Err(Failure::Refused(Error::NoSuchEntry {
            namespace: values.namespace.to_owned(),
            key: values.key.to_owned(),
            at: crate::tick::to_datetime(values.at),
        }));
    };
    let entry = stored(
        values.at,
        value.text(),
        size.int(),
        Written {
            write_id: write_id.text(),
            written_at: written_at.int(),
            writer: writer.text(),
            revision: revision_of(&revision),
        },
    );
    allowed(now, &entry).map_err(Failure::Refused)?;
    run::<D>(&mut tx, &sql.delete, values, &[]).await?;
    tx.commit().await?;
    Ok(entry)
}

/// A cancel: the entry goes if it is at or beyond the horizon by the
/// database's clock.
pub(crate) async fn cancel<D: Dialect>(
    c: &mut D::Conn,
    namespace: &str,
    tick: Tick,
    key: &str,
    at: Millis,
) -> Result<StoredEntry, Failure> {
    let epoch = crate::store::write::new_write_id();
    let values = Values {
        namespace,
        key,
        at,
        epoch: &epoch,
        ..Values::default()
    };
    take::<D>(c, &values, |now, _| check_cancel(namespace, tick, at, now)).await
}

/// A purge: as a cancel, but an entry whose value the database itself
/// cannot ship (over the size limit) or that the caller found undecodable
/// goes whatever its instant. Instants are integers here: an `at` that is
/// not one names no entry.
pub(crate) async fn purge<D: Dialect>(
    c: &mut D::Conn,
    namespace: &str,
    tick: Tick,
    key: &str,
    at: &str,
    undecodable: bool,
) -> Result<(), Failure> {
    let Ok(at) = at.parse::<Millis>() else {
        return Err(Failure::Refused(Error::NoSuchEntry {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            at: crate::tick::to_datetime(Millis::MIN),
        }));
    };
    let epoch = crate::store::write::new_write_id();
    let values = Values {
        namespace,
        key,
        at,
        epoch: &epoch,
        ..Values::default()
    };
    take::<D>(c, &values, |now, entry| {
        if undecodable || entry.value.is_err() {
            Ok(())
        } else {
            check_cancel(namespace, tick, at, now)
        }
    })
    .await
    .map(|_| ())
}

/// The keys a write touches, each once.
fn written_keys(write: &Write) -> Vec<&str> {
    let mut keys: Vec<&str> = Vec::new();
    for step in write.steps() {
        for (key, _) in step.values() {
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
    for (step, &at) in write.steps().iter().zip(instants) {
        for (field, value) in step.values() {
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

mod rows;

#[cfg(test)]
mod tests;
