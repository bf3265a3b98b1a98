//! The store frozen, asleep or cutting connections: the hot path never
//! notices, changes scheduled before the fault activate at their instant,
//! a registry never has two fetches in flight, and it catches up within a
//! tick of the store answering again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use lockstep::lockstep;
use lockstep_suite::RedisServer;

/// The fault tests measure timing: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a reader hammering the accessors saw.
#[derive(Debug, Default)]
struct Seen {
    reads: u64,
    slowest: Duration,
    /// For each generation, the wall clock (ns) after the first read that saw it.
    first_seen: Vec<(u64, i64)>,
    reverted: bool,
}

/// A thread reading `read` in a loop until stopped.
struct Hammer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Seen>,
}

impl Hammer {
    fn start(read: fn() -> (u64, usize)) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Seen::default();
            let mut last = 0;
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (generation, _len) = read();
                let took = started.elapsed();
                let now = Utc::now().timestamp_nanos_opt().unwrap();
                seen.reads += 1;
                seen.slowest = seen.slowest.max(took);
                if generation < last {
                    seen.reverted = true;
                }
                if generation > last {
                    seen.first_seen.push((generation, now));
                    last = generation;
                }
            }
            seen
        });
        Hammer { stop, thread }
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the reader panicked")
    }
}

/// Checks what the reader saw: every change at its instant (never before,
/// within 5 ms), nothing reverted, and no read that waited on anything.
fn check(seen: &Seen, instants: &[(u64, i64)]) {
    println!(
        "{} reads, slowest {:?}, first seen: {:?}",
        seen.reads,
        seen.slowest,
        seen.first_seen
            .iter()
            .zip(instants)
            .map(|((g, t), (_, at))| (*g, (t - at) as f64 / 1e6))
            .collect::<Vec<_>>()
    );
    assert!(!seen.reverted, "a value reverted");
    assert_eq!(seen.first_seen.len(), instants.len(), "{seen:?}");
    for ((generation, seen_at), (expected, at)) in seen.first_seen.iter().zip(instants) {
        assert_eq!(generation, expected);
        assert!(seen_at >= at, "generation {generation} seen early");
        assert!(
            seen_at - at < 5_000_000,
            "generation {generation} seen {} µs late",
            (seen_at - at) / 1000
        );
    }
    // A read that waited on the store would take at least a fetch deadline
    // (250 ms); preemption on a busy 2-core machine takes a few ms.
    assert!(
        seen.slowest < Duration::from_millis(10),
        "slowest read {:?}",
        seen.slowest
    );
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
