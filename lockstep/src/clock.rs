//! Clocks: what "now" means to a registry.
//!
//! In production a registry flips by the process's own clock (kept in sync
//! with NTP). In an application's tests, a [`ManualClock`] makes time stand
//! still until the test moves it, so a ramp can be stepped through without
//! sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::tick::Millis;

/// A clock that only moves when told to.
///
/// Registries started with a manual clock do not fetch or flip on their own:
/// [`ManualClock::advance`] moves time forward and, before it returns, has
/// every such registry fetch (when a tick boundary was crossed since its last
/// fetch) and switch to the values of the new instant. A
/// [`MemoryStore`](crate::MemoryStore) built with the same clock checks its
/// horizon by it too, so a whole ramp plays out deterministically:
///
/// ```
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
/// use lockstep::{lockstep, ManualClock, MemoryStore};
///
/// #[lockstep(tick = "1m", backend = "memory")]
/// pub struct Rollout {
///     pub share: u8,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockstep::Error> {
/// let clock = ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap());
/// let store = MemoryStore::with_clock(&clock);
/// ROLLOUT.builder().store(store).clock(&clock).start().await?;
///
/// let steps = ROLLOUT.ramp(Rollout::SHARE, [10, 50, 100]).await?;
/// assert_eq!(ROLLOUT.share(), 0);
/// for (step, expected) in steps.iter().zip([10, 50, 100]) {
///     clock.advance_to(*step).await;
///     assert_eq!(ROLLOUT.share(), expected);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    now_nanos: AtomicI64,
    driven: Mutex<Vec<&'static dyn Driven>>,
}

/// A registry that a manual clock moves.
pub(crate) trait Driven: Send + Sync {
    /// Time moved to `now`: fetch if due, then flip.
    fn advanced(&'static self, now: Millis) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            inner: Arc::new(ManualInner {
                now_nanos: AtomicI64::new(start.timestamp_nanos_opt().unwrap_or(i64::MAX)),
                driven: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The clock's current instant.
    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.inner.now_nanos.load(Ordering::SeqCst))
    }

    /// Moves the clock forward by `by`, then lets every registry on this clock
    /// fetch and flip.
    pub async fn advance(&self, by: Duration) {
        let to = self.now() + chrono::Duration::from_std(by).unwrap_or(chrono::TimeDelta::MAX);
        self.advance_to(to).await;
    }

    /// Sets the clock to `to` (which may also be in the past, to simulate a
    /// clock stepping back), then lets every registry on this clock fetch and
    /// flip.
    pub async fn advance_to(&self, to: DateTime<Utc>) {
        self.inner.now_nanos.store(
            to.timestamp_nanos_opt().unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
        let now = self.now_millis();
        let driven = self
            .inner
            .driven
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for registry in driven {
            registry.advanced(now).await;
        }
    }

    pub(crate) fn now_millis(&self) -> Millis {
        self.inner
            .now_nanos
            .load(Ordering::SeqCst)
            .div_euclid(1_000_000)
    }

    pub(crate) fn drive(&self, registry: &'static dyn Driven) {
        self.inner
            .driven
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(registry);
    }
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}

/// Where a registry or a memory store reads the time.
#[derive(Clone, Debug, Default)]
pub(crate) enum ClockSource {
    /// The process's wall clock.
    #[default]
    System,
    /// The wall clock shifted by a fixed skew (to test a badly synchronised
    /// machine), and, when following the store, by the estimated offset of
    /// the store's clock.
    Adjusted(Arc<Adjustment>),
    /// A test's manual clock.
    Manual(ManualClock),
}

/// How a process's clock is shifted.
#[derive(Debug, Default)]
pub(crate) struct Adjustment {
    /// A fixed skew of this process's clock, in nanoseconds.
    pub(crate) skew: i64,
    /// Whether flips follow the store's clock.
    pub(crate) follow_store: bool,
    /// The estimated offset of the store's clock from this process's, in
    /// nanoseconds (used when following the store).
    pub(crate) store_offset: AtomicI64,
}

impl ClockSource {
    /// Now, in milliseconds since the Unix epoch (rounded down).
    pub(crate) fn now_millis(&self) -> Millis {
        match self {
            ClockSource::Manual(clock) => clock.now_millis(),
            _ => self.now_nanos().div_euclid(1_000_000),
        }
    }

    /// Now, in nanoseconds since the Unix epoch.
    pub(crate) fn now_nanos(&self) -> i64 {
        match self {
            ClockSource::System => system_now_nanos(),
            ClockSource::Adjusted(a) => {
                let offset = if a.follow_store {
                    a.store_offset.load(Ordering::Relaxed)
                } else {
                    0
                };
                system_now_nanos()
                    .saturating_add(a.skew)
                    .saturating_add(offset)
            }
            ClockSource::Manual(clock) => clock.inner.now_nanos.load(Ordering::SeqCst),
        }
    }

    /// This process's own clock (skewed, but not following the store).
    pub(crate) fn local_nanos(&self) -> i64 {
        match self {
            ClockSource::Adjusted(a) => system_now_nanos().saturating_add(a.skew),
            _ => self.now_nanos(),
        }
    }

    /// Records a new estimate of the store's clock offset.
    pub(crate) fn set_store_offset(&self, offset_nanos: i64) {
        if let ClockSource::Adjusted(a) = self {
            a.store_offset.store(offset_nanos, Ordering::Relaxed);
        }
    }
}

/// The wall clock in nanoseconds since the Unix epoch.
pub(crate) fn system_now_nanos() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}
