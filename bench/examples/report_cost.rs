//! What the fleet view's report adds to a fetch on the SQL stores: a
//! registry of 1 and of 10 fields (2 entries each), fetched `N` times
//! without a report and `N` times with one, interleaved in the same run, on
//! this machine.
//!
//! ```text
//! cargo run --release -p lockstep-bench --example report_cost [-- N]     # N = 500 by default
//! ```
//!
//! PostgreSQL (`LOCKSTEP_TEST_POSTGRES`, else a throwaway cluster), a
//! private MariaDB server (see `lockstep_suite::MariadbServer`: nothing else
//! talks to it, so its global counters are this run's) and a SQLite file.
//! For each: the median µs of a fetch as the caller waits for it, without
//! and with a report. For MariaDB also what the server counts per fetch
//! (`SHOW GLOBAL STATUS`: `Questions`, `Com_select`, `Com_insert`,
//! `Com_delete`), the statements of one round trip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lockstep::store::driver::Record;
use lockstep::store::{Fetch, MysqlStore, PostgresStore, SqliteStore, Store};
use lockstep_suite::sql::{PostgresSchema, SqliteFile};
use lockstep_suite::{MariadbServer, entries_write, sample_record};
use sqlx::Connection;

/// The counters of `SHOW GLOBAL STATUS` shown per fetch.
const COUNTERS: [&str; 4] = ["Questions", "Com_select", "Com_insert", "Com_delete"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(500);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let schema = PostgresSchema::create();
    let mariadb = MariadbServer::start();
    let file = SqliteFile::create();
    let subjects: Vec<(&str, Arc<dyn Store>)> = vec![
        ("PostgreSQL", Arc::new(PostgresStore::open(schema.url())?)),
        ("MariaDB", Arc::new(MysqlStore::open(&mariadb.url())?)),
        ("SQLite", Arc::new(SqliteStore::open(&file.url())?)),
    ];
    let report = sample_record();
    println!("{n} fetches of each kind, interleaved; median µs as the caller waits\n");
    println!("| store | fields | without a report | with a report | added |");
    println!("|---|---|---|---|---|");
    runtime.block_on(async {
        for (name, store) in &subjects {
            for fields in [1, 10] {
                let ns = format!("cost{fields}");
                let keys: Vec<String> = (0..fields).map(|i| format!("field_{i}")).collect();
                let tick = lockstep::Tick::new(Duration::from_secs(1))?;
                store
                    .commit(&entries_write(&ns, tick, "report_cost", &keys, 2))
                    .await?;
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let (plain, reporting) = medians(&**store, &ns, &keys, &report, n).await?;
                println!(
                    "| {name} | {fields} | {plain:.0} | {reporting:.0} | {:+.0} |",
                    reporting - plain
                );
            }
        }
        println!("\nMariaDB, per fetch of 10 fields (SHOW GLOBAL STATUS, {n} fetches):\n");
        println!("| fetch | {} |", COUNTERS.join(" | "));
        println!("|---|{}", "---|".repeat(COUNTERS.len()));
        let store = &subjects[1].1;
        let keys: Vec<String> = (0..10).map(|i| format!("field_{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut c = sqlx::MySqlConnection::connect(&mariadb.url()).await?;
        // What reading the counters counts itself, read twice in a row.
        let own = delta(&counters(&mut c).await?, &counters(&mut c).await?);
        for (what, with) in [("without a report", None), ("with a report", Some(&report))] {
            let before = counters(&mut c).await?;
            for _ in 0..n {
                store
                    .fetch_with(Fetch::new("cost10", &keys).reporting(with))
                    .await?;
            }
            let fetches = delta(&before, &counters(&mut c).await?);
            let per: Vec<String> = fetches
                .iter()
                .zip(&own)
                .map(|(all, own)| format!("{:.2}", (all - own) / n as f64))
                .collect();
            println!("| {what} | {} |", per.join(" | "));
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

/// A record of the size a registry sends (about 300 bytes).
/// The median µs of `n` fetches without a report and of `n` with one,
/// taken in turn, after a warm-up of each.
async fn medians(
    store: &dyn Store,
    ns: &str,
    keys: &[&str],
    report: &Record,
    n: usize,
) -> Result<(f64, f64), lockstep::Error> {
    let mut plain = Vec::with_capacity(n);
    let mut reporting = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let started = Instant::now();
        store.fetch(ns, keys).await?;
        let middle = Instant::now();
        store
            .fetch_with(Fetch::new(ns, keys).reporting(Some(report)))
            .await?;
        let done = Instant::now();
        if i >= 50 {
            plain.push((middle - started).as_secs_f64() * 1e6);
            reporting.push((done - middle).as_secs_f64() * 1e6);
        }
    }
    Ok((median(plain), median(reporting)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// [`COUNTERS`], as the server counts them now.
async fn counters(c: &mut sqlx::MySqlConnection) -> Result<Vec<f64>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT variable_name, variable_value FROM information_schema.global_status",
    )
    .fetch_all(c)
    .await?;
    Ok(COUNTERS
        .iter()
        .map(|name| {
            rows.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(f64::NAN)
        })
        .collect())
}

fn delta(before: &[f64], after: &[f64]) -> Vec<f64> {
    before.iter().zip(after).map(|(b, a)| a - b).collect()
}
