//! One backend contract, every backend: the same checks run on the memory
//! store, Redis, PostgreSQL and SQLite, through `Arc<dyn Store>` only.
//!
//! Each check takes a [`Subject`]: a store, fresh namespaces in it, and a
//! way to plant entries "written long ago" (the only thing the contract
//! cannot do itself: no write may touch the past). Horizons are computed
//! from the store's own clock, read through fetches, never from this
//! process's. PostgreSQL comes from `LOCKSTEP_TEST_POSTGRES` or a throwaway
//! cluster (see `lockstep_suite::sql`): without one, its test fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lockstep::schema::{FieldSchema, Schema};
use lockstep::store::Millis;
use lockstep::store::driver::{
    BoxFuture, FETCH_BUDGET_BYTES, Held, MAX_PENDING_BYTES, MAX_RECORD_BYTES, Record,
};
use lockstep::store::{
    Fetch, Fetched, HISTORY, MemoryStore, PostgresStore, RedisStore, SqliteStore, StepAt, Store,
    StoredEntry, StoredSchema, Write,
};
use lockstep::{Error, MAX_VALUE_BYTES, ManualClock, Tick};
use lockstep_suite::RedisServer;
use lockstep_suite::sql::{PostgresSchema, SqliteFile};

const TICK: Tick = match Tick::from_secs(1) {
    Ok(tick) => tick,
    Err(_) => panic!("1 s is a tick"),
};

/// Plants `n` entries of a field, values `0` to `n - 1`, one tick apart,
/// all before the store's clock: `(namespace, key, n)`.
type Plant = Box<dyn Fn(String, String, usize) -> BoxFuture<'static, ()> + Send + Sync>;

/// Makes a store refuse the records of the namespace it is given.
type Refuse = Box<dyn Fn(String) -> BoxFuture<'static, ()> + Send + Sync>;

/// Puts entries of a field, at instants after the store's clock, with
/// values as given, past the bounds of a commit (as a hand, or an older
/// lockstep, could have written them): `(namespace, key, [(instant,
/// value)])`, instants ascending. The memory store has no way in but a
/// commit: it moves its clock to just before the first instant, commits
/// and moves it back, so what one call puts must be within
/// [`MAX_PENDING_BYTES`] together with the registry's entries after its
/// first instant (put each field after those put before it).
type Place =
    Box<dyn Fn(String, String, Vec<(Millis, String)>) -> BoxFuture<'static, ()> + Send + Sync>;

/// A backend under test, and what it runs on (a server, a schema, a file:
/// removed when the subject is dropped, at the end of its test).
struct Subject {
    store: Arc<dyn Store>,
    plant: Plant,
    place: Place,
    /// Makes the store refuse the records of a namespace, as a store
    /// refuses writes (the memory store cannot).
    refuse_records: Option<Refuse>,
    namespaces: AtomicU64,
    /// The store's clock, where the test drives it.
    clock: Option<ManualClock>,
    _runs_on: Box<dyn std::any::Any + Send + Sync>,
}

impl Subject {
    fn new(
        store: Arc<dyn Store>,
        plant: Plant,
        place: Place,
        runs_on: impl std::any::Any + Send + Sync,
    ) -> Subject {
        Subject {
            store,
            plant,
            place,
            refuse_records: None,
            namespaces: AtomicU64::new(0),
            clock: None,
            _runs_on: Box::new(runs_on),
        }
    }

    /// The subject, with `refuse` making its store refuse a namespace's
    /// records.
    fn refusing_records(self, refuse: Refuse) -> Subject {
        Subject {
            refuse_records: Some(refuse),
            ..self
        }
    }

    /// Lets `time` pass on the store's clock.
    async fn pass(&self, time: Duration) {
        match &self.clock {
            Some(clock) => clock.advance(time).await,
            None => tokio::time::sleep(time).await,
        }
    }

    /// A namespace nothing has touched yet.
    fn namespace(&self, what: &str) -> String {
        format!("{what}-{}", self.namespaces.fetch_add(1, Ordering::SeqCst))
    }

    /// The store's clock, in ms, by a fetch.
    async fn now(&self) -> Millis {
        store_now(&*self.store).await
    }

    async fn commit(&self, write: &Write) -> Result<Vec<Millis>, Error> {
        self.store.commit(write).await.map(|c| c.instants)
    }

    async fn entries(&self, namespace: &str, key: &str) -> Vec<StoredEntry> {
        let fetched = self.store.fetch(namespace, &[key]).await.unwrap();
        fetched.fields.get(key).cloned().unwrap_or_default()
    }

    async fn values(&self, namespace: &str, key: &str) -> Vec<(Millis, String)> {
        self.entries(namespace, key)
            .await
            .into_iter()
            .map(|e| (e.at, e.value.unwrap()))
            .collect()
    }
}

fn write(namespace: &str, steps: Vec<(StepAt, Vec<(&str, &str)>)>) -> Write {
    lockstep_suite::raw_write(namespace, TICK, "conformance \"suite\" ünï", steps)
}

fn set(namespace: &str, key: &str, value: &str, at: StepAt) -> Write {
    write(namespace, vec![(at, vec![(key, value)])])
}

const NOW: StepAt = StepAt::Horizon { after: 0 };

/// Every check, as a test of its own on every backend:
/// `cargo test --test conformance -- --list` lists the promises kept, as
/// `<backend>::<check>`. A check is an `async fn name(s: &Subject)` in this
/// file; to add one, write it and add its name to the list below. A
/// backend is a `mod` generated here, named before the `=`, whose tests
/// each make their own subject with the function named after it.
macro_rules! conformance {
    (backends: [$($backend:ident = $subject:ident),* $(,)?], checks: $checks:tt) => {
        $(conformance!(@backend $backend $subject $checks);)*
    };
    (@backend $backend:ident $subject:ident [$($check:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let subject = super::$subject().await;
                    super::$check(&subject).await;
                }
            )*
        }
    };
}

conformance! {
    backends: [
        memory = memory_subject,
        toy = toy_subject,
        redis = redis_subject,
        postgres = postgres_subject,
        sqlite = sqlite_subject,
        mysql = mysql_subject,
    ],
    checks: [
        a_fresh_namespace_is_empty_and_the_store_tells_its_time,
        a_write_lands_at_the_horizon_of_the_store_clock,
        a_write_before_the_horizon_is_refused_and_writes_nothing,
        values_and_origins_come_back_as_written,
        the_epoch_is_created_by_the_first_write_and_kept,
        a_ramp_is_one_write_one_tick_apart_fields_of_a_step_together,
        the_same_field_and_instant_keeps_the_last_write,
        a_retried_write_takes_effect_once,
        a_pending_entry_can_be_cancelled_a_past_one_cannot,
        history_keeps_the_active_entry_and_the_superseded_ones_allowed,
        a_fetch_returns_the_fields_asked_for,
        schemas_are_kept_and_namespaces_listed,
        schemas_are_kept_by_digest_for_every_build,
        names_the_layout_cannot_hold_are_refused,
        concurrent_writers_lose_nothing,
        a_cancel_returns_the_entry_it_removed_as_stored,
        a_purge_removes_a_pending_entry_and_a_served_one_only_if_undecodable,
        the_store_says_whether_it_holds_the_schema,
        every_write_cancel_and_purge_advances_the_revision,
        a_fetch_with_a_report_records_the_process_and_the_revision_it_served,
        a_report_the_store_cannot_keep_is_left_out_and_the_fetch_served,
        a_report_expires_when_the_process_stops_fetching,
        reports_are_kept_per_namespace_and_per_process,
        an_unchanged_registry_answers_unchanged_with_no_entries,
        any_commit_cancel_or_purge_makes_the_next_conditional_fetch_full,
        a_different_epoch_or_revision_answers_in_full,
        a_write_beyond_the_pending_bound_is_refused_whole,
        a_fetch_ships_the_smallest_fields_within_its_budget,
    ]
}

/// The checks of what a store does when it refuses to keep a record, on
/// every store that can refuse one (not the memory store).
mod refusing {
    use super::*;

    conformance! {
        backends: [
            redis = redis_subject,
            postgres = postgres_subject,
            sqlite = sqlite_subject,
            mysql = mysql_subject,
        ],
        checks: [a_record_the_store_refuses_costs_the_fetch_nothing]
    }
}

