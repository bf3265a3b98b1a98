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
/// [`MemoryStore`](crate::store::MemoryStore) built with the same clock checks its
/// horizon by it too, so a whole ramp plays out deterministically:
///
/// ```
/// use std::time::Duration;
/// use chrono::{TimeZone, Utc};
/// use lockstep::store::MemoryStore;
/// use lockstep::{lockstep, ManualClock};
///
/// #[lockstep(tick = "1m", store = "memory")]
/// pub struct Rollout {
///     pub share: u8,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockstep::Error> {
/// let clock = ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap());
/// let store = MemoryStore::with_clock(&clock);
/// ROLLOUT.builder().store(store).manual_clock(&clock).start().await?;
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
    driven: Mutex<Vec<Arc<dyn Driven>>>,
}

/// A registry that a manual clock moves.
pub(crate) trait Driven: Send + Sync {
    /// Time moved to `now`: fetch if due, then flip.
    fn advanced(&self, now: Millis) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
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
        for registry in &driven {
            registry.advanced(now).await;
        }
    }

    pub(crate) fn now_millis(&self) -> Millis {
        self.inner
            .now_nanos
            .load(Ordering::SeqCst)
            .div_euclid(1_000_000)
    }

    pub(crate) fn drive(&self, registry: Arc<dyn Driven>) {
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

    /// Now, by the clock flips follow.
    pub(crate) fn now(&self) -> UnixNanos {
        UnixNanos(self.now_nanos())
    }

    /// Now, in nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> i64 {
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

    /// Now, by this process's own clock (skewed, but not following the
    /// store): what a fetch's sent and received instants are read on.
    pub(crate) fn local_now(&self) -> UnixNanos {
        match self {
            ClockSource::Adjusted(a) => UnixNanos(system_now_nanos().saturating_add(a.skew)),
            _ => self.now(),
        }
    }

    /// Records a new estimate of the store's clock offset.
    pub(crate) fn set_store_offset(&self, offset_nanos: i64) {
        if let ClockSource::Adjusted(a) = self {
            a.store_offset.store(offset_nanos, Ordering::Relaxed);
        }
    }
}

/// An instant in nanoseconds since the Unix epoch (UTC): the one time type
/// of a fetch's timing, on either side of the store boundary. This
/// process's clock readings (a fetch sent, its answer received) and the
/// store's (its clock when it answered, which stores give in microseconds:
/// [`UnixNanos::from_micros`]) are all read into it, so that a clock
/// offset or a round trip is a difference of two of them, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct UnixNanos(i64);

impl UnixNanos {
    /// The instant `micros` microseconds after the Unix epoch (how stores
    /// give their clock: [`Fetched::store_micros`](crate::store::Fetched::store_micros)).
    pub(crate) fn from_micros(micros: i64) -> UnixNanos {
        UnixNanos(micros.saturating_mul(1_000))
    }

    /// The instant `millis` after the Unix epoch (an entry's instant).
    pub(crate) fn from_millis(millis: Millis) -> UnixNanos {
        UnixNanos(millis.saturating_mul(1_000_000))
    }

    /// The instant in milliseconds since the Unix epoch, rounded down.
    pub(crate) fn as_millis(self) -> Millis {
        self.0.div_euclid(1_000_000)
    }

    /// The nanoseconds from `earlier` to this instant: negative when
    /// `earlier` is later.
    pub(crate) fn nanos_since(self, earlier: UnixNanos) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// The time from `earlier` to this instant, zero when `earlier` is
    /// later.
    pub(crate) fn duration_since(self, earlier: UnixNanos) -> Duration {
        Duration::from_nanos(self.nanos_since(earlier).max(0) as u64)
    }

    /// The instant halfway between this one and `other`.
    pub(crate) fn midpoint(self, other: UnixNanos) -> UnixNanos {
        UnixNanos(self.0 / 2 + other.0 / 2)
    }
}

/// What one fetch tells of the store's clock, NTP-style: the store read its
/// clock somewhere within the round trip, taken to be its middle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClockSample {
    /// When the answer came, by this process's clock.
    at: UnixNanos,
    /// The store's clock minus this process's, in nanoseconds.
    offset: i64,
    /// The fetch's round trip, in nanoseconds: twice the bound on the
    /// offset's error.
    round_trip: i64,
}

