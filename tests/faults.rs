//! The store frozen, asleep or cutting connections: the hot path never
//! notices, changes scheduled before the fault activate at their instant,
//! a registry never has two fetches in flight, and it catches up within a
//! tick of the store answering again.

use std::time::{Duration, Instant};

use chrono::Utc;
use lockstep::lockstep;
use lockstep_suite::{Hammer, RedisServer, check};

/// The fault tests measure timing: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The generations 1, 2, 3 of a ramp, with their instants in ns.
fn generations(steps: &[chrono::DateTime<Utc>]) -> Vec<(u64, i64)> {
    (1..)
        .zip(steps.iter().map(|s| s.timestamp_nanos_opt().unwrap()))
        .collect()
}

async fn sleep_until(at_ns: i64) {
    let now = Utc::now().timestamp_nanos_opt().unwrap();
    tokio::time::sleep(Duration::from_nanos(at_ns.saturating_sub(now).max(0) as u64)).await;
}

#[lockstep(tick = "1s", backend = "redis", namespace = "faulty")]
struct Faulty {
    generation: u64,
    #[lockstep(default = "abc")]
    name: String,
}

#[lockstep(
    tick = "1s",
    backend = "redis",
    namespace = "faulty",
    static_name = "ASLEEP"
)]
struct Asleep {
    generation: u64,
    #[lockstep(default = "abc")]
    name: String,
}

#[lockstep(
    tick = "1s",
    backend = "redis",
    namespace = "faulty",
    static_name = "CUT"
)]
struct Cut {
    generation: u64,
    #[lockstep(default = "abc")]
    name: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_store_changes_nothing_on_the_hot_path_and_gets_no_burst_after() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    FAULTY.builder().url(server.url()).start().await.unwrap();
    let steps = FAULTY.ramp(Faulty::GENERATION, [1, 2, 3]).await.unwrap();
    FAULTY.refresh().await.unwrap();
    let instants = generations(&steps);
    let hammer = Hammer::start(|| (FAULTY.generation(), FAULTY.name().len()));

    let before = server.calls("evalsha");
    server.freeze(); // SIGSTOP: connections stay open, nothing answers
    sleep_until(instants[2].1 + 500_000_000).await;
    let frozen = FAULTY.status();
    assert!(frozen.failed_fetches >= 2, "{frozen:?}");
    assert_eq!(
        FAULTY.generation(),
        3,
        "changes activated during the outage"
    );

    server.thaw();
    let thawed = Instant::now();
    while FAULTY.status().consecutive_failures > 0 {
        assert!(
            thawed.elapsed() < Duration::from_millis(1_250),
            "{:?}",
            FAULTY.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recovered = thawed.elapsed();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let executed = server.calls("evalsha") - before;
    let after = thawed.elapsed().as_secs_f64();
    println!(
        "frozen {:.1} s: {} failed fetches, recovered {recovered:?} after SIGCONT, \
         {executed} fetches executed by the server from the freeze to 1 s after it",
        (instants[2].1 + 500_000_000 - instants[0].1) as f64 / 1e9 + 1.0,
        frozen.failed_fetches,
    );
    // The one fetch left waiting is answered at SIGCONT, then the regular
    // schedule: one per tick. No backlog of retries.
    let allowed = 1 + after.ceil() as u64;
    assert!(
        executed <= allowed,
        "{executed} fetches in {after:.2} s after the freeze"
    );
    check(&hammer.finish(), &instants);
    assert_eq!(FAULTY.status().late_flips, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_asleep_longer_than_a_tick_costs_fetches_their_deadline_only() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    ASLEEP.builder().url(server.url()).start().await.unwrap();
    let steps = ASLEEP.ramp(Asleep::GENERATION, [1, 2, 3]).await.unwrap();
    ASLEEP.refresh().await.unwrap();
    let instants = generations(&steps);
    let hammer = Hammer::start(|| (ASLEEP.generation(), ASLEEP.name().len()));

    let asleep = server.sleep_server(Duration::from_millis(2_500)); // DEBUG SLEEP
    let started = Instant::now();
    let refreshed = ASLEEP.refresh().await;
    let took = started.elapsed();
    assert!(refreshed.is_err(), "the store answered while asleep");
    // The deadline is a quarter tick.
    assert!(took < Duration::from_millis(400), "a fetch took {took:?}");
    asleep.join().unwrap();
    let woke = Instant::now();
    while ASLEEP.status().consecutive_failures > 0 {
        assert!(
            woke.elapsed() < Duration::from_millis(1_250),
            "{:?}",
            ASLEEP.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sleep_until(instants[2].1 + 100_000_000).await;
    check(&hammer.finish(), &instants);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_and_a_restart_with_persistence_are_caught_up_within_a_tick() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut server = RedisServer::start_persistent();
    CUT.builder().url(server.url()).start().await.unwrap();
    let steps = CUT.ramp(Cut::GENERATION, [1, 2, 3]).await.unwrap();
    CUT.refresh().await.unwrap();
    let instants = generations(&steps);
    let hammer = Hammer::start(|| (CUT.generation(), CUT.name().len()));

    server.kill_clients(); // CLIENT KILL
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let status = CUT.status();
    assert!(
        status.last_fetch_age.unwrap() < Duration::from_millis(1_250),
        "{status:?}"
    );

    server.restart(Duration::from_millis(300)); // kill -9, same port, data kept
    let back = Instant::now();
    let fetches = CUT.status().fetches;
    while CUT.status().fetches == fetches || CUT.status().consecutive_failures > 0 {
        assert!(
            back.elapsed() < Duration::from_millis(1_250),
            "{:?}",
            CUT.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("caught up {:?} after the restart", back.elapsed());
    assert!(!CUT.status().store_lost, "persistence kept the registry");
    sleep_until(instants[2].1 + 100_000_000).await;
    check(&hammer.finish(), &instants);
}
