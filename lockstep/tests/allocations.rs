//! The hot path allocates nothing (DESIGN.md, promise 4): every accessor
//! kind, read 10 000 times before start, after start with changes pending,
//! on a thread of its own, and after flips, makes no heap allocation and
//! frees nothing.
//!
//! A counting global allocator counts only on the thread that armed it, so
//! the flipper thread, the Tokio workers and the other tests running in
//! parallel do not show up in the count. A correctness test: no timings.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use chrono::{TimeZone, Utc};
use lockstep::store::MemoryStore;
use lockstep::{ManualClock, Percent, lockstep};

/// `System`, counting what the arming thread allocates and frees.
struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
    static FREED: Cell<u64> = const { Cell::new(0) };
}

fn note(counter: &'static std::thread::LocalKey<Cell<u64>>) {
    // `try_with`: the allocator also runs while thread locals are torn down.
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        let _ = counter.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the counting only
// touches `const`-initialised thread locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCATED);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCATED);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(&ALLOCATED);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(&FREED);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap calls made by this thread while running `f`: (allocations, frees).
fn heap_calls(f: impl FnOnce()) -> (u64, u64) {
    ALLOCATED.with(|n| n.set(0));
    FREED.with(|n| n.set(0));
    ARMED.with(|armed| armed.set(true));
    f();
    ARMED.with(|armed| armed.set(false));
    (ALLOCATED.with(Cell::get), FREED.with(Cell::get))
}

const READS: usize = 10_000;

/// Reads with `read` once (the first read on a thread may set up arc-swap's
/// per-thread bookkeeping, and the very first read of a field builds its
/// slot), then asserts that `READS` more reads touch the heap not at all.
fn assert_reads_allocate_nothing<R>(when: &str, what: &str, read: impl Fn() -> R) {
    black_box(read());
    let calls = heap_calls(|| {
        for _ in 0..READS {
            black_box(read());
        }
    });
    assert_eq!(
        calls,
        (0, 0),
        "{when}: {READS} reads of {what} made (allocations, frees) = {calls:?}"
    );
}

/// A registry with one field of each accessor kind: a scalar, a `Percent`
/// (a scalar that carries its hash seed) and a `String` (behind a `Ref`).
#[lockstep(tick = "10m", store = "memory")]
pub struct Flags {
    /// A scalar.
    #[lockstep(default = 0)]
    pub foobar_percent: u8,
    /// A value behind a `Ref`.
    #[lockstep(default = "classic")]
    pub theme: String,
    /// A percentage.
    pub share: Percent,
    /// Another scalar.
    pub maintenance: bool,
}

fn assert_flags_reads_allocate_nothing(when: &str) {
    assert_reads_allocate_nothing(when, "a scalar", || FLAGS.foobar_percent());
    assert_reads_allocate_nothing(when, "a bool", || FLAGS.maintenance());
    assert_reads_allocate_nothing(when, "a Percent", || FLAGS.share());
    assert_reads_allocate_nothing(when, "a Percent deciding a key", || {
        FLAGS.share().includes(black_box("user-42"))
    });
    assert_reads_allocate_nothing(when, "a String through its Ref", || FLAGS.theme().len());
    assert_reads_allocate_nothing(when, "a String compared", || FLAGS.theme() == "classic");
    assert_reads_allocate_nothing(when, "a snapshot", || {
        let flags = FLAGS.snapshot();
        (
            flags.foobar_percent,
            flags.theme.len(),
            flags.share.as_f64(),
        )
    });
}

#[test]
fn reads_allocate_nothing_before_and_after_start() {
    assert!(!FLAGS.status().started);
    assert_flags_reads_allocate_nothing("before start");

    // The refresher runs on a worker of this runtime, the flipper on a
    // thread of its own; neither is the thread that counts.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        FLAGS
            .builder()
            .store(MemoryStore::new())
            .start()
            .await
            .unwrap();
        FLAGS
            .ramp(Flags::FOOBAR_PERCENT, [10, 25, 50])
            .await
            .unwrap();
        FLAGS
            .ramp(Flags::THEME, ["dark", "light", "neon"].map(String::from))
            .await
            .unwrap();
        FLAGS
            .ramp(Flags::SHARE, [1, 5, 20].map(Percent::whole))
            .await
            .unwrap();
        FLAGS.refresh().await.unwrap();
    });
    let status = FLAGS.status();
    assert!(status.started);
    assert_eq!(status.pending.len(), 9, "{status:#?}");
    assert_eq!(FLAGS.foobar_percent(), 0, "a change switched too early");

    assert_flags_reads_allocate_nothing("after start, changes pending");
    std::thread::spawn(|| assert_flags_reads_allocate_nothing("on another thread"))
        .join()
        .unwrap();
    drop(runtime);
}

/// A registry driven through its flips by a manual clock.
#[lockstep(tick = "1m", store = "memory")]
pub struct Stepped {
    /// A scalar.
    #[lockstep(default = 0)]
    pub limit: u32,
    /// A value behind a `Ref`.
    #[lockstep(default = "off")]
    pub stage: String,
    /// A percentage.
    pub share: Percent,
}

#[tokio::test]
async fn reads_allocate_nothing_after_flips() {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap());
    STEPPED
        .builder()
        .store(MemoryStore::with_clock(&clock))
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    let instants = STEPPED
        .change()
        .set(Stepped::LIMIT, 10)
        .set(Stepped::STAGE, "canary".to_owned())
        .set(Stepped::SHARE, Percent::whole(1))
        .then_after(std::time::Duration::from_secs(60))
        .set(Stepped::LIMIT, 100)
        .set(Stepped::STAGE, "beta".to_owned())
        .set(Stepped::SHARE, Percent::whole(50))
        .apply()
        .await
        .unwrap();
    let expected = [(10, "canary", 1.0), (100, "beta", 50.0)];
    for (at, (limit, stage, share)) in instants.into_iter().zip(expected) {
        clock.advance_to(at).await;
        let flags = STEPPED.snapshot();
        assert_eq!(
            (flags.limit, flags.stage.as_str(), flags.share.as_f64()),
            (limit, stage, share)
        );
        // No await until the counting is over: nothing else runs on this
        // thread meanwhile.
        let when = format!("after the flip to {stage}");
        assert_reads_allocate_nothing(&when, "a scalar", || STEPPED.limit());
        assert_reads_allocate_nothing(&when, "a Percent", || STEPPED.share());
        assert_reads_allocate_nothing(&when, "a String through its Ref", || STEPPED.stage().len());
        assert_reads_allocate_nothing(&when, "a snapshot", || STEPPED.snapshot().stage.len());
    }
}

/// The counter works (a vector counts), and counts this thread only (a
/// vector another thread makes meanwhile does not).
#[test]
fn the_counter_counts_this_thread_only() {
    assert_eq!(heap_calls(|| drop(black_box(vec![1u8; 64]))), (1, 1));
    assert_eq!(heap_calls(|| _ = black_box(1u8)), (0, 0));

    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let other = std::thread::spawn({
        let barrier = barrier.clone();
        move || {
            barrier.wait();
            drop(black_box(vec![2u8; 64]));
            barrier.wait();
        }
    });
    let calls = heap_calls(|| {
        barrier.wait();
        barrier.wait();
    });
    other.join().unwrap();
    assert_eq!(calls, (0, 0));
}
