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
//! Every read goes through `black_box(&STATIC)`, so the compiler cannot prove
//! the address, hoist the load out of criterion's loop or fold reads together;
//! the value read is returned, which criterion black-boxes. Baselines get the
//! same treatment, so the comparison is like for like.
//!
//! ```text
//! cargo bench -p lockstep --bench hot_path
//! ```

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::{ArcSwap, Cache};
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, measurement::WallTime};
use lockstep::{MemoryStore, lockstep};

/// The registry that is started, with pending entries.
#[lockstep(tick = "10m", backend = "memory")]
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
#[lockstep(tick = "10m", backend = "memory")]
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
    thread: Option<JoinHandle<u64>>,
}

impl Hammer {
    fn start<R>(read: impl Fn() -> R + Send + 'static) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (stop, running) = (stop.clone(), running.clone());
            move || {
                running.store(true, Ordering::Release);
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        black_box(read());
                    }
                    reads += 64;
                }
                reads
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
            let reads = thread.join().expect("the hammer thread");
            assert!(reads > 0, "the second thread never read");
        }
    }
}

/// Benchmarks `read` alone (`1t`) and with a second thread hammering it (`2t`).
///
/// Generic rather than over `fn() -> R`, so each read is inlined into
/// criterion's loop instead of costing an indirect call.
fn both<R, F>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, read: F)
where
    F: Fn() -> R + Copy + Send + 'static,
{
    group.bench_function(BenchmarkId::new(name, "1t"), |b| b.iter(read));
    let _hammer = Hammer::start(read);
    group.bench_function(BenchmarkId::new(name, "2t"), |b| b.iter(read));
}

fn scalar(c: &mut Criterion) {
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

fn string(c: &mut Criterion) {
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

fn snapshot(c: &mut Criterion) {
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

fn main() {
    start_with_pending_changes();
    let mut c = Criterion::default()
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
