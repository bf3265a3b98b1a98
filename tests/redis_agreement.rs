//! Agreement across processes: four OS processes hold one registry and
//! record `(instant, value)` samples of its field (every 5 ms by their wall
//! clock, and at every change they see) while this test makes random writes
//! through the Rust API — sets, schedules (some before the horizon, which
//! must be refused), ramps and cancels (some too late, which must be
//! refused) — for about eight ticks of 1 s. Afterwards, for every sampled
//! instant, every process saw the value the writes put there, so all of them
//! agree.
//!
//! A sample is a read with the wall clock just before and just after it: the
//! value it returned was there at some instant between the two, however
//! long the machine kept the reader from running in between. The only
//! allowance: a read that started in the 2 ms after an activation instant
//! may still return the value before it (a flip lands within about a
//! millisecond). None before an instant. The processes share one machine and
//! so one clock; its granularity is measured and printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lockstep::{Error, lockstep};
use lockstep_suite::{Probe, RedisServer};

const PROCESSES: usize = 4;
/// How long the test writes; activations run on for up to four ticks more.
const WRITING: Duration = Duration::from_millis(4_500);
/// After an activation instant, how long a read may still return the value
/// before.
const ALLOWANCE_NS: i64 = 2_000_000;

/// The registry the probes hold (`probe --record`), for writing.
#[lockstep(tick = "1s", store = "redis", namespace = "agreement")]
struct Agreement {
    value: u64,
}

/// A `probe --record` process recording every 5 ms; killed on drop.
fn recorder(url: &str) -> Probe {
    Probe::spawn(env!("CARGO_BIN_EXE_probe"), url, &["--record", "5"])
}

/// Stops the recorders once each has read `value`, the last one written,
/// at or after `until` (ns): what each recorded.
fn finish(recorders: &mut [Probe], value: u64, until: i64) -> Vec<serde_json::Value> {
    for recorder in recorders.iter_mut() {
        recorder.tell(&format!("{value} {until}"));
    }
    recorders
        .iter_mut()
        .map(|recorder| {
            let report = recorder.line();
            serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}"))
        })
        .collect()
}

/// xorshift64*: reproducible with `AGREEMENT_SEED`.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn ns(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap()
}

/// The value the writes put at `t`: the last entry at or before it.
fn truth(timeline: &BTreeMap<i64, u64>, t: i64) -> u64 {
    timeline.range(..=t).next_back().map_or(0, |(_, v)| *v)
}

/// Every value the writes put at some instant from `from` to `to` (ns).
fn held_between(timeline: &BTreeMap<i64, u64>, from: i64, to: i64) -> Vec<u64> {
    let mut values = vec![truth(timeline, from)];
    if from < to {
        values.extend(timeline.range(from + 1..=to).map(|(_, v)| *v));
    }
    values
}

/// The finest step of the wall clock seen in a burst of reads.
fn clock_granularity() -> i64 {
    let mut finest = i64::MAX;
    let mut last = ns(Utc::now());
    for _ in 0..100_000 {
        let now = ns(Utc::now());
        if now > last {
            finest = finest.min(now - last);
        }
        last = now;
    }
    finest
}

/// Cancels the entry at `at` (ns); whether it was cancelled. An entry less
/// than a tick ahead is before any horizon: it must be refused.
async fn cancel(at: i64, timeline: &mut BTreeMap<i64, u64>) -> bool {
    let ahead = at - ns(Utc::now());
    match AGREEMENT
        .cancel(Agreement::VALUE, DateTime::from_timestamp_nanos(at))
        .await
    {
        Ok(()) => {
            assert!(
                ahead >= 1_000_000_000,
                "cancelled an entry {:.3} s before it activates",
                ahead as f64 / 1e9
            );
            timeline.remove(&at);
            true
        }
        Err(Error::BeforeHorizon { .. }) => false,
        Err(e) => panic!("{e}"),
    }
}

