//! The Redis backend against a real `redis-server` of the test's own.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use lockstep::store::driver::Record;
use lockstep::store::{Fetch, RedisStore, StepAt, Store, Write};
use lockstep::{Error, lockstep};
use lockstep_suite::{Hammer, RedisCluster, RedisServer, check, wait_for_async, wait_for_switch};

fn write(namespace: &str, key: &str, value: &str, at: StepAt) -> Write {
    lockstep_suite::raw_write(
        namespace,
        lockstep::Tick::new(Duration::from_secs(1)).unwrap(),
        "test",
        vec![(at, vec![(key, value)])],
    )
}

/// Twelve fields, fetched in one call.
#[lockstep(tick = "1s", store = "redis")]
struct Wide {
    f01: u8,
    f02: u16,
    f03: u32,
    f04: u64,
    f05: i8,
    f06: i16,
    f07: i32,
    f08: i64,
    f09: bool,
    f10: String,
    f11: Vec<u32>,
    f12: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fetch_per_tick_plus_one_at_start_whatever_the_number_of_fields() {
    let server = RedisServer::start();
    // Load the scripts first (the fetch with a report, as registries send
    // it, and without), so the count below is of fetches alone.
    let store = RedisStore::open(&server.url()).unwrap();
    let report = Record::new("loader".to_owned(), "{}".to_owned(), 1);
    store.fetch("wide", &[]).await.unwrap();
    store
        .fetch_with(Fetch::new("loader", &[]).reporting(Some(&report)))
        .await
        .unwrap();
    // And the publishing script, which the registry runs once after its
    // first fetch (an EVALSHA of its own, told apart below).
    store.publish_schema(&WIDE.schema()).await.unwrap();
    server.reset_stats();
    let started = Instant::now();
    WIDE.builder().url(server.url()).start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let [scripts, evalsha_ro, zadds] = server.calls_of(["evalsha", "evalsha_ro", "zadd"]);
    // The registry publishes its schema once, after its first fetch: a
    // script (and a ZADD) of its own; every other script is a fetch.
    let (fetches, records) = (scripts - 1, zadds - 1);
    let status = WIDE.status();
    println!(
        "{fetches} fetches in {elapsed:.2} s (status: {})",
        status.fetches
    );
    // One at start, then one per tick at this process's phase.
    let ticks = elapsed.floor() as u64;
    assert!(
        (1 + ticks - 1..=1 + ticks + 1).contains(&fetches),
        "{fetches} fetches in {elapsed:.2} s of a 1 s tick"
    );
    assert_eq!(fetches, status.fetches, "every fetch is one EVALSHA");
    // Each with its report, in that one round trip: none went without one
    // or fell back to a second, read-only one.
    assert_eq!(evalsha_ro, 0);
    assert_eq!(records, fetches, "one record per fetch");
    assert_eq!(server.calls("eval_ro") + server.calls("eval"), 0);
    assert_eq!(status.failed_fetches, 0);
    let fleet = WIDE.fleet().await.unwrap();
    assert_eq!(fleet.processes.len(), 1, "{fleet:?}");
}

#[lockstep(tick = "1s", store = "redis")]
struct Writes {
    #[lockstep(default = 1)]
    limit: u32,
    #[lockstep(default = "blue")]
    color: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_checked_by_the_store_clock_laid_out_for_redis_cli_and_flip_on_time() {
    let server = RedisServer::start();
    WRITES.builder().url(server.url()).start().await.unwrap();
    assert_eq!(WRITES.limit(), 1);
    assert_eq!(WRITES.status().epoch, None);

    // Refused before the horizon, by the store's clock; nothing written.
    let err = WRITES
        .schedule(Writes::LIMIT, 5, Utc::now())
        .await
        .unwrap_err();
    let Error::BeforeHorizon { earliest, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        *earliest > Utc::now() + chrono::Duration::seconds(1),
        "{err}"
    );
    let keys: Vec<String> = server.cmd(&["KEYS", "lockstep:{writes}:field:*"]);
    assert!(keys.is_empty(), "{keys:?}");

    // Several fields in one step switch together; the layout is readable.
    let at = WRITES
        .change()
        .set(Writes::LIMIT, 7)
        .set(Writes::COLOR, "green".to_string())
        .apply()
        .await
        .unwrap()[0];
    let stored: Vec<(String, String)> = server.cmd(&["HGETALL", "lockstep:{writes}:field:limit"]);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, at.timestamp_millis().to_string());
    let envelope: serde_json::Value = serde_json::from_str(&stored[0].1).unwrap();
    assert_eq!(envelope["f"], 1);
    assert_eq!(envelope["v"], 7);
    assert!(envelope["by"].as_str().unwrap().contains("pid"));
    let meta: std::collections::HashMap<String, String> =
        server.cmd(&["HGETALL", "lockstep:{writes}:meta"]);
    assert!(
        meta.contains_key("epoch") && meta.contains_key("created") && meta.contains_key("schema")
    );
    // The entry carries the revision its write made, the registry's last.
    assert_eq!(envelope["r"].to_string(), meta["revision"]);
    // The registry's own record, as the fleet view reads it.
    let fleet: std::collections::HashMap<String, String> =
        server.cmd(&["HGETALL", "lockstep:{writes}:fleet"]);
    assert_eq!(fleet.len(), 1, "{fleet:?}");
    let record: serde_json::Value = serde_json::from_str(fleet.values().next().unwrap()).unwrap();
    let body: serde_json::Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["pid"], std::process::id());

