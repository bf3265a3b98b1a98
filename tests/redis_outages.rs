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

/// Starts `registry` on `server`, ramps `generation` 1, 2, 3 one tick apart
/// from the horizon and fetches them; returns the generations with their
/// instants in ns.
async fn start_and_ramp<S: lockstep::Fields>(
    registry: &'static lockstep::Registry<S>,
    generation: lockstep::Field<S, u64>,
    server: &RedisServer,
) -> Vec<(u64, i64)> {
    registry.builder().url(server.url()).start().await.unwrap();
    let steps = registry.ramp(generation, [1, 2, 3]).await.unwrap();
    registry.refresh().await.unwrap();
    generations(&steps)
}

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

#[lockstep(tick = "1s", store = "redis", namespace = "faulty")]
struct Faulty {
    generation: u64,
    #[lockstep(default = "abc")]
    name: String,
}

// A registry of its own for each test that needs one, all of one kind.
static ASLEEP: FaultyRegistry = FaultyRegistry::new();
static CUT: FaultyRegistry = FaultyRegistry::new();
static PAUSED: FaultyRegistry = FaultyRegistry::new();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_store_changes_nothing_on_the_hot_path_and_gets_no_burst_after() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    let instants = start_and_ramp(&FAULTY, Faulty::GENERATION, &server).await;
    let hammer = Hammer::start(|| (FAULTY.generation(), FAULTY.name().len()));

    let before = server.scripts_run();
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
    let executed = server.scripts_run() - before;
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
    check(&hammer.finish_once_read(3).await, &instants);
    assert_eq!(FAULTY.status().late_flips, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_asleep_longer_than_a_tick_costs_fetches_their_deadline_only() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    let instants = start_and_ramp(&ASLEEP, Faulty::GENERATION, &server).await;
    let hammer = Hammer::start(|| (ASLEEP.generation(), ASLEEP.name().len()));

    let asleep = server.sleep_server(Duration::from_millis(2_500)); // DEBUG SLEEP
    let started = Instant::now();
    let refreshed = ASLEEP.refresh().await;
    let took = started.elapsed();
    assert!(refreshed.is_err(), "the store answered while asleep");
    // The deadline is a quarter tick (250 ms); a refresh that finds the
    // scheduled fetch under way waits for it first: two deadlines at most.
    assert!(took < Duration::from_millis(600), "a fetch took {took:?}");
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
    check(&hammer.finish_once_read(3).await, &instants);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_and_a_restart_with_persistence_are_caught_up_within_a_tick() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut server = RedisServer::start_persistent();
    let instants = start_and_ramp(&CUT, Faulty::GENERATION, &server).await;
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
    check(&hammer.finish_once_read(3).await, &instants);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pause_longer_than_a_tick_costs_deadlines_only_and_no_burst_after() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    let instants = start_and_ramp(&PAUSED, Faulty::GENERATION, &server).await;
    let hammer = Hammer::start(|| (PAUSED.generation(), PAUSED.name().len()));

    let before = server.scripts_run();
    let pause = Duration::from_millis(2_500);
    server.pause_clients(pause); // CLIENT PAUSE 2500 ALL: commands wait, connections stay
    let paused = Instant::now();
    let started = Instant::now();
    let refreshed = PAUSED.refresh().await;
    let took = started.elapsed();
    assert!(refreshed.is_err(), "the store answered while paused");
    // Its deadline, a quarter tick, after at most the deadline of a
    // scheduled fetch already under way (it waits for that one rather than
    // sending a second).
    assert!(took < Duration::from_millis(600), "a fetch took {took:?}");
    tokio::time::sleep(pause.saturating_sub(paused.elapsed())).await;
    let during = PAUSED.status();
    assert!(during.failed_fetches >= 2, "{during:?}");

    let resumed = Instant::now();
    while PAUSED.status().consecutive_failures > 0 {
        assert!(
            resumed.elapsed() < Duration::from_millis(1_250),
            "{:?}",
            PAUSED.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recovered = resumed.elapsed();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let executed = server.scripts_run() - before;
    let after = resumed.elapsed().as_secs_f64();
    println!(
        "paused {pause:?}: a fetch gave up after {took:?}, {} failed fetches, recovered \
         {recovered:?} after the pause, {executed} fetches executed by the server from the \
         pause to {after:.2} s after it",
        during.failed_fetches,
    );
    // The one fetch left waiting runs when the pause ends, then one per tick.
    let allowed = 1 + after.ceil() as u64;
    assert!(
        executed <= allowed,
        "{executed} fetches in {after:.2} s after the pause"
    );
    check(&hammer.finish_once_read(3).await, &instants);
    assert_eq!(PAUSED.status().late_flips, 0);
}

#[lockstep(
    tick = "3s",
    store = "redis",
    namespace = "faulty",
    static_name = "IDLE"
)]
struct Idle {
    generation: u64,
    #[lockstep(default = "abc")]
    name: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_idle_timeout_closing_the_connection_costs_no_failed_fetch() {
    use lockstep::store::{RedisStore, Store, Write};
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    // The server closes a connection idle for a second; the registry fetches
    // once every 3 s, so every scheduled fetch finds its connection closed.
    let _: () = server.cmd(&["CONFIG", "SET", "timeout", "1"]);
    IDLE.builder().url(server.url()).start().await.unwrap();
    let at = IDLE.set(Idle::GENERATION, 1).await.unwrap();
    IDLE.refresh().await.unwrap();
    let instants = generations(&[at]);
    let hammer = Hammer::start(|| (IDLE.generation(), IDLE.name().len()));
    let info = |field: &str| -> u64 {
        let stats: String = server.cmd(&["INFO", "stats"]);
        stats
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    let connections = info("total_connections_received");
    let fetches = IDLE.status().fetches;
    // A writer of its own, idle longer than the timeout between two writes.
    let writer = tokio::spawn({
        let store = RedisStore::open(&server.url()).unwrap();
        async move {
            let name = |name: &str| {
                Write::builder("faulty", IDLE.tick())
                    .by("faults test")
                    .set("name", serde_json::json!(name))
                    .build()
                    .unwrap()
            };
            store.commit(&name("first")).await?;
            // Redis counts idleness in whole seconds: `timeout 1` closes a
            // connection within 1 to 2 s (plus its 100 ms cron).
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            store.commit(&name("second")).await
        }
    });

    // Two scheduled fetches: the second one 3 s after the first, after
    // the server closed the connection.
    let mut oldest = Duration::ZERO;
    let watched = Instant::now();
    while IDLE.status().fetches < fetches + 2 || Utc::now() < at {
        let status = IDLE.status();
        oldest = oldest.max(status.last_fetch_age.unwrap_or_default());
        assert!(
            watched.elapsed() < Duration::from_secs(8),
            "no two fetches in 8 s: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = IDLE.status();
    let written = writer.await.unwrap();
    // Our own connections count too: one for INFO, one for the writer.
    let reconnects = info("total_connections_received") - connections - 2;
    println!(
        "idle timeout 1 s, tick 3 s: {} fetches in {:?}, {} failed (last error {:?}), \
         {reconnects} reconnections, oldest fetch seen {oldest:?} old; a write after 2.5 s \
         idle: {:?}",
        status.fetches - fetches,
        watched.elapsed(),
        status.failed_fetches,
        status.last_error,
        written.as_ref().map(|_| "ok"),
    );
    written.expect("a write on a connection closed for idleness");
    // At least the writer's, and the registry's before its second fetch.
    assert!(
        reconnects >= 2,
        "the server did not close the idle connections: {reconnects} reconnections"
    );
    assert_eq!(
        status.failed_fetches, 0,
        "a closed idle connection failed a fetch: {status:?}"
    );
    // Fresh within a tick all along (3 s), give or take a late timer.
    assert!(oldest < Duration::from_millis(3_250), "{oldest:?}");
    check(&hammer.finish_once_read(1).await, &instants);
}
