//! The tables of the MySQL store: created when missing, and an older
//! layout's upgraded in place when a store connects.

use sqlx::mysql::MySqlConnection;

use super::super::dialect::{REVISIONED, add_revision};

/// The tables lockstep creates in MySQL when they are missing. Names are
/// ASCII and compared byte for byte (`ascii_bin`): `Theme` and `theme` are
/// two fields.
pub(super) const LAYOUT: &str = "\
CREATE TABLE IF NOT EXISTS lockstep_meta (
    namespace  VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin PRIMARY KEY,
    epoch      VARCHAR(200),
    created    BIGINT,
    revision   BIGINT NOT NULL DEFAULT 0,
    `schema`   LONGTEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS lockstep_entries (
    namespace  VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    field      VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    at_ms      BIGINT   NOT NULL,
    value      LONGTEXT NOT NULL,
    value_bytes BIGINT,
    write_id   VARCHAR(200) NOT NULL,
    written_at BIGINT   NOT NULL,
    writer     TEXT     NOT NULL,
    revision   BIGINT   NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, field, at_ms)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS lockstep_writes (
    namespace  VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    write_id   VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    instants   MEDIUMTEXT NOT NULL,
    written_at BIGINT     NOT NULL,
    PRIMARY KEY (namespace, write_id),
    KEY lockstep_writes_written_at (namespace, written_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS lockstep_reports (
    namespace  VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    process    VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    seen       BIGINT   NOT NULL,
    revision   BIGINT   NOT NULL,
    expires    BIGINT   NOT NULL,
    body       TEXT     NOT NULL,
    PRIMARY KEY (namespace, process),
    KEY lockstep_reports_expires (namespace, expires)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS lockstep_schemas (
    namespace  VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    digest     VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    `schema`   LONGTEXT NOT NULL,
    published  BIGINT   NOT NULL,
    PRIMARY KEY (namespace, digest)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
";

/// How many of the layout's tables exist, how many of them are not InnoDB,
/// and which of the columns added after the first layout they have, as
/// `table.column` ([`ADDED`]: MySQL has no `ADD COLUMN IF NOT EXISTS`,
/// MariaDB has). The names are constants: a lookup of
/// `information_schema.columns` correlated with the tables takes MariaDB
/// some 80 ms, this one 2.
const PRESENT: &str = "SELECT count(*), CAST(coalesce(sum(engine <> 'InnoDB'), 0) AS SIGNED), \
    (SELECT CAST(group_concat(table_name, '.', column_name) AS CHAR) \
        FROM information_schema.columns \
        WHERE table_schema = DATABASE() AND table_name IN ('lockstep_meta', 'lockstep_entries') \
        AND column_name IN ('revision', 'value_bytes')) \
    FROM information_schema.tables WHERE table_schema = DATABASE() \
    AND table_name IN ('lockstep_meta', 'lockstep_entries', 'lockstep_writes', \
        'lockstep_reports', 'lockstep_schemas')";

/// How many tables the layout has.
const TABLES: i64 = 5;

/// Each value's length in bytes, a column every write fills: InnoDB reads a
/// long value whole to measure it, and a fetch measures the values it does
/// not ship. (A generated column does not do: MariaDB reads the value it is
/// generated from whenever it is read.) `NULL` where a row was written
/// without it (by hand, or by an older lockstep during a rolling deploy):
/// that row's value is measured by reading it (the fetch's `measured!`). Added to the
/// entries of a layout without it, then filled in.
const VALUE_BYTES: [&str; 2] = [
    "ALTER TABLE lockstep_entries ADD COLUMN value_bytes BIGINT",
    "UPDATE lockstep_entries SET value_bytes = LENGTH(value) WHERE value_bytes IS NULL",
];

/// The columns added after the first layout, as `table.column`.
const ADDED: [&str; 3] = [
    "lockstep_meta.revision",
    "lockstep_entries.revision",
    "lockstep_entries.value_bytes",
];

/// ER_DUP_FIELDNAME: a column another process added meanwhile.
const DUPLICATE_COLUMN: u16 = 1060;

/// The layout's tables: how many exist, how many are not InnoDB, and which
/// of [`ADDED`] they have, comma-separated.
async fn present(c: &mut MySqlConnection) -> Result<(i64, i64, String), sqlx::Error> {
    let (tables, other, upgraded): (i64, i64, Option<String>) =
        sqlx::query_as(PRESENT).fetch_one(c).await?;
    Ok((tables, other, upgraded.unwrap_or_default()))
}

/// Adds the columns tables of the first layout lack, each followed by what
/// fills it in; a column another process added meanwhile is no fault (and
/// `NULL` lengths it left are measured where they are read).
async fn upgrade(c: &mut MySqlConnection, upgraded: &str) -> Result<(), sqlx::Error> {
    let [add_length, fill_length] = VALUE_BYTES;
    let adds = REVISIONED
        .map(|table| {
            (
                format!("{table}.revision"),
                add_revision(table, "BIGINT"),
                None,
            )
        })
        .into_iter()
        .chain([(
            ADDED[2].to_owned(),
            add_length.to_owned(),
            Some(fill_length),
        )]);
    for (column, add, fill) in adds {
        if upgraded.split(',').any(|c| c == column) {
            continue;
        }
        match sqlx::Executor::execute(&mut *c, add.as_str()).await {
            Err(sqlx::Error::Database(e))
                if e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                    .is_some_and(|e| e.number() == DUPLICATE_COLUMN) => {}
            other => {
                other?;
                if let Some(fill) = fill {
                    sqlx::Executor::execute(&mut *c, fill).await?;
                }
            }
        }
    }
    Ok(())
}

/// Creates the layout's missing tables and upgrades older ones, then
/// checks that they are all there, of the engine InnoDB.
pub(super) async fn prepare(c: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    let (mut tables, mut other, mut upgraded) = present(c).await?;
    let current = |upgraded: &str| {
        ADDED
            .iter()
            .all(|column| upgraded.split(',').any(|c| c == *column))
    };
    if tables < TABLES || !current(&upgraded) {
        for create in LAYOUT.split_inclusive(";\n") {
            sqlx::Executor::execute(&mut *c, create).await?;
        }
        // Tables just created have their columns: only older ones
        // are altered.
        (_, _, upgraded) = present(c).await?;
        upgrade(c, &upgraded).await?;
        (tables, other, upgraded) = present(c).await?;
    }
    if tables < TABLES || other > 0 || !current(&upgraded) {
        return Err(sqlx::Error::Configuration(
            "the tables lockstep_meta, lockstep_entries, lockstep_writes, \
                 lockstep_reports and lockstep_schemas must be InnoDB (a write refused \
                 midway would stay half applied in any other engine): ALTER TABLE … \
                 ENGINE=InnoDB"
                .into(),
        ));
    }
    Ok(())
}
