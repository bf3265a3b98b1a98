//! What the SQL stores promise beyond the shared contract, on each of
//! PostgreSQL, SQLite and MySQL/MariaDB, against the real databases: cancel
//! says what it removed, purge removes what no process can use, an oversized
//! value never crosses the network, a field beyond a fetch's budget is not
//! shipped and its bytes are counted as bytes, the fetch says whether the schema is
//! held (a build's schema changed by hand is not), a build's schema nobody
//! published for `SCHEMA_KEPT` goes, misconfiguration is told apart from an
//! outage, a SQLite file deleted and created again is noticed, tables of
//! the first layout are upgraded in place, and a reader that may only read
//! still fetches.

use std::sync::Arc;

use lockstep::schema::Schema;
use lockstep::store::Millis;
use lockstep::store::driver::{Record, SCHEMA_KEPT};
use lockstep::store::{Fetch, MysqlStore, PostgresStore, SqliteStore, StepAt, Store, StoredSchema};
use lockstep::{Error, Tick};
use lockstep_suite::sql::{MysqlDatabase, PostgresSchema, SqliteFile};

const TICK: Tick = match Tick::from_secs(1) {
    Ok(tick) => tick,
    Err(_) => panic!("a tick of 1 s"),
};

/// A SQL store and a way to run SQL in its database.
struct Db {
    store: Arc<dyn Store>,
    /// The store's URL.
    url: String,
    execute: Box<dyn Fn(&str) + Send + Sync>,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

fn postgres() -> Db {
    let schema = Arc::new(PostgresSchema::create());
    let run = schema.clone();
    Db {
        store: Arc::new(PostgresStore::open(schema.url()).unwrap()),
        url: schema.url().to_owned(),
        execute: Box::new(move |sql| run.execute(&[sql])),
        _keep: Box::new(schema),
    }
}

fn mysql() -> Db {
    let db = Arc::new(MysqlDatabase::create());
    let run = db.clone();
    Db {
        store: Arc::new(MysqlStore::open(&db.url()).unwrap()),
        url: db.url(),
        execute: Box::new(move |sql| run.execute(&[sql])),
        _keep: Box::new(db),
    }
}

fn sqlite() -> Db {
    let file = SqliteFile::create();
    let url = file.url();
    // SQL run before the store's first call creates the file.
    let created = format!("{url}?mode=rwc");
    Db {
        store: Arc::new(SqliteStore::open(&url).unwrap()),
        url,
        execute: Box::new(move |sql| sqlite_execute(&created, sql)),
        _keep: Box::new(file),
    }
}

fn sqlite_execute(url: &str, sql: &str) {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                use sqlx::Connection;
                let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::Executor::execute(&mut c, sql.as_str()).await.unwrap();
                c.close().await.unwrap();
            })
    })
    .join()
    .unwrap();
}

async fn store_now(store: &dyn Store) -> Millis {
    store
        .fetch("clock", &[])
        .await
        .unwrap()
        .store_micros
        .unwrap()
        / 1000
}

/// An entry "written long ago", by SQL.
fn plant(db: &Db, ns: &str, key: &str, at: Millis, value: &str) {
    (db.execute)(&format!(
        "INSERT INTO lockstep_entries (namespace, field, at_ms, value, write_id, written_at, \
         writer) VALUES ('{ns}', '{key}', {at}, '{value}', 'planted', {at}, 'plant')"
    ));
}

fn set(ns: &str, key: &str, value: &str, at: StepAt) -> lockstep::store::Write {
    lockstep_suite::raw_write(ns, TICK, "sql-store", vec![(at, vec![(key, value)])])
}

async fn cancel_returns_the_entry_it_removed(db: &Db) {
    let s = &*db.store;
    let far = TICK.ceil(store_now(s).await + 60_000);
    let write = set("cancel", "a", "\"pending\"", StepAt::At(far));
    s.commit(&write).await.unwrap();
    let removed = s.cancel("cancel", TICK, "a", far).await.unwrap();
    assert_eq!(removed.at, far);
    assert_eq!(removed.value.as_deref(), Ok("\"pending\""));
    let origin = removed.origin.unwrap();
    assert_eq!(
        (origin.write, origin.by),
        (write.id().to_owned(), "sql-store".to_owned())
    );
    assert!(s.fetch("cancel", &["a"]).await.unwrap().fields["a"].is_empty());
    let again = s.cancel("cancel", TICK, "a", far).await.unwrap_err();
    assert!(matches!(again, Error::NoSuchEntry { .. }), "{again}");
}

