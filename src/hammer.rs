//! A reader hammering the accessors, and the checks of what it saw.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a reader hammering the accessors saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// How many reads.
    pub reads: u64,
    /// For how long.
    pub elapsed: Duration,
    /// The slowest read by the wall clock, preemption included.
    pub slowest: Duration,
    /// Reads that took 1 ms or more by the wall clock.
    pub over_1ms: u64,
    /// Of those, the ones during which the OS took the CPU away from the
    /// reader (an involuntary context switch). The others were slowed by
    /// something the guest does not count (on this VM, most likely the host
    /// pausing its virtual CPU).
    pub over_1ms_preempted: u64,
    /// Reads during which the reader blocked (a voluntary context switch):
    /// waited on a lock, I/O or a timer.
    pub blocked: u64,
    /// For each generation: the wall clock (ns) after the first read that
    /// saw it, and at the start of the last read that still saw an older one.
    pub first_seen: Vec<(u64, i64, i64)>,
    /// Whether a value ever went back to an older one.
    pub reverted: bool,
    /// When the reader did not run for 1 ms or more between two reads: the
    /// wall clock (ns) at the end of one read and at the start of the next.
    pub stalls: Vec<(i64, i64)>,
}

/// A thread reading `read` in a loop until stopped, sleeping 20 µs (plus
/// what the OS adds) between reads.
pub struct Hammer {
    stop: Arc<AtomicBool>,
    /// The generation its last read saw.
    latest: Arc<AtomicU64>,
    thread: JoinHandle<Seen>,
}

/// The calling thread's context switches so far: (voluntary, involuntary).
fn context_switches() -> (i64, i64) {
    // SAFETY: `getrusage` only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
        usage
    };
    (usage.ru_nvcsw, usage.ru_nivcsw)
}

impl Hammer {
    /// Starts reading: `read` returns a generation that only ever grows, and
    /// anything else read alongside (to exercise more accessors).
    ///
    /// Every read is timed, and the reader thread's context switches during
    /// it are counted (`getrusage`), so a read that waited on something is
    /// told apart from one the OS preempted on a busy machine. One read
    /// comes first, unmeasured: the first read of a non-scalar field
    /// initialises its slot, once.
    pub fn start(read: fn() -> (u64, usize)) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let latest = Arc::new(AtomicU64::new(0));
        let last_read = latest.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Seen::default();
            let wall = || chrono::Utc::now().timestamp_nanos_opt().unwrap();
            let began = Instant::now();
            let mut last_old = wall();
            let mut last = read().0;
            let mut last_end = wall();
            if last > 0 {
                seen.first_seen.push((last, last_end, last_old));
            }
            while !flag.load(Ordering::Relaxed) {
                let (voluntary, involuntary) = context_switches();
                let started_wall = wall();
                if started_wall - last_end >= 1_000_000 {
                    seen.stalls.push((last_end, started_wall));
                }
                let started = Instant::now();
                let (generation, _len) = read();
                let took = started.elapsed();
                last_read.store(generation, Ordering::Relaxed);
                let after = context_switches();
                let now = wall();
                seen.reads += 1;
                seen.slowest = seen.slowest.max(took);
                if after.0 != voluntary {
                    seen.blocked += 1;
                }
                if took >= Duration::from_millis(1) {
                    seen.over_1ms += 1;
                    if after.1 != involuntary {
                        seen.over_1ms_preempted += 1;
                    }
                }
                if generation < last {
                    seen.reverted = true;
                }
                if generation > last {
                    seen.first_seen.push((generation, now, last_old));
                    last = generation;
                }
                last_old = started_wall;
                last_end = now;
                seen.elapsed = began.elapsed();
                // Not a busy loop: on two cores a reader that never sleeps
                // takes a whole core from the flipper it watches, the
                // refresher and the store (a busy reader saw a flip 5.3 ms
                // late).
                std::thread::sleep(Duration::from_micros(20));
            }
            seen
        });
        Hammer {
            stop,
            latest,
            thread,
        }
    }

    /// Stops reading; what the reader saw.
    pub fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the reader panicked")
    }

    /// Stops reading once the reader has read `generation` (or a later
    /// one), however long after its instant that is on a loaded machine
    /// ([`check`] judges when it switched); what the reader saw.
    pub async fn finish_once_read(self, generation: u64) -> Seen {
        crate::wait::wait_for_async(
            &format!("the reader to read generation {generation}"),
            Duration::from_millis(5),
            || match self.latest.load(Ordering::Relaxed) {
                read if read >= generation || self.thread.is_finished() => Ok(()),
                read => Err(format!("generation {read}")),
            },
        )
        .await;
        self.finish()
    }
}