async fn a_fresh_namespace_is_empty_and_the_store_tells_its_time(s: &Subject) {
    let ns = s.namespace("fresh");
    let fetched = s.store.fetch(&ns, &["a", "b"]).await.unwrap();
    assert_eq!(fetched.epoch, None);
    assert!(fetched.fields.values().all(Vec::is_empty), "{fetched:?}");
    assert!(fetched.store_micros.is_some());
}

async fn a_write_lands_at_the_horizon_of_the_store_clock(s: &Subject) {
    let ns = s.namespace("horizon");
    let before = s.now().await;
    let at = s.commit(&set(&ns, "a", "1", NOW)).await.unwrap()[0];
    let later = s
        .commit(&set(&ns, "b", "2", StepAt::Horizon { after: 2_500 }))
        .await
        .unwrap()[0];
    let after = s.now().await;
    assert!(
        (TICK.horizon(before)..=TICK.horizon(after)).contains(&at),
        "{at} not between the horizons of {before} and {after}"
    );
    assert_eq!(at % 1000, 0, "on a tick boundary");
    assert!(
        (TICK.ceil(TICK.horizon(before) + 2_500)..=TICK.ceil(TICK.horizon(after) + 2_500))
            .contains(&later),
        "{later}"
    );
    assert_eq!(s.values(&ns, "a").await, vec![(at, "1".to_owned())]);
}

async fn a_write_before_the_horizon_is_refused_and_writes_nothing(s: &Subject) {
    let ns = s.namespace("refused");
    let now = s.now().await;
    // An instant between boundaries rounds up to the next one.
    let far = now + 10_001;
    let at = s
        .commit(&set(&ns, "a", "1", StepAt::At(far)))
        .await
        .unwrap()[0];
    assert_eq!(at, TICK.ceil(far));
    let refused = s
        .commit(&write(
            &ns,
            vec![
                (StepAt::At(far + 5_000), vec![("a", "2")]),
                (StepAt::At(now), vec![("a", "3")]),
            ],
        ))
        .await
        .unwrap_err();
    let Error::BeforeHorizon {
        requested,
        earliest,
        ..
    } = &refused
    else {
        panic!("{refused}");
    };
    assert_eq!(requested.timestamp_millis(), TICK.ceil(now));
    assert!(
        earliest.timestamp_millis() >= TICK.horizon(now),
        "{refused}"
    );
    // Neither step was written.
    assert_eq!(s.values(&ns, "a").await, vec![(at, "1".to_owned())]);
    // A refused first write creates no epoch.
    let untouched = s.namespace("refused");
    s.commit(&set(&untouched, "a", "1", StepAt::At(now)))
        .await
        .unwrap_err();
    let fetched = s.store.fetch(&untouched, &["a"]).await.unwrap();
    assert_eq!(fetched.epoch, None);
    assert!(fetched.fields.values().all(Vec::is_empty));
}

async fn values_and_origins_come_back_as_written(s: &Subject) {
    let ns = s.namespace("values");
    let values = [
        ("object", r#"{"b": 1,  "a": [1.5, "x\"y", null]}"#),
        ("text", "\"ünïcödé ☃ \\n\""),
        ("big", "18446744073709551615"),
        ("float", "-0.0"),
        ("huge", "1e300"),
        ("empty", "[]"),
    ];
    let before = s.now().await;
    let w = write(&ns, vec![(NOW, values.to_vec())]);
    let at = s.commit(&w).await.unwrap()[0];
    let after = s.now().await;
    let keys: Vec<&str> = values.iter().map(|(k, _)| *k).collect();
    let fetched = s.store.fetch(&ns, &keys).await.unwrap();
    for (key, value) in values {
        let entries = &fetched.fields[key];
        assert_eq!(entries.len(), 1, "{key}");
        assert_eq!(entries[0].at, at);
        assert_eq!(
            entries[0].value.as_deref(),
            Ok(value),
            "{key}: byte for byte"
        );
        let origin = entries[0].origin.as_ref().expect("who wrote it");
        assert_eq!(origin.write, w.id());
        assert_eq!(origin.by, w.by());
        assert!(
            (before..=after).contains(&origin.written_at),
            "written at {} by the store's clock, not in {before}..={after}",
            origin.written_at
        );
    }
}

async fn the_epoch_is_created_by_the_first_write_and_kept(s: &Subject) {
    let ns = s.namespace("epoch");
    s.store.publish_schema(&schema(&ns, "a")).await.unwrap();
    assert_eq!(s.store.fetch(&ns, &["a"]).await.unwrap().epoch, None);
    let before = s.now().await;
    s.commit(&set(&ns, "a", "1", NOW)).await.unwrap();
    let after = s.now().await;
    let epoch = s.store.fetch(&ns, &["a"]).await.unwrap().epoch.unwrap();
    assert!((before..=after).contains(&epoch.created), "{epoch:?}");
    assert!(!epoch.id.is_empty());
    s.commit(&set(&ns, "b", "2", NOW)).await.unwrap();
    let again = s.store.fetch(&ns, &["b"]).await.unwrap().epoch.unwrap();
    assert_eq!(again, epoch);
    // Another namespace has an epoch of its own.
    let other = s.namespace("epoch");
    s.commit(&set(&other, "a", "1", NOW)).await.unwrap();
    let theirs = s.store.fetch(&other, &["a"]).await.unwrap().epoch.unwrap();
    assert_ne!(theirs.id, epoch.id);
}

async fn a_ramp_is_one_write_one_tick_apart_fields_of_a_step_together(s: &Subject) {
    let ns = s.namespace("ramp");
    let steps = (0..5)
        .map(|i| {
            (
                StepAt::Horizon { after: i * 1000 },
                vec![
                    ("pct", ["0", "10", "25", "50", "100"][i as usize]),
                    ("on", "true"),
                ],
            )
        })
        .collect();
    let instants = s.commit(&write(&ns, steps)).await.unwrap();
    assert_eq!(instants.len(), 5);
    assert!(
        instants.windows(2).all(|w| w[1] - w[0] == 1000),
        "{instants:?}"
    );
    let pct = s.values(&ns, "pct").await;
    let on = s.values(&ns, "on").await;
    assert_eq!(
        pct.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(),
        ["0", "10", "25", "50", "100"]
    );
    assert_eq!(pct.iter().map(|e| e.0).collect::<Vec<_>>(), instants);
    assert_eq!(on.iter().map(|e| e.0).collect::<Vec<_>>(), instants);
}

async fn the_same_field_and_instant_keeps_the_last_write(s: &Subject) {
    let ns = s.namespace("last");
    let at = TICK.ceil(s.now().await + 30_000);
    s.commit(&set(&ns, "a", "1", StepAt::At(at))).await.unwrap();
    let second = set(&ns, "a", "2", StepAt::At(at - 500));
    assert_eq!(s.commit(&second).await.unwrap(), vec![at]);
    let entries = s.entries(&ns, "a").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].value.as_deref(), Ok("2"));
    assert_eq!(entries[0].origin.as_ref().unwrap().write, second.id());
    // Within one write too: a later value, or a later step rounded up to
    // the same boundary, wins.
    let within = write(
        &ns,
        vec![
            (StepAt::At(at + 1000), vec![("b", "3"), ("b", "4")]),
            (StepAt::At(at + 999), vec![("b", "5")]),
        ],
    );
    assert_eq!(s.commit(&within).await.unwrap(), vec![at + 1000, at + 1000]);
    assert_eq!(s.values(&ns, "b").await, vec![(at + 1000, "5".to_owned())]);
}

async fn a_retried_write_takes_effect_once(s: &Subject) {
    let ns = s.namespace("retry");
    let at = TICK.ceil(s.now().await + 30_000);
    let first = set(&ns, "a", "1", StepAt::At(at));
    let instants = s.commit(&first).await.unwrap();
    s.commit(&set(&ns, "a", "2", StepAt::At(at))).await.unwrap();
    // The first write sent again (its answer lost, say): nothing changes.
    assert_eq!(s.commit(&first).await.unwrap(), instants);
    assert_eq!(s.values(&ns, "a").await, vec![(at, "2".to_owned())]);
    // Even with a horizon that moved on: the instants of the first time.
    let horizon = set(&ns, "c", "1", NOW);
    let once = s.commit(&horizon).await.unwrap();
    assert_eq!(s.commit(&horizon).await.unwrap(), once);
    assert_eq!(s.values(&ns, "c").await.len(), 1);
}

