//! The proof: separate OS processes holding one registry on one real
//! redis-server switch at the same instant, never before it.

use std::time::{Duration, Instant};

use chrono::Utc;
use lockstep::store::{RedisStore, Store, Write};
use lockstep_suite::{Probe, RedisServer, Switched, assert_all_switched_within_5_ms, ms_after};

const PROBES: usize = 8;

/// The tests here measure timing across processes: one at a time, so they
/// do not compete for the two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn probe(url: &str, args: &[&str]) -> Probe {
    Probe::spawn(env!("CARGO_BIN_EXE_probe"), url, args)
}

/// Schedules `generation = value` at the horizon; returns its instant in ns.
async fn schedule(store: &RedisStore, value: u64) -> i64 {
    let write = Write::builder(
        "fleet",
        lockstep::Tick::new(Duration::from_secs(1)).unwrap(),
    )
    .by("fleet test")
    .set("generation", serde_json::json!(value))
    .build()
    .unwrap();
    store.commit(&write).await.unwrap().instants[0] * 1_000_000
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (v[0], q(0.5), q(0.99), v[v.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_switch_together_within_5_ms_never_before_one_fetch_per_tick() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    let url = server.url();
    let mut probes: Vec<Probe> = (0..PROBES).map(|_| probe(&url, &["42"])).collect();
    for probe in &mut probes {
        assert_eq!(probe.line(), "ready");
    }
    // The writer's script is loaded before counting. Its commit is an
    // EVALSHA, as every fetch with its report: one in the window, counted
    // out below.
    let writer = RedisStore::open(&url).unwrap();
    schedule(&writer, 0).await;
    server.reset_stats();
    let window = Instant::now();
    let at = schedule(&writer, 42).await;
    let (mut lateness_ms, mut switched) = (Vec::new(), Vec::new());
    for probe in &mut probes {
        let (_, switch) = probe.switched(at, "eight processes");
        lateness_ms.push(switch.seen_ms);
        switched.push(switch);
    }
    let seconds = window.elapsed().as_secs_f64();
    let [evalsha, evalsha_ro, records] = server.calls_of(["evalsha", "evalsha_ro", "zadd"]);
    let fetches = evalsha - 1;
    // Each fetch kept its process's record in that one round trip: none
    // went without its report, or fell back to a second, read-only one.
    assert_eq!(evalsha_ro, 0);
    assert_eq!(records, fetches, "one record per fetch");
    let (min, median, p99, max) = stats(lateness_ms.clone());
    println!(
        "{PROBES} processes, lateness of the first hot-path read that saw the change: \
         min {min:.3} ms, median {median:.3} ms, p99 {p99:.3} ms, max {max:.3} ms, \
         spread {:.3} ms; the last read of the old value started {:+.3} ms after the instant \
         at the latest; {fetches} fetches in {seconds:.2} s",
        max - min,
        switched.iter().map(|s| s.stale_ms).fold(f64::MIN, f64::max),
    );
    assert_all_switched_within_5_ms(&switched, 0.0);
    // One fetch per process per tick: each process fetched on every tick
    // boundary of its own phase inside the window (and no more).
    let per_process = seconds.floor() as u64;
    let expected = PROBES as u64 * per_process..=PROBES as u64 * (per_process + 1);
    assert!(
        expected.contains(&fetches),
        "{fetches} fetches, expected {expected:?}"
    );
    assert!(Utc::now().timestamp_nanos_opt().unwrap() > at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_clock_flips_early_unless_flips_follow_the_store_clock() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    let url = server.url();
    // This process's clock is 300 ms ahead.
    let mut local = probe(&url, &["7", "300"]);
    let mut store = probe(&url, &["7", "300", "store"]);
    assert_eq!(local.line(), "ready");
    assert_eq!(store.line(), "ready");
    // Let the store-clock process take a few clock samples.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let at = schedule(&RedisStore::open(&url).unwrap(), 7).await;
    let local: serde_json::Value = serde_json::from_str(&local.line()).unwrap();
    let store: serde_json::Value = serde_json::from_str(&store.line()).unwrap();
    let (local_ms, store_ms) = (
        ms_after(local["seen_ns"].as_i64().unwrap(), at),
        ms_after(store["seen_ns"].as_i64().unwrap(), at),
    );
    let offset_us = store["clock_offset_us"].as_i64().unwrap();
    println!(
        "skew +300 ms: local clock flips at {local_ms:+.3} ms, store clock at {store_ms:+.3} ms \
         (estimated offset {offset_us} µs)"
    );
    // By its own (skewed) clock the local process is on time: 300 ms early
    // by the true clock, never earlier, and switched within 5 ms of that.
    assert!(local_ms >= -300.0, "{local_ms}");
    assert_all_switched_within_5_ms(&[Switched::of(&local, at)], -300.0);
    // Following the store's clock, it is on time by the store's clock, within
    // the estimate's error (half a loopback round trip) and the same 5 ms.
    assert!(store_ms >= -0.5, "{store_ms}");
    assert_all_switched_within_5_ms(&[Switched::of(&store, at)], 0.0);
    assert!((-301_000..=-299_000).contains(&offset_us), "{offset_us}");
}
