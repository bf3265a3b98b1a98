//! A fleet member for the multi-process tests: starts a registry on
//! `LOCKSTEP_URL`, says `ready`, then watches the hot path (every 100 µs)
//! until the value named on the command line appears and prints, as JSON,
//! when it did (`seen_ns`, the wall clock after the first read that saw it),
//! when the last read that still saw the old value started (`last_old_ns`)
//! and when, in the last second before, the watcher did not run for 1 ms or
//! more between two reads (`stalls_ns`: `[[end of a read, start of the
//! next], …]`), with its fetch counts: `failed` after `start()` returned,
//! `failed_at_boot` the first fetches `start()` retried.
//!
//! `probe <expected value> [<clock skew ms> [store]]`
//!
//! Two more modes:
//!
//! - `probe --serve`: starts the registry, says `ready`, and keeps it fresh
//!   until killed (a quiet fleet member, for the reconnect storm);
//! - `probe --record <every ms>`: starts the `agreement` registry, says
//!   `ready`, then samples its field: every `<every ms>` by the wall clock,
//!   and at every change it sees (polling the hot path every 200 µs), until
//!   it is told `<value> <instant ns>` on its standard input (the last value
//!   written) and reads that value at or after that instant by the wall
//!   clock (or until its standard input closes); then prints the samples
//!   `[[read started ns, read ended ns, value], …]` and its status as one
//!   JSON line.
//!
//! In every mode it ends when its standard input closes (its test ended it,
//! or ended), never on a clock of its own.

use std::time::Duration;

use chrono::Utc;
use lockstep::lockstep;

/// The registry every probe holds.
#[lockstep(tick = "1s", store = "redis", namespace = "fleet")]
pub struct Fleet {
    /// The value the test flips.
    pub generation: u64,
    /// More fields, to show a fetch is one call whatever their number.
    pub a: u32,
    /// See `a`.
    pub b: String,
    /// See `a`.
    pub c: Vec<u8>,
}

/// The same registry, flipping by the store's clock.
#[lockstep(tick = "1s", store = "redis", namespace = "fleet", clock = "store")]
pub struct FleetOnStoreClock {
    /// The value the test flips.
    pub generation: u64,
}

/// The registry of the agreement test: one field the test writes at random.
#[lockstep(tick = "1s", store = "redis", namespace = "agreement")]
pub struct Agreement {
    /// The value every process samples.
    pub value: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--serve") => return serve().await,
        Some("--record") => {
            let every: u64 = args
                .get(2)
                .ok_or("usage: probe --record <every ms>")?
                .parse()?;
            return record(Duration::from_millis(every)).await;
        }
        _ => {}
    }
    lockstep_suite::probe::exit_when_stdin_closes();
    let expected: u64 = args.get(1).ok_or("usage: probe <value>")?.parse()?;
    let skew_ms: i64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let follow_store = args.get(3).is_some_and(|s| s == "store");
    let skew = chrono::TimeDelta::milliseconds(skew_ms);
    let generation: fn() -> u64 = if follow_store {
        FLEET_ON_STORE_CLOCK
            .builder()
            .clock_skew(skew)
            .start()
            .await?;
        || FLEET_ON_STORE_CLOCK.generation()
    } else {
        FLEET.builder().clock_skew(skew).start().await?;
        || FLEET.generation()
    };
    let status = || {
        if follow_store {
            FLEET_ON_STORE_CLOCK.status()
        } else {
            FLEET.status()
        }
    };
    // `start()` retries its first fetch within the boot timeout: what failed
    // before it returned (several processes creating one SQLite file's
    // tables at once, say) is reported apart from what failed while serving.
    let failed_at_boot = status().failed_fetches;
    println!("ready");
    let watcher = tokio::task::spawn_blocking(move || {
        let mut last_old = Utc::now();
        let mut stalls = Vec::new();
        let mut last_end: Option<chrono::DateTime<Utc>> = None;
        loop {
            let started = Utc::now();
            // Between two reads the watcher sleeps 100 µs; a longer gap is
            // time this process did not run (the VM or its scheduler).
            if let Some(end) = last_end
                && started - end >= chrono::TimeDelta::milliseconds(1)
            {
                stalls.push((end, started));
            }
            let value = generation();
            // The wall clock after the load bounds the flip from above...
            let seen = Utc::now();
            if value == expected {
                return (seen, last_old, stalls);
            }
            // ...and the start of a load that still saw the old value, from
            // below.
            last_old = started;
            last_end = Some(seen);
            stalls.retain(|(_, to)| seen - *to < chrono::TimeDelta::seconds(1));
            std::thread::sleep(Duration::from_micros(100));
        }
    });
    let (seen, last_old, stalls) = watcher.await?;
    // Stay a little longer so fetch counting sees whole ticks.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = status();
    let offset = status
        .clock_offset
        .map(|d| d.num_microseconds().unwrap_or(0));
    println!(
        "{}",
        serde_json::json!({
            "seen_ns": seen.timestamp_nanos_opt(),
            "last_old_ns": last_old.timestamp_nanos_opt(),
            "stalls_ns": stalls
                .iter()
                .map(|(from, to)| [from.timestamp_nanos_opt(), to.timestamp_nanos_opt()])
                .collect::<Vec<_>>(),
            "fetches": status.fetches,
            "failed": status.failed_fetches - failed_at_boot,
            "failed_at_boot": failed_at_boot,
            "last_error": status.last_error,
            "late_flips": status.late_flips,
            "clock_offset_us": offset,
            "replica_fallbacks": status.replica_fallbacks,
            "replica_failovers": status.replica_failovers,
        })
    );
    Ok(())
}

