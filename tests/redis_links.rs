//! A bad link between a registry and its store, through the test-support
//! library's TCP proxy: a reply cut in the middle, and a slow link. A fetch
//! is applied whole or not at all (a snapshot never shows half of a change
//! written in one step), the status shows the failure, changes scheduled
//! before the fault still activate at their instant, and once the link is
//! restored the registry catches up within a tick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lockstep::store::{RedisStore, StepAt, Store, Write};
use lockstep::{Status, lockstep};
use lockstep_suite::{Hammer, Proxy, RedisServer, check, wait_for};

/// The tests measure timing: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Set by a reader that saw a snapshot mixing two writes.
static MIXED: AtomicBool = AtomicBool::new(false);

const NAMESPACE: &str = "link";
const KEYS: [&str; 5] = ["generation", "a", "b", "c", "d"];
/// Each padding field's size: a fetch's reply is tens of kilobytes, so a
/// cut or a slow link lands in the middle of the fields.
const PAD: usize = 2_000;

#[lockstep(tick = "1s", store = "redis", namespace = "link", static_name = "CUT")]
struct Link {
    generation: u64,
    a: String,
    b: String,
    c: String,
    d: String,
}

/// The slow-link test's registry: a second one of the same kind.
static SLOW: LinkRegistry = LinkRegistry::new();

/// The value of padding field `key` at generation `generation`.
fn pad(generation: u64, key: &str) -> String {
    format!("{generation}:{key}:{}", "x".repeat(PAD))
}

/// Whether every padding field belongs to `generation` (all empty at 0).
///
/// Without allocating: this runs in the hammering reader, which counts any
/// read that blocks, and an allocation may wait on the allocator's lock.
fn whole(generation: u64, pads: [&str; 4]) -> bool {
    pads.iter().zip(&KEYS[1..]).all(|(p, key)| {
        if generation == 0 {
            return p.is_empty();
        }
        // `pad(generation, key)`, piece by piece.
        let mut parts = p.splitn(3, ':');
        parts.next().and_then(|g| g.parse::<u64>().ok()) == Some(generation)
            && parts.next() == Some(*key)
            && parts
                .next()
                .is_some_and(|x| x.len() == PAD && x.bytes().all(|b| b == b'x'))
    })
}

#[test]
fn whole_tells_a_whole_generation_from_a_mixed_one() {
    let pads = |g: [u64; 4]| [0, 1, 2, 3].map(|i| pad(g[i], KEYS[i + 1]));
    let [a, b, c, d] = pads([3, 3, 3, 3]);
    assert!(whole(3, [&a, &b, &c, &d]));
    assert!(!whole(4, [&a, &b, &c, &d]));
    let [a, b, c, d] = pads([3, 3, 2, 3]);
    assert!(!whole(3, [&a, &b, &c, &d]));
    assert!(!whole(3, [&a, &b, &c, &d[..d.len() - 1]]));
    assert!(whole(0, [""; 4]));
}

/// A reader's look: the generation, and whether the snapshot is whole.
fn look(generation: u64, pads: [&str; 4]) -> (u64, usize) {
    if !whole(generation, pads) {
        MIXED.store(true, Ordering::SeqCst);
    }
    (generation, pads.iter().map(|p| p.len()).sum())
}

fn read_cut() -> (u64, usize) {
    let s = CUT.snapshot();
    // The accessors too, not only the snapshot.
    let _ = (CUT.generation(), CUT.a().len());
    look(s.generation, [&s.a, &s.b, &s.c, &s.d])
}

fn read_slow() -> (u64, usize) {
    let s = SLOW.snapshot();
    let _ = (SLOW.generation(), SLOW.d().len());
    look(s.generation, [&s.a, &s.b, &s.c, &s.d])
}

/// Writes generations `from..` as consecutive steps, every field of a
/// generation in one step: the first at `first` (or the horizon), each next
/// one a tick later. Returns `(generation, instant ns)`.
async fn write(store: &RedisStore, from: u64, count: u64, first: Option<i64>) -> Vec<(u64, i64)> {
    let mut write = Write::builder(
        NAMESPACE,
        lockstep::Tick::new(Duration::from_secs(1)).unwrap(),
    )
    .by("proxy test");
    for i in 0..count {
        let generation = from + i;
        let after = i as i64 * 1_000;
        let at = match first {
            Some(ms) => StepAt::At(ms + after),
            None => StepAt::Horizon { after },
        };
        write = if i == 0 {
            write.when(at)
        } else {
            write.then(at)
        };
        write = write.set("generation", serde_json::json!(generation));
        for key in &KEYS[1..] {
            write = write.set(*key, serde_json::json!(pad(generation, key)));
        }
    }
    let write = write.build().unwrap();
    let committed = store.commit(&write).await.unwrap();
    (from..)
        .zip(committed.instants.iter().map(|ms| ms * 1_000_000))
        .collect()
}

