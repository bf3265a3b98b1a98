//! The Redis store when the data, the keys or the configuration misbehave,
//! against a real `redis-server` of the test's own: a refused write writes
//! nothing, a read-only user fetches, misconfiguration is told from an
//! outage, oversized and unplaceable entries hurt only themselves, and a
//! flushed store says it holds no schema.

use std::time::{Duration, Instant};

use lockstep::schema::{FieldSchema, Schema};
use lockstep::store::Millis;
use lockstep::store::{Fetch, RedisStore, StepAt, Store, Write};
use lockstep::{Error, Tick, lockstep};
use lockstep_suite::{RedisServer, wait_for_async, wait_for_switch};

const TICK: Tick = match Tick::from_secs(1) {
    Ok(tick) => tick,
    Err(_) => panic!("a tick of one second"),
};

fn write(namespace: &str, values: Vec<(&str, &str)>, at: StepAt) -> Write {
    lockstep_suite::raw_write(namespace, TICK, "test", vec![(at, values)])
}

const NOW: StepAt = StepAt::Horizon { after: 0 };

async fn store_now(store: &dyn Store) -> Millis {
    store
        .fetch("clock", &[])
        .await
        .unwrap()
        .store_micros
        .unwrap()
        / 1000
}

fn hash(server: &RedisServer, key: &str) -> Vec<(String, String)> {
    server.cmd(&["HGETALL", key])
}

#[lockstep(tick = "1s", store = "redis")]
struct Pair {
    #[lockstep(default = 1)]
    a: u32,
    #[lockstep(default = 1)]
    b: u32,
}

/// `change().set(A, 2).set(B, 2)` where B's key is a string: refused with
/// WRONGTYPE before anything is written, A included; the same for a ramp,
/// cancel and purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_midway_writes_nothing() {
    let server = RedisServer::start();
    PAIR.builder().url(server.url()).start().await.unwrap();
    let _: () = server.cmd(&["SET", "lockstep:{pair}:field:b", "not a hash"]);
    let err = PAIR
        .change()
        .set(Pair::A, 2)
        .set(Pair::B, 2)
        .apply()
        .await
        .unwrap_err();
    assert!(
        hash(&server, "lockstep:{pair}:field:a").is_empty(),
        "A was committed"
    );
    println!("{err}");
    let text = err.to_string();
    assert!(
        text.contains("WRONGTYPE") && text.contains("lockstep:{pair}:field:b"),
        "{text}"
    );
    assert!(text.contains("nothing was written"), "{text}");
    let ids: Vec<String> = server.cmd(&["KEYS", "lockstep:{pair}:write:*"]);
    assert!(ids.is_empty(), "the write id was kept: {ids:?}");

    // A ramp whose last step hits the bad key: no step lands.
    let store = RedisStore::open(&server.url()).unwrap();
    let ramp = lockstep_suite::raw_write(
        "pair",
        TICK,
        "test",
        vec![
            (NOW, vec![("a", "3")]),
            (StepAt::Horizon { after: 1000 }, vec![("b", "3")]),
        ],
    );
    assert!(store.commit(&ramp).await.is_err());
    assert!(hash(&server, "lockstep:{pair}:field:a").is_empty());

    // A meta key of the wrong type is refused as well, before any field.
    let _: () = server.cmd(&["SET", "lockstep:{other}:meta", "x"]);
    let err = store
        .commit(&write("other", vec![("a", "1")], NOW))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    let keys: Vec<String> = server.cmd(&["KEYS", "lockstep:{other}:field:*"]);
    assert!(keys.is_empty(), "{keys:?}");

    // Cancel and purge on the string key: refused, the key untouched.
    let at = store_now(&store).await + 30_000;
    assert!(
        store
            .cancel("pair", TICK, "b", TICK.ceil(at))
            .await
            .is_err()
    );
    assert!(store.purge("pair", TICK, "b", "x", true).await.is_err());
    let kept: String = server.cmd(&["GET", "lockstep:{pair}:field:b"]);
    assert_eq!(kept, "not a hash");

    // With the key repaired, the same change goes through whole.
    let _: () = server.cmd(&["DEL", "lockstep:{pair}:field:b"]);
    PAIR.change()
        .set(Pair::A, 2)
        .set(Pair::B, 2)
        .apply()
        .await
        .unwrap();
    assert_eq!(hash(&server, "lockstep:{pair}:field:a").len(), 1);
    assert_eq!(hash(&server, "lockstep:{pair}:field:b").len(), 1);
}