/// `--serve`: a fleet member that only keeps its registry fresh.
async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    lockstep_suite::probe::exit_when_stdin_closes();
    FLEET.start().await?;
    println!("ready");
    std::future::pending::<()>().await;
    Ok(())
}

/// `--record`: samples `AGREEMENT.value()` until it reads the last value
/// it is told at or after the instant it is told, or until standard input
/// closes.
async fn record(every: Duration) -> Result<(), Box<dyn std::error::Error>> {
    use std::sync::{Arc, Mutex};

    /// What standard input said: nothing yet, `<value> <instant ns>`, or
    /// that it closed.
    #[derive(Clone, Copy)]
    enum Told {
        Nothing,
        Until(u64, i64),
        Closed,
    }

    AGREEMENT.start().await?;
    println!("ready");
    let told = Arc::new(Mutex::new(Told::Nothing));
    let teller = told.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let mut words = line.split_whitespace().map(str::parse::<i64>);
            if let (Some(Ok(value)), Some(Ok(at))) = (words.next(), words.next()) {
                *teller.lock().unwrap_or_else(|e| e.into_inner()) = Told::Until(value as u64, at);
            }
        }
        *teller.lock().unwrap_or_else(|e| e.into_inner()) = Told::Closed;
    });
    let samples = tokio::task::spawn_blocking(move || {
        let every = every.as_nanos() as i64;
        let mut samples: Vec<(i64, i64, u64)> = Vec::new();
        let mut next = 0;
        loop {
            // The wall clock before and after the load: the value was there
            // at some instant between the two.
            let started = Utc::now().timestamp_nanos_opt().unwrap_or_default();
            let value = AGREEMENT.value();
            let now = Utc::now().timestamp_nanos_opt().unwrap_or_default();
            if now >= next || samples.last().is_none_or(|(_, _, last)| *last != value) {
                samples.push((started, now, value));
                if now >= next {
                    next = (now / every + 1) * every;
                }
            }
            let told = *told.lock().unwrap_or_else(|e| e.into_inner());
            match told {
                Told::Closed => break,
                // Nothing is written after it: once read, it stays.
                Told::Until(last, at) if value == last && now >= at => break,
                _ => {}
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        samples
    })
    .await?;
    let status = AGREEMENT.status();
    println!(
        "{}",
        serde_json::json!({
            "samples": samples,
            "fetches": status.fetches,
            "failed": status.failed_fetches,
            "late_flips": status.late_flips,
        })
    );
    Ok(())
}