    // Never early: every read that ended before the instant, by the wall
    // clock read after it, saw the old values (judged by the clock, not by
    // when a sleep ended: on a loaded machine a sleep may end after it).
    loop {
        let seen = (WRITES.limit(), WRITES.color().to_string());
        if Utc::now() >= at {
            break;
        }
        assert_eq!(seen, (1, "blue".to_owned()), "switched early");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // 30 ms after the instant: both switched, together.
    let left = at + chrono::Duration::milliseconds(30) - Utc::now();
    tokio::time::sleep(left.to_std().unwrap_or_default()).await;
    let snapshot = WRITES.snapshot();
    assert_eq!((snapshot.limit, snapshot.color.as_str()), (7, "green"));
    let status = WRITES.status();
    assert_eq!(
        (status.flips, status.late_flips, status.rejected),
        (1, 0, 0)
    );
    assert!(status.epoch.is_some());
    let offset = status.clock_offset.unwrap();
    let error = status.clock_offset_error.unwrap();
    // Same machine: the offset is within the measurement's error (plus the
    // microsecond rounding of TIME).
    assert!(
        offset.abs() <= error + chrono::TimeDelta::microseconds(50),
        "offset {offset:?} error {error:?}"
    );

    // Cancel a pending entry; a ramp is one atomic write.
    let steps = WRITES.ramp(Writes::LIMIT, [10, 20, 30]).await.unwrap();
    WRITES.cancel(Writes::LIMIT, steps[2]).await.unwrap();
    let stored: Vec<(String, String)> = server.cmd(&["HGETALL", "lockstep:{writes}:field:limit"]);
    assert_eq!(stored.len(), 3, "{stored:?}");
}

#[tokio::test]
async fn a_retried_write_takes_effect_once_and_history_stays_bounded() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url()).unwrap();
    // Old entries, as if written long ago.
    for i in 0..40 {
        let _: () = server.cmd(&[
            "HSET",
            "lockstep:{hist}:field:x",
            &(1_000_000 + i * 1000).to_string(),
            &format!(r#"{{"f":1,"v":{i}}}"#),
        ]);
    }
    let w = write("hist", "x", "99", StepAt::Horizon { after: 0 });
    let first = store.commit(&w).await.unwrap();
    let again = store.commit(&w).await.unwrap();
    assert_eq!(first, again);
    let fetched = store.fetch("hist", &["x"]).await.unwrap();
    let entries = &fetched.fields["x"];
    // The active entry, HISTORY superseded ones, and the new pending one.
    assert_eq!(entries.len(), lockstep::store::HISTORY + 2);
    assert_eq!(entries.last().unwrap().value.as_deref(), Ok("99"));
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.value.as_deref() == Ok("99"))
            .count(),
        1
    );
}

