//! Ticks: the registry's heartbeat, and the instants everything is measured in.
//!
//! Tick boundaries are the instants `k·T` after the Unix epoch (UTC), so every
//! process agrees on them without talking to anyone. Instants are carried as
//! whole milliseconds since the Unix epoch ([`Millis`]) inside lockstep and as
//! [`chrono::DateTime<Utc>`] in the public API.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// Milliseconds since the Unix epoch (UTC): lockstep's instant.
pub type Millis = i64;

/// A registry's tick: how often each process fetches, and the grid every
/// stored instant sits on.
///
/// A tick is a whole number of seconds between [`Tick::MIN`] (1 s) and
/// [`Tick::MAX`] (1 day):
///
/// - below one second, the fetch deadline (a quarter tick) would be shorter than
///   a round trip over a real network and the clock skew NTP leaves between
///   machines would be a noticeable share of the tick;
/// - above one day, a write would wait more than a day to take effect, and a
///   process that misses one fetch would be more than a day late.
///
/// ```
/// use std::time::Duration;
/// use lockstep::Tick;
///
/// let tick = Tick::new(Duration::from_secs(600)).unwrap();
/// assert_eq!(tick.as_duration(), Duration::from_secs(600));
/// assert!(Tick::new(Duration::from_millis(1500)).is_err());
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tick {
    secs: u32,
}

/// Why a duration is not a valid [`Tick`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a tick must be a whole number of seconds from 1s to 1d (86400s), not {0:?}")]
pub struct TickError(pub Duration);

impl Tick {
    /// The shortest tick, one second.
    pub const MIN: Duration = Duration::from_secs(1);
    /// The longest tick, one day.
    pub const MAX: Duration = Duration::from_secs(86_400);

    /// A tick of `duration`, which must be a whole number of seconds within
    /// [`Tick::MIN`]..=[`Tick::MAX`].
    pub fn new(duration: Duration) -> Result<Tick, TickError> {
        if duration < Self::MIN || duration > Self::MAX || duration.subsec_nanos() != 0 {
            return Err(TickError(duration));
        }
        Ok(Tick {
            secs: duration.as_secs() as u32,
        })
    }

    /// A tick of `secs` seconds, within [`Tick::MIN`]..=[`Tick::MAX`]; usable
    /// in a `const`.
    ///
    /// ```
    /// use lockstep::Tick;
    ///
    /// const TEN: Tick = match Tick::from_secs(10) {
    ///     Ok(tick) => tick,
    ///     Err(_) => panic!("not a tick"),
    /// };
    /// assert_eq!(TEN.as_millis(), 10_000);
    /// assert!(Tick::from_secs(0).is_err());
    /// ```
    pub const fn from_secs(secs: u32) -> Result<Tick, TickError> {
        if secs >= 1 && secs <= 86_400 {
            Ok(Tick { secs })
        } else {
            Err(TickError(Duration::from_secs(secs as u64)))
        }
    }

    /// The tick as a duration.
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(u64::from(self.secs))
    }

    /// The tick in whole seconds.
    pub fn as_secs(self) -> u32 {
        self.secs
    }

    /// The tick in milliseconds.
    pub fn as_millis(self) -> Millis {
        Millis::from(self.secs) * 1000
    }

    /// The deadline of one fetch, which is also the safety margin of the
    /// horizon: a quarter tick, at most five seconds.
    pub fn fetch_timeout(self) -> Duration {
        Duration::from_millis((self.as_millis() / 4).min(5_000) as u64)
    }

    /// The last tick boundary at or before `t`.
    pub fn floor(self, t: Millis) -> Millis {
        t.div_euclid(self.as_millis()) * self.as_millis()
    }

    /// The first tick boundary at or after `t`.
    pub fn ceil(self, t: Millis) -> Millis {
        let floor = self.floor(t);
        if floor == t {
            t
        } else {
            floor.saturating_add(self.as_millis())
        }
    }

    /// `None` when `d` is a whole number of ticks; else the whole numbers
    /// of ticks just below and just above it (below is zero when `d` is
    /// shorter than a tick). Steps a tick apart or more land exactly on the
    /// grid only when spaced a whole number of ticks.
    ///
    /// ```
    /// use std::time::Duration;
    /// let tick = lockstep::Tick::from_secs(60).unwrap();
    /// assert_eq!(tick.whole_ticks_around(Duration::from_secs(120)), None);
    /// assert_eq!(
    ///     tick.whole_ticks_around(Duration::from_secs(90)),
    ///     Some((Duration::from_secs(60), Duration::from_secs(120)))
    /// );
    /// ```
    pub fn whole_ticks_around(self, d: Duration) -> Option<(Duration, Duration)> {
        let tick = u128::from(self.secs) * 1_000_000_000;
        let nanos = d.as_nanos();
        if nanos.is_multiple_of(tick) {
            return None;
        }
        let below = nanos / tick;
        let ticks = |n: u128| {
            let secs = u64::try_from(n * u128::from(self.secs)).unwrap_or(u64::MAX);
            Duration::from_secs(secs)
        };
        Some((ticks(below), ticks(below + 1)))
    }

    /// The first tick boundary strictly after `t`.
    pub fn next_after(self, t: Millis) -> Millis {
        self.floor(t).saturating_add(self.as_millis())
    }

    /// `H(now)`: the earliest instant a write committed at `now` may affect,
    /// the first boundary at least one tick plus the fetch timeout after
    /// `now`. Always between one and two ticks (plus the margin) ahead.
    pub fn horizon(self, now: Millis) -> Millis {
        let margin = self.fetch_timeout().as_millis() as Millis;
        self.ceil(now.saturating_add(self.as_millis()).saturating_add(margin))
    }
}

