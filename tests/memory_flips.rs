//! Start, write and flip on the memory backend: with a manual clock, and in
//! real time with a one-second tick.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use lockstep::store::MemoryStore;
use lockstep::store::{StepAt, Store};
use lockstep::{Error, Percent, lockstep};
use lockstep_suite::manual_clock;

fn now_nanos() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap()
}

/// The registry of the README, as written there.
#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    /// Share of traffic that sees foobar, in percent.
    #[lockstep(default = 0)]
    pub foobar_percent: u8,
    /// The site's theme.
    #[lockstep(default = "classic")]
    pub theme: String,
    /// Whether the site shows a maintenance banner.
    pub maintenance: bool, // no default: Default::default()
}

#[tokio::test]
async fn the_readme_registry_reads_defaults_then_switches_at_the_horizon() {
    let pct: u8 = FLAGS.foobar_percent();
    assert_eq!(pct, 0);
    assert_eq!(*FLAGS.theme(), "classic");
    assert!(!FLAGS.maintenance());
    assert!(!FLAGS.status().started);

    let clock = manual_clock();
    let store = MemoryStore::with_clock(&clock);
    FLAGS
        .builder()
        .store(store)
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    assert!(matches!(
        FLAGS.start().await,
        Err(Error::AlreadyStarted { .. })
    ));

    let at = FLAGS.set(Flags::FOOBAR_PERCENT, 10).await.unwrap();
    // 00:00 + 10m + 5s margin -> the 00:20 boundary.
    assert_eq!(at, Utc.with_ymd_and_hms(2030, 1, 1, 0, 20, 0).unwrap());
    clock
        .advance_to(at - chrono::Duration::milliseconds(1))
        .await;
    assert_eq!(FLAGS.foobar_percent(), 0, "switched before its instant");
    assert_eq!(FLAGS.status().pending.len(), 1);
    clock.advance_to(at).await;
    assert_eq!(FLAGS.foobar_percent(), 10);
    assert_eq!(FLAGS.snapshot().foobar_percent, 10);
    let status = FLAGS.status();
    assert_eq!(
        (status.flips, status.late_flips, status.rejected),
        (1, 0, 0)
    );
    assert!(status.pending.is_empty());
}

#[lockstep(tick = "1m", store = "memory")]
struct Ramp {
    share: Percent,
    #[lockstep(default = "off")]
    stage: String,
}

#[tokio::test]
async fn a_ramp_steps_one_tick_at_a_time_and_multi_field_steps_switch_together() {
    let clock = manual_clock();
    let store = MemoryStore::with_clock(&clock);
    RAMP.builder()
        .store(store)
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();

    let shares = [10, 25, 50, 100].map(Percent::whole);
    let steps = RAMP.ramp(Ramp::SHARE, shares).await.unwrap();
    assert_eq!(steps.len(), 4);
    for pair in steps.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::minutes(1));
    }
    let both = RAMP
        .change()
        .set(Ramp::STAGE, "beta".to_string())
        .set(Ramp::SHARE, Percent::whole(5))
        .at(steps[3] + chrono::Duration::minutes(1))
        .apply()
        .await
        .unwrap();
    for (at, share) in steps.iter().zip(shares) {
        clock.advance_to(*at).await;
        assert_eq!(RAMP.share(), share);
        assert_eq!(*RAMP.stage(), "off");
    }
    clock.advance_to(both[0]).await;
    let snapshot = RAMP.snapshot();
    assert_eq!(
        (snapshot.share, snapshot.stage.as_str()),
        (Percent::whole(5), "beta")
    );
    // The accessor's and the snapshot's Percent hash alike.
    let user = "user-7";
    assert_eq!(RAMP.share().includes(user), snapshot.share.includes(user));
}

#[lockstep(tick = "1m", store = "memory")]
struct Sched {
    limit: u32,
}