#[lockstep(tick = "1s", store = "redis")]
struct Lossy {
    level: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_comes_back_empty_is_detected_and_the_last_timeline_kept() {
    let mut server = RedisServer::start();
    LOSSY.builder().url(server.url()).start().await.unwrap();
    let steps = LOSSY
        .change()
        .set(Lossy::LEVEL, 6)
        .then_after(Duration::from_secs(2))
        .set(Lossy::LEVEL, 7)
        .apply()
        .await
        .unwrap();
    LOSSY.refresh().await.unwrap();
    let hammer = Hammer::start(|| (u64::from(LOSSY.level()), 0));
    sleep_until(steps[0]).await;

    // The store restarts without persistence: empty. The change scheduled
    // before still activates, on the last fetched timeline.
    server.restart(Duration::from_millis(100));
    sleep_until(steps[1] + chrono::Duration::milliseconds(300)).await;
    let status = LOSSY.status();
    assert!(status.store_lost, "{status:?}");
    assert_eq!(status.store_losses, 1);
    assert_eq!(LOSSY.level(), 7, "kept the last timeline");

    // Written again: a new epoch, adopted at the horizon of its creation,
    // the same instant for every process.
    let at = LOSSY.set(Lossy::LEVEL, 8).await.unwrap();
    // A fetch finds it written again; the reader below judges that 8 came
    // at its instant, never before.
    wait_for_async(
        "a fetch to find the registry written again",
        Duration::from_millis(5),
        || match LOSSY.status() {
            status if !status.store_lost => Ok(()),
            status => Err(Box::new(status)),
        },
    )
    .await;
    let nanos = |t: chrono::DateTime<Utc>| t.timestamp_nanos_opt().unwrap();
    check(
        &hammer.finish_once_read(8).await,
        &[(6, nanos(steps[0])), (7, nanos(steps[1])), (8, nanos(at))],
    );
}

async fn sleep_until(at: chrono::DateTime<Utc>) {
    let wait = (at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
}

#[lockstep(tick = "1s", store = "redis")]
struct Late {
    #[lockstep(default = 3)]
    level: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_starts_while_the_store_is_down_serves_defaults_and_catches_up() {
    let mut server = RedisServer::start();
    let url = server.url();
    // Put a value in, then take the store down.
    let store = RedisStore::open(&url).unwrap();
    let w = write("late", "level", "9", StepAt::Horizon { after: 0 });
    let at = store.commit(&w).await.unwrap().instants[0];
    let _: () = server.cmd(&["SAVE"]);
    server.kill();

    let started = Instant::now();
    LATE.builder()
        .url(&url)
        .boot_timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(LATE.level(), 3);
    assert!(LATE.status().consecutive_failures >= 1);

    server.revive();
    let revived = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _: () = server.cmd(&["HSET", "lockstep:{late}:meta", "epoch", "e", "created", "0"]);
    let _: () = server.cmd(&[
        "HSET",
        "lockstep:{late}:field:level",
        &at.to_string(),
        r#"{"f":1,"v":9}"#,
    ]);
    while LATE.status().last_fetch.is_none() {
        // Within one tick (plus the fetch deadline) of the store answering.
        assert!(
            revived.elapsed() < Duration::from_millis(1_250),
            "{:?}",
            LATE.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "caught up {:?} after the store came back",
        revived.elapsed()
    );
    let at = Utc.timestamp_millis_opt(at).unwrap();
    wait_for_switch("late.level", at, 9, || LATE.level()).await;
}

#[lockstep(tick = "1s", store = "redis")]
struct Acl {
    #[lockstep(default = 1)]
    level: u32,
}

/// An ACL user that may touch only lockstep's keys, over a Unix socket:
/// everything works, with no NOPERM error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_restricted_to_the_key_prefix_works_over_a_unix_socket() {
    let server = RedisServer::start();
    let _: () = server.cmd(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">s3cret",
        "~lockstep:*",
        "+@read",
        "+@write",
        "+@scripting",
        "+time",
        "+ping",
    ]);
    let url = format!("{}?user=app&pass=s3cret", server.socket_url());
    let store = RedisStore::open(&url).unwrap();
    assert!(!format!("{store:?}").contains("s3cret"));
    ACL.builder().url(&url).start().await.unwrap();
    let at = ACL.set(Acl::LEVEL, 4).await.unwrap();
    wait_for_switch("acl.level", at, 4, || ACL.level()).await;
    let status = ACL.status();
    assert_eq!(status.failed_fetches, 0, "{status:?}");
    assert!(!status.store.contains("s3cret"), "{}", status.store);
    let denied: String = server.cmd(&["INFO", "errorstats"]);
    assert!(!denied.contains("NOPERM"), "{denied}");

    // The wrong password: refused, and the error does not echo it.
    let wrong = format!("{}?user=app&pass=wr0ng", server.socket_url());
    let err = RedisStore::open(&wrong)
        .unwrap()
        .fetch("acl", &["level"])
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("wr0ng"), "{err}");
    assert!(err.contains("WRONGPASS") || err.contains("auth"), "{err}");
}

#[lockstep(tick = "1s", store = "redis")]
struct Clustered {
    #[lockstep(default = 1)]
    level: u32,
    #[lockstep(default = "a")]
    name: String,
}

/// A registry on a three-primary Redis Cluster: every key of the registry is
/// in one slot, so its fetch and its writes are single-slot scripts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_works_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    CLUSTERED
        .builder()
        .url(cluster.url())
        .start()
        .await
        .unwrap();
    let at = CLUSTERED
        .change()
        .set(Clustered::LEVEL, 2)
        .set(Clustered::NAME, "b".to_string())
        .apply()
        .await
        .unwrap()[0];
    wait_for_switch("clustered.level and .name", at, (2, "b".to_owned()), || {
        (CLUSTERED.level(), CLUSTERED.name().to_string())
    })
    .await;
    let status = CLUSTERED.status();
    assert_eq!(status.failed_fetches, 0, "{status:?}");
    assert!(status.fetches >= 2);
    // All of the registry's keys live on the node that owns its slot.
    let holders: Vec<usize> = cluster
        .nodes()
        .iter()
        .map(|n| {
            let keys: Vec<String> = n.cmd(&["KEYS", "lockstep:{clustered}:*"]);
            keys.len()
        })
        .collect();
    assert_eq!(holders.iter().filter(|&&k| k > 0).count(), 1, "{holders:?}");
    // The fleet's records too, kept by the fetches and read back.
    let fleet = CLUSTERED.fleet().await.unwrap();
    assert_eq!(fleet.processes.len(), 1, "{fleet:?}");
}