async fn a_pending_entry_can_be_cancelled_a_past_one_cannot(s: &Subject) {
    let ns = s.namespace("cancel");
    let at = TICK.ceil(s.now().await + 30_000);
    s.commit(&set(&ns, "a", "1", StepAt::At(at))).await.unwrap();
    s.commit(&set(&ns, "a", "2", StepAt::At(at + 1000)))
        .await
        .unwrap();
    s.store.cancel(&ns, TICK, "a", at).await.unwrap();
    assert_eq!(s.values(&ns, "a").await, vec![(at + 1000, "2".to_owned())]);
    let again = s.store.cancel(&ns, TICK, "a", at).await.unwrap_err();
    assert!(matches!(again, Error::NoSuchEntry { .. }), "{again}");
    // A planted entry in the past stays.
    (s.plant)(ns.clone(), "p".to_owned(), 2).await;
    let past = s.entries(&ns, "p").await;
    assert_eq!(past.len(), 2);
    let refused = s
        .store
        .cancel(&ns, TICK, "p", past[1].at)
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::BeforeHorizon { .. }), "{refused}");
    assert_eq!(s.entries(&ns, "p").await, past);
}

async fn history_keeps_the_active_entry_and_the_superseded_ones_allowed(s: &Subject) {
    let ns = s.namespace("history");
    s.store.fetch(&ns, &["x"]).await.unwrap();
    (s.plant)(ns.clone(), "x".to_owned(), 40).await;
    (s.plant)(ns.clone(), "y".to_owned(), 30).await;
    assert_eq!(s.entries(&ns, "x").await.len(), 40);
    let w = set(&ns, "x", "99", NOW);
    s.commit(&w).await.unwrap();
    let x = s.values(&ns, "x").await;
    // The active entry, HISTORY superseded ones, and the new pending one.
    assert_eq!(x.len(), HISTORY + 2, "{x:?}");
    let kept: Vec<String> = (40 - HISTORY - 1..40).map(|i| i.to_string()).collect();
    assert_eq!(
        x[..HISTORY + 1]
            .iter()
            .map(|e| e.1.clone())
            .collect::<Vec<_>>(),
        kept
    );
    assert_eq!(x.last().unwrap().1, "99");
    // A field the write did not touch is pruned by its own next write.
    assert_eq!(s.entries(&ns, "y").await.len(), 30);
}

async fn a_fetch_returns_the_fields_asked_for(s: &Subject) {
    let ns = s.namespace("fields");
    s.commit(&write(
        &ns,
        vec![(NOW, vec![("a", "1"), ("b", "2"), ("c", "3")])],
    ))
    .await
    .unwrap();
    let fetched = s.store.fetch(&ns, &["a", "c", "missing"]).await.unwrap();
    let with_entries: Vec<&str> = fetched
        .fields
        .iter()
        .filter(|(_, e)| !e.is_empty())
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(with_entries, ["a", "c"]);
}

fn schema(namespace: &str, key: &str) -> Schema {
    Schema {
        namespace: namespace.to_owned(),
        tick_secs: 1,
        fields: vec![FieldSchema {
            key: key.to_owned(),
            rust_type: "u8".to_owned(),
            value_type: Some(lockstep::schema::ValueType::of::<u8>()),
            default: serde_json::json!(7),
            doc: "A field.".to_owned(),
        }],
    }
}

async fn schemas_are_kept_and_namespaces_listed(s: &Subject) {
    let one = s.namespace("schema-b");
    let two = s.namespace("schema-a");
    s.store.publish_schema(&schema(&one, "x")).await.unwrap();
    s.store.publish_schema(&schema(&two, "y")).await.unwrap();
    s.commit(&set(&two, "y", "1", NOW)).await.unwrap();
    assert_eq!(s.store.schema(&one).await.unwrap(), Some(schema(&one, "x")));
    // Publishing again replaces it, and keeps the registry's entries.
    s.store.publish_schema(&schema(&two, "z")).await.unwrap();
    assert_eq!(s.store.schema(&two).await.unwrap(), Some(schema(&two, "z")));
    assert_eq!(s.values(&two, "y").await.len(), 1);
    assert_eq!(s.store.schema("never-published").await.unwrap(), None);
    let names = s.store.namespaces().await.unwrap();
    assert!(names.contains(&one) && names.contains(&two), "{names:?}");
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted: {names:?}");
}

