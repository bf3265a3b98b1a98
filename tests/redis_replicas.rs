//! Promise 16: separate OS processes reading a primary's replicas
//! (`redis://primary?replicas=a,b`) switch at the same instant, never before
//! it, as on one server; the fetches land on the replicas, one per process
//! per tick; a replica cut off its primary, frozen, paused, asleep,
//! promoted or following another primary across a flip is not read, the
//! writer is told before the instant that it lagged, and the processes that
//! read it count the fallback (and the failover); `lockstep set` names the
//! replica that lags.

use std::time::{Duration, Instant};

use lockstep::store::{Committed, Fetch, RedisStore, Store, Write};
use lockstep_suite::{
    Probe, RedisReplicas, assert_all_switched_within_5_ms, run_cli, wait_for_async,
};

const PROBES: usize = 8;

/// The tests here measure timing across processes: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Schedules `generation = value` at the horizon.
async fn schedule(store: &RedisStore, value: u64) -> Committed {
    let write = Write::builder(
        "fleet",
        lockstep::Tick::new(Duration::from_secs(1)).unwrap(),
    )
    .by("replicas test")
    .set("generation", serde_json::json!(value))
    .build()
    .unwrap();
    store.commit(&write).await.unwrap()
}

/// At least [`PROBES`] probes on `url` waiting for `value`, ready, and
/// among them some on each of the two replicas (a process reads the
/// replica at its process id modulo 2): more are started until so.
fn fleet(url: &str, value: &str) -> Vec<Probe> {
    let mut probes: Vec<Probe> = Vec::new();
    while probes.len() < PROBES || !(0..2).all(|r| probes.iter().any(|p| home(p) == r)) {
        probes.push(Probe::spawn(env!("CARGO_BIN_EXE_probe"), url, &[value]));
    }
    for probe in &mut probes {
        assert_eq!(probe.line(), "ready");
    }
    probes
}

/// The replica `probe` reads: its process id modulo the two replicas.
fn home(probe: &Probe) -> usize {
    probe.pid() as usize % 2
}