#[tokio::test]
async fn a_write_before_the_horizon_is_refused_naming_the_earliest_instant_and_writes_nothing() {
    let clock = manual_clock();
    let store = MemoryStore::with_clock(&clock);
    SCHED
        .builder()
        .store(store.clone())
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();

    let too_soon = clock.now() + chrono::Duration::seconds(30);
    let err = SCHED.schedule(Sched::LIMIT, 5, too_soon).await.unwrap_err();
    let Error::BeforeHorizon { earliest, .. } = &err else {
        panic!("{err}");
    };
    // tick 1m + margin 5s -> 00:02:00
    assert_eq!(
        *earliest,
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 2, 0).unwrap()
    );
    assert!(err.to_string().contains("2030-01-01 00:02:00 UTC"), "{err}");
    // An atomic change with one bad step writes none of its steps.
    let err = SCHED
        .change()
        .set(Sched::LIMIT, 1)
        .then_at(too_soon)
        .set(Sched::LIMIT, 2)
        .apply()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BeforeHorizon { .. }));
    assert!(store.fetch("sched", &[]).await.unwrap().fields.is_empty());

    // Scheduling rounds up to a boundary; the same field and instant twice
    // keeps the last write.
    let asked = Utc.with_ymd_and_hms(2030, 1, 1, 0, 5, 30).unwrap();
    let at = SCHED.schedule(Sched::LIMIT, 7, asked).await.unwrap();
    assert_eq!(at, Utc.with_ymd_and_hms(2030, 1, 1, 0, 6, 0).unwrap());
    SCHED.schedule(Sched::LIMIT, 8, at).await.unwrap();
    let stored = store.fetch("sched", &[]).await.unwrap();
    assert_eq!(stored.fields["limit"].len(), 1);
    assert_eq!(stored.fields["limit"][0].value.as_deref(), Ok("8"));

    // Cancel removes a pending entry; an entry inside the horizon stays.
    let later = SCHED
        .schedule(Sched::LIMIT, 9, at + chrono::Duration::minutes(10))
        .await
        .unwrap();
    SCHED.cancel(Sched::LIMIT, later).await.unwrap();
    assert!(matches!(
        SCHED.cancel(Sched::LIMIT, later).await,
        Err(Error::NoSuchEntry { .. })
    ));
    clock.advance_to(at - chrono::Duration::seconds(30)).await;
    assert!(matches!(
        SCHED.cancel(Sched::LIMIT, at).await,
        Err(Error::BeforeHorizon { .. })
    ));
    clock.advance_to(at + chrono::Duration::minutes(30)).await;
    assert_eq!(SCHED.limit(), 8);
}

#[lockstep(tick = "1m", store = "memory")]
struct Guarded {
    #[lockstep(default = 1.5)]
    ratio: f64,
    #[lockstep(default = 3)]
    retries: u8,
    hosts: Vec<String>,
}

#[tokio::test]
async fn writes_that_would_not_read_back_are_refused_and_writes_before_start_too() {
    assert!(matches!(
        GUARDED.set(Guarded::RETRIES, 4).await,
        Err(Error::NotStarted { .. })
    ));
    let clock = manual_clock();
    let store = MemoryStore::with_clock(&clock);
    GUARDED
        .builder()
        .store(store.clone())
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    // NaN encodes as JSON null, which is not an f64: refused before writing.
    let err = GUARDED.set(Guarded::RATIO, f64::NAN).await.unwrap_err();
    assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
    let huge = vec!["x".repeat(1024); 100];
    let err = GUARDED.set(Guarded::HOSTS, huge).await.unwrap_err();
    assert!(err.to_string().contains("at most 65536 bytes"), "{err}");
    assert!(store.fetch("guarded", &[]).await.unwrap().fields.is_empty());
}