#[lockstep(tick = "1s", store = "redis")]
struct Reader {
    #[lockstep(default = 1)]
    level: u32,
}

/// A user that may only read lockstep's keys (`%R~lockstep:*`) runs a
/// registry: every fetch succeeds, with no NOPERM. A write with it is
/// refused as a misconfiguration, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_user_fetches_and_its_writes_are_refused_whole() {
    let server = RedisServer::start();
    let _: () = server.cmd(&[
        "ACL",
        "SETUSER",
        "reader",
        "on",
        ">r3ad",
        "%R~lockstep:*",
        "+@read",
        "+@scripting",
        "+time",
        "+ping",
    ]);
    let writer = RedisStore::open(&server.url()).unwrap();
    let at = writer
        .commit(&write("reader", vec![("level", "4")], NOW))
        .await
        .unwrap()
        .instants[0];
    let url = format!("redis://reader:r3ad@127.0.0.1:{}", server.port());
    READER.builder().url(&url).start().await.unwrap();
    let at = lockstep::store::to_datetime(at);
    wait_for_switch("reader.level", at, 4, || READER.level()).await;
    // And a scheduled fetch after the one at start.
    let status = wait_for_async("a second fetch", Duration::from_millis(20), || {
        let status = READER.status();
        if status.fetches >= 2 {
            Ok(status)
        } else {
            Err(Box::new(status))
        }
    })
    .await;
    assert_eq!(status.failed_fetches, 0, "{status:?}");

    let before: Vec<(String, String)> = hash(&server, "lockstep:{reader}:field:level");
    let err = READER.set(Reader::LEVEL, 5).await.unwrap_err();
    println!("{err}");
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
    assert!(err.to_string().contains("NOPERM"), "{err}");
    assert!(!err.to_string().contains("r3ad"), "{err}");
    assert_eq!(hash(&server, "lockstep:{reader}:field:level"), before);
    let denied: String = server.cmd(&["INFO", "errorstats"]);
    println!("{denied}");
}

/// What retrying cannot fix fails at once as `Misconfigured`, naming the
/// cause; what may pass stays a transient `Store` error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfiguration_is_told_from_an_outage_at_once() {
    let server = RedisServer::start();
    let _: () = server.cmd(&["ACL", "SETUSER", "app", "on", ">s3cret", "~*", "+@all"]);
    let port = server.port();
    let cases = [
        (format!("redis://app:wr0ng@127.0.0.1:{port}"), "WRONGPASS"),
        (
            format!("redis://nobody:wr0ng@127.0.0.1:{port}"),
            "WRONGPASS",
        ),
        (
            format!("redis://app:s3cret@127.0.0.1:{port}/99"),
            "no such database",
        ),
        (format!("redis://:wr0ng@127.0.0.1:{port}"), "WRONGPASS"),
    ];
    for (url, cause) in &cases {
        let started = Instant::now();
        let err = RedisStore::open(url)
            .unwrap()
            .fetch("ns", &["a"])
            .await
            .unwrap_err();
        let took = started.elapsed();
        println!("{took:?} {err}");
        assert!(matches!(err, Error::Misconfigured { .. }), "{url}: {err}");
        assert!(!err.is_transient());
        assert!(err.to_string().contains(cause), "{url}: {err}");
        assert!(!err.to_string().contains("wr0ng") && !err.to_string().contains("s3cret"));
    }

    // A password required but not given: NOAUTH.
    let _: () = server.cmd(&["CONFIG", "SET", "requirepass", "adm1n"]);
    let err = RedisStore::open(&server.url())
        .unwrap()
        .fetch("ns", &["a"])
        .await
        .unwrap_err();
    println!("{err}");
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
    assert!(err.to_string().contains("NOAUTH"), "{err}");

    // Nobody listening: an outage, not a misconfiguration.
    let nobody = format!("redis://127.0.0.1:{}", free_port());
    let err = RedisStore::open(&nobody)
        .unwrap()
        .fetch("ns", &["a"])
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[lockstep(tick = "1s", store = "redis")]
struct Wrong {
    #[lockstep(default = 1)]
    level: u32,
}