async fn purge_removes_only_what_no_process_serves(db: &Db) {
    let s = &*db.store;
    let past = TICK.floor(store_now(s).await) - 10_000;
    plant(db, "purge", "a", past, "\"bad\"");
    let refused = s.purge("purge", TICK, "a", &past.to_string(), false).await;
    assert!(
        matches!(refused, Err(Error::BeforeHorizon { .. })),
        "{refused:?}"
    );
    assert_eq!(s.fetch("purge", &["a"]).await.unwrap().fields["a"].len(), 1);
    s.purge("purge", TICK, "a", &past.to_string(), true)
        .await
        .unwrap();
    assert!(s.fetch("purge", &["a"]).await.unwrap().fields["a"].is_empty());
    let none = s.purge("purge", TICK, "a", "not-a-number", true).await;
    assert!(matches!(none, Err(Error::NoSuchEntry { .. })), "{none:?}");
    let far = TICK.ceil(store_now(s).await + 60_000);
    s.commit(&set("purge", "b", "1", StepAt::At(far)))
        .await
        .unwrap();
    s.purge("purge", TICK, "b", &far.to_string(), false)
        .await
        .unwrap();
    assert!(s.fetch("purge", &["b"]).await.unwrap().fields["b"].is_empty());
}

async fn an_oversized_value_never_crosses_the_network(db: &Db) {
    let s = &*db.store;
    let past = TICK.floor(store_now(s).await) - 10_000;
    let huge = format!("\"{}\"", "x".repeat(10 * 1024 * 1024 - 2));
    plant(db, "big", "huge", past, &huge);
    plant(db, "big", "small", past, "7");
    let fetched = s.fetch("big", &["huge", "small"]).await.unwrap();
    assert_eq!(
        fetched.fields["huge"][0].value,
        Err("10485760 bytes, over the limit of 65536".to_owned())
    );
    assert_eq!(fetched.fields["small"][0].value.as_deref(), Ok("7"));
    // The store knows no process can use it: purged whatever its instant.
    s.purge("big", TICK, "huge", &past.to_string(), false)
        .await
        .unwrap();
    // A write of one is refused, and writes nothing.
    let over = format!("\"{}\"", "y".repeat(lockstep::MAX_VALUE_BYTES));
    // The write's builder refuses it: no store is ever handed one.
    let refused = lockstep_suite::raw_builder(
        "big",
        TICK,
        "sql-store",
        vec![(
            StepAt::Horizon { after: 0 },
            vec![("small", "8"), ("huge", &over)],
        )],
    )
    .build()
    .unwrap_err();
    assert!(matches!(refused, Error::InvalidValue { .. }), "{refused}");
    let fetched = s.fetch("big", &["huge", "small"]).await.unwrap();
    assert!(fetched.fields["huge"].is_empty());
    assert_eq!(fetched.fields["small"].len(), 1);
}

async fn the_fetch_says_whether_the_schema_is_held(db: &Db) {
    let s = &*db.store;
    assert!(!s.fetch("held", &["a"]).await.unwrap().schema_held);
    s.commit(&set("held", "a", "1", StepAt::Horizon { after: 0 }))
        .await
        .unwrap();
    assert!(!s.fetch("held", &["a"]).await.unwrap().schema_held);
    let schema = Schema {
        namespace: "held".to_owned(),
        tick_secs: 1,
        fields: Vec::new(),
    };
    s.publish_schema(&schema).await.unwrap();
    assert!(s.fetch("held", &["a"]).await.unwrap().schema_held);
    (db.execute)("DROP TABLE lockstep_meta");
    assert!(!s.fetch("held", &["a"]).await.unwrap().schema_held);
}

/// Whether a fetch of `ns` naming `schema` (with or without a report) says
/// the store holds it: both ways must agree.
async fn held(s: &dyn Store, ns: &str, schema: &StoredSchema) -> bool {
    let report = report("p1");
    let mut answers = Vec::new();
    for with in [None, Some(&report)] {
        let fetch = Fetch::new(ns, &["a"])
            .reporting(with)
            .publishing(Some(schema));
        answers.push(s.fetch_with(fetch).await.unwrap().schema_held);
    }
    assert_eq!(answers[0], answers[1], "with and without a report");
    answers[0]
}