impl ClockSample {
    /// The sample of a fetch sent at `sent` and answered at `received` (by
    /// this process's clock) by a store whose clock read `store` in
    /// between.
    pub(crate) fn of(sent: UnixNanos, store: UnixNanos, received: UnixNanos) -> ClockSample {
        ClockSample {
            at: received,
            offset: store.nanos_since(sent.midpoint(received)),
            round_trip: received.nanos_since(sent),
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

/// The estimate of the store's clock offset, NTP-style: of the samples of
/// the last hour (at most [`ClockFilter::KEEP`]), the one with the shortest
/// round trip wins, its error at most half that round trip. A slow reply (a
/// store busy shipping a large value, a congested link) says little about
/// the offset: a sample whose round trip is far above the shortest kept
/// (over 3 times it, plus 1 ms) is ignored, so a run of slow replies neither
/// wins nor pushes the good samples out of the window. A sample that cannot
/// agree with the best one, whatever their errors ([`ClockFilter::STEP`]
/// beyond both), says a clock stepped (an NTP step, a VM resumed): the
/// samples before it are dropped, so the estimate follows at once.
#[derive(Debug, Default)]
pub(crate) struct ClockFilter {
    /// `(taken at, offset, round trip)`, in nanoseconds, oldest first.
    samples: std::collections::VecDeque<(i64, i64, i64)>,
}

impl ClockFilter {
    /// How many samples are kept.
    pub(crate) const KEEP: usize = 64;
    /// How long a sample is kept, in nanoseconds: clocks drift.
    pub(crate) const MAX_AGE: i64 = 3_600_000_000_000;
    /// How far beyond both errors a sample must lie from the best one to be
    /// taken for a clock step, in nanoseconds.
    pub(crate) const STEP: i64 = 100_000_000;

    /// Adds `sample`; returns the best `(offset, round trip)` kept, in
    /// nanoseconds.
    pub(crate) fn sample(&mut self, sample: ClockSample) -> Option<(i64, i64)> {
        self.add(sample.at.0, sample.offset, sample.round_trip)
    }

    /// Adds the sample taken at `at` (this process's clock); returns the
    /// best `(offset, round trip)` kept.
    fn add(&mut self, at: i64, offset: i64, rtt: i64) -> Option<(i64, i64)> {
        while self
            .samples
            .front()
            .is_some_and(|(taken, _, _)| at.saturating_sub(*taken) > Self::MAX_AGE)
        {
            self.samples.pop_front();
        }
        let stepped = self.best().is_some_and(|(best, best_rtt)| {
            let errors = (rtt.max(0) / 2).saturating_add(best_rtt.max(0) / 2);
            offset.abs_diff(best) > errors.saturating_add(Self::STEP) as u64
        });
        if stepped {
            self.samples.clear();
        }
        let far_above = self
            .best()
            .is_some_and(|(_, best)| rtt > best.saturating_mul(3).saturating_add(1_000_000));
        if !far_above {
            self.samples.push_back((at, offset, rtt));
            if self.samples.len() > Self::KEEP {
                self.samples.pop_front();
            }
        }
        self.best()
    }

    fn best(&self) -> Option<(i64, i64)> {
        self.samples
            .iter()
            .min_by_key(|(_, _, rtt)| *rtt)
            .map(|&(_, offset, rtt)| (offset, rtt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn slow_replies_do_not_skew_the_offset() {
        let mut filter = ClockFilter::default();
        // A fast sample: offset 5 ms, round trip 1 ms.
        assert_eq!(filter.add(0, 5 * MS, MS), Some((5 * MS, MS)));
        // A hundred slow replies (80 ms round trips) that put the offset
        // 40 ms off: ignored, far more than the window holds.
        for i in 1..=100 {
            assert_eq!(
                filter.add(i * 1_000 * MS, 45 * MS, 80 * MS),
                Some((5 * MS, MS))
            );
        }
        // A sample about as fast as the best is taken, the better one wins.
        assert_eq!(filter.add(101_000 * MS, 6 * MS, 2 * MS), Some((5 * MS, MS)));
        assert_eq!(
            filter.add(102_000 * MS, 4 * MS, MS / 2),
            Some((4 * MS, MS / 2))
        );
    }

    #[test]
    fn old_samples_age_out_so_a_slower_link_is_followed() {
        let mut filter = ClockFilter::default();
        filter.add(0, 5 * MS, MS);
        // An hour later the best sample is gone; the link is slower now.
        let later = ClockFilter::MAX_AGE + MS;
        assert_eq!(filter.add(later, 7 * MS, 20 * MS), Some((7 * MS, 20 * MS)));
        assert_eq!(
            filter.add(later + MS, 9 * MS, 30 * MS),
            Some((7 * MS, 20 * MS))
        );
    }

    #[test]
    fn a_clock_step_is_followed_at_once() {
        let mut filter = ClockFilter::default();
        filter.add(0, 0, MS);
        filter.add(1_000 * MS, MS / 2, MS / 2);
        // The local clock stepped back 5 s: the store is 5 s ahead now, by a
        // sample no faster than the best. The old samples cannot be right.
        assert_eq!(
            filter.add(2_000 * MS, 5_000 * MS, 2 * MS),
            Some((5_000 * MS, 2 * MS))
        );
        // A jitter of a few ms is not a step.
        assert_eq!(
            filter.add(3_000 * MS, 5_003 * MS, MS),
            Some((5_003 * MS, MS))
        );
        assert_eq!(
            filter.add(4_000 * MS, 5_010 * MS, 2 * MS),
            Some((5_003 * MS, MS))
        );
    }

    #[test]
    fn a_sample_reads_both_clocks_in_nanoseconds() {
        // Sent at 1 000 ms, answered at 1 010 ms; the store's clock read
        // 1 008 ms (in microseconds, as stores say it) in between.
        let sample = ClockSample::of(
            UnixNanos::from_millis(1_000),
            UnixNanos::from_micros(1_008_000),
            UnixNanos::from_millis(1_010),
        );
        assert_eq!(
            sample,
            ClockSample {
                at: UnixNanos::from_millis(1_010),
                offset: 3 * MS,
                round_trip: 10 * MS,
            }
        );
        let mut filter = ClockFilter::default();
        assert_eq!(filter.sample(sample), Some((3 * MS, 10 * MS)));
        assert_eq!(UnixNanos::from_micros(-1).as_millis(), -1);
        assert_eq!(
            UnixNanos::from_millis(5).duration_since(UnixNanos::from_millis(7)),
            Duration::ZERO
        );
    }

    #[test]
    fn the_window_keeps_the_latest_samples() {
        let mut filter = ClockFilter::default();
        filter.add(0, MS, MS);
        for i in 1..=ClockFilter::KEEP as i64 {
            filter.add(i * MS, 2 * MS, 2 * MS);
        }
        // The first, fastest sample was pushed out by 64 newer ones.
        assert_eq!(filter.best(), Some((2 * MS, 2 * MS)));
    }
}