/// A registry started with a wrong password fails `start()` naming the
/// cause (the engine's side: see `tests/redis_outages.rs` once it lands), and the
/// store-level fetch says `Misconfigured` at its first call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_by_the_first_fetch() {
    let server = RedisServer::start();
    let _: () = server.cmd(&["CONFIG", "SET", "requirepass", "r1ght"]);
    let store = RedisStore::open(&format!("redis://:wr0ng@127.0.0.1:{}", server.port())).unwrap();
    let started = Instant::now();
    let err = store.fetch("wrong", &["level"]).await.unwrap_err();
    let took = started.elapsed();
    println!("first fetch refused after {took:?}: {err}");
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
    // Again: the same answer, from a fresh connection attempt.
    let err = store.fetch("wrong", &["level"]).await.unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
    let _ = &WRONG;
}

/// 10 MB planted in one field: the fetch ships its length, not the value
/// (the reply stays small), that entry alone is rejected, the other fields
/// and the other entries of the field arrive as usual. The commit script
/// refuses oversized values too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_value_is_never_shipped() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url()).unwrap();
    let committed = store
        .commit(&write(
            "big",
            vec![("small", "5"), ("banner", "\"ok\"")],
            NOW,
        ))
        .await
        .unwrap();
    let median_fetch = async || {
        let mut took: Vec<Duration> = Vec::new();
        for _ in 0..21 {
            let started = Instant::now();
            store.fetch("big", &["small", "banner"]).await.unwrap();
            took.push(started.elapsed());
        }
        took.sort();
        took[10]
    };
    let before_planting = median_fetch().await;
    let now = store_now(&store).await;
    let huge = format!(r#"{{"f":1,"v":"{}"}}"#, "x".repeat(10_000_000));
    let past = (TICK.floor(now) - 5_000).to_string();
    let _: () = server.cmd(&["HSET", "lockstep:{big}:field:banner", &past, &huge]);

    let _: () = server.cmd(&["CONFIG", "RESETSTAT"]);
    let out = |s: &RedisServer| -> u64 {
        let info: String = s.cmd(&["INFO", "stats"]);
        info.lines()
            .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    };
    let before = out(&server);
    let fetched = store.fetch("big", &["small", "banner"]).await.unwrap();
    let shipped = out(&server) - before;
    println!(
        "a fetch with a 10 MB entry shipped {shipped} bytes; median fetch {:?} before \
         planting it, {:?} after",
        before_planting,
        median_fetch().await
    );
    assert!(shipped < 10_000, "{shipped} bytes shipped");
    let banner = &fetched.fields["banner"];
    assert_eq!(banner.len(), 2);
    assert_eq!(
        banner[0].value,
        Err(format!("{} bytes, over the limit of 65536", huge.len()))
    );
    assert_eq!(banner[1].value.as_deref(), Ok("\"ok\""));
    assert_eq!(banner[1].at, committed.instants[0]);
    assert_eq!(fetched.fields["small"][0].value.as_deref(), Ok("5"));

    // A write of a value over the limit is refused by its builder: no
    // store is handed one, nothing written.
    let over = format!("\"{}\"", "y".repeat(lockstep::MAX_VALUE_BYTES));
    let err = lockstep_suite::raw_builder(
        "big",
        TICK,
        "test",
        vec![(NOW, vec![("small", "6"), ("banner", &over)])],
    )
    .build()
    .unwrap_err();
    assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
    assert!(err.to_string().contains("65538 bytes"), "{err}");
    assert_eq!(hash(&server, "lockstep:{big}:field:small").len(), 1);
}