/// Two builds of one registry (a field's type changed between them)
/// publish their schemas: the store keeps both, by digest, and the last one
/// as the latest; a fetch naming a build's schema says whether the store
/// holds that very one, with or without a report.
async fn schemas_are_kept_by_digest_for_every_build(s: &Subject) {
    let ns = s.namespace("builds");
    let old = schema(&ns, "a");
    let mut new = old.clone();
    new.fields[0].rust_type = "u32".to_owned();
    new.fields[0].value_type = Some(lockstep::schema::ValueType::of::<u32>());
    let never = schema(&ns, "b");
    let (a, b, c) = (
        StoredSchema::of(&old),
        StoredSchema::of(&new),
        StoredSchema::of(&never),
    );
    assert!(a.digest() != b.digest() && a.digest() != c.digest());
    s.store.publish_schema(&old).await.unwrap();
    s.store.publish_schema(&new).await.unwrap();
    let mut kept = s.store.records(&ns).await.unwrap().schemas;
    kept.sort_by(|x, y| x.digest().cmp(y.digest()));
    let mut published = vec![a.clone(), b.clone()];
    published.sort_by(|x, y| x.digest().cmp(y.digest()));
    assert_eq!(kept, published);
    let read: Vec<Schema> = kept.iter().map(|k| k.read().unwrap()).collect();
    assert!(read.contains(&old) && read.contains(&new), "{read:?}");
    assert_eq!(s.store.schema(&ns).await.unwrap(), Some(new.clone()));
    let with = report("p1", r#"{"id":"p1"}"#, 60_000);
    for report in [None, Some(&with)] {
        let held = async |named: Option<&StoredSchema>| {
            let fetch = Fetch::new(&ns, &["a"]).reporting(report).publishing(named);
            s.store.fetch_with(fetch).await.unwrap().schema_held
        };
        assert!(held(Some(&a)).await, "{report:?}");
        assert!(held(Some(&b)).await, "{report:?}");
        assert!(!held(Some(&c)).await, "{report:?}");
        assert!(held(None).await, "{report:?}");
    }
    // Another registry holds none of them.
    let other = s.namespace("builds-other");
    let fetch = Fetch::new(&other, &["a"]).publishing(Some(&a));
    assert!(!s.store.fetch_with(fetch).await.unwrap().schema_held);
    assert!(s.store.records(&other).await.unwrap().schemas.is_empty());
}

async fn names_the_layout_cannot_hold_are_refused(s: &Subject) {
    let at = TICK.ceil(s.now().await + 60_000);
    for bad in [
        "",
        "a b",
        "a.b",
        "a{b",
        "a*",
        "a'b",
        "a;b",
        "ä",
        &"x".repeat(101),
    ] {
        // A write never reaches a store with one: its builder is the gate.
        let err = lockstep_suite::raw_builder(bad, TICK, "test", vec![(NOW, vec![("a", "1")])])
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
        // The calls that take a name as it comes refuse it in the store.
        let err = s.store.fetch(bad, &["a"]).await.unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
        let err = s.store.cancel(bad, TICK, "a", at).await.unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
        let err = s.store.cancel("ok", TICK, bad, at).await.unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
    }
    assert!(
        !s.store
            .namespaces()
            .await
            .unwrap()
            .iter()
            .any(|n| n.contains(' '))
    );
}

async fn concurrent_writers_lose_nothing(s: &Subject) {
    let ns = s.namespace("concurrent");
    let base = TICK.ceil(s.now().await + 30_000);
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = s.store.clone();
        let ns = ns.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..8 {
                let own = format!("w{writer}");
                let value = format!("{writer}");
                // Each writer its own field, and all of them one shared slot.
                for (key, at) in [(own.as_str(), base + i * 1000), ("shared", base)] {
                    store
                        .commit(&set(&ns, key, &value, StepAt::At(at)))
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let keys: Vec<String> = (0..8).map(|w| format!("w{w}")).collect();
    let mut asked: Vec<&str> = keys.iter().map(String::as_str).collect();
    asked.push("shared");
    let fetched = s.store.fetch(&ns, &asked).await.unwrap();
    for key in &keys {
        assert_eq!(
            fetched.fields[key.as_str()].len(),
            8,
            "{key}: an entry was lost"
        );
    }
    let shared = &fetched.fields["shared"];
    assert_eq!(shared.len(), 1);
    assert!(matches!(
        shared[0].value.as_deref(),
        Ok("0" | "1" | "2" | "3" | "4" | "5" | "6" | "7")
    ));
}

/// How far in the past planted entries end: a few ticks, so that the
/// horizon is well after them.
fn past(now: Millis, n: usize, i: usize) -> Millis {
    TICK.floor(now) - ((n - i) as Millis + 2) * 1000
}

async fn memory_subject() -> Subject {
    memory_behind(|memory| Arc::new(memory))
}

/// A store of a kind lockstep does not ship, defined outside it (the
/// suite's forwarding store, over a memory store): one line in the list
/// above runs every check on it.
async fn toy_subject() -> Subject {
    memory_behind(|memory| Arc::new(lockstep_suite::Forwarding::new(memory)))
}

/// A memory store, as the subject's store makes of it.
fn memory_behind(store: fn(MemoryStore) -> Arc<dyn Store>) -> Subject {
    // A manual clock: planting is writing, then letting time pass.
    let clock = ManualClock::new(chrono::Utc::now());
    let driven = clock.clone();
    let memory = MemoryStore::with_clock(&clock);
    let placer = memory.clone();
    let store = store(memory);
    let planter = store.clone();
    let plant: Plant = Box::new(move |ns, key, n| {
        let store = planter.clone();
        let clock = clock.clone();
        Box::pin(async move {
            let mut w = Write::builder(ns, TICK).by("plant");
            for i in 0..n {
                if i > 0 {
                    w = w.then_after(Duration::from_secs(1));
                }
                w = w.set(key.as_str(), serde_json::json!(i));
            }
            let w = w.build().unwrap();
            let instants = store.commit(&w).await.unwrap().instants;
            let last = *instants.last().unwrap();
            clock.advance_to(lockstep_time(last + 3_000)).await;
        })
    });
    // Placing is what a hand does: the memory store's `place`.
    let place: Place = Box::new(move |ns, key, entries| {
        let memory = placer.clone();
        Box::pin(async move {
            let entries: Vec<(Millis, &str)> =
                entries.iter().map(|(at, v)| (*at, v.as_str())).collect();
            memory.place(&ns, &key, &entries);
        })
    });
    Subject {
        clock: Some(driven),
        ..Subject::new(store, plant, place, ())
    }
}

fn lockstep_time(at: Millis) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(at).unwrap()
}

/// The store's clock, in ms, by a fetch.
async fn store_now(store: &dyn Store) -> Millis {
    let fetched = store.fetch("clock", &[]).await.unwrap();
    fetched.store_micros.expect("the store says its time") / 1000
}

async fn redis_subject() -> Subject {
    let server = Arc::new(RedisServer::start());
    let store: Arc<dyn Store> = Arc::new(RedisStore::open(&server.url()).unwrap());
    let clock = store.clone();
    let planter = server.clone();
    let plant: Plant = Box::new(move |ns, key, n| {
        let server = planter.clone();
        let clock = clock.clone();
        Box::pin(async move {
            let now = store_now(&*clock).await;
            let hash = format!("lockstep:{{{ns}}}:field:{key}");
            for i in 0..n {
                let at = past(now, n, i);
                let envelope = format!(
                    r#"{{"f":1,"v":{i},"w":"planted","t":{},"by":"plant"}}"#,
                    at - 5_000
                );
                let _: () = server.cmd(&["HSET", &hash, &at.to_string(), &envelope]);
            }
        })
    });
    let placer = server.clone();
    let place: Place = Box::new(move |ns, key, entries| {
        let server = placer.clone();
        Box::pin(async move {
            let hash = format!("lockstep:{{{ns}}}:field:{key}");
            for (at, value) in entries {
                let envelope = format!(
                    r#"{{"f":1,"v":{value},"w":"placed","t":{},"by":"place"}}"#,
                    at - 5_000
                );
                let _: () = server.cmd(&["HSET", &hash, &at.to_string(), &envelope]);
            }
        })
    });
    let refuser = server.clone();
    let refuse: Refuse = Box::new(move |ns| {
        // A fleet key of the wrong type: the script refuses the record.
        let _: () = refuser.cmd(&["SET", &format!("lockstep:{{{ns}}}:fleet"), "not a hash"]);
        Box::pin(async {})
    });
    Subject::new(store, plant, place, server).refusing_records(refuse)
}

/// Rows "written long ago" in a SQL store, as `INSERT` statements.
fn planted_rows(ns: &str, key: &str, now: Millis, n: usize) -> Vec<String> {
    let entries: Vec<(Millis, String)> = (0..n).map(|i| (past(now, n, i), i.to_string())).collect();
    rows(ns, key, &entries, "planted")
}

/// `entries` of a field as rows of a SQL store, by `INSERT` statements of
/// the write `write_id` (the values written as SQL literals: no backslash,
/// which MySQL reads as an escape).
fn rows(ns: &str, key: &str, entries: &[(Millis, String)], write_id: &str) -> Vec<String> {
    entries
        .iter()
        .map(|(at, value)| {
            assert!(
                !value.contains('\\'),
                "no backslash in a value written as SQL"
            );
            format!(
                "INSERT INTO lockstep_entries (namespace, field, at_ms, value, write_id, \
                 written_at, writer) VALUES ('{ns}', '{key}', {at}, '{}', '{write_id}', {}, \
                 'plant')",
                value.replace('\'', "''"),
                at - 5_000
            )
        })
        .collect()
}

async fn postgres_subject() -> Subject {
    let schema = Arc::new(PostgresSchema::create());
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(schema.url()).unwrap());
    let clock = store.clone();
    let planter = schema.clone();
    let plant: Plant = Box::new(move |ns, key, n| {
        let schema = planter.clone();
        let clock = clock.clone();
        Box::pin(async move {
            let now = store_now(&*clock).await;
            let rows = planted_rows(&ns, &key, now, n);
            let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
            schema.execute(&rows);
        })
    });
    let placer = schema.clone();
    let place: Place = Box::new(move |ns, key, entries| {
        let schema = placer.clone();
        Box::pin(async move {
            let rows = rows(&ns, &key, &entries, "placed");
            let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
            schema.execute(&rows);
        })
    });
    let refuser = schema.clone();
    let refuse: Refuse = Box::new(move |ns| {
        refuser.execute(&[&refuse_check(&ns, '"')]);
        Box::pin(async {})
    });
    Subject::new(store, plant, place, schema).refusing_records(refuse)
}

/// A constraint that refuses the records of `ns` (`quote` quotes its name).
fn refuse_check(ns: &str, quote: char) -> String {
    format!(
        "ALTER TABLE lockstep_reports ADD CONSTRAINT {quote}refuse {ns}{quote} \
         CHECK (namespace <> '{ns}')"
    )
}

async fn sqlite_subject() -> Subject {
    let file = SqliteFile::create();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&file.url()).unwrap());
    let clock = store.clone();
    let url = file.url();
    let plant: Plant = Box::new(move |ns, key, n| {
        let clock = clock.clone();
        let url = url.clone();
        Box::pin(async move {
            let now = store_now(&*clock).await;
            sqlite_execute(&url, planted_rows(&ns, &key, now, n)).await;
        })
    });
    let url = file.url();
    let place: Place = Box::new(move |ns, key, entries| {
        let url = url.clone();
        Box::pin(async move { sqlite_execute(&url, rows(&ns, &key, &entries, "placed")).await })
    });
    let url = file.url();
    let refuse: Refuse = Box::new(move |ns| {
        let trigger = format!(
            "CREATE TRIGGER \"refuse {ns}\" BEFORE INSERT ON lockstep_reports \
             WHEN NEW.namespace = '{ns}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        );
        let url = url.clone();
        Box::pin(async move { sqlite_execute(&url, vec![trigger]).await })
    });
    Subject::new(store, plant, place, file).refusing_records(refuse)
}

/// Runs `statements` on the SQLite file of `url`, in one transaction.
async fn sqlite_execute(url: &str, statements: Vec<String>) {
    use sqlx::Connection;

    let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
    let mut tx = c.begin().await.unwrap();
    for statement in statements {
        sqlx::Executor::execute(&mut *tx, statement.as_str())
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    c.close().await.unwrap();
}

/// Every process on the machine reads the same clock: SQLite's is this
/// machine's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_store_clock_is_this_machines() {
    let file = SqliteFile::create();
    let fetched = SqliteStore::open(&file.url())
        .unwrap()
        .fetch("clock", &[])
        .await
        .unwrap();
    let local = chrono::Utc::now().timestamp_micros();
    assert!((fetched.store_micros.unwrap() - local).abs() < 50_000);
}

