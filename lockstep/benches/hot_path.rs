//! The hot path against what a user would write by hand, in one run.
//!
//! Rows (criterion ids read `kind/contender/threads`):
//!
//! - `scalar/…`: `FLAGS.foobar_percent()` against a relaxed load of a
//!   `static AtomicU64`;
//! - `string/…`: `FLAGS.theme().len()` against `.load().theme.len()` on a
//!   `static LazyLock<ArcSwap<Config>>` and `.read().theme.len()` on a
//!   `static LazyLock<RwLock<Config>>` (plus `proto_tl_cache`, a prototype
//!   of a thread-local `arc_swap::Cache`, to size a possible runtime change);
//! - `snapshot/…`: `FLAGS.snapshot().theme.len()` against the same arc-swap
//!   baseline (a snapshot is the whole struct, like `Config`).
//!
//! Each lockstep accessor is measured on a registry that was never started
//! (`cold`: it serves its defaults) and on one that was started on a memory
//! store with a ramp of several entries per field fetched and waiting for
//! their instants (`started`: the flipper thread has work pending).
//!
//! `1t` is one thread. `2t` is the same read on the measuring thread while a
//! second thread (a `Hammer`) runs the very same read in a tight loop for the
//! whole benchmark: criterion times only the measuring thread, so a `2t`
//! figure is the cost of one read *while another core reads the same value*,
//! and `2t / 1t` is the price of sharing (cache-line traffic, contention).
//! Both threads run the same code on a 2-core machine, so the measuring
//! thread is a fair sample of either; reporting it rather than an average of
//! two timers keeps criterion's statistics intact.
//!
//! Criterion's clock is the wall clock. On a machine other jobs share, set
//! `HOT_PATH_CLOCK=cpu` to time the measuring thread's CPU time instead
//! (Linux): time the thread spends descheduled then does not count, so a
//! busy neighbour does not turn a `2t` figure into "two threads sharing one
//! core". Either way the hammer reports which share of the benchmark it was
//! on a CPU; well under 100 % means it did not always run alongside, and a
//! `2t` figure then understates contention.
//!
//! Every read goes through `black_box(&STATIC)`, so the compiler cannot prove
//! the address, hoist the load out of criterion's loop or fold reads together;
//! the value read is returned, which criterion black-boxes. Baselines get the
//! same treatment, so the comparison is like for like.
//!
//! ```text
//! cargo bench -p lockstep --bench hot_path
//! HOT_PATH_CLOCK=cpu cargo bench -p lockstep --bench hot_path
//! ```

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::{ArcSwap, Cache};
use std::time::Instant;

use criterion::measurement::{Measurement, WallTime};
use criterion::{BenchmarkGroup, BenchmarkId, Criterion};
use lockstep::lockstep;
use lockstep::store::MemoryStore;

/// The registry that is started, with pending entries.
#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    /// Share of traffic that sees foobar, in percent.
    #[lockstep(default = 0)]
    pub foobar_percent: u8,
    /// The site's theme.
    #[lockstep(default = "classic")]
    pub theme: String,
    /// Whether the site shows a maintenance banner.
    pub maintenance: bool,
}

/// The same registry, never started: it serves its defaults.
#[lockstep(tick = "10m", store = "memory")]
pub struct Cold {
    /// Share of traffic that sees foobar, in percent.
    #[lockstep(default = 0)]
    pub foobar_percent: u8,
    /// The site's theme.
    #[lockstep(default = "classic")]
    pub theme: String,
    /// Whether the site shows a maintenance banner.
    pub maintenance: bool,
}

/// What a user would keep by hand instead of a registry.
struct Config {
    #[allow(dead_code)]
    foobar_percent: u8,
    theme: String,
    #[allow(dead_code)]
    maintenance: bool,
}

impl Config {
    fn new() -> Config {
        Config {
            foobar_percent: 0,
            theme: "classic".to_owned(),
            maintenance: false,
        }
    }
}

static ATOMIC: AtomicU64 = AtomicU64::new(0);
static SWAP: LazyLock<ArcSwap<Config>> = LazyLock::new(|| ArcSwap::from_pointee(Config::new()));
static LOCK: LazyLock<RwLock<Config>> = LazyLock::new(|| RwLock::new(Config::new()));

thread_local! {
    /// A prototype, not a baseline: what a per-thread `arc_swap::Cache` in
    /// front of `SWAP` costs (one plain load and compare while nothing
    /// changes), to size a possible runtime change of `Shared`.
    static CACHE: RefCell<Cache<&'static ArcSwap<Config>, Arc<Config>>> =
        RefCell::new(Cache::new(&*SWAP));
}

/// The runtime the started registry's refresher lives on, for the whole run.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
});