/// `usec_per_call` of `command` on `server` (`INFO commandstats`).
fn usec_per_call(server: &lockstep_suite::RedisServer, command: &str) -> f64 {
    let info: String = server.cmd(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix("usec_per_call="))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

/// The revision of the `fleet` registry `server` holds.
fn revision(server: &lockstep_suite::RedisServer) -> u64 {
    let revision: Option<String> = server.cmd(&["HGET", "lockstep:{fleet}:meta", "revision"]);
    revision.and_then(|r| r.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_on_two_replicas_switch_together_never_early_each_fetching_its_replica_once_a_tick()
 {
    let _alone = ONE_AT_A_TIME.lock().await;
    let set = RedisReplicas::start(2);
    let url = set.url();
    let mut probes = fleet(&url, "42");
    let writer = RedisStore::open(&url).unwrap();
    assert_eq!(writer.replicas(), set.names());
    // The writer's script is loaded before counting.
    assert_eq!(schedule(&writer, 0).await.lagging, Vec::<String>::new());
    set.reset_stats();
    let window = Instant::now();
    let committed = schedule(&writer, 42).await;
    assert_eq!(
        committed.lagging,
        Vec::<String>::new(),
        "both replicas acknowledged the write in time"
    );
    let at = committed.instants[0] * 1_000_000;
    let mut switched = Vec::new();
    for probe in &mut probes {
        let (report, switch) = probe.switched(at, "two replicas");
        assert_eq!(report["replica_fallbacks"], 0, "no replica was unfit");
        switched.push(switch);
    }
    let seconds = window.elapsed().as_secs_f64();
    assert_all_switched_within_5_ms(&switched, 0.0);
    // Every fetch went to a replica (the read-only script), none to the
    // primary, which ran the commit and the fleet records (each an
    // EVALSHA with one ZADD).
    let [primary_ro, primary_scripts, records] =
        set.primary.calls_of(["evalsha_ro", "evalsha", "zadd"]);
    assert_eq!(primary_ro, 0, "the primary served no fetch");
    let per_process = seconds.floor() as u64;
    let (mut fetches, mut costs) = (Vec::new(), Vec::new());
    for (r, replica) in set.replicas.iter().enumerate() {
        let [served, written] = replica.calls_of(["evalsha_ro", "evalsha"]);
        assert_eq!(written, 0, "a replica runs no writing script");
        let homed = probes.iter().filter(|p| home(p) == r).count() as u64;
        // One fetch per process per tick, each on its own replica.
        let expected = homed * per_process..=homed * (per_process + 1);
        assert!(
            expected.contains(&served),
            "replica {r}: {served} fetches of its {homed} processes in {seconds:.2} s, \
             expected {expected:?}"
        );
        fetches.push((served, homed));
        costs.push((
            usec_per_call(replica, "info"),
            usec_per_call(replica, "evalsha_ro"),
        ));
    }
    let total: u64 = fetches.iter().map(|(served, _)| served).sum();
    // A record per fetch, off the fetch's path, at most one in flight per
    // process at each end of the window: the records of the last fetches
    // may still be under way, and those of fetches made just before it may
    // land in it (on a loaded machine the task that sends them waits).
    let in_flight = probes.len() as u64;
    assert!(
        records <= total + in_flight && records + in_flight >= total,
        "{records} records on the primary for {total} fetches of {in_flight} processes"
    );
    assert_eq!(primary_scripts, 1 + records, "the commit and the records");
    let split: Vec<String> = fetches
        .iter()
        .map(|(served, homed)| format!("{served} fetches of {homed} processes"))
        .collect();
    println!(
        "{} processes on 2 replicas, {seconds:.2} s: {}; primary: 0 fetches, {records} fleet \
         records, 1 commit; µs per call on the replicas (INFO replication, fetch): {costs:?}",
        probes.len(),
        split.join(", ")
    );
    // The fleet view reads the records on the primary.
    let reports = writer.records("fleet").await.unwrap();
    assert_eq!(
        reports.records.len(),
        probes.len(),
        "one record per process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_its_primary_across_a_flip_is_not_read_and_the_writer_is_told() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let set = RedisReplicas::start(2);
    let url = set.url();
    let mut probes = fleet(&url, "42");
    let writer = RedisStore::open(&url).unwrap();
    assert_eq!(schedule(&writer, 0).await.lagging, Vec::<String>::new());
    // Replica 1 loses its primary, and with it every write from now on.
    set.cut(1);
    let committed = schedule(&writer, 42).await;
    assert_eq!(
        committed.lagging,
        [set.names()[1].clone()],
        "the writer is told which replica lags"
    );
    assert!(
        revision(&set.replicas[1]) < revision(&set.primary),
        "the cut replica does not hold the write"
    );
    assert_eq!(revision(&set.replicas[0]), revision(&set.primary));
    let at = committed.instants[0] * 1_000_000;
    let mut switched = Vec::new();
    let mut fallbacks = [0u64; 2];
    for probe in &mut probes {
        let (report, switch) = probe.switched(at, "replica 1 cut");
        let counted = report["replica_fallbacks"].as_u64().unwrap();
        match home(probe) {
            0 => assert_eq!(counted, 0, "replica 0 was fit all along"),
            _ => assert!(
                counted > 0,
                "a process on the cut replica counts its fallbacks"
            ),
        }
        fallbacks[home(probe)] += counted;
        switched.push(switch);
    }
    // Every process, those on the cut replica too, switched at the instant.
    assert_all_switched_within_5_ms(&switched, 0.0);
    println!(
        "replica 1 cut across a flip: fallbacks {fallbacks:?}, last old value read {:+.3} ms \
         after the instant at the latest",
        switched.iter().map(|s| s.stale_ms).fold(f64::MIN, f64::max)
    );
    // Reconnected, it catches up, and the next write waits for both.
    set.restore(1);
    assert_eq!(schedule(&writer, 43).await.lagging, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_follows_another_primary_is_not_read_a_fetch_never_goes_back_in_time() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let set = RedisReplicas::start(2);
    let store = RedisStore::open(&set.url()).unwrap();
    schedule(&store, 1).await;
    schedule(&store, 2).await;
    let fields = ["generation"];
    let fetched = store.fetch("fleet", &fields).await.unwrap();
    assert_eq!(fetched.revision, 2);
    assert_eq!(store.replica_fallbacks(), 0);
    // This process's replica (at its process id modulo 2) now follows an
    // empty server: its link is `connected`, its data from before lockstep
    // wrote anything.
    let home = std::process::id() as usize % 2;
    let elsewhere = lockstep_suite::RedisServer::start();
    let port = elsewhere.port().to_string();
    let _: () = set.replicas[home].cmd(&["REPLICAOF", "127.0.0.1", &port]);
    wait_for_async(
        "the replica to follow the empty server",
        Duration::from_millis(20),
        || match (set.link_state(home), revision(&set.replicas[home])) {
            (link, 0) if link == "connected" => Ok(()),
            (link, revision) => Err(format!("link `{link}`, revision {revision}")),
        },
    )
    .await;
    let fetched = store.fetch("fleet", &fields).await.unwrap();
    assert_eq!(
        fetched.revision, 2,
        "served by the other replica, not back in time"
    );
    let entries = &fetched.fields["generation"];
    assert_eq!(entries.last().unwrap().value, Ok("2".to_owned()));
    assert_eq!(store.replica_fallbacks(), 1);
    // The other replica is cut off too: the primary answers.
    set.cut(1 - home);
    set.primary.reset_stats();
    let fetched = store.fetch("fleet", &fields).await.unwrap();
    assert_eq!(fetched.revision, 2);
    assert_eq!(store.replica_fallbacks(), 2);
    // The primary's one fetch: refused once (`NOSCRIPT`: no fetch had come
    // its way), the script loaded, then served.
    assert_eq!(set.primary.calls_of(["evalsha_ro", "script|load"]), [2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_store_lost_its_data_the_replicas_are_read_again() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let set = RedisReplicas::start(2);
    let store = RedisStore::open(&set.url()).unwrap();
    schedule(&store, 1).await;
    schedule(&store, 2).await;
    let fields = ["generation"];
    assert_eq!(store.fetch("fleet", &fields).await.unwrap().revision, 2);
    // The primary loses everything, and its replicas with it.
    let _: () = set.primary.cmd(&["FLUSHALL"]);
    wait_for_async(
        "the flush to reach the replicas",
        Duration::from_millis(20),
        || {
            let revisions: Vec<u64> = set.replicas.iter().map(revision).collect();
            if revisions.iter().all(|r| *r == 0) {
                Ok(())
            } else {
                Err(format!("their revisions: {revisions:?}"))
            }
        },
    )
    .await;
    // The first fetch after: older than what this process held, so the
    // primary is asked, and what it holds is the truth from then on.
    let fetched = store.fetch("fleet", &fields).await.unwrap();
    assert_eq!((fetched.revision, fetched.epoch), (0, None));
    assert_eq!(store.replica_fallbacks(), 1);
    set.reset_stats();
    let fetched = store.fetch("fleet", &fields).await.unwrap();
    assert_eq!(fetched.revision, 0);
    assert_eq!(store.replica_fallbacks(), 1, "the replica serves again");
    assert_eq!(set.primary.calls("evalsha_ro"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockstep_set_warns_naming_the_replica_that_lags_and_the_write_stands() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let set = RedisReplicas::start(2);
    let url = set.url();
    // A process publishes the registry's schema, which the CLI checks.
    let mut probe = Probe::spawn(env!("CARGO_BIN_EXE_probe"), &url, &["7"]);
    assert_eq!(probe.line(), "ready");
    let both_hold = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run_cli(Some(&url), &["set", "fleet.generation", "6"])
    })
    .await
    .unwrap();
    assert_eq!(both_hold.code, 0, "{}", both_hold.stderr);
    assert!(
        !both_hold.stderr.contains("warning"),
        "no warning while both replicas hold the write: {}",
        both_hold.stderr
    );
    set.cut(1);
    let cut =
        tokio::task::spawn_blocking(move || run_cli(Some(&url), &["set", "fleet.generation", "7"]))
            .await
            .unwrap();
    assert_eq!(cut.code, 0, "the write stands: {}", cut.stderr);
    let lagging = &set.names()[1];
    assert!(
        cut.stderr.contains(&format!(
            "warning: the write stands on the primary, but the replicas {lagging} did not"
        )),
        "the writer is told that {lagging} lags, and only it: {}",
        cut.stderr
    );
    assert_eq!(revision(&set.replicas[0]), revision(&set.primary));
    assert!(revision(&set.replicas[1]) < revision(&set.primary));
    drop(probe);
}

/// The client connections `server` holds, besides the one that asks and
/// its replicas' links.
fn clients(server: &lockstep_suite::RedisServer) -> usize {
    let list: String = server.cmd(&["CLIENT", "LIST", "TYPE", "normal"]);
    list.lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_reading_a_replica_lets_go_of_the_primary_when_it_has_nothing_to_send() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let set = RedisReplicas::start(2);
    let store = RedisStore::open(&set.url()).unwrap();
    let fields = ["generation"];
    let baseline = clients(&set.primary);
    schedule(&store, 1).await;
    assert!(
        clients(&set.primary) > baseline,
        "a commit connects to the primary"
    );
    // The first fetch a replica serves sees the commit's use; the next,
    // with nothing sent to the primary in between, lets go.
    store.fetch("fleet", &fields).await.unwrap();
    store.fetch("fleet", &fields).await.unwrap();
    wait_for_async(
        "the primary to let go of a process that only fetches",
        Duration::from_millis(20),
        || match clients(&set.primary) {
            held if held > baseline => Err(format!("{} connections held", held - baseline)),
            _ => Ok(()),
        },
    )
    .await;
    assert_eq!(store.replica_fallbacks(), 0);
    // A write connects again, and stands.
    let committed = schedule(&store, 2).await;
    assert_eq!(committed.lagging, Vec::<String>::new());
    assert_eq!(store.fetch("fleet", &fields).await.unwrap().revision, 2);
    // A process that reports sends its record to the primary every fetch,
    // and keeps its connection.
    let reporting = RedisStore::open(&set.url()).unwrap();
    let report = lockstep_suite::sample_record();
    for _ in 0..5 {
        reporting
            .fetch_with(Fetch::new("fleet", &fields).reporting(Some(&report)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records: std::collections::HashMap<String, String> =
        set.primary.cmd(&["HGETALL", "lockstep:{fleet}:fleet"]);
    assert_eq!(records.len(), 1, "the record reached the primary");
    assert!(
        clients(&set.primary) > baseline,
        "a reporting process keeps its connection to the primary"
    );
}

/// What happens to replica 1 across a flip.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// `SIGSTOP`: the process stops, its sockets stay open.
    Freeze,
    /// `CLIENT PAUSE … ALL`: it holds every client's commands.
    Pause,
    /// `DEBUG SLEEP`: the server blocks, its replication too.
    Sleep,
    /// It follows another primary, promoted from a copy of ours.
    FailOver,
    /// `REPLICAOF NO ONE`: it answers as a primary.
    Promote,
}

/// This machine's clock, in ms since the Unix epoch.
fn now_millis() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    since.as_millis() as i64
}

/// Long enough to outlast any test; the servers are killed on drop.
const FOR_GOOD: Duration = Duration::from_secs(600);

/// Replica 1 hurt by `fault`, then a write at the horizon: the write
/// returns before its instant, naming replica 1, which does not hold it in
/// time, and every process switches at the instant, never early,
/// with no failed fetch and no late flip: those reading replica 1 leave it
/// within each fetch and count the fallbacks (and the failovers).
async fn a_flip_across(fault: Fault) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut set = RedisReplicas::start(2);
    let url = set.url();
    let mut probes = fleet(&url, "42");
    let writer = RedisStore::open(&url).unwrap();
    assert_eq!(schedule(&writer, 0).await.lagging, Vec::<String>::new());
    let _asleep = match fault {
        Fault::Freeze => {
            set.replicas[1].freeze();
            None
        }
        Fault::Pause => {
            set.replicas[1].pause_clients(FOR_GOOD);
            None
        }
        Fault::Sleep => Some(set.replicas[1].sleep_server(FOR_GOOD)),
        Fault::FailOver => {
            set.fail_over(1);
            None
        }
        Fault::Promote => {
            set.promote(1);
            None
        }
    };
    let committed = schedule(&writer, 42).await;
    let returned = now_millis();
    let first = committed.instants[0];
    assert!(
        returned < first,
        "{fault:?}: the write returned {} ms after its instant",
        returned - first
    );
    assert_eq!(
        committed.lagging,
        [set.names()[1].clone()],
        "{fault:?}: the writer is told that replica 1 lags, and only it"
    );
    let failover = matches!(fault, Fault::FailOver | Fault::Promote);
    let mut switched = Vec::new();
    let mut counted = [[0u64; 2]; 2];
    for probe in &mut probes {
        let (report, switch) = probe.switched(first * 1_000_000, &format!("{fault:?}"));
        let fallbacks = report["replica_fallbacks"].as_u64().unwrap();
        let failovers = report["replica_failovers"].as_u64().unwrap();
        match home(probe) {
            0 => assert_eq!(
                (fallbacks, failovers),
                (0, 0),
                "{fault:?}: replica 0 was fit"
            ),
            _ => {
                assert!(fallbacks > 0, "{fault:?}: replica 1's readers fell back");
                assert_eq!(
                    failovers > 0,
                    failover,
                    "{fault:?}: failovers counted ({failovers}) only for a failover"
                );
            }
        }
        counted[home(probe)][0] += fallbacks;
        counted[home(probe)][1] += failovers;
        switched.push(switch);
    }
    assert_all_switched_within_5_ms(&switched, 0.0);
    println!(
        "{fault:?} of replica 1 across a flip: the write returned {} ms before its instant, \
         lagging {:?}; (fallbacks, failovers) by replica {counted:?}; last old value read \
         {:+.3} ms after the instant at the latest",
        first - returned,
        committed.lagging,
        switched.iter().map(|s| s.stale_ms).fold(f64::MIN, f64::max)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_replica_is_left_within_each_fetch_and_the_writer_is_told_before_the_instant() {
    a_flip_across(Fault::Freeze).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_did_not_answer_in_time_is_asked_after_the_others_for_a_while() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let set = RedisReplicas::start(2);
    let store = RedisStore::open(&set.url()).unwrap();
    schedule(&store, 1).await;
    let fields = ["generation"];
    let fetch = || Fetch::new("fleet", &fields).within(Duration::from_millis(250));
    assert_eq!(store.fetch_with(fetch()).await.unwrap().revision, 1);
    let home = std::process::id() as usize % 2;
    set.reset_stats();
    set.replicas[home].freeze();
    // Five fetches, each answered by the other replica: the frozen one is
    // sent the first only (its share of that fetch's deadline spent), then
    // left out of the next ones instead of costing each half its deadline.
    for _ in 0..5 {
        assert_eq!(store.fetch_with(fetch()).await.unwrap().revision, 1);
    }
    set.replicas[home].thaw();
    let other = &set.replicas[1 - home];
    assert_eq!(
        other.calls_of(["evalsha_ro", "script|load"]),
        [6, 1],
        "the other replica served all five, the first once it had loaded the script"
    );
    // What the frozen replica was sent sits in one connection's buffer,
    // read in one go once it runs again.
    wait_for_async(
        "the thawed replica to read what it was sent",
        Duration::from_millis(20),
        || match set.replicas[home].calls("evalsha_ro") {
            0 => Err("nothing yet".to_owned()),
            _ => Ok(()),
        },
    )
    .await;
    assert_eq!(
        set.replicas[home].calls("evalsha_ro"),
        1,
        "the frozen replica was asked once, by the first of the five fetches"
    );
    assert_eq!(store.replica_fallbacks(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clients_are_paused_is_left_and_the_writer_is_told_before_the_instant() {
    // A replica's paused clients include its link to the primary: it does
    // not acknowledge the write either.
    a_flip_across(Fault::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_asleep_in_a_long_command_is_left_and_the_writer_is_told_before_the_instant() {
    a_flip_across(Fault::Sleep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_following_another_primary_is_a_failover_not_read_and_the_writer_is_told() {
    a_flip_across(Fault::FailOver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_is_a_failover_not_read_and_the_writer_is_told() {
    a_flip_across(Fault::Promote).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_reader_reads_its_replica_and_keeps_its_record_on_the_primary() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let set = RedisReplicas::start(2);
    // The read-only user of docs/stores.md, word for word, on every server
    // (ACLs do not replicate).
    let servers: Vec<&lockstep_suite::RedisServer> =
        std::iter::once(&set.primary).chain(&set.replicas).collect();
    let password = lockstep_suite::documented_reader(&servers);
    let url = format!(
        "redis://reader:{password}@127.0.0.1:{}?replicas={}",
        set.primary.port(),
        set.names().join(",")
    );
    let writer = RedisStore::open(&set.url()).unwrap();
    schedule(&writer, 5).await;
    let reader = RedisStore::open(&url).unwrap();
    let report = lockstep_suite::sample_record();
    for _ in 0..3 {
        let fetched = reader
            .fetch_with(Fetch::new("fleet", &["generation"]).reporting(Some(&report)))
            .await
            .unwrap();
        assert_eq!(fetched.fields["generation"][0].value.as_deref(), Ok("5"));
    }
    assert_eq!(
        (reader.replica_fallbacks(), reader.replica_failovers()),
        (0, 0),
        "the reader may ask its replica's state, and reads it"
    );
    assert_eq!(
        set.primary.calls("evalsha_ro"),
        0,
        "no fetch reached the primary"
    );
    wait_for_async(
        "the reader's record on the primary",
        Duration::from_millis(20),
        || {
            let records: std::collections::HashMap<String, String> =
                set.primary.cmd(&["HGETALL", "lockstep:{fleet}:fleet"]);
            if records.contains_key(report.process()) {
                Ok(())
            } else {
                Err(format!("{records:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_leaves_the_replicas_read_from_the_first_fetch() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let set = RedisReplicas::start(2);
    let writer = RedisStore::open(&set.url()).unwrap();
    schedule(&writer, 3).await;
    // A process starting while its primary is frozen cannot ask it whom
    // the replicas should follow: it reads them all the same.
    let reader = RedisStore::open(&set.url()).unwrap();
    set.primary.freeze();
    // The fetch's deadline, which a registry keeps (a fetch that overruns
    // it has failed): 2 s here, where the frozen primary would hold the
    // fetch for its client's 5 s response timeout.
    let deadline = Duration::from_secs(2);
    let fields = ["generation"];
    let fetch = Fetch::new("fleet", &fields).within(deadline);
    let fetched = tokio::time::timeout(deadline, reader.fetch_with(fetch)).await;
    set.primary.thaw();
    let fetched = fetched
        .expect("the fetch answered within its deadline")
        .expect("a replica serves the fetch");
    assert_eq!(fetched.fields["generation"][0].value.as_deref(), Ok("3"));
    assert_eq!(
        (reader.replica_fallbacks(), reader.replica_failovers()),
        (0, 0),
        "its own replica served it"
    );
}
