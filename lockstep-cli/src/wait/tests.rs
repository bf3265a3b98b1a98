//! What `--wait` decides and says, against a memory store and a manual clock.

use super::*;
use chrono::{TimeZone, Utc};
use lockstep::ManualClock;
use lockstep::store::driver::Record;
use lockstep::store::{Fetch, MemoryStore, Store};

const TICK_MS: i64 = 2_000;

fn tick() -> Tick {
    Tick::from_secs(2).unwrap()
}

fn limit() -> FieldPath {
    FieldPath {
        namespace: "shop".into(),
        key: "limit".into(),
    }
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A store on a manual clock, with `processes` that each fetched once.
struct Bench {
    clock: ManualClock,
    store: MemoryStore,
}

impl Bench {
    async fn new(processes: &[&str]) -> Bench {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap());
        let bench = Bench {
            store: MemoryStore::with_clock(&clock),
            clock,
        };
        for id in processes {
            bench.fetch(id).await;
        }
        bench
    }

    /// Process `id` fetches, reporting.
    async fn fetch(&self, id: &str) {
        let body = json!({"id": id, "host": "vm", "pid": 7, "program": "shop",
                          "tick_ms": TICK_MS})
        .to_string();
        let report = Record::new(id.to_owned(), body, 3 * TICK_MS);
        self.store
            .fetch_with(Fetch::new("shop", &["limit"]).reporting(Some(&report)))
            .await
            .unwrap();
    }

    /// Writes `limit` at the horizon, or `after` ms past it.
    async fn write(&self, value: i64, after: i64) -> Written {
        let mut write = Write::builder("shop", tick()).set("limit", json!(value));
        if after > 0 {
            let now = from_datetime(self.clock.now());
            write = write.at(tick().horizon(now) + after);
        }
        let write = write.build().unwrap();
        let committed = self.store.commit(&write).await.unwrap();
        Written::of(&limit(), &write, &committed)
    }

    async fn advance_ms(&self, ms: u64) {
        self.clock.advance(Duration::from_millis(ms)).await;
    }

    async fn fleet(&self) -> Fleet {
        lockstep::store::fleet(&self.store, "shop", &["limit"], None)
            .await
            .unwrap()
    }
}