/// An entry whose instant is not a number is reported apart and can be
/// purged; an undecodable one can be purged whatever its instant; a good
/// one only at or beyond the horizon, unless the caller found it
/// undecodable. Cancel returns the entry it removed, as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_entries_are_set_apart_and_purged_good_ones_guarded() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url()).unwrap();
    let key = "lockstep:{bad}:field:level";
    let now = store_now(&store).await;
    let past = TICK.floor(now) - 5_000;
    let _: () = server.cmd(&["HSET", key, "foobar", r#"{"f":1,"v":9}"#]);
    let _: () = server.cmd(&["HSET", key, &past.to_string(), "not json"]);
    let _: () = server.cmd(&["HSET", key, &(past - 1000).to_string(), r#"{"f":1,"v":7}"#]);
    let pending = store
        .commit(&write("bad", vec![("level", "50")], NOW))
        .await
        .unwrap();
    let pending = pending.instants[0];

    let fetched = store.fetch("bad", &["level"]).await.unwrap();
    let unplaced = &fetched.unplaced["level"];
    assert_eq!(unplaced.len(), 1);
    assert_eq!(unplaced[0].at, "foobar");
    assert!(
        unplaced[0].reason.contains("not a number"),
        "{}",
        unplaced[0].reason
    );
    let placed: Vec<Millis> = fetched.fields["level"].iter().map(|e| e.at).collect();
    assert_eq!(placed, vec![past - 1000, past, pending]);
    assert!(fetched.fields["level"][1].value.is_err());

    // A good entry before the horizon stays, unless found undecodable.
    let err = store
        .purge("bad", TICK, "level", &(past - 1000).to_string(), false)
        .await;
    assert!(matches!(err, Err(Error::BeforeHorizon { .. })), "{err:?}");
    store
        .purge("bad", TICK, "level", "foobar", false)
        .await
        .unwrap();
    store
        .purge("bad", TICK, "level", &past.to_string(), false)
        .await
        .unwrap();
    store
        .purge("bad", TICK, "level", &(past - 1000).to_string(), true)
        .await
        .unwrap();
    let err = store
        .purge("bad", TICK, "level", "foobar", false)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchEntry { .. }), "{err}");
    let left = hash(&server, key);
    assert_eq!(left.len(), 1, "{left:?}");

    // Cancel gives back what it removed, as stored.
    let removed = store.cancel("bad", TICK, "level", pending).await.unwrap();
    assert_eq!(removed.at, pending);
    assert_eq!(removed.value.as_deref(), Ok("50"));
    let origin = removed.origin.unwrap();
    assert_eq!(origin.by, "test");
    assert!(hash(&server, key).is_empty());
    let err = store
        .cancel("bad", TICK, "level", pending)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchEntry { .. }), "{err}");
}

/// Write ids are checked (they name a key), and the writer's name goes into
/// the envelope as JSON whatever it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_ids_are_checked_and_writer_names_encoded() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url()).unwrap();
    for id in ["", "a\"b", "a}b", "x:y", &"z".repeat(101)] {
        // Refused by the write's builder: no store is handed one.
        let err = Write::builder("ids", TICK)
            .set("a", serde_json::json!(1))
            .id(id)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{id:?}: {err}");
    }
    let by = r#"cli "o'brien"\ ,"v":666} ünï / ☃"#;
    let w = Write::builder("ids", TICK)
        .set("a", serde_json::json!(1))
        .by(by)
        .build()
        .unwrap();
    store.commit(&w).await.unwrap();
    let entry = &store.fetch("ids", &["a"]).await.unwrap().fields["a"][0];
    assert_eq!(entry.value.as_deref(), Ok("1"));
    assert_eq!(entry.origin.as_ref().unwrap().by, by);
    let long = Write::builder("ids", TICK)
        .set("a", serde_json::json!(1))
        .by("x".repeat(2_000))
        .build()
        .unwrap();
    assert!(store.commit(&long).await.is_err());
}

