//! Promise 9: a registry's work runs on lockstep's own threads, whatever
//! becomes of the runtime that started it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lockstep::store::Write;
use lockstep::{Tick, lockstep};
use lockstep_suite::{Probe, RedisServer};

/// Writes `value` to `host.value` at the horizon, as another process would.
async fn write_value(url: &str, value: u64) {
    let store = lockstep::store::open(url).unwrap();
    let write = Write::builder("host", Tick::from_secs(1).unwrap())
        .set("value", serde_json::json!(value))
        .by("test")
        .build()
        .unwrap();
    store.commit(&write).await.unwrap();
}

/// Starts `src/bin/host.rs` the way `how` says, writes after its start-up
/// and expects it to apply the write (it says `seen` once it has; the wait
/// for that line is [`lockstep_suite::PATIENCE`]).
async fn applies_a_later_write(how: &str) {
    let server = RedisServer::start();
    let mut host = Probe::spawn(env!("CARGO_BIN_EXE_host"), &server.url(), &[how, "7"]);
    assert_eq!(host.line(), "ready");
    // Past the first tick's fetches: the ones start() spawned are what
    // must still run.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    write_value(&server.url(), 7).await;
    let line = tokio::task::spawn_blocking(move || host.line())
        .await
        .unwrap();
    assert!(line.starts_with("seen after "), "{how}: {line}");
}

#[tokio::test]
async fn a_sync_program_that_drops_the_runtime_start_ran_on_keeps_refreshing() {
    applies_a_later_write("dropped").await;
}

#[tokio::test]
async fn a_current_thread_runtime_never_polled_again_does_not_stop_refreshing() {
    applies_a_later_write("current-thread").await;
}

#[tokio::test]
async fn start_blocking_needs_no_runtime() {
    applies_a_later_write("blocking").await;
}

/// One static shared by the two tests below, as an application's tests
/// share its registry.
#[lockstep(tick = "1s", store = "memory", namespace = "shared")]
struct Shared {
    value: u64,
}

/// Each test runs on a runtime of its own, dropped when it ends: whichever
/// starts the registry first, the other's `start()` is `Ok`, and the
/// registry keeps refreshing after the first test's runtime is gone.
async fn shared_by_tests(value: u64) {
    SHARED.start().await.unwrap();
    SHARED.start().await.unwrap();
    let fetches = SHARED.status().fetches;
    let at = SHARED.set(Shared::VALUE, value).await.unwrap();
    // Values only grow: each test waits for its own or a later one.
    lockstep_suite::wait_for_async(
        &format!("{value}, due at {at}, to be applied"),
        Duration::from_millis(20),
        || match SHARED.value() {
            seen if seen >= value => Ok(()),
            seen => Err(seen),
        },
    )
    .await;
    assert!(SHARED.status().fetches > fetches);
}

/// Set when the first test below starts, and when its runtime is gone.
static FIRST_STARTED: AtomicBool = AtomicBool::new(false);
static FIRST_GONE: AtomicBool = AtomicBool::new(false);

/// Sets its flag when dropped.
struct SetOnDrop(&'static AtomicBool);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn two_tokio_tests_share_one_static_first() {
    FIRST_STARTED.store(true, Ordering::SeqCst);
    // A task that never ends: dropped with this test's runtime.
    tokio::spawn(async {
        let _gone = SetOnDrop(&FIRST_GONE);
        std::future::pending::<()>().await;
    });
    shared_by_tests(1).await;
}

#[tokio::test]
async fn two_tokio_tests_share_one_static_second() {
    // Starts once the first is over and its runtime gone, if the first runs
    // in this process: it says so as it starts, which it has done within a
    // few seconds if it was started before this one.
    let since = std::time::Instant::now();
    lockstep_suite::wait_for_async(
        "the first test's runtime to be dropped",
        Duration::from_millis(20),
        || {
            let gone = FIRST_GONE.load(Ordering::SeqCst);
            let started = FIRST_STARTED.load(Ordering::SeqCst);
            match (gone, started) {
                (true, _) => Ok(()),
                (false, false) if since.elapsed() > Duration::from_secs(3) => Ok(()),
                _ => Err(format!("started: {started}")),
            }
        },
    )
    .await;
    shared_by_tests(2).await;
}

/// Another URL than the running one is refused, naming the registry.
#[lockstep(tick = "1s", store = "memory", namespace = "twice")]
struct Twice {
    value: u64,
}

#[tokio::test]
async fn starting_again_with_another_store_is_refused() {
    TWICE.builder().url("memory://one").start().await.unwrap();
    let again = TWICE.builder().url("memory://one").start().await;
    assert!(matches!(again, Err(lockstep::Error::AlreadyStarted { .. })));
    TWICE.start().await.unwrap_err();
}
