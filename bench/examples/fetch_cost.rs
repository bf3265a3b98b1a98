//! What one tick's fetch costs, on each backend: a registry of 10 fields
//! (2 entries each — the active value and one pending change — and 17 — a
//! full history), fetched `N` times in a row through `lockstep::store`, as a
//! registry's refresher does once per tick.
//!
//! ```text
//! cargo run --release -p lockstep-bench --example fetch_cost [-- N]     # N = 2000 by default
//! ```
//!
//! Memory, a private `redis-server`, PostgreSQL (`LOCKSTEP_TEST_POSTGRES`,
//! else a throwaway cluster; with TLS and without), MySQL/MariaDB
//! (`LOCKSTEP_TEST_MYSQL`, else the local server on 127.0.0.1:3306) and a
//! SQLite file in a temporary directory, all on this machine. For each: the median and 99th
//! percentile of a fetch as the caller waits for it, the CPU time this
//! process spent per fetch (for SQLite that is the database's own work too:
//! it runs inside the process), and the server's CPU time per fetch where
//! there is a server on this machine to ask (Redis: `INFO cpu`; PostgreSQL:
//! the backend process of the connection, from `/proc`; MySQL: the whole
//! server process, from `/proc`, when it runs on this machine).
//!
//! The TLS rows need a PostgreSQL that speaks TLS, as this machine's does
//! at 127.0.0.1 (`LOCKSTEP_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test`);
//! on one that does not (the throwaway cluster, a Unix socket) they are
//! left out, with the reason printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lockstep::store::{MemoryStore, MysqlStore, PostgresStore, RedisStore, SqliteStore, Store};
use lockstep_suite::sql::{MysqlDatabase, PostgresSchema, SqliteFile};
use lockstep_suite::{RedisServer, entries_write};
use sqlx::Connection;

const FIELDS: usize = 10;

/// Where a fetch's server-side CPU time can be read.
enum Server<'a> {
    None,
    Redis(&'a RedisServer),
    Postgres { url: String, app: String },
    Mysql { url: String },
}