/// Restores the link; checks that the registry (whose status `status`
/// reads) fetches again and learns generation 4 within a tick and a quarter,
/// and then what the reader saw: every generation of `instants` at its
/// instant, no snapshot mixing two writes, no late flip.
async fn restore_and_check(
    proxy: &Proxy,
    status: fn() -> Status,
    hammer: Hammer,
    instants: &[(u64, i64)],
) {
    proxy.restore();
    let restored = Instant::now();
    while status().consecutive_failures > 0 || !status().pending.iter().any(|p| p.value == "4") {
        assert!(
            restored.elapsed() < Duration::from_millis(1_250),
            "not caught up a tick after the link came back: {:?}",
            status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "caught up {:?} after the link came back",
        restored.elapsed()
    );
    check(&hammer.finish_once_read(4).await, instants);
    assert!(!MIXED.load(Ordering::SeqCst), "a snapshot mixed two writes");
    assert_eq!(status().late_flips, 0);
}

/// The size of a fetch's reply through `proxy`, measured with a client of
/// the test's own (its second fetch: the first also loads the script).
async fn reply_size(proxy: &Proxy) -> u64 {
    let store = RedisStore::open(&proxy.url()).unwrap();
    store.fetch(NAMESPACE, &KEYS).await.unwrap();
    let before = proxy.bytes_from_server();
    store.fetch(NAMESPACE, &KEYS).await.unwrap();
    proxy.bytes_from_server() - before
}

/// Fetches of the cut registry until one sent through the cut link fails;
/// the registry's count of fetches applied then. `at_cut` is that count
/// when the cut was set.
///
/// The one fetch a registry may have on the wire when the cut is set can
/// have had its whole reply before it, and be applied after: its answer is
/// applied when the runtime gets to it (tens of ms later on a loaded
/// machine), and one that overran its deadline by the next fetch, which
/// waits for it rather than sending another. Counted from the cut, such a
/// fetch looked like a cut reply applied. It was sent before generation 4
/// was written, so it cannot hold it; every fetch sent after it must fail.
async fn settle_the_fetch_on_the_wire_at_the_cut(at_cut: u64) -> u64 {
    loop {
        match CUT.refresh().await {
            // Still waiting on a fetch sent earlier: it may yet be applied.
            Err(e) if e.to_string().contains("within its deadline") => continue,
            Err(_) => break,
            Ok(()) => {
                let status = CUT.status();
                assert!(
                    status.fetches == at_cut + 1 && status.pending.iter().all(|p| p.value != "4"),
                    "a cut handshake connected: {status:?}"
                );
            }
        }
    }
    let settled = CUT.status().fetches;
    assert!(
        settled <= at_cut + 1,
        "more than the fetch on the wire at the cut applied: {settled} after {at_cut}"
    );
    settled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_cut_in_the_middle_is_applied_whole_or_not_at_all() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    let proxy = Proxy::to(server.port());
    let writer = RedisStore::open(&server.url()).unwrap();
    CUT.builder().url(proxy.url()).start().await.unwrap();
    let mut instants = write(&writer, 1, 3, None).await;
    CUT.refresh().await.unwrap();
    let hammer = Hammer::start(read_cut);

    // Generation 4, two ticks after 3, written while every reply is cut;
    // the size of a reply measured through a second proxy.
    proxy.cut_after(3);
    let at_cut = CUT.status().fetches;
    let fourth = instants[2].1 / 1_000_000 + 2_000;
    instants.extend(write(&writer, 4, 1, Some(fourth)).await);
    let size = reply_size(&Proxy::to(server.port())).await;
    // First in the handshake of a new connection: the server closes the
    // registry's, every reply is cut after 3 bytes, and a fetch reconnects.
    server.kill_clients();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fetches = settle_the_fetch_on_the_wire_at_the_cut(at_cut).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    // Then in the header, in the middle of the fields, and just before the
    // end of a fetch's reply.
    // (cut at, fetches applied, failed) at the end of each cut: which cut
    // let a fetch through, if one does.
    let mut steps = vec![(3, CUT.status().fetches, CUT.status().failed_fetches)];
    for bytes in [100, size / 3, size / 2, size - 8] {
        proxy.cut_after(bytes);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let status = CUT.status();
        steps.push((bytes, status.fetches, status.failed_fetches));
    }
    let cut_errors = CUT.status().failed_fetches;
    // Then no link at all: connections closed as they open.
    proxy.break_link();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = CUT.status();
    println!(
        "reply {size} bytes, cut at 3 (a new connection's handshake), 100, {}, {}, {} bytes \
         for 2 s: {cut_errors} failed fetches; then broken for 0.5 s: {} failed fetches in \
         all, {} connections; last error: {:?}",
        size / 3,
        size / 2,
        size - 8,
        during.failed_fetches,
        proxy.connections(),
        during.last_error
    );
    assert_eq!(
        during.fetches, fetches,
        "a cut reply was applied: (cut at, applied, failed) by cut: {steps:?}; {during:?}"
    );
    assert!(during.failed_fetches >= 2, "{during:?}");
    assert!(during.consecutive_failures > 0, "{during:?}");
    assert!(during.last_error.is_some(), "{during:?}");
    assert!(
        during.pending.iter().all(|p| p.value != "4"),
        "generation 4 learned through a cut link: {during:?}"
    );

    restore_and_check(&proxy, || CUT.status(), hammer, &instants).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_delivers_whole_fetches_late_never_half() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    let proxy = Proxy::to(server.port());
    let writer = RedisStore::open(&server.url()).unwrap();
    SLOW.builder().url(proxy.url()).start().await.unwrap();
    let mut instants = write(&writer, 1, 3, None).await;
    SLOW.refresh().await.unwrap();
    let hammer = Hammer::start(read_slow);
    let size = reply_size(&proxy).await;

    // Slow, within the deadline (a quarter tick): 8 chunks, 15 ms apart.
    proxy.delay_chunks(size.div_ceil(8) as usize, Duration::from_millis(15));
    let started = Instant::now();
    SLOW.refresh().await.unwrap();
    let within = started.elapsed();

    // Slower than the deadline: 30 chunks, 40 ms apart, 1.2 s a reply; and
    // generation 4, a tick after 3, written meanwhile.
    let fourth = instants[2].1 / 1_000_000 + 1_000;
    instants.extend(write(&writer, 4, 1, Some(fourth)).await);
    proxy.delay_chunks(size.div_ceil(30) as usize, Duration::from_millis(40));
    let before = server.scripts_run();
    let started = Instant::now();
    let refused = SLOW.refresh().await;
    let failed_in = started.elapsed();
    assert!(refused.is_err(), "a 1.2 s reply beat a 250 ms deadline");
    // Its deadline, a quarter tick, after at most the deadline of a
    // scheduled fetch already under way (it waits for that one rather than
    // sending a second).
    assert!(failed_in < Duration::from_millis(600), "{failed_in:?}");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let during = SLOW.status();
    let executed = server.scripts_run() - before;
    println!(
        "reply {size} bytes; 8 chunks 15 ms apart: fetched in {within:?}; 30 chunks 40 ms \
         apart: a fetch gave up after {failed_in:?}, {} failed, {executed} fetches sent in \
         {:?}, generation 4 learned meanwhile: {}",
        during.failed_fetches,
        started.elapsed(),
        during.pending.iter().any(|p| p.value == "4")
    );
    assert!(during.failed_fetches >= 2, "{during:?}");
    // Never more than one fetch on the wire: one reply takes 1.2 s.
    assert!(executed <= 3, "{executed} fetches in 2 s on a slow link");

    restore_and_check(&proxy, || SLOW.status(), hammer, &instants).await;
}

/// The proxy itself: a reply under way when a cut is set again is cut too,
/// never let through whole. Counted from the new cut, the rest of a reply
/// half sent under the old one came through whole, and the cut test counted
/// it as a cut reply applied.
#[test]
fn a_reply_under_way_when_the_cut_is_set_again_is_cut() {
    let _alone = ONE_AT_A_TIME.blocking_lock();
    let server = RedisServer::start();
    let value = "x".repeat(40_000);
    let _: () = server.cmd(&["SET", "big", &value]);
    let proxy = Proxy::to(server.port());
    let mut through = redis::Client::open(proxy.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let whole: String = redis::cmd("GET").arg("big").query(&mut through).unwrap();
    assert_eq!(whole.len(), value.len());
    // The reply in four chunks, 200 ms apart; cut just short of its end.
    proxy.delay_chunks(10_000, Duration::from_millis(200));
    proxy.cut_after(40_000);
    // The cut closed the connection open when it was set: the reply goes
    // on one opened under it.
    let mut through = redis::Client::open(proxy.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let before = proxy.bytes_from_server();
    let reader = std::thread::spawn(move || {
        redis::cmd("GET")
            .arg("big")
            .query::<String>(&mut through)
            .map(|v| v.len())
    });
    // Its first chunk sent, the next one 200 ms away: the same cut again.
    let sent = wait_for(
        "the first chunk of the reply to be sent",
        Duration::from_millis(1),
        || match proxy.bytes_from_server() - before {
            sent if sent >= 10_000 => Ok(sent),
            sent => Err(format!("{sent} bytes sent")),
        },
    );
    proxy.cut_after(40_000);
    let got = reader.join().unwrap();
    assert!(
        got.is_err(),
        "a reply half sent ({sent} bytes) when the cut was set again came through whole"
    );
}