#[lockstep(tick = "1s", store = "redis", namespace = "tenant-a")]
struct TenantA {
    #[lockstep(default = 1)]
    level: u32,
}

#[lockstep(tick = "1s", store = "redis", namespace = "tenant-b")]
struct TenantB {
    #[lockstep(default = 1)]
    level: u32,
}

/// Two registries with the same field names in different namespaces never
/// see each other; names that would break the key layout are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_isolated_and_unsafe_names_refused() {
    let server = RedisServer::start();
    TENANT_A.builder().url(server.url()).start().await.unwrap();
    TENANT_B.builder().url(server.url()).start().await.unwrap();
    let at = TENANT_A.set(TenantA::LEVEL, 5).await.unwrap();
    let at_b = TENANT_B.set(TenantB::LEVEL, 9).await.unwrap();
    wait_for_switch("tenant-a.level", at, 5, || TENANT_A.level()).await;
    wait_for_switch("tenant-b.level", at_b, 9, || TENANT_B.level()).await;
    assert_eq!((TENANT_A.level(), TENANT_B.level()), (5, 9));

    let store = RedisStore::open(&server.url()).unwrap();
    for bad in ["", "a{b", "a}b", "a*", "a?", "a[b]", "a b", "a.b", "a:b"] {
        // A write with one is refused by its builder: no store sees it.
        let refused = |namespace: &str, key: &str| {
            let tick = lockstep::Tick::new(Duration::from_secs(1)).unwrap();
            let now = StepAt::Horizon { after: 0 };
            lockstep_suite::raw_builder(namespace, tick, "test", vec![(now, vec![(key, "1")])])
                .build()
                .unwrap_err()
        };
        let err = refused(bad, "level");
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
        let err = store.fetch(bad, &["level"]).await.unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{bad:?}: {err}");
        let err = refused("tenant-a", bad);
        assert!(
            matches!(err, Error::InvalidName { .. }),
            "key {bad:?}: {err}"
        );
    }
    let keys: Vec<String> = server.cmd(&["KEYS", "*"]);
    assert!(
        keys.iter().all(|k| k.starts_with("lockstep:{tenant-a}:") || k.starts_with("lockstep:{tenant-b}:")),
        "{keys:?}"
    );
}

