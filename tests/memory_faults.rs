//! The engine when the data or the configuration misbehave (promises 10 and
//! 12, and schema republishing): against the memory store, wrapped where a
//! test needs a store that refuses or holds entries it cannot place.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lockstep::store::MemoryStore;
use lockstep::store::{StepAt, Store, Write};
use lockstep::{Error, Tick, lockstep};
use lockstep_suite::Forwarding;
use lockstep_suite::manual_clock;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

/// A good entry (50), an undecodable one (`"not json"` for a `u8`) a tick
/// later, and a good one (10) a tick after that.
async fn plant_good_bad_good(store: &MemoryStore, namespace: &str) -> Vec<i64> {
    let write = lockstep_suite::raw_write(
        namespace,
        Tick::new(Duration::from_secs(60)).unwrap(),
        "test",
        vec![
            (StepAt::Horizon { after: 0 }, vec![("value", "50")]),
            (
                StepAt::Horizon { after: 60_000 },
                vec![("value", "not json")],
            ),
            (StepAt::Horizon { after: 120_000 }, vec![("value", "10")]),
        ],
    );
    store.commit(&write).await.unwrap().instants
}

#[lockstep(tick = "1m", store = "memory", namespace = "spoiled")]
struct Spoiled {
    #[lockstep(default = 1)]
    value: u8,
}

#[lockstep(tick = "1m", store = "memory", namespace = "spoiled")]
struct SpoiledLater {
    #[lockstep(default = 1)]
    value: u8,
}

#[tokio::test]
async fn one_bad_entry_spoils_only_itself_on_running_and_later_processes() {
    let clock = manual_clock();
    let store = MemoryStore::with_clock(&clock);
    SPOILED
        .builder()
        .store(store.clone())
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    let instants = plant_good_bad_good(&store, "spoiled").await;
    clock.advance_to(at(instants[0])).await;
    assert_eq!(SPOILED.value(), 50);
    clock.advance_to(at(instants[1])).await;
    assert_eq!(SPOILED.value(), 50, "the last decodable entry decides");
    // A process started after the bad entry was written.
    SPOILED_LATER
        .builder()
        .store(store.clone())
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    assert_eq!(SPOILED_LATER.value(), 50);
    clock.advance_to(at(instants[2])).await;
    assert_eq!(SPOILED.value(), 10, "a later good entry activates");
    assert_eq!(SPOILED_LATER.value(), 10);
    // More fetches see the same bad entry: counted and listed once.
    clock.advance(Duration::from_secs(60)).await;
    clock.advance(Duration::from_secs(60)).await;
    let status = SPOILED.status();
    assert_eq!(status.rejected, 1, "{status:?}");
    assert_eq!(status.bad_entries.len(), 1, "{status:?}");
    assert!(
        status.bad_entries[0].contains("spoiled.value"),
        "{:?}",
        status.bad_entries
    );
    assert_eq!(SPOILED.value(), 10);
}

#[lockstep(tick = "1m", store = "memory", namespace = "unplaced")]
struct WithUnplaced {
    value: u8,
}

#[tokio::test]
async fn entries_without_a_numeric_instant_are_counted_once_and_shown() {
    let clock = manual_clock();
    let memory = MemoryStore::with_clock(&clock);
    let mut store = Forwarding::new(memory.clone());
    store.unplaced = true;
    WITH_UNPLACED
        .builder()
        .store(store)
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    let at_horizon = WITH_UNPLACED.set(WithUnplaced::VALUE, 3).await.unwrap();
    clock.advance_to(at_horizon).await;
    clock.advance(Duration::from_secs(60)).await;
    assert_eq!(WITH_UNPLACED.value(), 3);
    let status = WITH_UNPLACED.status();
    assert_eq!(status.rejected, 1, "{status:?}");
    assert!(status.bad_entries[0].contains("`soon`"), "{status:?}");
}

#[lockstep(tick = "1m", store = "memory", namespace = "misconfigured")]
struct Misconfigured {
    value: u8,
}

#[tokio::test]
async fn a_misconfigured_store_fails_start_at_once_and_leaves_it_unstarted() {
    let mut store = Forwarding::new(MemoryStore::new());
    store.refuse_fetch = true;
    // A boot timeout far longer than the test may take: start must not
    // wait for it.
    let started = tokio::time::timeout(
        Duration::from_secs(60),
        MISCONFIGURED
            .builder()
            .store(store.clone())
            .boot_timeout(Duration::from_secs(3600))
            .start(),
    )
    .await
    .expect("start waited out its boot timeout");
    match started {
        Err(Error::Misconfigured { message, .. }) => assert!(message.contains("permission")),
        other => panic!("{other:?}"),
    }
    assert!(!MISCONFIGURED.status().started);
    // Fixed, it starts.
    store.refuse_fetch = false;
    MISCONFIGURED.builder().store(store).start().await.unwrap();
    assert!(MISCONFIGURED.status().started);
}

#[lockstep(tick = "1m", store = "memory", namespace = "read_only")]
struct ReadOnly {
    value: u8,
}

