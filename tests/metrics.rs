//! The `metrics` feature: what a recorder sees after a successful fetch, a
//! failed one (a redis-server the test kills), a flip on time, a late one,
//! a rejected value and a clock that is off. Each test has a registry of
//! its own, told apart by the `namespace` label; the manual clock makes
//! every fetch the test's own. The recorder is the test's: a registry of
//! atomics (`metrics-util`), read without resetting them.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Once};
use std::time::Duration;

use lockstep::lockstep;
use lockstep::store::MemoryStore;
use lockstep::store::{Store, Write};
use lockstep_suite::RedisServer;
use lockstep_suite::manual_clock;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

/// Every metric recorded in this test binary, kept as recorded (reading
/// them changes nothing).
static KEPT: LazyLock<Registry<Key, AtomicStorage>> = LazyLock::new(Registry::atomic);

struct Keeper;

impl Recorder for Keeper {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        KEPT.get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        KEPT.get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        KEPT.get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

/// Installs the recorder (once for the binary): call before starting.
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| metrics::set_global_recorder(Keeper).expect("the only recorder"));
}

/// What a metric holds: a counter's or gauge's value, every value a
/// histogram recorded.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

/// Every metric, by (name, namespace label).
fn recorded() -> HashMap<(String, String), Seen> {
    fn id(key: &Key) -> (String, String) {
        let namespace = key
            .labels()
            .find(|l| l.key() == "namespace")
            .map(|l| l.value().to_owned())
            .unwrap_or_default();
        (key.name().to_owned(), namespace)
    }
    let mut seen = HashMap::new();
    for (key, c) in KEPT.get_counter_handles() {
        let n = c.load(std::sync::atomic::Ordering::SeqCst);
        seen.insert(id(&key), Seen::Counter(n));
    }
    for (key, g) in KEPT.get_gauge_handles() {
        let v = f64::from_bits(g.load(std::sync::atomic::Ordering::SeqCst));
        seen.insert(id(&key), Seen::Gauge(v));
    }
    for (key, h) in KEPT.get_histogram_handles() {
        seen.insert(id(&key), Seen::Histogram(h.data()));
    }
    seen
}

fn counter(seen: &HashMap<(String, String), Seen>, name: &str, namespace: &str) -> u64 {
    match seen.get(&(name.to_owned(), namespace.to_owned())) {
        Some(Seen::Counter(n)) => *n,
        None => 0,
        Some(other) => panic!("{name} is not a counter: {other:?}"),
    }
}

fn gauge(seen: &HashMap<(String, String), Seen>, name: &str, namespace: &str) -> f64 {
    match seen.get(&(name.to_owned(), namespace.to_owned())) {
        Some(Seen::Gauge(v)) => *v,
        other => panic!("{name}{{namespace={namespace}}} is not a gauge: {other:?}"),
    }
}

fn histogram(seen: &HashMap<(String, String), Seen>, name: &str, namespace: &str) -> Vec<f64> {
    match seen.get(&(name.to_owned(), namespace.to_owned())) {
        Some(Seen::Histogram(v)) => v.clone(),
        None => Vec::new(),
        Some(other) => panic!("{name} is not a histogram: {other:?}"),
    }
}

#[lockstep(tick = "1m", store = "memory")]
struct Fetched {
    level: u8,
}