/// A store that lost its data (FLUSHALL) says it holds no schema, so the
/// registry publishes its own again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_store_holds_no_schema() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url()).unwrap();
    assert!(!store.fetch("lost", &["a"]).await.unwrap().schema_held);
    let schema = Schema {
        namespace: "lost".to_owned(),
        tick_secs: 1,
        fields: vec![FieldSchema {
            key: "a".to_owned(),
            rust_type: "u32".to_owned(),
            value_type: None,
            default: serde_json::json!(0),
            doc: String::new(),
        }],
    };
    store.publish_schema(&schema).await.unwrap();
    assert!(store.fetch("lost", &["a"]).await.unwrap().schema_held);
    let _: () = server.cmd(&["FLUSHALL"]);
    let fetched = store.fetch("lost", &["a"]).await.unwrap();
    assert!(!fetched.schema_held);
    assert_eq!(fetched.epoch, None);
}

/// Calls of fetch scripts a server saw: `EVALSHA` and `EVALSHA_RO`, run or
/// refused before running (`rejected_calls`: ACL, READONLY, OOM).
fn fetch_calls(server: &RedisServer) -> u64 {
    let info: String = server.cmd(&["INFO", "commandstats"]);
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_evalsha_ro:"))
        .flat_map(|l| l.split([':', ',']))
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "calls" || *k == "rejected_calls")
        .map(|(_, n)| n.parse::<u64>().unwrap())
        .sum()
}

fn report(process: &str) -> lockstep::store::driver::Record {
    lockstep::store::driver::Record::new(
        process.to_owned(),
        format!(r#"{{"id":"{process}"}}"#),
        60_000,
    )
}

/// Where the server will not keep a process's record — a user that may
/// only read lockstep's keys (the fetch with a report is refused whole,
/// then its record apart), a user that may not run write commands (refused
/// inside the script), a replica, a fleet key of the wrong type — every
/// fetch with a report is served all the same, as written, and costs one
/// call in one round trip, but for the first, refused one: the store then
/// fetches without a report for a while. The user that may only read costs
/// one call more: its first fetch is the fetch with a report, refused, then
/// its record apart, refused too, and the read-only fetch, pipelined (three
/// calls in two round trips).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_will_not_keep_records_serves_fetches_in_one_round_trip_each() {
    let server = RedisServer::start();
    for (user, keys, commands) in [
        ("keys_ro", "%R~lockstep:*", "+@read"),
        ("no_write", "~lockstep:*", "+@read"),
    ] {
        let _: () = server.cmd(&[
            "ACL",
            "SETUSER",
            user,
            "on",
            ">pw",
            keys,
            commands,
            "+@scripting",
            "+time",
            "+ping",
        ]);
    }
    let replica = RedisServer::start();
    let _: () = replica.cmd(&["REPLICAOF", "127.0.0.1", &server.port().to_string()]);
    let wrong_type = RedisServer::start();
    let _: () = wrong_type.cmd(&["SET", "lockstep:{kept}:fleet", "not a hash"]);
    let writer = RedisStore::open(&server.url()).unwrap();
    for store in [&writer, &RedisStore::open(&wrong_type.url()).unwrap()] {
        store
            .commit(&write("kept", vec![("a", "7")], NOW))
            .await
            .unwrap();
    }
    let revision = writer.fetch("kept", &["a"]).await.unwrap().revision;
    // The replica holds the write before it is asked.
    wait_for_async(
        "the replica to hold the write",
        Duration::from_millis(20),
        || match replica.cmd::<Vec<(String, String)>>(&["HGETALL", "lockstep:{kept}:field:a"]) {
            held if held.is_empty() => Err(held),
            _ => Ok(()),
        },
    )
    .await;
    let port = server.port();
    let cases = [
        (
            "a read-only user",
            format!("redis://keys_ro:pw@127.0.0.1:{port}"),
            &server,
        ),
        (
            "a user without writes",
            format!("redis://no_write:pw@127.0.0.1:{port}"),
            &server,
        ),
        ("a replica", replica.url(), &replica),
        (
            "a fleet key of the wrong type",
            wrong_type.url(),
            &wrong_type,
        ),
    ];
    // The calls beyond one a fetch.
    let refused_calls = |case: &str| if case == "a read-only user" { 2 } else { 1 };
    const FETCHES: u64 = 10;
    for (case, url, counted) in cases {
        let store = RedisStore::open(&url).unwrap();
        // The scripts are loaded first, so the count is of fetches alone.
        let _ = store.fetch("kept", &[]).await;
        let _ = store
            .fetch_with(Fetch::new("loaded", &[]).reporting(Some(&report("x"))))
            .await;
        counted.reset_stats();
        let store = RedisStore::open(&url).unwrap();
        for _ in 0..FETCHES {
            let fetched = store
                .fetch_with(Fetch::new("kept", &["a"]).reporting(Some(&report(case))))
                .await
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(fetched.fields["a"][0].value.as_deref(), Ok("7"), "{case}");
            assert_eq!(fetched.revision, revision, "{case}");
        }
        let calls = fetch_calls(counted);
        println!("{case}: {FETCHES} fetches in {calls} calls");
        assert!(
            (FETCHES..=FETCHES + refused_calls(case)).contains(&calls),
            "{case}: {calls} calls for {FETCHES} fetches"
        );
        let records = writer.records("kept").await.unwrap().records;
        assert!(
            records.iter().all(|r| r.process != case),
            "{case}: {records:?}"
        );
    }
    // The string planted where the fleet's hash goes is left as it was.
    let kept: String = wrong_type.cmd(&["GET", "lockstep:{kept}:fleet"]);
    assert_eq!(kept, "not a hash");
}