/// Replaces the row of `lockstep_schemas` of `ns` and `digest` by one with
/// `json` and `published`, by SQL (naming no column: MySQL quotes `schema`,
/// PostgreSQL does not).
fn replace_schema_row(db: &Db, ns: &str, digest: &str, json: &str, published: Millis) {
    (db.execute)(&format!(
        "DELETE FROM lockstep_schemas WHERE namespace = '{ns}' AND digest = '{digest}'"
    ));
    (db.execute)(&format!(
        "INSERT INTO lockstep_schemas VALUES ('{ns}', '{digest}', '{json}', {published})"
    ));
}

/// A build's schema is held by its digest and the length in bytes of its
/// text: one changed by hand in `lockstep_schemas` (same digest, another
/// length) is not held, and not trusted, until the build publishes it
/// again. A build's schema nobody published for [`SCHEMA_KEPT`] is
/// deleted by the next publish of any schema of its registry, and only of
/// its registry.
async fn a_schema_changed_by_hand_or_kept_too_long_is_not_held(db: &Db) {
    let s = &*db.store;
    let build = |namespace: &str, tick_secs: u32| Schema {
        namespace: namespace.to_owned(),
        tick_secs,
        fields: Vec::new(),
    };
    let (old, new) = (build("builds", 1), build("builds", 2));
    let (a, b) = (StoredSchema::of(&old), StoredSchema::of(&new));
    s.publish_schema(&old).await.unwrap();
    assert!(held(s, "builds", &a).await);
    // Changed by hand: same digest, as many characters, one byte more (a
    // length in characters would not tell).
    let changed = a.json().replace(r#""builds""#, r#""buildé""#);
    assert_eq!(changed.chars().count(), a.json().chars().count());
    assert_eq!(changed.len(), a.json().len() + 1);
    let now = store_now(s).await;
    replace_schema_row(db, "builds", a.digest(), &changed, now);
    assert!(!held(s, "builds", &a).await);
    let kept = s.records("builds").await.unwrap().schemas;
    assert_eq!(kept, [StoredSchema::stored(a.digest(), &changed)]);
    assert!(kept[0].read().is_err());
    // A fetch that names no schema asks for the latest, which is there.
    assert!(s.fetch("builds", &["a"]).await.unwrap().schema_held);
    s.publish_schema(&old).await.unwrap();
    assert!(held(s, "builds", &a).await);
    assert_eq!(
        s.records("builds").await.unwrap().schemas,
        std::slice::from_ref(&a)
    );
    // Not published for SCHEMA_KEPT and a minute: gone at the next publish
    // of another build of its registry, and only of its registry.
    let long_ago = store_now(s).await - SCHEMA_KEPT.as_millis() as Millis - 60_000;
    replace_schema_row(db, "builds", a.digest(), a.json(), long_ago);
    let elsewhere = StoredSchema::of(&build("elsewhere", 1));
    s.publish_schema(&build("elsewhere", 1)).await.unwrap();
    replace_schema_row(
        db,
        "elsewhere",
        elsewhere.digest(),
        elsewhere.json(),
        long_ago,
    );
    assert!(held(s, "builds", &a).await);
    s.publish_schema(&new).await.unwrap();
    assert!(!held(s, "builds", &a).await);
    assert!(held(s, "builds", &b).await);
    assert_eq!(s.records("builds").await.unwrap().schemas, [b]);
    assert_eq!(s.records("elsewhere").await.unwrap().schemas, [elsewhere]);
}

/// A field of 150 pending values of 60 000 bytes (30 001 characters: `é`
/// is two bytes), put there by hand: 9 000 000 bytes, beyond a fetch's
/// budget on its own. Every entry comes back as not fetched, saying the
/// field's bytes as counted in bytes, not characters; the small field is
/// shipped.
async fn a_field_beyond_the_budget_is_not_shipped_and_counted_in_bytes(db: &Db) {
    let s = &*db.store;
    s.commit(&set("wide", "switch", "true", StepAt::Horizon { after: 0 }))
        .await
        .unwrap();
    let far = TICK.ceil(store_now(s).await + 600_000);
    let value = format!("\"{}\"", "é".repeat(29_999));
    assert_eq!(value.len(), 60_000);
    let rows: Vec<String> = (0..150)
        .map(|i| {
            format!(
                "('wide', 'big', {}, '{value}', 'planted', {far}, 'plant')",
                far + i * 1000
            )
        })
        .collect();
    (db.execute)(&format!(
        "INSERT INTO lockstep_entries (namespace, field, at_ms, value, write_id, written_at, \
         writer) VALUES {}",
        rows.join(", ")
    ));
    let fetched = s.fetch("wide", &["big", "switch"]).await.unwrap();
    assert_eq!(fetched.fields["switch"][0].value.as_deref(), Ok("true"));
    let big = &fetched.fields["big"];
    assert_eq!(big.len(), 150);
    for (i, entry) in big.iter().enumerate() {
        assert_eq!(entry.at, far + i as Millis * 1000);
        assert_eq!(
            entry.value,
            Err(lockstep::store::driver::not_fetched(9_000_000))
        );
        assert_eq!(
            entry.origin.as_ref().map(|o| o.write.as_str()),
            Some("planted")
        );
    }
}

async fn every_check(db: Db) {
    cancel_returns_the_entry_it_removed(&db).await;
    purge_removes_only_what_no_process_serves(&db).await;
    an_oversized_value_never_crosses_the_network(&db).await;
    a_field_beyond_the_budget_is_not_shipped_and_counted_in_bytes(&db).await;
    a_schema_changed_by_hand_or_kept_too_long_is_not_held(&db).await;
    the_fetch_says_whether_the_schema_is_held(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store() {
    every_check(postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store() {
    every_check(sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_store() {
    every_check(mysql()).await;
}

async fn misconfigured(url: &str) -> String {
    let store = lockstep::store::open(url).unwrap();
    match store.fetch("flags", &["a"]).await {
        Err(Error::Misconfigured { message, .. }) => message,
        other => panic!("{url}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfiguration_is_not_an_outage() {
    let schema = PostgresSchema::create();
    let url = schema.url().to_owned();
    let pg = |from: &str, to: &str| url.replacen(from, to, 1);
    // No such role, no such database, no schema to create the tables in.
    let server = lockstep_suite::sql::server_url();
    let (_, rest) = server.split_once("://").unwrap();
    let (_, host) = rest.split_once('@').unwrap_or(("", rest));
    let role = format!("postgres://no_such_role_ls:pw@{host}");
    assert!(misconfigured(&role).await.contains("no_such_role_ls"));
    let (base, query) = server.split_once('?').unwrap_or((&server, ""));
    let (base, _) = base.rsplit_once('/').unwrap();
    let database = format!("{base}/no_such_database_ls?{query}");
    assert!(
        misconfigured(&database)
            .await
            .contains("no_such_database_ls")
    );
    let missing = pg(schema.name(), "no_such_schema_ls");
    let message = misconfigured(&missing).await;
    assert!(message.contains("no schema has been selected"), "{message}");
    // MySQL: a wrong password, no such database, tables of another engine.
    let db = MysqlDatabase::create();
    db.execute(&[
        "CREATE USER IF NOT EXISTS 'lockstep_pw'@'%' IDENTIFIED BY 'right'",
        "CREATE USER IF NOT EXISTS 'lockstep_pw'@'localhost' IDENTIFIED BY 'right'",
    ]);
    let my = db.url();
    let (server, _) = my.rsplit_once('/').unwrap();
    let (_, host) = server.split_once('@').unwrap();
    let wrong = format!("mysql://lockstep_pw:wrong@{host}/{}", db.name());
    let message = misconfigured(&wrong).await;
    assert!(
        message.contains("Access denied") && !message.contains("wrong"),
        "{message}"
    );
    let unknown = format!("{server}/no_such_database_ls");
    assert!(
        misconfigured(&unknown)
            .await
            .contains("no_such_database_ls")
    );
    let myisam = lockstep::store::MysqlStore::LAYOUT.replace("ENGINE=InnoDB", "ENGINE=MyISAM");
    let statements: Vec<&str> = myisam.split_inclusive(";\n").collect();
    db.execute(&statements);
    assert!(misconfigured(&db.url()).await.contains("InnoDB"));
    db.execute(&[
        "DROP USER 'lockstep_pw'@'%'",
        "DROP USER 'lockstep_pw'@'localhost'",
    ]);
    // SQLite: a directory that does not exist.
    let file = SqliteFile::create();
    let nowhere = format!("sqlite://{}/missing/dir/flags.db", file.path().display());
    misconfigured(&nowhere).await;
    // A server that is not there is an outage, not a misconfiguration.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = lockstep::store::open(&format!("mysql://root@127.0.0.1:{port}/x")).unwrap();
    let err = down.fetch("flags", &["a"]).await.unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
}

/// Running processes keep reading a deleted SQLite file through their open
/// connection; the store notices that the path names another file and
/// opens it: the registry sees its store lost (a new epoch) and the writes
/// made to the new file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_deleted_and_created_again_is_opened_anew() {
    let file = SqliteFile::create();
    let running = SqliteStore::open(&file.url()).unwrap();
    let now = StepAt::Horizon { after: 0 };
    running.commit(&set("moved", "a", "1", now)).await.unwrap();
    let before = running.fetch("moved", &["a"]).await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", file.path().display());
        let _ = std::fs::remove_file(path);
    }
    let other = SqliteStore::open(&file.url()).unwrap();
    other.commit(&set("moved", "a", "2", now)).await.unwrap();
    let after = running.fetch("moved", &["a"]).await.unwrap();
    assert_ne!(after.epoch, before.epoch, "{after:?}");
    let values: Vec<_> = after.fields["a"].iter().map(|e| e.value.clone()).collect();
    assert_eq!(values, vec![Ok("2".to_owned())]);
}

fn report(process: &str) -> Record {
    Record::new(
        process.to_owned(),
        format!(r#"{{"id":"{process}"}}"#),
        600_000,
    )
}

/// The tables of the first layout, before revisions, reports and schemas
/// by build, and measured values: this layout without its `revision` and
/// `value_bytes` columns, `lockstep_reports` and `lockstep_schemas`, and on
/// SQLite with the entries `WITHOUT ROWID`, `value` after the instant,
/// which is the SQL that release created them with.
fn first_layout(layout: &str) -> Vec<String> {
    let sqlite = layout == SqliteStore::LAYOUT;
    let statements: Vec<String> = layout
        .split_inclusive(";\n")
        .filter(|s| !s.contains("lockstep_reports") && !s.contains("lockstep_schemas"))
        .map(|s| {
            let mut lines: Vec<&str> = s
                .lines()
                .filter(|l| !l.contains("revision") && !l.contains("value_bytes"))
                .collect();
            if sqlite && s.contains("TABLE IF NOT EXISTS lockstep_entries") {
                let value = lines.iter().position(|l| l.contains("value ")).unwrap();
                let value = lines.remove(value);
                let at = lines.iter().position(|l| l.contains("at_ms ")).unwrap();
                lines.insert(at + 1, value);
                *lines.last_mut().unwrap() = ") WITHOUT ROWID;";
            }
            lines.join("\n")
        })
        .collect();
    let tables = statements.iter().filter(|s| s.contains("CREATE TABLE"));
    assert_eq!(tables.count(), 3, "{statements:?}");
    statements
}

/// A database whose tables the first layout created, holding an entry and
/// an epoch, is upgraded when the store connects: what it held reads with
/// revision 0, and writes, reports and schemas by build work from there.
async fn an_old_layout_is_upgraded_in_place(db: Db, layout: &str) {
    for statement in first_layout(layout) {
        (db.execute)(&statement);
    }
    let long_ago = 1_000_000;
    plant(&db, "old", "a", long_ago, "1");
    (db.execute)(&format!(
        "INSERT INTO lockstep_meta (namespace, epoch, created) VALUES ('old', 'e0', {long_ago})"
    ));
    let s = &*db.store;
    let fetched = s
        .fetch_with(Fetch::new("old", &["a"]).reporting(Some(&report("p1"))))
        .await
        .unwrap();
    assert_eq!(fetched.revision, 0);
    assert_eq!(fetched.epoch.as_ref().map(|e| e.id.as_str()), Some("e0"));
    let old = &fetched.fields["a"][0];
    assert_eq!((old.at, old.value.as_deref()), (long_ago, Ok("1")));
    assert_eq!(old.origin.as_ref().map(|o| o.revision), Some(0));
    let records = s.records("old").await.unwrap().records;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].process.as_str(), records[0].revision),
        ("p1", 0)
    );
    s.commit(&set("old", "a", "2", StepAt::Horizon { after: 0 }))
        .await
        .unwrap();
    let fetched = s.fetch("old", &["a"]).await.unwrap();
    assert_eq!(fetched.revision, 1);
    let revisions: Vec<_> = fetched.fields["a"]
        .iter()
        .map(|e| e.origin.as_ref().unwrap().revision)
        .collect();
    assert_eq!(revisions, [0, 1]);
    assert_eq!(fetched.epoch.map(|e| e.id), Some("e0".to_owned()));
    let schema = Schema {
        namespace: "old".to_owned(),
        tick_secs: 1,
        fields: Vec::new(),
    };
    s.publish_schema(&schema).await.unwrap();
    let stored = StoredSchema::of(&schema);
    assert!(held(s, "old", &stored).await);
    assert_eq!(s.records("old").await.unwrap().schemas, [stored]);
    // The entries are measured without reading their values: MySQL keeps
    // their lengths, SQLite's table has a rowid and its values last (each
    // statement fails otherwise).
    if layout == MysqlStore::LAYOUT {
        (db.execute)("SELECT value_bytes FROM lockstep_entries");
    }
    if layout == SqliteStore::LAYOUT {
        (db.execute)(
            "SELECT CASE WHEN (SELECT name FROM pragma_table_info('lockstep_entries') \
             ORDER BY cid DESC LIMIT 1) = 'value' AND (SELECT sql FROM sqlite_master \
             WHERE name = 'lockstep_entries') NOT LIKE '%WITHOUT ROWID%' THEN 1 \
             ELSE abs(-9223372036854775808) END",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrades_the_first_layout_in_place() {
    an_old_layout_is_upgraded_in_place(postgres(), PostgresStore::LAYOUT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrades_the_first_layout_in_place() {
    an_old_layout_is_upgraded_in_place(sqlite(), SqliteStore::LAYOUT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_upgrades_the_first_layout_in_place() {
    an_old_layout_is_upgraded_in_place(mysql(), MysqlStore::LAYOUT).await;
}

/// MySQL keeps each value's length apart (`value_bytes`), so that a fetch
/// measures the values it does not ship without reading them: every write
/// stores it; a row put there without it (by hand, or by an older
/// lockstep) is measured by reading its value until the next commit to its
/// registry stores its length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_keeps_each_value_length_and_measures_rows_written_without_it() {
    let db = MysqlDatabase::create();
    let s = MysqlStore::open(&db.url()).unwrap();
    let far = TICK.ceil(store_now(&s).await + 60_000);
    s.commit(&set("sized", "a", "\"written\"", StepAt::At(far)))
        .await
        .unwrap();
    let unmeasured = "SELECT count(*) FROM lockstep_entries WHERE value_bytes IS NULL";
    let wrong = "SELECT count(*) FROM lockstep_entries WHERE value_bytes <> LENGTH(value)";
    assert_eq!((db.scalar(unmeasured), db.scalar(wrong)), (0, 0));
    db.execute(&[&format!(
        "INSERT INTO lockstep_entries (namespace, field, at_ms, value, write_id, written_at, \
         writer) VALUES ('sized', 'b', {far}, '\"by hand\"', 'planted', {far}, 'plant')"
    )]);
    assert_eq!(db.scalar(unmeasured), 1);
    let fetched = s.fetch("sized", &["a", "b"]).await.unwrap();
    assert_eq!(
        fetched.fields["b"][0].value.as_deref(),
        Ok("\"by hand\""),
        "a row without its length is measured, and shipped"
    );
    s.commit(&set("sized", "a", "2", StepAt::At(far + 1_000)))
        .await
        .unwrap();
    assert_eq!(
        (db.scalar(unmeasured), db.scalar(wrong)),
        (0, 0),
        "the commit stored the planted row's length"
    );
}

/// `url` with the user `user` (password `pw`) instead of its own.
fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}:pw@{host}")
}

/// A reader whose credentials may read the tables but not write them still
/// fetches with its report on: the database refuses the record, the fetch
/// is sent again without it, and the next fetches go without it. The
/// writer's record is there; the reader's is not. `reader` is called once
/// the writer has created the tables.
async fn a_reader_that_may_only_read_still_fetches(db: &Db, reader: impl FnOnce() -> String) {
    let s = &*db.store;
    let far = TICK.ceil(store_now(s).await + 60_000);
    s.commit(&set("read", "a", "1", StepAt::At(far)))
        .await
        .unwrap();
    s.fetch_with(Fetch::new("read", &["a"]).reporting(Some(&report("writer"))))
        .await
        .unwrap();
    let url = reader();
    let reader = lockstep::store::open(&url).unwrap();
    for _ in 0..3 {
        let fetched = reader
            .fetch_with(Fetch::new("read", &["a"]).reporting(Some(&report("reader"))))
            .await
            .unwrap();
        assert_eq!(fetched.revision, 1);
        assert_eq!(fetched.fields["a"][0].at, far);
    }
    let records = reader.records("read").await.unwrap().records;
    let ids: Vec<&str> = records.iter().map(|r| r.process.as_str()).collect();
    assert_eq!(ids, ["writer"]);
    // Its writes are refused as before: a misconfiguration.
    let refused = reader
        .commit(&set("read", "a", "2", StepAt::At(far)))
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::Misconfigured { .. }), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_role_that_may_only_select_still_fetches() {
    let schema = PostgresSchema::create();
    let role = format!("{}_reader", schema.name());
    let db = Db {
        store: Arc::new(PostgresStore::open(schema.url()).unwrap()),
        url: schema.url().to_owned(),
        execute: Box::new(|_| {}),
        _keep: Box::new(()),
    };
    a_reader_that_may_only_read_still_fetches(&db, || {
        schema.execute(&[
            &format!("CREATE ROLE {role} LOGIN PASSWORD 'pw'"),
            &format!("GRANT USAGE ON SCHEMA {} TO {role}", schema.name()),
            &format!(
                "GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {role}",
                schema.name()
            ),
        ]);
        as_user(schema.url(), &role)
    })
    .await;
    schema.execute(&[
        &format!("DROP OWNED BY {role}"),
        &format!("DROP ROLE {role}"),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_user_that_may_only_select_still_fetches() {
    let db = mysql();
    let url = db.url.clone();
    let name = url.rsplit_once('/').unwrap().1.to_owned();
    let user = format!("{name}_ro");
    let hosts = ["%", "localhost"];
    a_reader_that_may_only_read_still_fetches(&db, || {
        for host in hosts {
            (db.execute)(&format!("CREATE USER '{user}'@'{host}' IDENTIFIED BY 'pw'"));
            (db.execute)(&format!("GRANT SELECT ON {name}.* TO '{user}'@'{host}'"));
        }
        as_user(&url, &user)
    })
    .await;
    for host in hosts {
        (db.execute)(&format!("DROP USER '{user}'@'{host}'"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_opened_read_only_still_fetches() {
    let db = sqlite();
    let url = db.url.clone();
    a_reader_that_may_only_read_still_fetches(&db, || format!("{url}?mode=ro")).await;
}

/// A fetch with a report reads the registry's revision without waiting for
/// a commit that holds the registry's lock (its `lockstep_meta` row, here
/// held by a transaction of this test's own): it serves and records the
/// revision committed before, and the commit, rolled back, changed nothing.
async fn a_fetch_with_a_report_does_not_wait_for_a_commit<C>(db: Db)
where
    C: sqlx::Connection,
    for<'e> &'e mut C: sqlx::Executor<'e, Database = C::Database>,
{
    let s = &*db.store;
    s.commit(&set("busy", "a", "1", StepAt::Horizon { after: 0 }))
        .await
        .unwrap();
    let mut c = C::connect(&db.url).await.unwrap();
    let mut tx = c.begin().await.unwrap();
    sqlx::Executor::execute(
        &mut *tx,
        "UPDATE lockstep_meta SET revision = revision + 1 WHERE namespace = 'busy'",
    )
    .await
    .unwrap();
    let fetched = s
        .fetch_with(Fetch::new("busy", &["a"]).reporting(Some(&report("p1"))))
        .await
        .unwrap();
    assert_eq!(fetched.revision, 1);
    let records = s.records("busy").await.unwrap().records;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].revision, 1);
    tx.rollback().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_fetch_with_a_report_does_not_wait_for_a_commit() {
    a_fetch_with_a_report_does_not_wait_for_a_commit::<sqlx::PgConnection>(postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mysql_fetch_with_a_report_does_not_wait_for_a_commit() {
    a_fetch_with_a_report_does_not_wait_for_a_commit::<sqlx::MySqlConnection>(mysql()).await;
}