#[derive(Default, Debug)]
struct Ops {
    sets: u32,
    schedules: u32,
    ramps: u32,
    cancels: u32,
    refused_schedules: u32,
    refused_cancels: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sampling_one_field_agree_at_every_instant_through_random_writes() {
    let server = RedisServer::start();
    let url = server.url();
    AGREEMENT.builder().url(&url).start().await.unwrap();
    let mut recorders: Vec<Probe> = (0..PROCESSES).map(|_| recorder(&url)).collect();
    for recorder in &mut recorders {
        assert_eq!(recorder.line(), "ready");
    }
    let seed = std::env::var("AGREEMENT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| ns(Utc::now()) as u64 | 1);
    let mut rng = Rng(seed);

    // The timeline the writes make, instant (ns) → value, kept beside them.
    let mut timeline: BTreeMap<i64, u64> = BTreeMap::new();
    let mut ops = Ops::default();
    let mut next = 1u64;
    let mut value = || {
        next += 1;
        next
    };
    let writing = Instant::now();
    while writing.elapsed() < WRITING {
        match rng.below(4) {
            0 => {
                let v = value();
                let at = AGREEMENT.set(Agreement::VALUE, v).await.unwrap();
                timeline.insert(ns(at), v);
                ops.sets += 1;
            }
            1 => {
                // From half a tick to three ticks ahead: the nearest are
                // before the horizon and refused.
                let v = value();
                let when = Utc::now() + Duration::from_millis(500 + rng.below(2_500));
                match AGREEMENT.schedule(Agreement::VALUE, v, when).await {
                    Ok(at) => {
                        timeline.insert(ns(at), v);
                        ops.schedules += 1;
                    }
                    Err(Error::BeforeHorizon { .. }) => ops.refused_schedules += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            2 => {
                let values: Vec<u64> = (0..2 + rng.below(2)).map(|_| value()).collect();
                let instants = AGREEMENT
                    .ramp(Agreement::VALUE, values.clone())
                    .await
                    .unwrap();
                for (at, v) in instants.into_iter().zip(values) {
                    timeline.insert(ns(at), v);
                }
                ops.ramps += 1;
            }
            _ => {
                // A pending entry, the next one half the time: those a
                // process may already act on are refused.
                let now = ns(Utc::now());
                let pending: Vec<i64> = timeline.range(now..).map(|(at, _)| *at).collect();
                if pending.is_empty() {
                    continue;
                }
                let at = match rng.below(2) {
                    0 => pending[0],
                    _ => pending[rng.below(pending.len() as u64) as usize],
                };
                if cancel(at, &mut timeline).await {
                    ops.cancels += 1;
                } else {
                    ops.refused_cancels += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100 + rng.below(300))).await;
    }
    // At least one cancel too late, whatever the dice said: the next entry,
    // under a tick before it activates.
    if timeline.range(ns(Utc::now())..).next().is_none() {
        let v = value();
        let at = AGREEMENT.set(Agreement::VALUE, v).await.unwrap();
        timeline.insert(ns(at), v);
        ops.sets += 1;
    }
    let next = *timeline.range(ns(Utc::now())..).next().unwrap().0;
    let wait = next - 900_000_000 - ns(Utc::now());
    tokio::time::sleep(Duration::from_nanos(wait.max(0) as u64)).await;
    assert!(!cancel(next, &mut timeline).await);
    ops.refused_cancels += 1;
    // Every process samples on until it has read the last value, and for
    // 300 ms after its instant by the wall clock.
    let (&last, &last_value) = timeline.iter().next_back().expect("nothing written");
    let reports =
        tokio::task::spawn_blocking(move || finish(&mut recorders, last_value, last + 300_000_000))
            .await
            .unwrap();
    let samples: Vec<Vec<(i64, i64, u64)>> = reports
        .iter()
        .map(|r| serde_json::from_value(r["samples"].clone()).unwrap())
        .collect();

    // Every sample against the timeline the writes made: a read from `s` to
    // `e` returns a value the timeline holds at some instant from `s` (less
    // the allowance) to `e`.
    let (mut checked, mut spanning, mut allowed, mut wrong) = (0u64, 0u64, 0u64, Vec::new());
    let mut lateness_ns: Vec<i64> = Vec::new();
    for (p, mine) in samples.iter().enumerate() {
        for (i, &(s, e, v)) in mine.iter().enumerate() {
            checked += 1;
            let expected = truth(&timeline, e);
            if v == expected {
                // A change this process saw: how long after its instant.
                if i > 0
                    && mine[i - 1].2 != v
                    && let Some((at, _)) = timeline.range(..=e).next_back()
                {
                    lateness_ns.push(e - at);
                }
                continue;
            }
            if held_between(&timeline, s, e).contains(&v) {
                spanning += 1;
            } else if held_between(&timeline, s - ALLOWANCE_NS, s).contains(&v) {
                allowed += 1;
            } else {
                wrong.push((p, s, e, v, expected));
            }
        }
    }

    // Every sample against every other process's value while it read, where
    // that process's samples on both sides of the read agree and nothing
    // activated from the allowance before it to its end.
    let (mut compared, mut disagreed) = (0u64, Vec::new());
    for (p, mine) in samples.iter().enumerate() {
        for (q, theirs) in samples.iter().enumerate() {
            if p == q {
                continue;
            }
            for &(s, e, v) in mine {
                let after = theirs.partition_point(|x| x.0 < e);
                let (Some(before), Some(after)) = (
                    theirs[..after].iter().rev().find(|x| x.1 <= s),
                    theirs.get(after),
                ) else {
                    continue;
                };
                if before.2 != after.2 || held_between(&timeline, s - ALLOWANCE_NS, e).len() > 1 {
                    continue;
                }
                compared += 1;
                if before.2 != v {
                    disagreed.push((p, q, s, e, v, before.2));
                }
            }
        }
    }

    lateness_ns.sort_unstable();
    let changes = timeline.len();
    let span = (last - samples[0][0].0) as f64 / 1e9;
    println!(
        "seed {seed}: {ops:?}, {changes} activations over {span:.1} s; {PROCESSES} processes, \
         {checked} samples: {} right at the end of their read, {spanning} right during it, \
         {allowed} started in the 2 ms after an instant showing the value before, {} wrong; \
         {compared} cross-process comparisons, {} disagreements; changes seen {} times, \
         lateness min {:.3} / median {:.3} / max {:.3} ms; clock granularity {} ns",
        checked - spanning - allowed - wrong.len() as u64,
        wrong.len(),
        disagreed.len(),
        lateness_ns.len(),
        lateness_ns.first().copied().unwrap_or(0) as f64 / 1e6,
        lateness_ns.get(lateness_ns.len() / 2).copied().unwrap_or(0) as f64 / 1e6,
        lateness_ns.last().copied().unwrap_or(0) as f64 / 1e6,
        clock_granularity(),
    );
    assert!(
        wrong.is_empty(),
        "samples (process, read started ns, read ended ns, value, expected at its end) off the \
         timeline: {:?}",
        &wrong[..wrong.len().min(10)]
    );
    assert!(
        disagreed.is_empty(),
        "processes disagreed (p, q, p's read started ns, ended ns, p's value, q's value): {:?}",
        &disagreed[..disagreed.len().min(10)]
    );
    for (p, report) in reports.iter().enumerate() {
        let (late, failed) = (&report["late_flips"], &report["failed"]);
        assert_eq!(late, 0, "process {p}: {late} late flips");
        assert_eq!(failed, 0, "process {p}: {failed} failed fetches");
    }
    // Every process saw every activation that changed the value.
    let flips = timeline
        .iter()
        .scan(0, |before, (_, v)| {
            let changed = v != before;
            *before = *v;
            Some(changed)
        })
        .filter(|c| *c)
        .count();
    assert_eq!(lateness_ns.len(), flips * PROCESSES, "{lateness_ns:?}");
    assert!(ops.sets + ops.schedules + ops.ramps >= 5, "{ops:?}");
}
