//! A reconnect storm: fifty processes, each holding a registry on one
//! redis-server, and the server restarted under them (`kill -9`, the same
//! port, one second down). While it is down, the processes' connection
//! attempts (counted by a proxy between them and the server, which the
//! server cannot count) stay bounded; once it is back, the connections it
//! accepts (`total_connections_received` from `INFO stats`, every 50 ms)
//! come spread out, one per process, and every process has fetched again
//! within about a tick.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lockstep_suite::{Probe, Proxy, RedisServer};

const PROCESSES: usize = 50;
/// The most connection attempts a process may make per second while the
/// server is down.
const MAX_ATTEMPTS_PER_PROCESS_PER_SECOND: f64 = 20.0;
/// The most connections the server may accept in any 100 ms after it comes
/// back: nine tenths of the fleet. Processes that retried without delay
/// would all connect in the first 50 ms; with the connection manager's
/// jittered delays and each process noticing the outage at its own phase,
/// they spread over about 200 ms.
const MAX_PER_100MS: u64 = PROCESSES as u64 * 9 / 10;

/// `INFO stats`' `total_connections_received`.
fn connections_received(c: &mut redis::Connection) -> Option<u64> {
    let info: String = redis::cmd("INFO").arg("stats").query(c).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))?
        .trim()
        .parse()
        .ok()
}

/// How many clients have fetched on their current connection: their last
/// command ran a fetch script (with its report, `EVALSHA`; without,
/// `EVALSHA_RO`).
fn fetched_clients(c: &mut redis::Connection) -> Option<usize> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(c).ok()?;
    Some(
        list.lines()
            .filter(|l| l.contains(" cmd=evalsha ") || l.contains(" cmd=evalsha_ro "))
            .count(),
    )
}

/// One look: when, how many connections the server had accepted since it
/// started (`None` while it is down), and how many the proxy had.
struct Sample {
    at: Duration,
    received: Option<u64>,
    attempts: u64,
}

#[test]
fn fifty_processes_reconnect_spread_out_within_a_tick_of_a_restart() {
    let mut server = RedisServer::start_persistent();
    // The processes connect through a proxy, which counts every connection
    // attempt, also those the server is not there to see.
    let proxy = Proxy::to(server.port());
    let started = Instant::now();
    // `probe --serve` processes, killed when dropped.
    let mut members: Vec<Probe> = (0..PROCESSES)
        .map(|_| Probe::spawn(env!("CARGO_BIN_EXE_probe"), &proxy.url(), &["--serve"]))
        .collect();
    for member in &mut members {
        assert_eq!(member.line(), "ready");
    }
    println!("{PROCESSES} processes started in {:?}", started.elapsed());
    // Let their phases settle: every process fetches once per tick.
    std::thread::sleep(Duration::from_millis(1_200));

    // Sample the server every 50 ms, on a connection of the sampler's own.
    let stop = Arc::new(AtomicBool::new(false));
    let origin = Instant::now();
    let proxy = Arc::new(proxy);
    let sampler = {
        let (stop, url, proxy) = (stop.clone(), server.url(), proxy.clone());
        std::thread::spawn(move || {
            let client = redis::Client::open(url).unwrap();
            let mut connection = None;
            let mut samples = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if connection.is_none() {
                    connection = client
                        .get_connection_with_timeout(Duration::from_millis(100))
                        .ok();
                }
                let received = connection.as_mut().and_then(connections_received);
                if received.is_none() {
                    connection = None;
                }
                samples.push(Sample {
                    at: origin.elapsed(),
                    received,
                    attempts: proxy.connections(),
                });
                std::thread::sleep(Duration::from_millis(50));
            }
            samples
        })
    };

    std::thread::sleep(Duration::from_millis(200));
    let down_at = origin.elapsed();
    server.restart(Duration::from_secs(1)); // kill -9, down 1 s, same port
    let back = Instant::now();
    let back_at = origin.elapsed();
    let mut watcher = server.connection().unwrap();
    let mut all_fetched = None;
    while back.elapsed() < Duration::from_millis(2_000) {
        if all_fetched.is_none() && fetched_clients(&mut watcher) == Some(PROCESSES) {
            all_fetched = Some(back.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.join().unwrap();

    let ms = |d: Duration| d.as_millis() as i64 - back_at.as_millis() as i64;
    // Connection attempts while the server was down, seen by the proxy.
    let attempts_at = |at: Duration| {
        samples
            .iter()
            .rev()
            .find(|s| s.at <= at)
            .map_or(0, |s| s.attempts)
    };
    let down_for = (back_at - down_at).as_secs_f64();
    let attempts_down = attempts_at(back_at) - attempts_at(down_at);
    // Connections the server accepted, per 50 ms from its start: the first
    // sample after it came back counts everything since.
    let mut per_50ms: Vec<(i64, u64)> = Vec::new();
    let mut last = Some(0);
    for s in samples.iter().filter(|s| s.at >= back_at) {
        if let (Some(a), Some(b)) = (last, s.received) {
            per_50ms.push((ms(s.at), b.saturating_sub(a)));
        }
        last = s.received;
    }
    while per_50ms.last().is_some_and(|p| p.1 == 0) {
        per_50ms.pop();
    }
    let total: u64 = per_50ms.iter().map(|p| p.1).sum();
    let busiest_100ms = (0..per_50ms.len())
        .map(|i| {
            per_50ms[i..per_50ms.len().min(i + 2)]
                .iter()
                .map(|p| p.1)
                .sum()
        })
        .max()
        .unwrap_or(0);
    println!(
        "down {down_for:.2} s: {attempts_down} connection attempts ({:.1} per process per \
         second); after the restart: {total} connections accepted, per 50 ms (ms after the \
         server answered, count): {per_50ms:?}; busiest 100 ms: {busiest_100ms}; every \
         process fetched again after {all_fetched:?}",
        attempts_down as f64 / PROCESSES as f64 / down_for
    );
    // Bounded: a process retries a failed fetch after 1/16 of a tick,
    // doubling up to half a tick, each retry costing at most a few
    // connection attempts (the connection manager's 1 + 2 retries, and one
    // resend when a connection is found closed); a reconnect loop without
    // backoff would make thousands a second.
    let per_process_per_second = attempts_down as f64 / PROCESSES as f64 / down_for;
    assert!(
        per_process_per_second <= MAX_ATTEMPTS_PER_PROCESS_PER_SECOND,
        "{per_process_per_second:.1} connection attempts per process per second while down"
    );
    // Once the server answers, each process connects once: no reconnect
    // loop (the rest are the test's own: the harness's PING, the sampler,
    // the watcher).
    assert!(
        total <= PROCESSES as u64 + 5,
        "{total} connections for {PROCESSES} processes after the restart"
    );
    // Spread, not all at once.
    assert!(
        busiest_100ms <= MAX_PER_100MS,
        "{busiest_100ms} connections in 100 ms: {per_50ms:?}"
    );
    let all_fetched = all_fetched.expect("not every process fetched again within 2 s");
    assert!(
        all_fetched <= Duration::from_millis(1_250),
        "every process fetched again only {all_fetched:?} after the restart"
    );
    drop(members);
}