#[tokio::test]
async fn a_successful_fetch_and_a_flip_on_time_are_counted() {
    install();
    let clock = manual_clock();
    let store = MemoryStore::with_clock(&clock);
    FETCHED
        .builder()
        .store(store)
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    let seen = recorded();
    assert_eq!(counter(&seen, "lockstep_fetches_total", "fetched"), 1);
    assert_eq!(
        counter(&seen, "lockstep_fetch_failures_total", "fetched"),
        0
    );
    assert_eq!(
        histogram(&seen, "lockstep_fetch_seconds", "fetched").len(),
        1
    );
    assert_eq!(
        gauge(&seen, "lockstep_last_fetch_age_seconds", "fetched"),
        0.0
    );
    assert_eq!(gauge(&seen, "lockstep_pending_changes", "fetched"), 0.0);

    let at = FETCHED.set(Fetched::LEVEL, 7).await.unwrap();
    FETCHED.refresh().await.unwrap();
    let seen = recorded();
    assert_eq!(counter(&seen, "lockstep_fetches_total", "fetched"), 2);
    assert_eq!(counter(&seen, "lockstep_commits_total", "fetched"), 1);
    assert_eq!(gauge(&seen, "lockstep_pending_changes", "fetched"), 1.0);
    assert!(
        histogram(&seen, "lockstep_fetch_seconds", "fetched")
            .iter()
            .all(|s| *s >= 0.0)
    );

    // The process knew of the change before its instant: a flip on time.
    clock.advance_to(at).await;
    assert_eq!(FETCHED.level(), 7);
    let seen = recorded();
    assert_eq!(counter(&seen, "lockstep_flips_total", "fetched"), 1);
    assert_eq!(counter(&seen, "lockstep_late_flips_total", "fetched"), 0);
    assert_eq!(gauge(&seen, "lockstep_pending_changes", "fetched"), 0.0);
}

#[lockstep(tick = "1m", store = "memory")]
struct Late {
    level: u8,
}

#[tokio::test]
async fn a_late_flip_and_a_rejected_value_are_counted() {
    install();
    let clock = manual_clock();
    let store = MemoryStore::with_clock(&clock);
    LATE.builder()
        .store(store.clone())
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    // Written, and learned only once already active: a late flip.
    let at = LATE.set(Late::LEVEL, 3).await.unwrap();
    clock.advance_to(at).await;
    assert_eq!(LATE.level(), 3);
    let seen = recorded();
    assert_eq!(counter(&seen, "lockstep_late_flips_total", "late"), 1);
    assert_eq!(counter(&seen, "lockstep_rejected_values_total", "late"), 0);

    // A value that is no `u8`, fetched twice: rejected once.
    let bad = Write::builder("late", LATE.tick())
        .set("level", serde_json::json!("loud"))
        .build()
        .unwrap();
    store.commit(&bad).await.unwrap();
    clock.advance(Duration::from_secs(60)).await;
    clock.advance(Duration::from_secs(60)).await;
    let seen = recorded();
    assert_eq!(counter(&seen, "lockstep_rejected_values_total", "late"), 1);
    assert_eq!(LATE.status().rejected, 1);
}

#[lockstep(tick = "1h", store = "redis")]
struct Failing {
    level: u8,
}

#[tokio::test]
async fn a_failed_fetch_is_counted_with_the_age_of_the_last_good_one() {
    install();
    let mut server = RedisServer::start();
    let clock = manual_clock();
    FAILING
        .builder()
        .url(server.url())
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    server.kill();
    // Ten minutes on (no tick boundary crossed: no fetch), a fetch fails.
    clock.advance(Duration::from_secs(600)).await;
    assert!(FAILING.refresh().await.is_err());
    let seen = recorded();
    assert_eq!(counter(&seen, "lockstep_fetches_total", "failing"), 2);
    assert_eq!(
        counter(&seen, "lockstep_fetch_failures_total", "failing"),
        1
    );
    assert_eq!(
        histogram(&seen, "lockstep_fetch_seconds", "failing").len(),
        1
    );
    assert_eq!(
        gauge(&seen, "lockstep_last_fetch_age_seconds", "failing"),
        600.0
    );
}

#[lockstep(tick = "1h", store = "memory")]
struct Skewed {
    level: u8,
}

#[tokio::test]
async fn the_clock_offset_is_a_gauge_in_seconds() {
    install();
    // This process's clock 5 s behind the store's (the memory store reads
    // the real clock).
    SKEWED
        .builder()
        .store(MemoryStore::new())
        .clock_skew(chrono::TimeDelta::seconds(-5))
        .start()
        .await
        .unwrap();
    let offset = gauge(&recorded(), "lockstep_clock_offset_seconds", "skewed");
    assert!((offset - 5.0).abs() < 0.5, "{offset}");
}
