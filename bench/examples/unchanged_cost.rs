//! What a fetch of an unchanged registry costs the store (DESIGN.md promise
//! 15), beside a full fetch, for registries of 1, 10, 50 and 200 fields (2
//! entries each: the active value and one pending change), measured by the
//! server, in one run.
//!
//! ```text
//! cargo run --release -p lockstep-bench --example unchanged_cost [-- N]     # N = 1000 by default
//! ```
//!
//! An *unchanged* fetch is a [`Fetch`] holding ([`Fetch::holding`]) the
//! registry's epoch and revision, as a registry's refresher sends it once
//! it has applied a fetch; a *full* one holds nothing, as every fetch did
//! before. For each store and size, `N` of each, in alternating blocks of
//! 100 after a warm-up, and the median over the blocks of what the store
//! spent per fetch:
//!
//! - Redis (a private `redis-server`): `INFO commandstats`, the
//!   `usec_per_call` of `EVALSHA_RO` (the fetch script, all it calls
//!   included), counted for each kind alone (`CONFIG RESETSTAT` before
//!   each block); and, as "Redis, all in", the CPU time of the whole
//!   server process (`/proc/<pid>/task/*/schedstat`: reading the request,
//!   running the script, writing the reply), with the bytes each fetch
//!   carries each way (`INFO stats`, `total_net_input_bytes` and
//!   `total_net_output_bytes`), for sizing a server; "Redis, reporting,
//!   all in" the same with the fleet report a registry sends with each
//!   fetch (`lockstep_suite::sample_record`), as a primary serving its
//!   processes' fetches and records does; and with a primary and one
//!   replica (`redis://primary?replicas=replica`), the replica's CPU for
//!   the fetches it serves (with the `INFO replication` that rides with
//!   each), without and with the report (the primary's record of it
//!   reaches the replica too, as replication), and the primary's for the records alone; and
//!   the replica's for applying the records alone, the fetches that sent
//!   them served by its primary;
//! - PostgreSQL (`LOCKSTEP_TEST_POSTGRES`, else a throwaway cluster): the
//!   CPU time of the backend process serving the store's connection
//!   (`/proc/<pid>/schedstat`, ns), found by its `application_name`;
//! - MariaDB (a private server, see `lockstep_suite::MariadbServer`: nothing
//!   else talks to it): the CPU time of the whole server process, all its
//!   threads (`/proc/<pid>/task/*/schedstat`), its background threads
//!   included;
//! - SQLite (a file): this process's own CPU time, all threads: the
//!   database runs inside it (decoding the rows into entries included).
//!
//! The ratio "unchanged, 200 ÷ 1 fields" is promise 15's: at most 1.5.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lockstep::store::driver::{Held, Record};
use lockstep::store::{Fetch, Fetched, MysqlStore, PostgresStore, RedisStore, SqliteStore, Store};
use lockstep_suite::sql::{PostgresSchema, SqliteFile};
use lockstep_suite::{MariadbServer, RedisReplicas, RedisServer, entries_write, sample_record};
use sqlx::Connection;

const SIZES: [usize; 4] = [1, 10, 50, 200];

/// Fetches of one kind in a row, before the other kind's turn.
const BLOCK: usize = 100;

/// What is measured: a name, the store fetched through, where its cost is
/// read, and the report each fetch sends, if any.
type Subject<'a> = (&'a str, Arc<dyn Store>, Server<'a>, Option<&'a Record>);

