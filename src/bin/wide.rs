//! A wide registry for the wide registry's tests (`tests/redis_wide.rs`): `wide`
//! (tick 2 s) with a kill switch and 24 string fields, on `LOCKSTEP_URL`.
//! Prints `ready`, then answers each line `show` on its standard input with
//! one JSON line: the kill switch, how many bytes its string fields hold,
//! the bytes it has allocated and its resident memory (each also as before
//! the registry started), and its fetch counts. Lives until its standard
//! input closes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};

use lockstep::lockstep;

/// A kill switch beside fields that may hold a lot.
#[lockstep(tick = "2s", store = "redis", namespace = "wide")]
pub struct Wide {
    /// The small field that must flip on time.
    pub kill: bool,
    /// A wide value.
    pub f00: String,
    /// A wide value.
    pub f01: String,
    /// A wide value.
    pub f02: String,
    /// A wide value.
    pub f03: String,
    /// A wide value.
    pub f04: String,
    /// A wide value.
    pub f05: String,
    /// A wide value.
    pub f06: String,
    /// A wide value.
    pub f07: String,
    /// A wide value.
    pub f08: String,
    /// A wide value.
    pub f09: String,
    /// A wide value.
    pub f10: String,
    /// A wide value.
    pub f11: String,
    /// A wide value.
    pub f12: String,
    /// A wide value.
    pub f13: String,
    /// A wide value.
    pub f14: String,
    /// A wide value.
    pub f15: String,
    /// A wide value.
    pub f16: String,
    /// A wide value.
    pub f17: String,
    /// A wide value.
    pub f18: String,
    /// A wide value.
    pub f19: String,
    /// A wide value.
    pub f20: String,
    /// A wide value.
    pub f21: String,
    /// A wide value.
    pub f22: String,
    /// A wide value.
    pub f23: String,
}

/// The system allocator, counting the bytes allocated and not yet freed:
/// what the process keeps, as against what its allocator holds on to.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator as it came; the counter
// only adds and subtracts the sizes it was given.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: a pointer this allocator gave, with its layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as the caller's, as `GlobalAlloc::realloc` requires.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// The process's resident memory, in bytes (Linux).
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (allocated_before, resident_before) = (ALLOCATED.load(Ordering::Relaxed), resident());
    WIDE.start().await?;
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        if line? != "show" {
            continue;
        }
        // What the registry keeps, read before `status()`, which copies
        // every pending value into its list.
        let allocated = ALLOCATED.load(Ordering::Relaxed);
        let snapshot = WIDE.snapshot();
        let held: usize = [
            snapshot.f00.len(),
            snapshot.f01.len(),
            snapshot.f02.len(),
            snapshot.f03.len(),
            snapshot.f04.len(),
            snapshot.f05.len(),
            snapshot.f06.len(),
            snapshot.f07.len(),
            snapshot.f08.len(),
            snapshot.f09.len(),
            snapshot.f10.len(),
            snapshot.f11.len(),
            snapshot.f12.len(),
            snapshot.f13.len(),
            snapshot.f14.len(),
            snapshot.f15.len(),
            snapshot.f16.len(),
            snapshot.f17.len(),
            snapshot.f18.len(),
            snapshot.f19.len(),
            snapshot.f20.len(),
            snapshot.f21.len(),
            snapshot.f22.len(),
            snapshot.f23.len(),
        ]
        .iter()
        .sum();
        let status = WIDE.status();
        println!(
            "{}",
            serde_json::json!({
                "kill": snapshot.kill, "held": held,
                "allocated": allocated, "allocated_before": allocated_before,
                "resident": resident(), "resident_before": resident_before,
                "fetches": status.fetches, "failed": status.failed_fetches,
                "late_flips": status.late_flips, "rejected": status.rejected,
            })
        );
    }
    Ok(())
}