impl std::fmt::Display for Tick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.as_duration()))
    }
}

/// Now by this machine's clock.
pub(crate) fn now_millis() -> Millis {
    Utc::now().timestamp_millis()
}

/// `t` as a UTC date-time.
pub fn to_datetime(t: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t` rounded up to whole milliseconds since the Unix epoch.
pub fn from_datetime(t: DateTime<Utc>) -> Millis {
    let ms = t.timestamp_millis();
    if !t.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        ms + 1
    } else {
        ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tick(secs: u32) -> Tick {
        Tick::new(Duration::from_secs(u64::from(secs))).unwrap()
    }

    #[test]
    fn bounds_are_one_second_to_one_day() {
        assert!(Tick::new(Duration::from_secs(1)).is_ok());
        assert!(Tick::new(Duration::from_secs(86_400)).is_ok());
        assert!(Tick::new(Duration::ZERO).is_err());
        assert!(Tick::new(Duration::from_millis(999)).is_err());
        assert!(Tick::new(Duration::from_secs(86_401)).is_err());
        assert!(Tick::new(Duration::from_millis(2_500)).is_err());
    }

    #[test]
    fn boundaries_are_multiples_of_the_tick_since_the_epoch() {
        let t = tick(600);
        assert_eq!(t.floor(0), 0);
        assert_eq!(t.floor(599_999), 0);
        assert_eq!(t.floor(600_000), 600_000);
        assert_eq!(t.ceil(1), 600_000);
        assert_eq!(t.ceil(600_000), 600_000);
        assert_eq!(t.next_after(600_000), 1_200_000);
        // Before the epoch too.
        assert_eq!(t.floor(-1), -600_000);
        assert_eq!(t.ceil(-1), 0);
    }

    #[test]
    fn horizon_of_a_one_second_tick() {
        let t = tick(1);
        // margin is 250 ms: 10.000 + 1.250 -> 12.000 is the first boundary >= 11.250
        assert_eq!(t.horizon(10_000), 12_000);
        assert_eq!(t.horizon(10_749), 12_000);
        assert_eq!(t.horizon(10_750), 12_000);
        assert_eq!(t.horizon(10_751), 13_000);
    }

    #[test]
    fn fetch_timeout_is_a_quarter_tick_capped_at_five_seconds() {
        assert_eq!(tick(1).fetch_timeout(), Duration::from_millis(250));
        assert_eq!(tick(10).fetch_timeout(), Duration::from_millis(2_500));
        assert_eq!(tick(600).fetch_timeout(), Duration::from_secs(5));
    }

    #[test]
    fn datetime_conversion_rounds_up() {
        let t = Utc.timestamp_opt(10, 1).unwrap();
        assert_eq!(from_datetime(t), 10_001);
        assert_eq!(from_datetime(to_datetime(10_000)), 10_000);
    }

    proptest! {
        #[test]
        fn floor_and_ceil_bracket_the_instant(secs in 1u32..=86_400, t in -10_000_000_000_000i64..10_000_000_000_000) {
            let tick = tick(secs);
            let (lo, hi) = (tick.floor(t), tick.ceil(t));
            prop_assert!(lo <= t && t <= hi);
            prop_assert_eq!(lo % tick.as_millis(), 0);
            prop_assert_eq!(hi % tick.as_millis(), 0);
            prop_assert!(hi - lo == 0 || hi - lo == tick.as_millis());
        }

        #[test]
        fn horizon_is_between_one_and_two_ticks_ahead(secs in 1u32..=86_400, now in 0i64..10_000_000_000_000) {
            let tick = tick(secs);
            let margin = tick.fetch_timeout().as_millis() as i64;
            let h = tick.horizon(now);
            prop_assert_eq!(h % tick.as_millis(), 0);
            prop_assert!(h >= now + tick.as_millis() + margin);
            prop_assert!(h < now + 2 * tick.as_millis() + margin);
        }
    }
}