fn lagging_ids<'a>(verdict: &Verdict<'a>) -> Vec<(&'a str, Why)> {
    match verdict {
        Verdict::Waiting { lagging } | Verdict::Late { lagging, .. } => lagging
            .iter()
            .map(|l| (l.process.id.as_str(), l.why))
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn held_once_every_live_process_fetched_the_write() {
    run(async {
        let bench = Bench::new(&["a", "b"]).await;
        let written = bench.write(5, 0).await;
        let poll = poll_every(tick());
        let fleet = bench.fleet().await;
        let verdict = decide(&fleet, &written, poll);
        assert!(matches!(verdict, Verdict::Waiting { .. }), "{verdict:?}");
        assert_eq!(
            lagging_ids(&verdict),
            [("a", Why::Due), ("b", Why::Due)],
            "{verdict:?}"
        );
        bench.advance_ms(300).await;
        bench.fetch("a").await;
        let fleet = bench.fleet().await;
        assert_eq!(
            lagging_ids(&decide(&fleet, &written, poll)),
            [("b", Why::Due)]
        );
        bench.fetch("b").await;
        let fleet = bench.fleet().await;
        assert_eq!(decide(&fleet, &written, poll), Verdict::Held { of: 2 });
    });
}

#[test]
fn a_process_due_to_fetch_is_waited_for_even_within_a_tick_of_the_instant() {
    run(async {
        let bench = Bench::new(&["a"]).await;
        // At the horizon: at most two ticks and the margin ahead.
        let written = bench.write(5, 0).await;
        let fleet = bench.fleet().await;
        let mut fleet = fleet;
        // Less than a tick before the instant, a tick after "a" last
        // fetched: its next fetch is due now, before the instant.
        let first = written.instants[0];
        fleet.store_time = lockstep::store::to_datetime(first - TICK_MS + 100);
        fleet.processes[0].last_fetch = lockstep::store::to_datetime(first - 2 * TICK_MS + 50);
        let verdict = decide(&fleet, &written, poll_every(tick()));
        assert_eq!(lagging_ids(&verdict), [("a", Why::Due)], "{verdict:?}");
        assert!(matches!(verdict, Verdict::Waiting { .. }));
    });
}

#[test]
fn a_process_that_missed_a_fetch_is_late_and_named_at_once() {
    run(async {
        let bench = Bench::new(&["frozen", "live"]).await;
        // Far ahead: there is time, but "frozen" stops fetching.
        let written = bench.write(5, 10 * TICK_MS).await;
        bench.advance_ms(TICK_MS as u64).await;
        bench.fetch("live").await;
        let fleet = bench.fleet().await;
        // One tick since its fetch: not missed yet.
        assert_eq!(
            lagging_ids(&decide(&fleet, &written, poll_every(tick()))),
            [("frozen", Why::Due)]
        );
        bench.advance_ms(600).await;
        let fleet = bench.fleet().await;
        let verdict = decide(&fleet, &written, poll_every(tick()));
        assert_eq!(
            lagging_ids(&verdict),
            [("frozen", Why::Missed { ago_ms: 2_600 })],
            "{verdict:?}"
        );
        assert!(matches!(verdict, Verdict::Late { of: 2, .. }));
        let Verdict::Late { lagging, of } = verdict else {
            unreachable!()
        };
        let now = from_datetime(fleet.store_time);
        let message = late(&written, &lagging, of, now).message;
        assert!(message.contains("1 of 2 live processes"), "{message}");
        assert!(message.contains("vm pid 7 (shop, frozen)"), "{message}");
        assert!(
            message.contains(&format!(
                "lockstep cancel shop.limit --at {}",
                instant(written.instants[0])
            )),
            "{message}"
        );
    });
}

#[test]
fn out_of_time_when_less_than_a_poll_remains() {
    run(async {
        let bench = Bench::new(&["a"]).await;
        let written = bench.write(5, 0).await;
        let mut fleet = bench.fleet().await;
        let first = written.instants[0];
        fleet.store_time = lockstep::store::to_datetime(first - 100);
        fleet.processes[0].last_fetch = lockstep::store::to_datetime(first - 200);
        let verdict = decide(&fleet, &written, poll_every(tick()));
        assert_eq!(lagging_ids(&verdict), [("a", Why::OutOfTime)]);
        let Verdict::Late { lagging, of } = verdict else {
            panic!("{verdict:?}")
        };
        let message = late(&written, &lagging, of, first - 100).message;
        assert!(message.contains("too close to cancel"), "{message}");
    });
}

#[test]
fn a_process_that_cannot_decode_the_value_is_late() {
    run(async {
        let bench = Bench::new(&[]).await;
        let written = bench.write(5, 10 * TICK_MS).await;
        let body = json!({"id": "old", "host": "vm", "pid": 8, "program": "shop",
                          "refused": [{"field": "limit", "at": written.instants[0]}]})
        .to_string();
        let report = Record::new("old", body, 3 * TICK_MS);
        bench
            .store
            .fetch_with(Fetch::new("shop", &["limit"]).reporting(Some(&report)))
            .await
            .unwrap();
        let fleet = bench.fleet().await;
        let verdict = decide(&fleet, &written, poll_every(tick()));
        assert_eq!(lagging_ids(&verdict), [("old", Why::Refused)]);
    });
}

#[test]
fn nobody_reporting_and_a_cancelled_write_are_said_so() {
    run(async {
        let bench = Bench::new(&[]).await;
        let written = bench.write(5, 0).await;
        let fleet = bench.fleet().await;
        assert_eq!(
            decide(&fleet, &written, poll_every(tick())),
            Verdict::Unreported
        );
        bench.fetch("a").await;
        bench
            .store
            .cancel("shop", tick(), "limit", written.instants[0])
            .await
            .unwrap();
        let fleet = bench.fleet().await;
        assert_eq!(
            decide(&fleet, &written, poll_every(tick())),
            Verdict::Gone { active: false }
        );
    });
}

#[test]
fn every_entry_of_a_ramp_counts() {
    run(async {
        let bench = Bench::new(&["a"]).await;
        let write = Write::builder("shop", tick())
            .set("limit", json!(1))
            .then_after(Duration::from_secs(2))
            .set("limit", json!(2))
            .build()
            .unwrap();
        let committed = bench.store.commit(&write).await.unwrap();
        let written = Written::of(&limit(), &write, &committed);
        let fleet = bench.fleet().await;
        assert_eq!(fleet.pending.len(), 2);
        assert_eq!(
            lagging_ids(&decide(&fleet, &written, poll_every(tick()))),
            [("a", Why::Due)]
        );
        bench.fetch("a").await;
        let fleet = bench.fleet().await;
        assert_eq!(
            decide(&fleet, &written, poll_every(tick())),
            Verdict::Held { of: 1 }
        );
    });
}

#[test]
fn polls_a_quarter_tick_at_least_200_ms_apart_at_most_5_s() {
    assert_eq!(
        poll_every(Tick::from_secs(1).unwrap()),
        Duration::from_millis(250)
    );
    assert_eq!(
        poll_every(Tick::from_secs(600).unwrap()),
        Duration::from_secs(5)
    );
}