/// Starts `FLAGS` on a memory store and writes a ramp to every field, so
/// that several entries per field are fetched and pending.
fn start_with_pending_changes() {
    RUNTIME.block_on(async {
        FLAGS
            .builder()
            .store(MemoryStore::new())
            .start()
            .await
            .expect("FLAGS starts");
        FLAGS
            .ramp(Flags::FOOBAR_PERCENT, [10, 25, 50, 100])
            .await
            .expect("a ramp");
        FLAGS
            .ramp(
                Flags::THEME,
                ["dark", "light", "neon", "classic"].map(String::from),
            )
            .await
            .expect("a ramp");
        FLAGS
            .ramp(Flags::MAINTENANCE, [true, false])
            .await
            .expect("a ramp");
        // Learn them now rather than at this process's phase of the tick.
        FLAGS.refresh().await.expect("a refresh");
    });
    let status = FLAGS.status();
    assert!(status.started);
    assert_eq!(status.pending.len(), 10, "{status:#?}");
    // Nothing has switched yet: the bench reads the defaults, like `COLD`.
    assert_eq!((FLAGS.foobar_percent(), FLAGS.theme().len()), (0, 7));
}

/// A thread running `read` in a loop until dropped.
struct Hammer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(u64, Option<f64>)>>,
}

impl Hammer {
    fn start<R>(read: impl Fn() -> R + Send + 'static) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (stop, running) = (stop.clone(), running.clone());
            move || {
                let (wall, cpu) = (Instant::now(), thread_cpu_time());
                running.store(true, Ordering::Release);
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        black_box(read());
                    }
                    reads += 64;
                }
                let on_cpu = thread_cpu_time()
                    .zip(cpu)
                    .map(|(end, start)| (end - start).as_secs_f64() / wall.elapsed().as_secs_f64());
                (reads, on_cpu)
            }
        });
        while !running.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        Hammer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Hammer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let (reads, on_cpu) = thread.join().expect("the hammer thread");
            assert!(reads > 0, "the second thread never read");
            if let Some(share) = on_cpu {
                eprintln!("second thread on a CPU {:.0}% of the time", share * 100.0);
            }
        }
    }
}

/// The calling thread's CPU time, where the platform tells it.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn thread_cpu_time() -> Option<Duration> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, now: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable `struct timespec` (64-bit Linux).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut now) };
    (rc == 0).then(|| Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

/// Criterion measurement: CPU time of the measuring thread.
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time().expect("HOT_PATH_CLOCK=cpu needs 64-bit Linux")
    }
    fn end(&self, start: Duration) -> Duration {
        self.start() - start
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn criterion::measurement::ValueFormatter {
        WallTime.formatter()
    }
}

/// Benchmarks `read` alone (`1t`) and with a second thread hammering it (`2t`).
///
/// Generic rather than over `fn() -> R`, so each read is inlined into
/// criterion's loop instead of costing an indirect call.
fn both<M: Measurement, R, F>(group: &mut BenchmarkGroup<'_, M>, name: &str, read: F)
where
    F: Fn() -> R + Copy + Send + 'static,
{
    group.bench_function(BenchmarkId::new(name, "1t"), |b| b.iter(read));
    let _hammer = Hammer::start(read);
    group.bench_function(BenchmarkId::new(name, "2t"), |b| b.iter(read));
}

fn scalar<M: Measurement>(c: &mut Criterion<M>) {
    let mut g = c.benchmark_group("scalar");
    both(&mut g, "atomic_load", || {
        black_box(&ATOMIC).load(Ordering::Relaxed)
    });
    both(&mut g, "lockstep_cold", || {
        black_box(&COLD).foobar_percent()
    });
    both(&mut g, "lockstep_started", || {
        black_box(&FLAGS).foobar_percent()
    });
    g.finish();
}

fn string<M: Measurement>(c: &mut Criterion<M>) {
    let mut g = c.benchmark_group("string");
    both(&mut g, "arc_swap", || black_box(&SWAP).load().theme.len());
    both(&mut g, "rwlock", || {
        black_box(&LOCK)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .theme
            .len()
    });
    both(&mut g, "proto_tl_cache", || {
        CACHE.with(|cache| black_box(cache).borrow_mut().load().theme.len())
    });
    both(&mut g, "lockstep_cold", || black_box(&COLD).theme().len());
    both(&mut g, "lockstep_started", || {
        black_box(&FLAGS).theme().len()
    });
    g.finish();
}

fn snapshot<M: Measurement>(c: &mut Criterion<M>) {
    let mut g = c.benchmark_group("snapshot");
    // The arc-swap baseline again, so each group is a table of its own (and
    // its two measurements of the same code show the run's noise).
    both(&mut g, "arc_swap", || black_box(&SWAP).load().theme.len());
    both(&mut g, "lockstep_cold", || {
        black_box(&COLD).snapshot().theme.len()
    });
    both(&mut g, "lockstep_started", || {
        black_box(&FLAGS).snapshot().theme.len()
    });
    g.finish();
}

fn run<M: Measurement>(c: Criterion<M>) {
    let mut c = c
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_millis(2500))
        .sample_size(20)
        .without_plots()
        .configure_from_args();
    scalar(&mut c);
    string(&mut c);
    snapshot(&mut c);
    c.final_summary();
}

fn main() {
    start_with_pending_changes();
    match std::env::var("HOT_PATH_CLOCK").as_deref() {
        Ok("cpu") => run(Criterion::default().with_measurement(ThreadCpuTime)),
        Ok("wall") | Err(_) => run(Criterion::default()),
        Ok(other) => panic!("HOT_PATH_CLOCK={other}: expected `wall` or `cpu`"),
    }
}