/// A server out of memory (`maxmemory` reached, no eviction) refuses
/// writes, but serves fetches with their reports, and keeps the record: it
/// replaces the process's previous one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_out_of_memory_serves_fetches_and_keeps_their_records() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url()).unwrap();
    store
        .commit(&write("full", vec![("a", "1")], NOW))
        .await
        .unwrap();
    store
        .fetch_with(Fetch::new("full", &["a"]).reporting(Some(&report("p"))))
        .await
        .unwrap();
    let _: () = server.cmd(&["CONFIG", "SET", "maxmemory", "1"]);
    let refused = store.commit(&write("full", vec![("a", "2")], NOW)).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("OOM")),
        "{refused:?}"
    );
    let before = fetch_calls(&server);
    let fetched = store
        .fetch_with(Fetch::new("full", &["a"]).reporting(Some(&report("p"))))
        .await
        .unwrap();
    assert_eq!(fetch_calls(&server) - before, 1);
    assert_eq!(fetched.fields["a"][0].value.as_deref(), Ok("1"));
    let _: () = server.cmd(&["CONFIG", "SET", "maxmemory", "0"]);
    let records = store.records("full").await.unwrap().records;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].revision, fetched.revision);
}

/// A fleet key of the wrong type refuses records inside the script, which
/// costs the fetch nothing: reports go on, and once the key is removed the
/// next fetch's record is kept (it used to wait out 100 fetches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_key_repaired_keeps_records_again_from_the_next_fetch() {
    let server = RedisServer::start();
    let _: () = server.cmd(&["SET", "lockstep:{healed}:fleet", "not a hash"]);
    let store = RedisStore::open(&server.url()).unwrap();
    store
        .commit(&write("healed", vec![("a", "7")], NOW))
        .await
        .unwrap();
    for _ in 0..3 {
        store
            .fetch_with(Fetch::new("healed", &["a"]).reporting(Some(&report("p"))))
            .await
            .unwrap();
    }
    let planted: String = server.cmd(&["GET", "lockstep:{healed}:fleet"]);
    assert_eq!(planted, "not a hash", "no record was kept over it");
    let _: () = server.cmd(&["DEL", "lockstep:{healed}:fleet"]);
    store
        .fetch_with(Fetch::new("healed", &["a"]).reporting(Some(&report("p"))))
        .await
        .unwrap();
    let records = store.records("healed").await.unwrap().records;
    assert_eq!(
        records
            .iter()
            .map(|r| r.process.as_str())
            .collect::<Vec<_>>(),
        ["p"],
        "{records:?}"
    );
}