/// Where a fetch's cost to the store is read.
enum Server<'a> {
    Redis(&'a RedisServer),
    RedisAllIn(&'a RedisServer),
    Postgres {
        url: String,
        app: String,
        pid: OnceLock<String>,
    },
    Mariadb {
        url: String,
        pid: OnceLock<String>,
    },
    InProcess,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1000_usize)
        .div_ceil(BLOCK)
        * BLOCK;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _context = runtime.enter();
    let redis = RedisServer::start();
    let set = RedisReplicas::start(1);
    let schema = PostgresSchema::create();
    let mariadb = MariadbServer::start();
    let file = SqliteFile::create();
    let app = format!("lockstep_unchanged_cost_{}", std::process::id());
    let pg = format!("{}&application_name={app}", schema.url());
    let report = sample_record();
    let subjects: Vec<Subject> = vec![
        (
            "Redis",
            Arc::new(RedisStore::open(&redis.url())?),
            Server::Redis(&redis),
            None,
        ),
        (
            "Redis, all in",
            Arc::new(RedisStore::open(&redis.url())?),
            Server::RedisAllIn(&redis),
            None,
        ),
        (
            "Redis, reporting, all in",
            Arc::new(RedisStore::open(&redis.url())?),
            Server::RedisAllIn(&redis),
            Some(&report),
        ),
        (
            "Redis replica: fetch and `INFO replication`, all in",
            Arc::new(RedisStore::open(&set.url())?),
            Server::RedisAllIn(&set.replicas[0]),
            None,
        ),
        (
            "Redis replica: fetch, `INFO replication` and the record replicated, all in",
            Arc::new(RedisStore::open(&set.url())?),
            Server::RedisAllIn(&set.replicas[0]),
            Some(&report),
        ),
        (
            "Redis primary of that replica: the record alone, all in",
            Arc::new(RedisStore::open(&set.url())?),
            Server::RedisAllIn(&set.primary),
            Some(&report),
        ),
        (
            "Redis replica: only applying the records of fetches its primary served, all in",
            Arc::new(RedisStore::open(&set.primary.url())?),
            Server::RedisAllIn(&set.replicas[0]),
            Some(&report),
        ),
        (
            "PostgreSQL",
            Arc::new(PostgresStore::open(&pg)?),
            Server::Postgres {
                url: pg.clone(),
                app,
                pid: OnceLock::new(),
            },
            None,
        ),
        (
            "MariaDB",
            Arc::new(MysqlStore::open(&mariadb.url())?),
            Server::Mariadb {
                url: mariadb.url(),
                pid: OnceLock::new(),
            },
            None,
        ),
        (
            "SQLite",
            Arc::new(SqliteStore::open(&file.url())?),
            Server::InProcess,
            None,
        ),
    ];
    println!(
        "{n} fetches of each kind per row, in alternating blocks of {BLOCK}; µs per fetch, as \
         the store counts it (the median of the blocks)\n"
    );
    println!("| store | what is measured | fields | unchanged | full | unchanged ÷ full |");
    println!("|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    let mut traffic = Vec::new();
    runtime.block_on(async {
        for (name, store, server, report) in &subjects {
            let mut first = None;
            let mut last = 0.0;
            for fields in SIZES {
                let cost = measure(&**store, server, *report, fields, n).await?;
                let (unchanged, full) = (cost.unchanged, cost.full);
                println!(
                    "| {name} | {} | {fields} | {unchanged:.1} | {full:.1} | {:.2} |",
                    server.what(),
                    unchanged / full
                );
                if let Some(bytes) = cost.bytes {
                    traffic.push((*name, fields, bytes));
                }
                first.get_or_insert(unchanged);
                last = unchanged;
            }
            ratios.push((name, last / first.unwrap_or(f64::NAN)));
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    println!("\nUnchanged fetch, 200 fields ÷ 1 field (promise 15: at most 1.5):\n");
    for (name, ratio) in ratios {
        println!("- {name}: {ratio:.2}");
    }
    println!(
        "\nRedis, bytes per fetch (`INFO stats`: to the server / from it; the median of the \
         blocks)\n"
    );
    println!(
        "| subject | fields | unchanged: request | unchanged: reply | full: request | full: reply |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, fields, b) in traffic {
        println!(
            "| {name} | {fields} | {:.0} | {:.0} | {:.0} | {:.0} |",
            b.unchanged.0, b.unchanged.1, b.full.0, b.full.1
        );
    }
    Ok(())
}

/// What one size of registry cost, per fetch.
struct Cost {
    /// µs per unchanged fetch.
    unchanged: f64,
    /// µs per full fetch.
    full: f64,
    /// Bytes to and from the server per fetch, where the server says.
    bytes: Option<Traffic>,
}

/// Bytes (to the server, from it) per fetch of each kind.
struct Traffic {
    unchanged: (f64, f64),
    full: (f64, f64),
}

impl Server<'_> {
    fn what(&self) -> &'static str {
        match self {
            Server::Redis(_) => "`EVALSHA_RO` usec_per_call",
            Server::RedisAllIn(_) => "server CPU",
            Server::Postgres { .. } => "backend CPU",
            Server::Mariadb { .. } => "server CPU",
            Server::InProcess => "process CPU",
        }
    }
}

/// The µs per unchanged and per full fetch of a registry of `fields`
/// fields, `n` of each, each sending `report` when given.
async fn measure(
    store: &dyn Store,
    server: &Server<'_>,
    report: Option<&Record>,
    fields: usize,
    n: usize,
) -> Result<Cost, Box<dyn std::error::Error>> {
    // A registry of its own per measurement: the subjects share a server.
    static MEASURED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let nth = MEASURED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let namespace = format!("unchanged{fields}_{nth}");
    let keys: Vec<String> = (0..fields).map(|i| format!("field_{i:03}")).collect();
    let tick = lockstep::Tick::new(Duration::from_secs(1))?;
    store
        .commit(&entries_write(&namespace, tick, "unchanged_cost", &keys, 2))
        .await?;
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let whole = store.fetch(&namespace, &keys).await?;
    let held = whole.held().ok_or("a registry written has an epoch")?;
    let fetch = async |held: Option<&Held>| -> Result<Fetched, lockstep::Error> {
        store
            .fetch_with(
                Fetch::new(&namespace, &keys)
                    .reporting(report)
                    .holding(held),
            )
            .await
    };
    for _ in 0..BLOCK {
        fetch(None).await?;
        fetch(Some(&held)).await?;
    }
    let (mut unchanged, mut full) = (Vec::new(), Vec::new());
    let (mut unchanged_bytes, mut full_bytes) = (Vec::new(), Vec::new());
    for _ in 0..n / BLOCK {
        for (held, blocks, bytes) in [
            (Some(&held), &mut unchanged, &mut unchanged_bytes),
            (None, &mut full, &mut full_bytes),
        ] {
            let bytes_before = server.bytes();
            let before = server.start().await?;
            for _ in 0..BLOCK {
                let fetched = fetch(held).await?;
                assert_eq!(fetched.unchanged, held.is_some());
                assert_eq!(fetched.revision, whole.revision);
                assert_eq!(
                    fetched.fields.len(),
                    if held.is_some() { 0 } else { fields }
                );
            }
            blocks.push(server.spent_since(before).await? / BLOCK as f64);
            if let (Some((i0, o0)), Some((i1, o1)), Some((i2, o2))) =
                (bytes_before, server.bytes(), server.bytes())
            {
                // Less one `INFO` each way (the last two asks' difference).
                let (i, o) = (i1 - i0 - (i2 - i1), o1 - o0 - (o2 - o1));
                bytes.push((i / BLOCK as f64, o / BLOCK as f64));
            }
        }
    }
    let median_of = |pairs: &[(f64, f64)]| {
        (
            median(pairs.iter().map(|p| p.0).collect()),
            median(pairs.iter().map(|p| p.1).collect()),
        )
    };
    Ok(Cost {
        unchanged: median(unchanged),
        full: median(full),
        bytes: (!unchanged_bytes.is_empty()).then(|| Traffic {
            unchanged: median_of(&unchanged_bytes),
            full: median_of(&full_bytes),
        }),
    })
}

/// The median of the blocks' µs per fetch: a block the machine's other
/// work fell on weighs no more than one.
fn median(mut blocks: Vec<f64>) -> f64 {
    blocks.sort_by(f64::total_cmp);
    blocks[blocks.len() / 2]
}

impl Server<'_> {
    /// Where the count starts: µs spent so far (Redis: reset to 0).
    async fn start(&self) -> Result<f64, Box<dyn std::error::Error>> {
        match self {
            Server::Redis(redis) => {
                let _: () = redis.cmd(&["CONFIG", "RESETSTAT"]);
                Ok(0.0)
            }
            _ => self.spent().await,
        }
    }

    /// The µs spent on fetches since `start` said `before`.
    async fn spent_since(&self, before: f64) -> Result<f64, Box<dyn std::error::Error>> {
        Ok(self.spent().await? - before)
    }

    /// The µs the store has spent so far (Redis: on the fetch script since
    /// the last reset).
    async fn spent(&self) -> Result<f64, Box<dyn std::error::Error>> {
        match self {
            Server::Redis(redis) => {
                let info: String = redis.cmd(&["INFO", "commandstats"]);
                let line = info
                    .lines()
                    .find(|l| l.starts_with("cmdstat_evalsha_ro:"))
                    .ok_or("no EVALSHA_RO in INFO commandstats")?;
                let usec = line
                    .split([':', ','])
                    .find_map(|kv| kv.strip_prefix("usec="))
                    .ok_or("no usec in INFO commandstats")?;
                Ok(usec.parse()?)
            }
            Server::Postgres { pid, .. } | Server::Mariadb { pid, .. } => {
                let pid = match pid.get() {
                    Some(pid) => pid,
                    None => {
                        let found = self.pid().await?;
                        pid.get_or_init(|| found)
                    }
                };
                cpu_of(pid).ok_or_else(|| format!("no process {pid}").into())
            }
            Server::RedisAllIn(redis) => {
                let pid = redis.pid().to_string();
                cpu_of(&pid).ok_or_else(|| format!("no process {pid}").into())
            }
            Server::InProcess => cpu_of("self").ok_or_else(|| "no /proc/self".into()),
        }
    }

    /// Bytes the server has read and written so far (`INFO stats`), for
    /// "Redis, all in"; `None` for the others.
    fn bytes(&self) -> Option<(f64, f64)> {
        let Server::RedisAllIn(redis) = self else {
            return None;
        };
        let info: String = redis.cmd(&["INFO", "stats"]);
        let count = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        Some((
            count("total_net_input_bytes")?,
            count("total_net_output_bytes")?,
        ))
    }
}

impl Server<'_> {
    /// The process whose CPU time is the store's, asked once (the
    /// connection that asks is not the one measured, and is closed before).
    async fn pid(&self) -> Result<String, Box<dyn std::error::Error>> {
        match self {
            Server::Postgres { url, app, .. } => {
                // The backend process serving the store's connection.
                let mut c = sqlx::PgConnection::connect(url).await?;
                let pid: i32 = sqlx::query_scalar(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
                     AND pid <> pg_backend_pid() ORDER BY backend_start LIMIT 1",
                )
                .bind(app)
                .fetch_one(&mut c)
                .await?;
                c.close().await?;
                Ok(pid.to_string())
            }
            Server::Mariadb { url, .. } => {
                let mut c = sqlx::MySqlConnection::connect(url).await?;
                let file: String = sqlx::query_scalar("SELECT @@pid_file")
                    .fetch_one(&mut c)
                    .await?;
                c.close().await?;
                Ok(std::fs::read_to_string(file)?.trim().to_owned())
            }
            _ => Err("no process of its own".into()),
        }
    }
}

/// The CPU time of a process so far, all its threads, in µs: the first
/// field of each thread's `/proc/<pid>/task/<tid>/schedstat`, in ns.
fn cpu_of(pid: &str) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e3)
}
