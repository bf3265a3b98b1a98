//! What the SQL stores promise beyond the shared contract, on each of
//! PostgreSQL, SQLite and MySQL/MariaDB, against the real databases: cancel
//! says what it removed, purge removes what no process can use, an oversized
//! value never crosses the network, the fetch says whether the schema is
//! held, misconfiguration is told apart from an outage, and a SQLite file
//! deleted and created again is noticed.

use std::sync::Arc;

use lockstep::store::{MysqlStore, PostgresStore, SqliteStore, StepAt, Store};
use lockstep::{Error, Millis, Schema, Tick};
use lockstep_suite::sql::{MysqlDatabase, PostgresSchema, SqliteFile};

const TICK: Tick = Tick::__from_secs(1);

/// A SQL store and a way to run SQL in its database.
struct Db {
    store: Arc<dyn Store>,
    execute: Box<dyn Fn(&str) + Send + Sync>,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

fn postgres() -> Db {
    let schema = Arc::new(PostgresSchema::create());
    let run = schema.clone();
    Db {
        store: Arc::new(PostgresStore::open(schema.url()).unwrap()),
        execute: Box::new(move |sql| run.execute(&[sql])),
        _keep: Box::new(schema),
    }
}

fn mysql() -> Db {
    let db = Arc::new(MysqlDatabase::create());
    let run = db.clone();
    Db {
        store: Arc::new(MysqlStore::open(&db.url()).unwrap()),
        execute: Box::new(move |sql| run.execute(&[sql])),
        _keep: Box::new(db),
    }
}

fn sqlite() -> Db {
    let file = SqliteFile::create();
    let url = file.url();
    Db {
        store: Arc::new(SqliteStore::open(&url).unwrap()),
        execute: Box::new(move |sql| sqlite_execute(&url, sql)),
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
        (write.id.clone(), "sql-store".to_owned())
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
    let write = lockstep_suite::raw_write(
        "big",
        TICK,
        "sql-store",
        vec![(
            StepAt::Horizon { after: 0 },
            vec![("small", "8"), ("huge", &over)],
        )],
    );
    let refused = s.commit(&write).await.unwrap_err();
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

async fn every_check(db: Db) {
    cancel_returns_the_entry_it_removed(&db).await;
    purge_removes_only_what_no_process_serves(&db).await;
    an_oversized_value_never_crosses_the_network(&db).await;
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
