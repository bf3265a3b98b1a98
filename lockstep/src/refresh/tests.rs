//! The refresher's tests: conditional fetches, the schedule's phase and
//! backoff. (The rate of outage warnings is the engine's state's:
//! `engine::tests`.)

use super::*;

mod conditional {
    use std::sync::Mutex;

    use crate::schema::Schema;
    use crate::store::driver::{BoxFuture, Held, Records};
    use crate::store::{Committed, Fetch, Fetched, MemoryStore, Store, StoredEntry, Write};
    use crate::tick::{Millis, Tick};
    use crate::{Error, ManualClock};

    /// Per fetch, what the store was told the process held and whether
    /// it answered unchanged.
    type Seen = std::sync::Arc<Mutex<Vec<(Option<Held>, bool)>>>;

    /// A memory store that keeps what each fetch held ([`Seen`]).
    #[derive(Clone, Default)]
    struct Watched {
        inner: MemoryStore,
        seen: Seen,
    }

    impl Store for Watched {
        fn fetch_with<'a>(&'a self, fetch: Fetch<'a>) -> BoxFuture<'a, Result<Fetched, Error>> {
            Box::pin(async move {
                let fetched = self.inner.fetch_with(fetch).await?;
                self.seen
                    .lock()
                    .unwrap()
                    .push((fetch.held().cloned(), fetched.unchanged));
                Ok(fetched)
            })
        }

        fn records<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Records, Error>> {
            self.inner.records(namespace)
        }

        fn commit<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<Committed, Error>> {
            self.inner.commit(write)
        }

        fn cancel<'a>(
            &'a self,
            namespace: &'a str,
            tick: Tick,
            key: &'a str,
            at: Millis,
        ) -> BoxFuture<'a, Result<StoredEntry, Error>> {
            self.inner.cancel(namespace, tick, key, at)
        }

        fn purge<'a>(
            &'a self,
            namespace: &'a str,
            tick: Tick,
            key: &'a str,
            at: &'a str,
            undecodable: bool,
        ) -> BoxFuture<'a, Result<(), Error>> {
            self.inner.purge(namespace, tick, key, at, undecodable)
        }

        fn namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
            self.inner.namespaces()
        }

        fn publish_schema<'a>(&'a self, schema: &'a Schema) -> BoxFuture<'a, Result<(), Error>> {
            self.inner.publish_schema(schema)
        }

        fn schema<'a>(
            &'a self,
            namespace: &'a str,
        ) -> BoxFuture<'a, Result<Option<Schema>, Error>> {
            self.inner.schema(namespace)
        }

        fn describe(&self) -> String {
            self.inner.describe()
        }
    }

    #[crate::lockstep(tick = "1s", store = "memory")]
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
        let clock = ManualClock::new(chrono::Utc::now());
        let store = Watched {
            inner: MemoryStore::with_clock(&clock),
            ..Watched::default()
        };
        let seen = store.seen.clone();
        let take = || std::mem::take(&mut *seen.lock().unwrap());
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
        store.inner.clear();
        ticks(1).await;
        assert!(WATCH.status().store_lost);
        assert_eq!(WATCH.level(), 7);
        ticks(1).await;
        let fetched = take();
        assert!(fetched.len() >= 2 && fetched[1].0.is_none(), "{fetched:?}");
    }
}

#[test]
fn phases_are_one_tick_apart_and_in_the_future() {
    assert_eq!(next_phase(10_000, 1_000, 300), 10_300);
    assert_eq!(next_phase(10_300, 1_000, 300), 11_300);
    assert_eq!(next_phase(10_299, 1_000, 300), 10_300);
    for now in 0..3_000 {
        let next = next_phase(now, 1_000, 123);
        assert!(next > now && next <= now + 1_000 && next % 1_000 == 123);
    }
}

#[test]
fn backoff_grows_and_stays_under_a_tick() {
    for failures in 1..40 {
        for _ in 0..50 {
            let b = backoff(failures, 1_000);
            assert!((31..=500).contains(&b), "{failures}: {b}");
        }
    }
    assert!(backoff(1, 600_000) <= 250);
    assert!(backoff(30, 600_000) >= 150_000);
}