/// The URL alone picks the store, whatever backend a registry declares:
/// `lockstep::store::open` (what registries and the CLI use) on each scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_picks_the_backend() {
    let file = SqliteFile::create();
    let schema = PostgresSchema::create();
    let urls = [
        (file.url(), file.url()),
        (
            format!("sqlite:{}?mode=rwc", file.path().display()),
            String::new(),
        ),
        (schema.url().to_owned(), schema.url().to_owned()),
    ];
    for (i, (url, shown)) in urls.iter().enumerate() {
        let store = lockstep::store::open(url).unwrap();
        if !shown.is_empty() {
            assert_eq!(store.describe(), lockstep::store::redact(shown));
        }
        let key = format!("k{i}");
        store.commit(&set("picked", &key, "1", NOW)).await.unwrap();
        let fetched = store.fetch("picked", &[&key]).await.unwrap();
        assert_eq!(fetched.fields[key.as_str()].len(), 1, "{url}");
    }
    // Both SQLite URLs name one file.
    let store = lockstep::store::open(&file.url()).unwrap();
    let fetched = store.fetch("picked", &["k0", "k1"]).await.unwrap();
    assert!(fetched.fields.values().all(|e| e.len() == 1), "{fetched:?}");
    for bad in [
        "sqlite::memory:",
        "sqlite://x.db?mode=memory",
        "postgres://h:notaport/db",
    ] {
        let err = lockstep::store::open(bad).err().expect(bad);
        assert!(matches!(err, Error::Url { .. }), "{bad}: {err}");
    }
}

/// The SQL layout dropped under a store that is using it (an administrator,
/// a restore of an older dump) comes back empty at the next call, and the
/// next write creates a new epoch: registries see a lost store, as with a
/// Redis that restarted empty.
async fn dropped_tables_come_back_empty_with_a_new_epoch(store: &dyn Store, drop: impl Fn()) {
    store.commit(&set("dropped", "a", "1", NOW)).await.unwrap();
    let before = store.fetch("dropped", &["a"]).await.unwrap().epoch.unwrap();
    drop();
    let fetched = store.fetch("dropped", &["a"]).await.unwrap();
    assert_eq!(fetched.epoch, None, "{fetched:?}");
    assert!(fetched.fields["a"].is_empty());
    store.commit(&set("dropped", "a", "2", NOW)).await.unwrap();
    let after = store.fetch("dropped", &["a"]).await.unwrap().epoch.unwrap();
    assert_ne!(after.id, before.id);
}

const DROP_TABLES: &str = "DROP TABLE lockstep_entries, lockstep_meta, lockstep_writes";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tables_dropped_under_the_store_come_back() {
    let schema = PostgresSchema::create();
    let store = PostgresStore::open(schema.url()).unwrap();
    dropped_tables_come_back_empty_with_a_new_epoch(&store, || schema.execute(&[DROP_TABLES]))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_tables_dropped_under_the_store_come_back() {
    let file = SqliteFile::create();
    let store = SqliteStore::open(&file.url()).unwrap();
    let url = file.url();
    dropped_tables_come_back_empty_with_a_new_epoch(&store, || {
        let url = url.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    use sqlx::Connection;
                    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                    for table in ["lockstep_entries", "lockstep_meta", "lockstep_writes"] {
                        let drop = format!("DROP TABLE {table}");
                        sqlx::Executor::execute(&mut c, drop.as_str())
                            .await
                            .unwrap();
                    }
                })
        })
        .join()
        .unwrap()
    })
    .await;
}

/// A connection the server closes under an idle store (a restart, an idle
/// timeout, an administrator) is replaced within the next call: fetches and
/// commits go on without an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_connection_closed_by_the_server_is_replaced_within_the_call() {
    let schema = PostgresSchema::create();
    let app = format!("lockstep_closed_{}", std::process::id());
    let store = PostgresStore::open(&format!("{}&application_name={app}", schema.url())).unwrap();
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'"
    );
    store.commit(&set("closed", "a", "1", NOW)).await.unwrap();
    schema.execute(&[&terminate]);
    assert_eq!(
        store.fetch("closed", &["a"]).await.unwrap().fields["a"].len(),
        1
    );
    schema.execute(&[&terminate]);
    let far = TICK.ceil(
        store
            .fetch("clock", &[])
            .await
            .unwrap()
            .store_micros
            .unwrap()
            / 1000
            + 60_000,
    );
    schema.execute(&[&terminate]);
    store
        .commit(&set("closed", "a", "2", StepAt::At(far)))
        .await
        .unwrap();
    assert_eq!(
        store.fetch("closed", &["a"]).await.unwrap().fields["a"].len(),
        2
    );
}

