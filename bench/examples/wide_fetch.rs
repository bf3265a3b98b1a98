//! What one fetch of a wide registry costs a redis-server, beside a small
//! one in the same run: `wide`, 300 fields × 10 pending entries of 60 000
//! bytes planted by hand (180 MB, far beyond the pending bound and the
//! fetch's budget), and `narrow`, one field of 10 small entries; each
//! fetched in full `N` times, interleaved, on a private redis-server.
//!
//! ```text
//! cargo run --release -p lockstep-bench --example wide_fetch [-- N]     # N = 20 by default
//! ```
//!
//! For each: the server's time per fetch (`INFO commandstats`, the usec of
//! `EVALSHA_RO` before and after each call; median and max), what the
//! caller waited (median), and the bytes of values shipped. Then, while
//! wide fetches run back to back, narrow fetches with a 250 ms deadline (a
//! 1 s tick's fetch timeout): how many failed.

use std::time::{Duration, Instant};

use lockstep::store::{Fetch, RedisStore, Store};
use lockstep_suite::RedisServer;

const FIELDS: usize = 300;
const ENTRIES: usize = 10;
const VALUE_BYTES: usize = 60_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20);
    let server = RedisServer::start();
    plant(&server)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let wide_keys: Vec<String> = (0..FIELDS).map(|i| format!("f{i:03}")).collect();
    let wide_keys: Vec<&str> = wide_keys.iter().map(String::as_str).collect();
    runtime.block_on(async {
        let store = RedisStore::open(&server.url())?;
        // Load the script.
        store.fetch("narrow", &["n"]).await?;
        let mut wide = Vec::new();
        let mut narrow = Vec::new();
        for _ in 0..n {
            wide.push(measure(&server, &store, "wide", &wide_keys).await?);
            narrow.push(measure(&server, &store, "narrow", &["n"]).await?);
        }
        println!("{n} full fetches of each, interleaved, on one redis-server\n");
        println!("| registry | stored | server ms, median | server ms, max | caller ms, median | values shipped |");
        println!("|---|---|---|---|---|---|");
        let stored = format!("{} MB", FIELDS * ENTRIES * VALUE_BYTES / 1_000_000);
        row("wide (300 fields)", &stored, &mut wide);
        row("narrow (1 field)", "1 KB", &mut narrow);

        // Neighbours: narrow fetches with a 250 ms deadline while wide
        // fetches run back to back.
        let busy = {
            let store = store.clone();
            let keys: Vec<String> = wide_keys.iter().map(|k| k.to_string()).collect();
            tokio::spawn(async move {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                for _ in 0..n {
                    let _ = store.fetch("wide", &keys).await;
                }
            })
        };
        let (mut ok, mut failed) = (0, 0);
        while !busy.is_finished() {
            let fetch = Fetch::new("narrow", &["n"]).within(Duration::from_millis(250));
            match tokio::time::timeout(Duration::from_millis(250), store.fetch_with(fetch)).await {
                Ok(Ok(_)) => ok += 1,
                _ => failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "\nnarrow fetches within 250 ms while wide ones ran back to back: {ok} answered, \
             {failed} failed"
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

/// One full fetch: the server's µs for it, the caller's, and the bytes of
/// values shipped.
async fn measure(
    server: &RedisServer,
    store: &RedisStore,
    namespace: &str,
    keys: &[&str],
) -> Result<(u64, u64, usize), Box<dyn std::error::Error>> {
    let before = script_usec(server);
    let started = Instant::now();
    let fetched = store.fetch(namespace, keys).await?;
    let waited = started.elapsed().as_micros() as u64;
    let shipped = fetched
        .fields
        .values()
        .flatten()
        .filter_map(|e| e.value.as_ref().ok())
        .map(String::len)
        .sum();
    Ok((script_usec(server) - before, waited, shipped))
}

fn row(name: &str, stored: &str, runs: &mut [(u64, u64, usize)]) {
    runs.sort_by_key(|r| r.0);
    let server_median = runs[runs.len() / 2].0 as f64 / 1000.0;
    let server_max = runs[runs.len() - 1].0 as f64 / 1000.0;
    let mut waited: Vec<u64> = runs.iter().map(|r| r.1).collect();
    waited.sort_unstable();
    let caller = waited[waited.len() / 2] as f64 / 1000.0;
    println!(
        "| {name} | {stored} | {server_median:.1} | {server_max:.1} | {caller:.1} | {} bytes |",
        runs[0].2
    );
}

/// The server's total µs in `EVALSHA_RO` so far.
fn script_usec(server: &RedisServer) -> u64 {
    let info: String = server.cmd(&["INFO", "commandstats"]);
    info.lines()
        .find(|l| l.starts_with("cmdstat_evalsha_ro:"))
        .and_then(|l| l.split(',').find_map(|p| p.strip_prefix("usec=")))
        .and_then(|u| u.parse().ok())
        .unwrap_or(0)
}

/// Plants the wide registry's entries (and the narrow one's), as an older
/// lockstep or a hand would: envelopes straight into the hashes.
fn plant(server: &RedisServer) -> Result<(), Box<dyn std::error::Error>> {
    let (secs, _): (String, String) = server.cmd(&["TIME"]);
    let first = (secs.parse::<i64>()? + 3_600) * 1_000;
    let mut connection = server.connection()?;
    let envelope =
        |value: &str| format!(r#"{{"f":1,"w":"planted","t":0,"by":"a hand","r":0,"v":{value}}}"#);
    let big = envelope(&format!("\"{}\"", "x".repeat(VALUE_BYTES - 2)));
    for f in 0..FIELDS {
        let mut pipe = redis::pipe();
        for e in 0..ENTRIES {
            pipe.cmd("HSET")
                .arg(format!("lockstep:{{wide}}:field:f{f:03}"))
                .arg((first + 1_000 * e as i64).to_string())
                .arg(&big)
                .ignore();
        }
        pipe.exec(&mut connection)?;
    }
    let mut pipe = redis::pipe();
    for e in 0..ENTRIES {
        pipe.cmd("HSET")
            .arg("lockstep:{narrow}:field:n")
            .arg((first + 1_000 * e as i64).to_string())
            .arg(envelope(&e.to_string()))
            .ignore();
    }
    pipe.exec(&mut connection)?;
    Ok(())
}