#[tokio::test]
async fn an_undecodable_stored_value_is_rejected_for_its_field_alone() {
    let clock = manual_clock();
    let store = MemoryStore::with_clock(&clock);
    // Start with good values for every field.
    let write = |steps: Vec<(&str, &str)>| {
        lockstep_suite::raw_write(
            "guarded_two",
            lockstep::Tick::new(Duration::from_secs(60)).unwrap(),
            "test",
            vec![(StepAt::Horizon { after: 0 }, steps)],
        )
    };
    #[lockstep(tick = "1m", store = "memory", namespace = "guarded_two")]
    struct GuardedTwo {
        retries: u8,
        hosts: Vec<String>,
    }
    GUARDED_TWO
        .builder()
        .store(store.clone())
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    let good = store
        .commit(&write(vec![("retries", "5"), ("hosts", r#"["a"]"#)]))
        .await
        .unwrap();
    clock.advance_to(lockstep_time(good.instants[0])).await;
    assert_eq!(GUARDED_TWO.retries(), 5);

    // Then garbage for one field and a good change for the other.
    let bad = store
        .commit(&write(vec![("retries", "300"), ("hosts", r#"["b"]"#)]))
        .await
        .unwrap();
    clock.advance_to(lockstep_time(bad.instants[0])).await;
    assert_eq!(GUARDED_TWO.retries(), 5, "kept the last good value");
    assert_eq!(
        *GUARDED_TWO.hosts(),
        vec!["b".to_string()],
        "other field unaffected"
    );
    let status = GUARDED_TWO.status();
    assert_eq!(status.rejected, 1);
    let why = status.last_rejection.unwrap();
    assert!(why.contains("guarded_two.retries"), "{why}");
    for garbage in ["\u{0}\u{1}", "{\"x\":", "\"five\"", "-1", "[[[[]]]]"] {
        let w = store
            .commit(&write(vec![("retries", garbage)]))
            .await
            .unwrap();
        clock.advance_to(lockstep_time(w.instants[0])).await;
        assert_eq!(GUARDED_TWO.retries(), 5, "{garbage:?}");
    }
    assert_eq!(GUARDED_TWO.status().rejected, 6);
}

fn lockstep_time(at: lockstep::store::Millis) -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(at).unwrap()
}

#[lockstep(tick = "1s", store = "memory")]
struct Live {
    generation: u64,
    twin: u64,
    #[lockstep(default = "0")]
    label: String,
}

/// Real time, tick = 1s: a reader spinning on the hot path sees each change
/// at its instant, never before; a snapshot never shows half a change.
/// (Lateness is printed, not asserted: speed belongs to the benchmarks.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_real_time_a_flip_is_observed_at_its_instant_never_before() {
    LIVE.builder()
        .store(MemoryStore::new())
        .start()
        .await
        .unwrap();
    let torn = Arc::new(AtomicBool::new(false));
    let mut lateness = Vec::new();
    for generation in 1..=3u64 {
        let at = LIVE
            .change()
            .set(Live::GENERATION, generation)
            .set(Live::TWIN, generation)
            .set(Live::LABEL, generation.to_string())
            .apply()
            .await
            .unwrap()[0];
        let at_nanos = at.timestamp_nanos_opt().unwrap();
        let torn = torn.clone();
        let seen = tokio::task::spawn_blocking(move || {
            loop {
                // One spinning thread both watches the accessor and checks
                // snapshots, so it does not compete with a second spinner
                // for the two cores of a small machine.
                let s = LIVE.snapshot();
                if s.generation != s.twin || s.label != s.generation.to_string() {
                    torn.store(true, Ordering::Relaxed);
                }
                let value = LIVE.generation();
                // Read after the load: the load, and so the flip it saw,
                // happened at `after` at the latest.
                let after = now_nanos();
                if value == generation {
                    return after;
                }
                assert!(after < at_nanos + 5_000_000_000, "never switched");
            }
        })
        .await
        .unwrap();
        // A flip before its instant would let a load complete, and the clock
        // read after it, before `at`.
        let after_at = seen - at_nanos;
        assert!(after_at >= 0, "seen {} ns before its instant", -after_at);
        assert!(after_at < 1_000_000_000, "switched more than a tick late");
        lateness.push(after_at);
    }
    assert!(
        !torn.load(Ordering::Relaxed),
        "a snapshot showed half a change"
    );
    println!("lateness of the first read that saw each change (ns): {lateness:?}");
    assert_eq!(LIVE.status().late_flips, 0);
}

#[lockstep(tick = "1m", store = "memory")]
struct Backwards {
    level: u32,
}

#[tokio::test]
async fn a_clock_stepping_back_never_flips_a_value_back() {
    let clock = manual_clock();
    let store = MemoryStore::with_clock(&clock);
    BACKWARDS
        .builder()
        .store(store)
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    let steps = BACKWARDS.ramp(Backwards::LEVEL, [1, 2]).await.unwrap();
    clock.advance_to(steps[1]).await;
    assert_eq!(BACKWARDS.level(), 2);
    // An NTP step back of two ticks: the value stays.
    clock
        .advance_to(steps[0] - chrono::Duration::minutes(1))
        .await;
    assert_eq!(BACKWARDS.level(), 2);
    assert_eq!(BACKWARDS.snapshot().level, 2);
    clock
        .advance_to(steps[1] + chrono::Duration::minutes(1))
        .await;
    assert_eq!(BACKWARDS.level(), 2);
}

#[lockstep(tick = "1s", store = "memory")]
struct Watch {
    #[lockstep(default = 1)]
    level: u32,
}

/// A started registry says what it holds at each scheduled fetch:
/// an unchanged registry answers with its header alone, a change is
/// fetched in full and flips at its instant, `refresh` reads in
/// full, and a store that lost its data is noticed.
#[tokio::test(flavor = "current_thread")]
async fn a_registry_fetches_conditionally_and_misses_no_change() {
    let clock = lockstep::ManualClock::new(chrono::Utc::now());
    let store = lockstep_suite::Forwarding::new(MemoryStore::with_clock(&clock));
    let take = || store.take_seen();
    // Tick by tick, one scheduled fetch each.
    let ticks = async |n: usize| {
        for _ in 0..n {
            clock.advance(std::time::Duration::from_secs(1)).await;
        }
    };
    WATCH
        .builder()
        .store(store.clone())
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    let at = WATCH.set(Watch::LEVEL, 5).await.unwrap();
    // The boot fetch held nothing (the registry was never written).
    assert_eq!(take(), [(None, false)]);
    clock.advance_to(at).await;
    assert_eq!(WATCH.level(), 5);
    ticks(3).await;
    let fetched = take();
    // The first fetch after the write is full; then each holds
    // the revision the last applied and is answered unchanged.
    assert!(fetched.len() >= 2, "{fetched:?}");
    assert!(!fetched[0].1, "{fetched:?}");
    let held = fetched[1].0.clone().expect("held after a whole fetch");
    assert!(
        fetched[1..]
            .iter()
            .all(|(h, unchanged)| *unchanged && h.as_ref() == Some(&held))
    );
    // A change: the next fetch, still holding the old revision, is
    // answered in full, and the value flips at its instant.
    let at = WATCH.set(Watch::LEVEL, 7).await.unwrap();
    clock.advance_to(at).await;
    assert_eq!(WATCH.level(), 7);
    ticks(2).await;
    let fetched = take();
    assert_eq!(fetched[0], (Some(held.clone()), false), "{fetched:?}");
    assert!(
        fetched[1..].iter().all(|(_, unchanged)| *unchanged),
        "{fetched:?}"
    );
    // `refresh` reads in full, whatever the process holds.
    WATCH.refresh().await.unwrap();
    assert_eq!(take(), [(None, false)]);
    // The store loses its data: noticed at the next fetch, which
    // then holds nothing; the value is kept.
    store.inner().clear();
    ticks(1).await;
    assert!(WATCH.status().store_lost);
    assert_eq!(WATCH.level(), 7);
    ticks(1).await;
    let fetched = take();
    assert!(fetched.len() >= 2 && fetched[1].0.is_none(), "{fetched:?}");
}