async fn a_cancel_returns_the_entry_it_removed_as_stored(s: &Subject) {
    let ns = s.namespace("cancelled");
    let at = TICK.ceil(s.now().await + 30_000);
    let w = set(&ns, "a", r#"{"x": [1, "ü"]}"#, StepAt::At(at));
    s.commit(&w).await.unwrap();
    let removed = s.store.cancel(&ns, TICK, "a", at).await.unwrap();
    assert_eq!(removed.at, at);
    assert_eq!(removed.value.as_deref(), Ok(r#"{"x": [1, "ü"]}"#));
    let origin = removed.origin.expect("who wrote it");
    assert_eq!(
        (origin.write, origin.by),
        (w.id().to_owned(), w.by().to_owned())
    );
    assert!(s.entries(&ns, "a").await.is_empty());
}

async fn a_purge_removes_a_pending_entry_and_a_served_one_only_if_undecodable(s: &Subject) {
    let ns = s.namespace("purge");
    let at = TICK.ceil(s.now().await + 30_000);
    s.commit(&set(&ns, "a", "1", StepAt::At(at))).await.unwrap();
    s.store
        .purge(&ns, TICK, "a", &at.to_string(), false)
        .await
        .unwrap();
    assert!(s.entries(&ns, "a").await.is_empty());
    let absent = s.store.purge(&ns, TICK, "a", &at.to_string(), false).await;
    assert!(
        matches!(absent, Err(Error::NoSuchEntry { .. })),
        "{absent:?}"
    );
    // An entry any process may be serving stays, unless the caller found
    // that it does not decode.
    (s.plant)(ns.clone(), "p".to_owned(), 2).await;
    let past = s.entries(&ns, "p").await;
    let served = past[1].at.to_string();
    let refused = s.store.purge(&ns, TICK, "p", &served, false).await;
    assert!(
        matches!(refused, Err(Error::BeforeHorizon { .. })),
        "{refused:?}"
    );
    assert_eq!(s.entries(&ns, "p").await, past);
    s.store.purge(&ns, TICK, "p", &served, true).await.unwrap();
    assert_eq!(s.entries(&ns, "p").await, past[..1]);
}

async fn the_store_says_whether_it_holds_the_schema(s: &Subject) {
    let ns = s.namespace("held");
    assert!(!s.store.fetch(&ns, &["a"]).await.unwrap().schema_held);
    s.commit(&set(&ns, "a", "1", NOW)).await.unwrap();
    assert!(!s.store.fetch(&ns, &["a"]).await.unwrap().schema_held);
    s.store.publish_schema(&schema(&ns, "a")).await.unwrap();
    assert!(s.store.fetch(&ns, &["a"]).await.unwrap().schema_held);
}

/// MySQL or MariaDB: `LOCKSTEP_TEST_MYSQL`, else the local server on
/// 127.0.0.1:3306 as root, in a database of the test's own.
async fn mysql_subject() -> Subject {
    let db = Arc::new(lockstep_suite::sql::MysqlDatabase::create());
    let store: Arc<dyn Store> = Arc::new(lockstep::store::MysqlStore::open(&db.url()).unwrap());
    let clock = store.clone();
    let planter = db.clone();
    let plant: Plant = Box::new(move |ns, key, n| {
        let db = planter.clone();
        let clock = clock.clone();
        Box::pin(async move {
            let now = store_now(&*clock).await;
            let rows = planted_rows(&ns, &key, now, n);
            let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
            db.execute(&rows);
        })
    });
    let placer = db.clone();
    let place: Place = Box::new(move |ns, key, entries| {
        let db = placer.clone();
        Box::pin(async move {
            let rows = rows(&ns, &key, &entries, "placed");
            let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
            db.execute(&rows);
        })
    });
    let refuser = db.clone();
    let refuse: Refuse = Box::new(move |ns| {
        refuser.execute(&[&refuse_check(&ns, '`')]);
        Box::pin(async {})
    });
    Subject::new(store, plant, place, db).refusing_records(refuse)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_tables_dropped_under_the_store_come_back() {
    let db = lockstep_suite::sql::MysqlDatabase::create();
    let store = lockstep::store::MysqlStore::open(&db.url()).unwrap();
    dropped_tables_come_back_empty_with_a_new_epoch(&store, || db.execute(&[DROP_TABLES])).await;
}

fn report(process: &str, body: &str, expires_after: Millis) -> Record {
    Record::new(process, body, expires_after)
}

async fn every_write_cancel_and_purge_advances_the_revision(s: &Subject) {
    let ns = s.namespace("revision");
    let revision = |ns: String| {
        let store = s.store.clone();
        async move { store.fetch(&ns, &["a", "b"]).await.unwrap().revision }
    };
    assert_eq!(revision(ns.clone()).await, 0);
    let at = TICK.ceil(s.now().await + 30_000);
    s.commit(&set(&ns, "a", "1", StepAt::At(at))).await.unwrap();
    let first = revision(ns.clone()).await;
    assert!(first > 0);
    let later = TICK.ceil(at + 5_000);
    s.commit(&write(
        &ns,
        vec![(StepAt::At(later), vec![("a", "2"), ("b", "3")])],
    ))
    .await
    .unwrap();
    let second = revision(ns.clone()).await;
    assert!(second > first);
    // Each entry carries the revision that wrote it.
    let a = s.entries(&ns, "a").await;
    let revisions: Vec<u64> = a
        .iter()
        .map(|e| e.origin.as_ref().unwrap().revision)
        .collect();
    assert_eq!(revisions, [first, second]);
    assert_eq!(
        s.entries(&ns, "b").await[0]
            .origin
            .as_ref()
            .unwrap()
            .revision,
        second
    );
    s.store.cancel(&ns, TICK, "a", at).await.unwrap();
    let third = revision(ns.clone()).await;
    assert!(third > second);
    s.store
        .purge(&ns, TICK, "b", &later.to_string(), false)
        .await
        .unwrap();
    assert!(revision(ns.clone()).await > third);
    // A refused write advances nothing.
    let before = revision(ns.clone()).await;
    let refused = s
        .commit(&set(&ns, "a", "9", StepAt::At(s.now().await - 60_000)))
        .await;
    assert!(refused.is_err());
    assert_eq!(revision(ns.clone()).await, before);
    // Other namespaces have revisions of their own.
    assert_eq!(revision(s.namespace("revision-other")).await, 0);
}

async fn a_fetch_with_a_report_records_the_process_and_the_revision_it_served(s: &Subject) {
    let ns = s.namespace("reported");
    assert!(s.store.records(&ns).await.unwrap().records.is_empty());
    let body = r#"{"id":"p1","host":"h","pid":7,"program":"app"}"#;
    let before = s.now().await;
    let fetched = s
        .store
        .fetch_with(Fetch::new(&ns, &["a"]).reporting(Some(&report("p1", body, 60_000))))
        .await
        .unwrap();
    assert_eq!(fetched.revision, 0);
    let reports = s.store.records(&ns).await.unwrap();
    assert_eq!(reports.records.len(), 1, "{reports:?}");
    let record = &reports.records[0];
    assert_eq!(
        (record.process.as_str(), record.body.as_str()),
        ("p1", body)
    );
    assert_eq!(record.revision, 0);
    assert!(record.seen >= before - 1_000 && record.seen <= reports.store_now);
    // A write: the record still says what the process was served, until
    // its next fetch.
    let at = TICK.ceil(s.now().await + 30_000);
    s.commit(&set(&ns, "a", "1", StepAt::At(at))).await.unwrap();
    assert_eq!(s.store.records(&ns).await.unwrap().records[0].revision, 0);
    let fetched = s
        .store
        .fetch_with(Fetch::new(&ns, &["a"]).reporting(Some(&report("p1", body, 60_000))))
        .await
        .unwrap();
    let records = s.store.records(&ns).await.unwrap().records;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].revision, fetched.revision);
    assert!(fetched.revision > 0);
    // A fetch without a report records nothing.
    s.store.fetch(&ns, &["a"]).await.unwrap();
    assert_eq!(s.store.records(&ns).await.unwrap().records, records);
}

async fn a_report_the_store_cannot_keep_is_left_out_and_the_fetch_served(s: &Subject) {
    let ns = s.namespace("unkept");
    s.commit(&set(&ns, "a", "1", NOW)).await.unwrap();
    let large = "x".repeat(MAX_RECORD_BYTES + 1);
    for report in [
        report("big", &large, 60_000),
        report("not a name", "{}", 60_000),
    ] {
        let fetched = s
            .store
            .fetch_with(Fetch::new(&ns, &["a"]).reporting(Some(&report)))
            .await
            .unwrap();
        assert_eq!(fetched.fields["a"].len(), 1, "the fetch is served");
    }
    assert!(s.store.records(&ns).await.unwrap().records.is_empty());
    // Reporting goes on: the next report that fits is kept.
    s.store
        .fetch_with(Fetch::new(&ns, &["a"]).reporting(Some(&report("p1", "{}", 60_000))))
        .await
        .unwrap();
    let records = s.store.records(&ns).await.unwrap().records;
    assert_eq!(records.len(), 1, "{records:?}");
}

async fn a_record_the_store_refuses_costs_the_fetch_nothing(s: &Subject) {
    let ns = s.namespace("refused");
    s.commit(&set(&ns, "a", "1", NOW)).await.unwrap();
    let refuse = s.refuse_records.as_ref().expect("a store that can refuse");
    refuse(ns.clone()).await;
    for _ in 0..3 {
        let fetched = s
            .store
            .fetch_with(Fetch::new(&ns, &["a"]).reporting(Some(&report("p1", "{}", 60_000))))
            .await
            .unwrap();
        assert_eq!(fetched.fields["a"].len(), 1, "the fetch is served");
    }
    // No record; the view may instead say why it cannot read them (Redis:
    // the fleet key is not a hash).
    let reports = s.store.records(&ns).await;
    assert!(
        reports.as_ref().map_or(true, |r| r.records.is_empty()),
        "{reports:?}"
    );
}

async fn a_report_expires_when_the_process_stops_fetching(s: &Subject) {
    let ns = s.namespace("expiring");
    let body = r#"{"id":"short"}"#;
    s.store
        .fetch_with(Fetch::new(&ns, &["a"]).reporting(Some(&report("short", body, 1_500))))
        .await
        .unwrap();
    s.store
        .fetch_with(Fetch::new(&ns, &["a"]).reporting(Some(&report("long", body, 600_000))))
        .await
        .unwrap();
    let ids = |records: &[lockstep::store::driver::StoredRecord]| {
        let mut ids: Vec<String> = records.iter().map(|r| r.process.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(&s.store.records(&ns).await.unwrap().records),
        ["long", "short"]
    );
    s.pass(Duration::from_millis(2_500)).await;
    // Judged by the store's clock: gone from the view, whether or not a
    // later fetch has deleted it yet.
    assert_eq!(ids(&s.store.records(&ns).await.unwrap().records), ["long"]);
    s.store
        .fetch_with(Fetch::new(&ns, &["a"]).reporting(Some(&report("long", body, 600_000))))
        .await
        .unwrap();
    assert_eq!(ids(&s.store.records(&ns).await.unwrap().records), ["long"]);
}

async fn reports_are_kept_per_namespace_and_per_process(s: &Subject) {
    let ns = s.namespace("fleet");
    let other = s.namespace("fleet-other");
    for i in 0..5 {
        let id = format!("p{i}");
        let body = format!(r#"{{"id":"{id}","n":{i}}}"#);
        s.store
            .fetch_with(Fetch::new(&ns, &["a"]).reporting(Some(&report(&id, &body, 60_000))))
            .await
            .unwrap();
    }
    // A process fetching again replaces its record.
    let newer = r#"{"id":"p0","n":"again"}"#;
    s.store
        .fetch_with(Fetch::new(&ns, &["a"]).reporting(Some(&report("p0", newer, 60_000))))
        .await
        .unwrap();
    let records = s.store.records(&ns).await.unwrap().records;
    assert_eq!(records.len(), 5, "{records:?}");
    let p0 = records.iter().find(|r| r.process == "p0").unwrap();
    assert_eq!(p0.body, newer);
    assert!(s.store.records(&other).await.unwrap().records.is_empty());
    // The body is kept as sent, whatever characters it holds.
    let odd = r#"{"id":"p9","host":"it's \"quoted\" ü ' ; --"}"#;
    s.store
        .fetch_with(Fetch::new(&other, &["a"]).reporting(Some(&report("p9", odd, 60_000))))
        .await
        .unwrap();
    assert_eq!(s.store.records(&other).await.unwrap().records[0].body, odd);
    // Namespaces only processes reported to are no registries.
    let listed = s.store.namespaces().await.unwrap();
    assert!(
        !listed.contains(&ns) && !listed.contains(&other),
        "{listed:?}"
    );
}

/// A conditional fetch of `keys` holding `held`, with or without a report.
async fn conditional(
    s: &Subject,
    ns: &str,
    keys: &[&str],
    held: Option<&Held>,
    report: Option<&Record>,
) -> Fetched {
    s.store
        .fetch_with(Fetch::new(ns, keys).reporting(report).holding(held))
        .await
        .unwrap()
}

/// `fetched` without the store's clock, to compare two answers.
fn timeless(fetched: Fetched) -> Fetched {
    Fetched {
        store_micros: None,
        ..fetched
    }
}

async fn an_unchanged_registry_answers_unchanged_with_no_entries(s: &Subject) {
    let ns = s.namespace("unchanged");
    let keys = ["a", "b"];
    // A registry never written: nothing to hold, a full (empty) answer.
    let empty = conditional(s, &ns, &keys, None, None).await;
    assert!(!empty.unchanged && empty.epoch.is_none() && empty.held().is_none());
    let at = TICK.ceil(s.now().await + 30_000);
    s.commit(&write(
        &ns,
        vec![(StepAt::At(at), vec![("a", "1"), ("b", "2")])],
    ))
    .await
    .unwrap();
    (s.plant)(ns.clone(), "a".to_owned(), 3).await;
    let full = s.store.fetch(&ns, &keys).await.unwrap();
    assert!(!full.unchanged);
    assert_eq!(full.fields["a"].len(), 4, "{full:?}");
    let held = full.held().expect("a registry written has an epoch");
    for report in [None, Some(report("p1", r#"{"id":"p1"}"#, 60_000))] {
        let before = s.now().await;
        let answer = conditional(s, &ns, &keys, Some(&held), report.as_ref()).await;
        assert!(answer.unchanged, "{answer:?}");
        assert!(
            answer.fields.is_empty() && answer.unplaced.is_empty(),
            "{answer:?}"
        );
        assert_eq!(
            (&answer.epoch, answer.revision),
            (&full.epoch, full.revision)
        );
        assert!(!answer.schema_held);
        let clock = answer.store_micros.expect("the store says its time") / 1000;
        assert!(clock >= before - 1_000, "{clock} {before}");
        if let Some(report) = report {
            // The unchanged fetch still records the process, with the
            // revision it holds.
            let records = s.store.records(&ns).await.unwrap().records;
            assert_eq!(records.len(), 1, "{records:?}");
            assert_eq!(
                (records[0].process.as_str(), records[0].revision),
                (report.process(), full.revision)
            );
        }
    }
    // Publishing a schema changes no entry: still unchanged, and it says so.
    s.store.publish_schema(&schema(&ns, "a")).await.unwrap();
    let answer = conditional(s, &ns, &keys, Some(&held), None).await;
    assert!(answer.unchanged && answer.schema_held, "{answer:?}");
    // A plain fetch is always full.
    assert_eq!(
        timeless(s.store.fetch(&ns, &keys).await.unwrap()),
        timeless(Fetched {
            schema_held: true,
            ..full
        })
    );
}

async fn any_commit_cancel_or_purge_makes_the_next_conditional_fetch_full(s: &Subject) {
    let ns = s.namespace("changed");
    let keys = ["a", "b"];
    let report = report("p1", r#"{"id":"p1"}"#, 60_000);
    let at = TICK.ceil(s.now().await + 30_000);
    s.commit(&set(&ns, "a", "1", StepAt::At(at))).await.unwrap();
    let mut held = s.store.fetch(&ns, &keys).await.unwrap().held().unwrap();
    // Each change, then: the next conditional fetch (with and without a
    // report) is full and equal to a plain fetch; the one after it,
    // holding what it returned, is unchanged.
    let later = TICK.ceil(at + 5_000);
    let mut step = 0;
    loop {
        match step {
            0 => {
                s.commit(&set(&ns, "b", "2", StepAt::At(later)))
                    .await
                    .unwrap();
            }
            1 => {
                s.commit(&set(&ns, "a", "3", StepAt::At(later)))
                    .await
                    .unwrap();
            }
            2 => {
                s.store.cancel(&ns, TICK, "a", at).await.unwrap();
            }
            3 => {
                s.store
                    .purge(&ns, TICK, "b", &later.to_string(), false)
                    .await
                    .unwrap();
            }
            _ => break,
        }
        for with in [None, Some(&report)] {
            let answer = conditional(s, &ns, &keys, Some(&held), with).await;
            assert!(!answer.unchanged, "after step {step}: {answer:?}");
            assert_ne!(answer.revision, held.revision);
            let full = s.store.fetch(&ns, &keys).await.unwrap();
            assert_eq!(timeless(answer.clone()), timeless(full), "step {step}");
            let next = answer.held().unwrap();
            let again = conditional(s, &ns, &keys, Some(&next), with).await;
            assert!(again.unchanged, "after step {step}: {again:?}");
            if with.is_some() {
                held = next;
            }
        }
        step += 1;
    }
    // What the last full answer said: `a` at `later` only.
    let full = s.store.fetch(&ns, &keys).await.unwrap();
    let values: Vec<_> = full.fields["a"]
        .iter()
        .map(|e| (e.at, e.value.clone()))
        .collect();
    assert_eq!(values, [(later, Ok("3".to_owned()))]);
    assert!(full.fields["b"].is_empty());
    // A refused write changes nothing: still unchanged.
    let refused = s
        .commit(&set(&ns, "a", "9", StepAt::At(s.now().await - 60_000)))
        .await;
    assert!(refused.is_err());
    assert!(
        conditional(s, &ns, &keys, Some(&held), None)
            .await
            .unchanged
    );
}

async fn a_different_epoch_or_revision_answers_in_full(s: &Subject) {
    let ns = s.namespace("epochs");
    let keys = ["a"];
    let at = TICK.ceil(s.now().await + 30_000);
    s.commit(&set(&ns, "a", "1", StepAt::At(at))).await.unwrap();
    s.commit(&set(&ns, "a", "2", StepAt::At(TICK.ceil(at + 5_000))))
        .await
        .unwrap();
    let full = s.store.fetch(&ns, &keys).await.unwrap();
    let held = full.held().unwrap();
    assert!(held.revision >= 2);
    let others = [
        // A store that lost its data and was written again starts its
        // revisions over: the same revision of another epoch is another
        // registry.
        Held {
            epoch: format!("{}x", held.epoch),
            revision: held.revision,
        },
        Held {
            epoch: String::new(),
            revision: held.revision,
        },
        Held {
            epoch: held.epoch.to_uppercase(),
            revision: held.revision,
        },
        Held {
            revision: held.revision - 1,
            ..held.clone()
        },
        Held {
            revision: held.revision + 1,
            ..held.clone()
        },
        Held {
            revision: u64::MAX,
            ..held.clone()
        },
    ];
    for other in others.iter().filter(|o| **o != held) {
        for with in [None, Some(&report("p", "{}", 60_000))] {
            let answer = conditional(s, &ns, &keys, Some(other), with).await;
            assert!(!answer.unchanged, "{other:?}: {answer:?}");
            assert_eq!(timeless(answer), timeless(full.clone()), "{other:?}");
        }
    }
    // Another namespace at the same epoch and revision is not this one.
    let elsewhere = s.namespace("epochs-other");
    let answer = conditional(s, &elsewhere, &keys, Some(&held), None).await;
    assert!(!answer.unchanged && answer.epoch.is_none(), "{answer:?}");
}

/// A JSON string of `bytes` bytes.
fn text_of(bytes: usize) -> String {
    format!("\"{}\"", "x".repeat(bytes - 2))
}

/// A write of `value` to each of `keys` at each instant of `at`.
fn spread(ns: &str, keys: &[&str], at: impl Iterator<Item = Millis>, value: &str) -> Write {
    let steps = at
        .map(|at| {
            let values = keys.iter().map(|k| (*k, value)).collect();
            (StepAt::At(at), values)
        })
        .collect();
    write(ns, steps)
}

/// Whether `bytes`, what a store says `entries` values of `values` bytes
/// in all hold, is that: the values' bytes, or (Redis) their envelopes', at
/// most 256 bytes more each.
fn counted(bytes: u64, values: u64, entries: u64) -> bool {
    (values..=values + 256 * entries).contains(&bytes)
}

async fn a_write_beyond_the_pending_bound_is_refused_whole(s: &Subject) {
    let ns = s.namespace("pending");
    let keys = ["p0", "p1", "p2", "small", "placed"];
    // The registry's fields, as its processes publish them: what a store
    // weighs (Redis: the fields lockstep wrote and those a schema names).
    let mut published = schema(&ns, keys[0]);
    published.fields = keys
        .iter()
        .map(|k| FieldSchema {
            key: (*k).to_owned(),
            ..published.fields[0].clone()
        })
        .collect();
    s.store.publish_schema(&published).await.unwrap();
    let base = TICK.ceil(s.now().await + 300_000);
    let tick = |i: i64| base + i * 1000;
    // 69 values of 60 000 bytes, 4 140 000 in all, just under the bound,
    // in three commits.
    let value = text_of(60_000);
    for key in ["p0", "p1", "p2"] {
        s.commit(&spread(&ns, &[key], (0..23).map(tick), &value))
            .await
            .unwrap();
    }
    let pending = 69 * 60_000;
    assert!(pending < MAX_PENDING_BYTES && pending + 60_000 > MAX_PENDING_BYTES);
    let before = s.store.fetch(&ns, &keys).await.unwrap();
    // One more value would take them over: refused whole, a small value in
    // another step too, and the revision is not advanced.
    let over = write(
        &ns,
        vec![
            (StepAt::At(tick(0)), vec![("small", "1")]),
            (StepAt::At(tick(23)), vec![("p0", value.as_str())]),
        ],
    );
    let refused = s.commit(&over).await.unwrap_err();
    let Error::TooMuchPending {
        namespace,
        pending: after,
        limit,
    } = &refused
    else {
        panic!("{refused}");
    };
    assert_eq!(
        (namespace.as_str(), *limit),
        (ns.as_str(), MAX_PENDING_BYTES)
    );
    assert!(counted(*after, pending + 1 + 60_000, 71), "{refused}");
    let unchanged = s.store.fetch(&ns, &keys).await.unwrap();
    assert_eq!(timeless(unchanged), timeless(before.clone()));
    // What a write replaces (the same field and instant) is not counted
    // twice: a value 500 bytes longer in place of one passes.
    let longer = text_of(60_500);
    s.commit(&spread(&ns, &["p0"], [tick(0)].into_iter(), &longer))
        .await
        .unwrap();
    let pending = pending + 500;
    let p0 = s.entries(&ns, "p0").await;
    assert_eq!(p0.len(), 23);
    assert_eq!(p0[0].value.as_deref(), Ok(longer.as_str()));
    // Beyond the bound already (entries put there by hand): a write that
    // does not grow them passes, one that does is refused.
    (s.place)(
        ns.clone(),
        "placed".to_owned(),
        vec![(tick(100), value.clone()), (tick(101), value.clone())],
    )
    .await;
    let pending = pending + 120_000;
    assert!(pending > MAX_PENDING_BYTES);
    s.commit(&spread(&ns, &["p1"], [tick(0)].into_iter(), "2"))
        .await
        .unwrap();
    let pending = pending - 60_000 + 1;
    assert!(pending > MAX_PENDING_BYTES);
    let same = text_of(60_000).replace('x', "y");
    s.commit(&spread(&ns, &["p2"], [tick(0)].into_iter(), &same))
        .await
        .unwrap();
    let before = s.store.fetch(&ns, &keys).await.unwrap();
    assert_eq!(before.fields["p1"][0].value.as_deref(), Ok("2"));
    assert_eq!(before.fields["p2"][0].value.as_deref(), Ok(same.as_str()));
    assert_eq!(before.fields["placed"].len(), 2);
    let one_more = spread(&ns, &["small"], [tick(5)].into_iter(), &value);
    let refused = s.commit(&one_more).await.unwrap_err();
    assert!(
        matches!(&refused, Error::TooMuchPending { pending: p, .. } if counted(*p, pending + 60_000, 72)),
        "{refused}"
    );
    let unchanged = s.store.fetch(&ns, &keys).await.unwrap();
    assert_eq!(timeless(unchanged), timeless(before));
}

async fn a_fetch_ships_the_smallest_fields_within_its_budget(s: &Subject) {
    let ns = s.namespace("budget");
    let at = TICK.ceil(s.now().await + 300_000);
    s.commit(&write(
        &ns,
        vec![(StepAt::At(at), vec![("a", "1"), ("b", "true")])],
    ))
    .await
    .unwrap();
    // Fields of 2 089 500 bytes each (35 values of 59 700), one of
    // 2 686 500, and one value over the size limit (which counts as 0: it
    // is never shipped), put there by hand, each later than the last:
    // smallest first, ties by name, the fields up to m3 fit the budget
    // (30 603 bytes to spare, room for a store's envelope of each value;
    // the value over the limit, counted, would push m3 out), m4 and the
    // largest do not, though its name comes first.
    let value = text_of(59_700);
    let mut next = at + 60_000;
    let mut put = Vec::new();
    for (key, n) in [
        ("m0", 35),
        ("m1", 35),
        ("m2", 35),
        ("m3", 35),
        ("m4", 35),
        ("a_wide", 45),
    ] {
        let entries: Vec<(Millis, String)> =
            (0..n).map(|i| (next + i * 1000, value.clone())).collect();
        next += (n + 60) * 1000;
        (s.place)(ns.clone(), key.to_owned(), entries.clone()).await;
        put.push((key, entries));
    }
    // Over the limit even in an envelope.
    let huge = text_of(MAX_VALUE_BYTES + 10_000);
    (s.place)(ns.clone(), "huge".to_owned(), vec![(next, huge)]).await;
    let shipped = 1 + 4 + 4 * 35 * 59_700;
    assert!(shipped <= FETCH_BUDGET_BYTES && shipped + 35 * 59_700 > FETCH_BUDGET_BYTES);
    assert!(shipped + (MAX_VALUE_BYTES as u64 + 10_000) > FETCH_BUDGET_BYTES);
    let keys = ["a", "a_wide", "b", "huge", "m0", "m1", "m2", "m3", "m4"];
    let fetched = s.store.fetch(&ns, &keys).await.unwrap();
    assert_eq!(fetched.fields["a"][0].value.as_deref(), Ok("1"));
    assert_eq!(fetched.fields["b"][0].value.as_deref(), Ok("true"));
    assert_eq!(fetched.fields["huge"].len(), 1);
    for (key, entries) in &put {
        let got = &fetched.fields[*key];
        let instants: Vec<Millis> = got.iter().map(|e| e.at).collect();
        assert_eq!(
            instants,
            entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            "{key}: every instant"
        );
        if ["m0", "m1", "m2", "m3"].contains(key) {
            assert!(
                got.iter().all(|e| e.value.as_deref() == Ok(value.as_str())),
                "{key} is shipped"
            );
            continue;
        }
        let bytes = entries.len() as u64 * 59_700;
        for entry in got {
            let why = entry.value.as_ref().expect_err(key);
            let held = why
                .strip_prefix("not fetched: its field holds ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse::<u64>().ok());
            assert!(held.is_some_and(|n| n >= bytes), "{key}: {why}");
        }
    }
    assert!(fetched.unplaced.is_empty(), "{fetched:?}");
    // Nothing changed since: a conditional fetch still answers unchanged.
    let held = fetched.held().expect("a registry written has an epoch");
    for with in [None, Some(&report("p1", r#"{"id":"p1"}"#, 60_000))] {
        let answer = conditional(s, &ns, &keys, Some(&held), with).await;
        assert!(answer.unchanged && answer.fields.is_empty(), "{answer:?}");
    }
}