/// Expired records are deleted by later fetches, at most 32 a fetch
/// (bounded work, whatever was left behind), and the fleet's two keys
/// expire with the last record, so a registry nobody fetches any more
/// leaves nothing. A registry with nothing but a fleet is not listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_records_are_swept_a_bounded_number_a_fetch_and_leave_with_the_last() {
    let server = RedisServer::start();
    let (fleet, expiry) = ("lockstep:{swept}:fleet", "lockstep:{swept}:fleet:expiry");
    for i in 0..100 {
        let id = format!("gone{i}");
        let _: () = server.cmd(&["HSET", fleet, &id, r#"{"seen":1,"revision":0,"body":"{}"}"#]);
        let _: () = server.cmd(&["ZADD", expiry, "1", &id]);
    }
    let store = RedisStore::open(&server.url()).unwrap();
    let report = Record::new("live".to_owned(), r#"{"id":"live"}"#.to_owned(), 60_000);
    let size = |key: &str| -> u64 {
        let kind = if key == fleet { "HLEN" } else { "ZCARD" };
        server.cmd(&[kind, key])
    };
    let mut left = Vec::new();
    for _ in 0..4 {
        store
            .fetch_with(Fetch::new("swept", &["a"]).reporting(Some(&report)))
            .await
            .unwrap();
        left.push((size(fleet), size(expiry)));
        let reports = store.records("swept").await.unwrap();
        let ids: Vec<&str> = reports.records.iter().map(|r| r.process.as_str()).collect();
        assert_eq!(ids, ["live"]);
    }
    assert_eq!(left, [(69, 69), (37, 37), (5, 5), (1, 1)]);
    let expires: Vec<(String, i64)> = server.cmd(&["ZRANGE", expiry, "0", "-1", "WITHSCORES"]);
    for key in [fleet, expiry] {
        let at: i64 = server.cmd(&["PEXPIRETIME", key]);
        assert_eq!(at, expires[0].1, "{key}");
    }
    assert!(
        !store
            .namespaces()
            .await
            .unwrap()
            .contains(&"swept".to_owned())
    );
}

#[lockstep(tick = "1s", store = "redis", namespace = "reader")]
struct Reader {
    #[lockstep(default = 1)]
    level: u32,
}

#[lockstep(tick = "1s", store = "redis", namespace = "reader")]
struct Unpermitted {
    #[lockstep(default = 1)]
    level: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_read_only_user_reads_and_one_lacking_a_permission_fails_start() {
    let server = RedisServer::start();
    let password = lockstep_suite::documented_reader(&[&server]);
    let url = format!("{}?user=reader&pass={password}", server.socket_url());
    // A writer with every permission sets the value the reader must see.
    let admin = RedisStore::open(&server.url()).unwrap();
    let committed = admin
        .commit(&write("reader", "level", "7", StepAt::Horizon { after: 0 }))
        .await
        .unwrap();
    let at = lockstep::store::to_datetime(committed.instants[0]);
    READER.builder().url(&url).start().await.unwrap();
    wait_for_switch("reader.level", at, 7, || READER.level()).await;
    let status = READER.status();
    assert_eq!(status.failed_fetches, 0, "{status:?}");

    // Without a permission the fetch needs (here TIME, as the documented
    // user once lacked it), start fails at once, saying what to grant.
    let _: () = server.cmd(&[
        "ACL",
        "SETUSER",
        "notime",
        "on",
        ">pw",
        "%R~lockstep:*",
        "+@read",
        "+@scripting",
    ]);
    let url = format!("{}?user=notime&pass=pw", server.socket_url());
    let err = UNPERMITTED.builder().url(&url).start().await.unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err:?}");
    assert!(err.to_string().contains("+time"), "{err}");
}
