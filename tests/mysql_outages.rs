//! MySQL/MariaDB hurt under a running registry: its connection killed with
//! `KILL CONNECTION`, and the server killed (SIGKILL) across scheduled flips
//! and restarted on the same data. The hot path never notices, changes
//! scheduled before the fault activate at their instant, and the registry
//! catches up within a tick of the server answering again, losing nothing.
//!
//! The kill runs on the machine's shared server, in a database of the
//! test's own; the restart on a private `mariadbd` ([`MariadbServer`]).

use std::time::{Duration, Instant};

use chrono::Utc;
use lockstep::lockstep;
use lockstep::store::{MysqlStore, Store};
use lockstep_suite::sql::MysqlDatabase;
use lockstep_suite::{Hammer, MariadbServer, check, wait_for_switch};

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

/// Waits (up to `within`) for a fetch after `fetches` that left no failure
/// behind; how long that took.
async fn caught_up(registry: &'static FaultyRegistry, fetches: u64, within: Duration) -> Duration {
    let since = Instant::now();
    while registry.status().fetches <= fetches || registry.status().consecutive_failures > 0 {
        assert!(since.elapsed() < within, "{:?}", registry.status());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    since.elapsed()
}

#[lockstep(tick = "1s", store = "mysql", namespace = "faulty")]
struct Faulty {
    generation: u64,
    #[lockstep(default = "abc")]
    name: String,
}

static RESTARTED: FaultyRegistry = FaultyRegistry::new();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_replaced_by_the_next_fetch_and_nothing_is_lost() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let db = MysqlDatabase::create();
    FAULTY.builder().url(db.url()).start().await.unwrap();
    let steps = FAULTY.ramp(Faulty::GENERATION, [1, 2, 3]).await.unwrap();
    FAULTY.refresh().await.unwrap();
    let instants = generations(&steps);
    let hammer = Hammer::start(|| (FAULTY.generation(), FAULTY.name().len()));

    let mut killed = Vec::new();
    for (round, flip) in [instants[0].1, instants[1].1].into_iter().enumerate() {
        // Between two flips: the registry's connection is idle, waiting for
        // its next scheduled fetch.
        sleep_until(flip + 200_000_000).await;
        let before = FAULTY.status();
        let ids = db.kill_connections();
        assert!(
            !ids.is_empty(),
            "round {round}: lockstep holds no connection to {}",
            db.name()
        );
        let took = caught_up(&FAULTY, before.fetches, Duration::from_millis(1_250)).await;
        let after = FAULTY.status();
        println!(
            "round {round}: killed connections {ids:?}; the next fetch succeeded {took:?} \
             later, failed fetches {} -> {}",
            before.failed_fetches, after.failed_fetches
        );
        // The fetch found its idle connection killed and was sent again on
        // a new one, within the call.
        assert_eq!(
            after.failed_fetches, before.failed_fetches,
            "round {round}: a killed idle connection failed a fetch: {after:?}"
        );
        killed.extend(ids);
    }
    // The registry reconnected: connections of other ids are there now.
    let now = db.kill_connections();
    assert!(
        now.iter().all(|id| !killed.contains(id)) && !now.is_empty(),
        "killed {killed:?}, now {now:?}"
    );
    // A write on the store whose connection was just killed again (the
    // write finds it broken and is sent again on a new one, its write id
    // making that safe), seen by the next fetch: nothing lost.
    let at = FAULTY
        .set(Faulty::NAME, "after the kill".to_owned())
        .await
        .unwrap();
    check(&hammer.finish_once_read(3).await, &instants);
    wait_for_switch("faulty.name", at, "after the kill".to_owned(), || {
        FAULTY.name().to_string()
    })
    .await;
    let status = FAULTY.status();
    assert_eq!(status.late_flips, 0, "{status:?}");
    assert!(!status.store_lost, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_across_scheduled_flips_and_restarted_is_caught_up_within_a_tick() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut server = MariadbServer::start();
    RESTARTED.builder().url(server.url()).start().await.unwrap();
    let steps = RESTARTED.ramp(Faulty::GENERATION, [1, 2, 3]).await.unwrap();
    RESTARTED.refresh().await.unwrap();
    let instants = generations(&steps);
    let epoch = RESTARTED.status().epoch;
    let hammer = Hammer::start(|| (RESTARTED.generation(), RESTARTED.name().len()));

    // Down from just after the first flip to after the third.
    sleep_until(instants[0].1 + 200_000_000).await;
    server.kill(); // SIGKILL: no shutdown, no flush
    let killed = Instant::now();
    sleep_until(instants[2].1 + 300_000_000).await;
    let down = RESTARTED.status();
    assert!(down.failed_fetches >= 2, "{down:?}");
    assert_eq!(
        RESTARTED.generation(),
        3,
        "changes scheduled before the outage activated during it"
    );
    let refused = RESTARTED
        .set(Faulty::NAME, "while down".to_owned())
        .await
        .expect_err("a write while the server is down");

    let down_for = killed.elapsed();
    let restarting = Instant::now();
    server.restart(); // the same port and data directory
    let restart_took = restarting.elapsed();
    let back = caught_up(&RESTARTED, down.fetches, Duration::from_millis(1_250)).await;
    let status = RESTARTED.status();
    println!(
        "down {:?} ({} failed fetches, last error {:?}); the write refused: {refused}; \
         mariadbd answered {restart_took:?} after its restart, the registry caught up \
         {back:?} after that",
        down_for, down.failed_fetches, down.last_error,
    );
    // InnoDB kept what was committed before the SIGKILL: the same epoch,
    // the whole timeline.
    assert!(!status.store_lost, "{status:?}");
    assert_eq!(status.epoch, epoch, "{status:?}");
    let store = MysqlStore::open(&server.url()).unwrap();
    let fetched = store.fetch("faulty", &["generation"]).await.unwrap();
    assert_eq!(fetched.fields["generation"].len(), 3, "{fetched:?}");
    check(&hammer.finish_once_read(3).await, &instants);
    assert_eq!(status.late_flips, 0, "{status:?}");

    // Writes work again, and reach the registry.
    let at = RESTARTED
        .set(Faulty::NAME, "after the restart".to_owned())
        .await
        .unwrap();
    wait_for_switch("faulty.name", at, "after the restart".to_owned(), || {
        RESTARTED.name().to_string()
    })
    .await;
}