struct Row {
    backend: String,
    entries: usize,
    median_us: f64,
    p99_us: f64,
    client_cpu_us: f64,
    server_cpu_us: Option<f64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _context = runtime.enter();
    let redis = RedisServer::start();
    let schema = PostgresSchema::create();
    let file = SqliteFile::create();
    let mysql = MysqlDatabase::create();
    let app = |sslmode: &str| format!("lockstep_fetch_cost_{}_{sslmode}", std::process::id());
    let pg = |sslmode: &str| {
        format!(
            "{}&sslmode={sslmode}&application_name={}",
            schema.url(),
            app(sslmode)
        )
    };
    let subjects: Vec<(String, Arc<dyn Store>, Server)> = vec![
        ("memory".into(), Arc::new(MemoryStore::new()), Server::None),
        (
            "Redis".into(),
            Arc::new(RedisStore::open(&redis.url())?),
            Server::Redis(&redis),
        ),
        (
            "PostgreSQL, TLS".into(),
            Arc::new(PostgresStore::open(&pg("require"))?),
            Server::Postgres {
                url: pg("require"),
                app: app("require"),
            },
        ),
        (
            "PostgreSQL, plain".into(),
            Arc::new(PostgresStore::open(&pg("disable"))?),
            Server::Postgres {
                url: pg("disable"),
                app: app("disable"),
            },
        ),
        (
            "MySQL (MariaDB), plain".into(),
            Arc::new(MysqlStore::open(&mysql.url())?),
            Server::Mysql { url: mysql.url() },
        ),
        (
            "SQLite".into(),
            Arc::new(SqliteStore::open(&file.url())?),
            Server::None,
        ),
    ];
    let mut rows = Vec::new();
    for (i, (name, store, server)) in subjects.iter().enumerate() {
        for entries in [2, 17] {
            let namespace = format!("cost_{i}_{entries}");
            match runtime.block_on(measure(name, &**store, server, &namespace, entries, n)) {
                Ok(row) => rows.push(row),
                // A throwaway cluster, or a server reached over its Unix
                // socket, has no TLS: say so and measure the rest.
                Err(e) if name.contains("TLS") => {
                    eprintln!("{name}: not measured: {e}");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    println!(
        "{n} fetches of a registry of {FIELDS} fields, one after another, on this machine \
         ({} cores); µs per fetch\n",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!(
        "| backend | entries per field | fetch, median | fetch, p99 | client CPU | server CPU |"
    );
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} |",
            r.backend,
            r.entries,
            r.median_us,
            r.p99_us,
            r.client_cpu_us,
            r.server_cpu_us
                .map_or("—".to_owned(), |us| format!("{us:.1}"))
        );
    }
    Ok(())
}

async fn measure(
    name: &str,
    store: &dyn Store,
    server: &Server<'_>,
    namespace: &str,
    entries: usize,
    n: usize,
) -> Result<Row, Box<dyn std::error::Error>> {
    let keys: Vec<String> = (0..FIELDS).map(|i| format!("field_{i:03}")).collect();
    let tick = lockstep::Tick::new(Duration::from_secs(1))?;
    let write = entries_write(namespace, tick, "fetch_cost example", &keys, entries);
    store.commit(&write).await?;
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    for _ in 0..100 {
        store.fetch(namespace, &key_refs).await?;
    }
    let server_cpu = || server_cpu(server);
    let server0 = server_cpu().await;
    let client0 = process_cpu();
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let fetched = store.fetch(namespace, &key_refs).await?;
        took.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(fetched.fields.len(), FIELDS);
        assert!(fetched.fields.values().all(|e| e.len() == entries));
    }
    let client_cpu_us = (process_cpu() - client0) * 1e6 / n as f64;
    let server_cpu_us = match (server0, server_cpu().await) {
        (Some(a), Some(b)) => Some((b - a) * 1e6 / n as f64),
        _ => None,
    };
    took.sort_by(f64::total_cmp);
    Ok(Row {
        backend: name.to_owned(),
        entries,
        median_us: took[n / 2],
        p99_us: took[(n * 99 / 100).min(n - 1)],
        client_cpu_us,
        server_cpu_us,
    })
}

/// The server's CPU time so far, in seconds.
async fn server_cpu(server: &Server<'_>) -> Option<f64> {
    match server {
        Server::None => None,
        Server::Redis(redis) => {
            let info: String = redis.cmd(&["INFO", "cpu"]);
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            };
            Some(field("used_cpu_sys:")? + field("used_cpu_user:")?)
        }
        Server::Postgres { url, app } => {
            // The backend process serving the store's connection.
            let mut c = sqlx::PgConnection::connect(url).await.ok()?;
            let pid: i32 = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
                 AND pid <> pg_backend_pid() ORDER BY backend_start LIMIT 1",
            )
            .bind(app)
            .fetch_optional(&mut c)
            .await
            .ok()??;
            let _ = c.close().await;
            cpu_of(&pid.to_string())
        }
        Server::Mysql { url } => {
            // The server process, when it is on this machine.
            let mut c = sqlx::MySqlConnection::connect(url).await.ok()?;
            let file: String = sqlx::query_scalar("SELECT @@pid_file")
                .fetch_one(&mut c)
                .await
                .ok()?;
            let _ = c.close().await;
            let pid = std::fs::read_to_string(file).ok()?;
            cpu_of(pid.trim())
        }
    }
}

/// This process's CPU time so far, in seconds.
fn process_cpu() -> f64 {
    cpu_of("self").unwrap_or(0.0)
}

/// The CPU time of a process so far, all its threads, in seconds: the first
/// field of each thread's `/proc/<pid>/task/<tid>/schedstat`, in ns.
fn cpu_of(pid: &str) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}