/// Checks what the reader saw: every change of `instants` (generation, ns)
/// at its instant (never seen before it, and no read of the old value that
/// started 5 ms or more after it: [`assert_all_switched_within_5_ms`]), nothing
/// reverted, no read that blocked, and none anywhere near as slow as waiting
/// on the store.
///
/// "No read slower than 1 ms" is printed, not asserted: on this 2-core VM
/// the guest's scheduler and the host take the CPU away from the reader in
/// the middle of a read for up to tens of milliseconds (18 ms seen in CI),
/// which says nothing of lockstep. What would say something, a read waiting
/// on a lock, the store, I/O or a timer, is a voluntary context switch: none
/// is allowed. A read spinning until the store answered would take at least
/// a fetch deadline (250 ms at the shortest tick): every read must take less
/// than half of that.
pub fn check(seen: &Seen, instants: &[(u64, i64)]) {
    println!(
        "{} reads in {:.1} s, {} blocked, slowest {:?}, {} of 1 ms or more ({} preempted by the guest), \
         (generation, first read of it, last read of the old value) in ms after its instant: \
         {:?}",
        seen.reads,
        seen.elapsed.as_secs_f64(),
        seen.blocked,
        seen.slowest,
        seen.over_1ms,
        seen.over_1ms_preempted,
        seen.first_seen
            .iter()
            .zip(instants)
            .map(|((g, seen_at, last_old), (_, at))| (
                *g,
                ms_after(*seen_at, *at),
                ms_after(*last_old, *at)
            ))
            .collect::<Vec<_>>()
    );
    assert!(!seen.reverted, "a value reverted");
    assert_eq!(seen.first_seen.len(), instants.len(), "{seen:?}");
    for ((generation, seen_at, last_old), (expected, at)) in seen.first_seen.iter().zip(instants) {
        assert_eq!(generation, expected);
        assert!(seen_at >= at, "generation {generation} seen early");
        let switched = Switched {
            seen_ms: ms_after(*seen_at, *at),
            stale_ms: ms_after(*last_old, *at),
            stalls_ms: stalls_ms(&seen.stalls, *at),
        };
        assert_all_switched_within_5_ms(&[switched], 0.0);
    }
    assert_eq!(seen.blocked, 0, "{} reads blocked", seen.blocked);
    assert!(
        seen.slowest < Duration::from_millis(125),
        "a read took {:?}",
        seen.slowest
    );
}

/// Milliseconds from `at` to `instant` (both ns).
pub fn ms_after(instant: i64, at: i64) -> f64 {
    (instant - at) as f64 / 1e6
}

/// What one process saw of a change due at an instant, in ms after it.
#[derive(Clone, Debug)]
pub struct Switched {
    /// When the first read that saw the change ended.
    pub seen_ms: f64,
    /// When the last read that still saw the old value started.
    pub stale_ms: f64,
    /// When the reader did not run for 1 ms or more between two reads.
    pub stalls_ms: Vec<(f64, f64)>,
}

impl Switched {
    /// From a probe's report (`src/bin/probe.rs`) of a change at `at` (ns).
    pub fn of(report: &serde_json::Value, at: i64) -> Switched {
        let ns = |key: &str| {
            report[key]
                .as_i64()
                .unwrap_or_else(|| panic!("{key}: {report}"))
        };
        let stalls: Vec<(i64, i64)> = report["stalls_ns"]
            .as_array()
            .unwrap_or_else(|| panic!("stalls_ns: {report}"))
            .iter()
            .map(|pair| (pair[0].as_i64().unwrap(), pair[1].as_i64().unwrap()))
            .collect();
        Switched {
            seen_ms: ms_after(ns("seen_ns"), at),
            stale_ms: ms_after(ns("last_old_ns"), at),
            stalls_ms: stalls_ms(&stalls, at),
        }
    }

    /// When this process ran again after `due` (ms after the instant): `due`
    /// itself, unless the process was not running then, in which case the
    /// end of that stall.
    pub fn resumed(&self, due: f64) -> f64 {
        self.stalls_ms
            .iter()
            .find(|(from, to)| *from <= due && due < *to)
            .map_or(due, |(_, to)| *to)
    }
}

/// `stalls` (ns) in ms after `at` (ns).
fn stalls_ms(stalls: &[(i64, i64)], at: i64) -> Vec<(f64, f64)> {
    stalls
        .iter()
        .map(|(from, to)| (ms_after(*from, at), ms_after(*to, at)))
        .collect()
}

/// "Every process sees the change within 5 ms": in no process did a read
/// that started 5 ms or more after the change was due (`due`, ms after its
/// instant), or after the process ran again if it was not running then,
/// still return the old value.
///
/// This is the promise as a request sees it. When a process's *first* read
/// of the new value happened is printed, not judged: it measures the
/// reader's own wake-ups as much as lockstep (a thread sleeping 100 µs on
/// this 2-core VM wakes 4 ms or more late once in one to two thousand
/// sleeps, up to 20 ms). And this VM sometimes stops every process at once:
/// CI saw all eight readers of the fleet test read nothing from 5.8 ms
/// before an instant to 4.3 ms after it, then two read the old value 6.1
/// and 6.5 ms after it, before their flippers got a core back. A process
/// that was not running served no request; so the 5 ms run from the
/// instant, or from the end of a gap of 1 ms or more between two of its
/// reads (the watcher sleeps 100 µs) that spans it. A flipper that wakes
/// late while its process runs fails this: its readers read on and see the
/// old value.
pub fn assert_all_switched_within_5_ms(switched: &[Switched], due: f64) {
    // (first read of the new value, last read of the old, ran again), ms.
    let shown: Vec<(f64, f64, f64)> = switched
        .iter()
        .map(|s| (s.seen_ms, s.stale_ms, s.resumed(due)))
        .collect();
    for (process, (_, stale, resumed)) in shown.iter().enumerate() {
        assert!(
            stale - resumed < 5.0,
            "process {process} still read the old value {:.3} ms after the instant \
             ({:.3} ms after it ran again); (first read of the new value, last read of \
             the old, ran again) in ms after the instant: {shown:?}",
            stale - due,
            stale - resumed,
        );
    }
}