#[tokio::test]
async fn a_refused_schema_does_not_fail_start_and_is_not_retried_every_tick() {
    let clock = manual_clock();
    let memory = MemoryStore::with_clock(&clock);
    let mut store = Forwarding::new(memory.clone());
    store.refuse_schema = true;
    let publishes = store.schema_publishes.clone();
    READ_ONLY
        .builder()
        .store(store)
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    let at_horizon = READ_ONLY.set(ReadOnly::VALUE, 9).await.unwrap();
    for _ in 0..5 {
        clock.advance(Duration::from_secs(60)).await;
    }
    assert!(clock.now() >= at_horizon);
    assert_eq!(READ_ONLY.value(), 9, "reads go on");
    assert_eq!(publishes.load(Ordering::SeqCst), 1, "tried once");
}

#[lockstep(tick = "1m", store = "memory", namespace = "republished")]
struct Republished {
    value: u8,
}

#[tokio::test]
async fn the_schema_is_published_again_after_store_loss() {
    let clock = manual_clock();
    let store = MemoryStore::with_clock(&clock);
    REPUBLISHED
        .builder()
        .store(store.clone())
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    assert!(store.schema("republished").await.unwrap().is_some());
    store.clear();
    assert!(store.schema("republished").await.unwrap().is_none());
    clock.advance(Duration::from_secs(60)).await;
    let schema = store.schema("republished").await.unwrap();
    assert_eq!(schema, Some(REPUBLISHED.schema()));
}

#[lockstep(tick = "1m", store = "memory", namespace = "down_at_boot")]
struct DownAtBoot {
    value: u8,
}

/// A store down at boot (a transient fault): start is Ok after the boot
/// timeout, and the schema is published by the first fetch that gets
/// through.
#[tokio::test]
async fn a_store_down_at_boot_gets_the_schema_once_it_answers() {
    let clock = manual_clock();
    let memory = MemoryStore::with_clock(&clock);
    let store = Forwarding::new(memory.clone());
    store.down.store(true, Ordering::SeqCst);
    DOWN_AT_BOOT
        .builder()
        .store(store.clone())
        .manual_clock(&clock)
        .boot_timeout(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    assert!(DOWN_AT_BOOT.status().failed_fetches >= 1);
    assert!(memory.schema("down_at_boot").await.unwrap().is_none());
    store.down.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(60)).await;
    assert_eq!(DOWN_AT_BOOT.status().consecutive_failures, 0);
    assert!(memory.schema("down_at_boot").await.unwrap().is_some());
}

#[lockstep(tick = "1m", store = "memory", namespace = "seen")]
struct SeenA {
    #[lockstep(default = 1)]
    value: u8,
}

#[lockstep(tick = "1m", store = "memory", namespace = "seen")]
struct SeenB {
    #[lockstep(default = 1)]
    value: u8,
}

#[lockstep(tick = "1m", store = "memory", namespace = "seen")]
struct Unseen {
    #[lockstep(default = 1)]
    value: u8,
}

/// Promise 14 on one store: each registry reports itself with its fetches
/// (one that was told not to does not), and the view says, per pending
/// change, who holds it: none right after the write, all after their next
/// fetch, and none of those who could not decode it.
#[tokio::test]
async fn the_fleet_view_shows_who_holds_each_pending_change() {
    let clock = manual_clock();
    let store = MemoryStore::with_clock(&clock);
    SEEN_A
        .builder()
        .store(store.clone())
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    SEEN_B
        .builder()
        .store(store.clone())
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    UNSEEN
        .builder()
        .store(store.clone())
        .manual_clock(&clock)
        .report(false)
        .start()
        .await
        .unwrap();
    let fleet = SEEN_A.fleet().await.unwrap();
    assert_eq!(fleet.processes.len(), 2, "{fleet:?}");
    assert_ne!(fleet.processes[0].id, fleet.processes[1].id);
    assert!(fleet.processes.iter().all(|p| p.pid == std::process::id()));
    assert!(fleet.pending.is_empty());

    let first = SEEN_A.set(SeenA::VALUE, 5).await.unwrap();
    let fleet = UNSEEN.fleet().await.unwrap();
    assert_eq!(fleet.pending.len(), 1, "{fleet:?}");
    let change = &fleet.pending[0];
    assert_eq!((change.held_by, change.of, change.missing.len()), (0, 2, 2));
    assert_eq!(change.value.as_deref(), Ok("5"));
    assert_eq!(change.at, first);

    // One tick on: both fetched, both hold it, before it activates.
    clock.advance(Duration::from_secs(60)).await;
    let fleet = SEEN_B.fleet().await.unwrap();
    assert!(clock.now() < first);
    assert!(fleet.pending[0].held_by_all(), "{fleet:?}");
    assert_eq!(fleet.pending[0].of, 2);

    // An entry no process can decode: fetched, refused, and reported as
    // not held from the next fetch on.
    let bad = Write::builder("seen", Tick::from_secs(60).unwrap())
        .set("value", serde_json::json!("not a number"))
        .after_horizon(Duration::from_secs(120))
        .build()
        .unwrap();
    let bad_at = store.commit(&bad).await.unwrap().instants[0];
    clock.advance(Duration::from_secs(60)).await;
    clock.advance(Duration::from_secs(60)).await;
    let fleet = SEEN_A.fleet().await.unwrap();
    let refused = fleet
        .pending
        .iter()
        .find(|c| lockstep::store::from_datetime(c.at) == bad_at)
        .expect("the bad entry is pending");
    assert_eq!((refused.held_by, refused.of), (0, 2), "{fleet:?}");
    assert!(fleet.processes.iter().all(|p| p.rejected == 1));
    assert_eq!(SEEN_A.value(), 5);
}
