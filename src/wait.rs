//! Waiting for something to happen on a machine that may be slow: a test
//! polls for the event it needs, never sleeps a fixed time in its stead,
//! and gives up only after [`PATIENCE`], saying what it waited for and what
//! it saw last.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How long a test waits for something before it fails: far beyond what
/// anything takes on an idle machine (seconds at most), so that only a hang
/// ends the wait, however loaded the machine is.
pub const PATIENCE: Duration = Duration::from_secs(300);

/// Calls `look` every `every` until it returns `Ok`, and returns that.
/// After [`PATIENCE`], panics naming `what` was waited for and the last
/// `Err` (what was seen instead).
pub fn wait_for<T, E: Debug>(
    what: &str,
    every: Duration,
    mut look: impl FnMut() -> Result<T, E>,
) -> T {
    let since = Instant::now();
    loop {
        match look() {
            Ok(found) => return found,
            Err(seen) => {
                assert!(
                    since.elapsed() < PATIENCE,
                    "waited {} s for {what}; last seen: {seen:?}",
                    PATIENCE.as_secs()
                );
            }
        }
        std::thread::sleep(every);
    }
}

/// [`wait_for`] in a task: sleeps on the runtime's timer between looks.
pub async fn wait_for_async<T, E: Debug>(
    what: &str,
    every: Duration,
    mut look: impl FnMut() -> Result<T, E>,
) -> T {
    let since = Instant::now();
    loop {
        match look() {
            Ok(found) => return found,
            Err(seen) => {
                assert!(
                    since.elapsed() < PATIENCE,
                    "waited {} s for {what}; last seen: {seen:?}",
                    PATIENCE.as_secs()
                );
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until `read` returns `expected`, the value a write due at `at`
/// puts there, judging every read by the wall clock read just after it:
/// one that saw `expected` and ended before `at` means the value switched
/// early, and panics. How soon after `at` it switched is not judged here
/// (the timing tests judge that, by what a request would see): only that
/// it does, within [`PATIENCE`].
pub async fn wait_for_switch<T: PartialEq + Debug>(
    what: &str,
    at: chrono::DateTime<chrono::Utc>,
    expected: T,
    mut read: impl FnMut() -> T,
) {
    wait_for_async(
        &format!("{what} to switch to {expected:?} at {at}"),
        Duration::from_millis(5),
        || {
            let value = read();
            let ended = chrono::Utc::now();
            if value != expected {
                return Err(value);
            }
            assert!(
                ended >= at,
                "{what} switched to {expected:?} {} µs before its instant {at}",
                (at - ended).num_microseconds().unwrap_or(i64::MAX)
            );
            Ok(())
        },
    )
    .await;
}
