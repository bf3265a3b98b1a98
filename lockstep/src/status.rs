//! Status: what a registry can tell about its health.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use crate::tick::{Millis, to_datetime};

/// A registry's health at one moment; from [`Registry::status`](crate::Registry::status).
///
/// It serializes (with serde) as one object by the rule of every JSON
/// lockstep prints: instants are RFC 3339 text in UTC (`last_fetch`,
/// `last_flip`, `store_time`, each pending change's `at`), durations are
/// milliseconds named `…_ms` (`last_fetch_age_ms`, an integer;
/// `clock_offset_ms` and `clock_offset_error_ms`, with their microseconds
/// as a fraction), and a pending change names its `field`; a pending value
/// is its stored JSON. `Display` is a short summary for
/// people, a few lines:
///
/// ```
/// use lockstep::lockstep;
///
/// #[lockstep(tick = "10m", store = "memory")]
/// pub struct Flags {
///     pub maintenance: bool,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), lockstep::Error> {
/// FLAGS.start().await?;
/// FLAGS.set(Flags::MAINTENANCE, true).await?;
/// FLAGS.refresh().await?;
/// let status = FLAGS.status();
/// println!("{status}");
/// // flags: memory://, fetched 0s ago (2 fetches, 0 failed)
/// //   1 pending: maintenance = true at 2030-01-01T00:20:00Z
/// //   0 flips (0 late), 0 rejected values, clock offset +0.001 ms (± 0.002 ms)
/// assert!(status.to_string().contains("1 pending: maintenance = true at "));
///
/// let json = serde_json::to_value(&status).unwrap();
/// assert_eq!(json["namespace"], "flags");
/// assert_eq!(json["pending"][0]["field"], "maintenance");
/// assert_eq!(json["pending"][0]["value"], true);
/// assert!(json["last_fetch"].as_str().unwrap().ends_with('Z')); // RFC 3339
/// assert!(json["last_fetch_age_ms"].is_number());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// The registry's namespace.
    pub namespace: &'static str,
    /// Whether `start` was called.
    pub started: bool,
    /// The store, without credentials.
    pub store: String,
    /// When the last successful fetch completed.
    #[serde(serialize_with = "rfc3339")]
    pub last_fetch: Option<DateTime<Utc>>,
    /// How long ago that was.
    #[serde(rename = "last_fetch_age_ms", serialize_with = "duration_ms")]
    pub last_fetch_age: Option<Duration>,
    /// Fetches that succeeded since start.
    pub fetches: u64,
    /// Fetches that failed since start.
    pub failed_fetches: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// The last fetch error.
    pub last_error: Option<String>,
    /// Changes waiting for their instant, soonest first.
    pub pending: Vec<Pending>,
    /// Flips done on time.
    pub flips: u64,
    /// When the last flip happened.
    #[serde(serialize_with = "rfc3339")]
    pub last_flip: Option<DateTime<Utc>>,
    /// Changes that were already active when this process learned them (it
    /// could not reach the store for a while).
    pub late_flips: u64,
    /// Stored entries this process could not use (a value that does not
    /// decode as the field's type, an instant that is not a number), each
    /// counted once however many fetches saw it. Each is skipped: the
    /// field's entries before and after it decide.
    pub rejected: u64,
    /// What the last rejection was.
    pub last_rejection: Option<String>,
    /// The bad entries the last fetch saw, one message each (field, instant,
    /// reason): remove them with `lockstep purge`.
    pub bad_entries: Vec<String>,
    /// The store's clock at the last fetch, when the store tells it.
    #[serde(serialize_with = "rfc3339")]
    pub store_time: Option<DateTime<Utc>>,
    /// The registry's epoch in the store.
    pub epoch: Option<String>,
    /// Whether the store has lost the registry (it came back empty) and this
    /// process is serving the timeline it fetched before.
    pub store_lost: bool,
    /// How many times the store was seen losing the registry.
    pub store_losses: u64,
    /// The store's clock minus this process's, estimated NTP-style from the
    /// fetch with the shortest round trip among the last few.
    #[serde(rename = "clock_offset_ms", serialize_with = "delta_ms")]
    pub clock_offset: Option<chrono::TimeDelta>,
    /// The bound on that estimate's error: half that round trip.
    #[serde(rename = "clock_offset_error_ms", serialize_with = "delta_ms")]
    pub clock_offset_error: Option<chrono::TimeDelta>,
    /// Fetches that this process's replica could not serve (it did not
    /// answer within its share of the fetch's deadline, its link to the
    /// primary was down, it was promoted or follows another primary, or it
    /// was behind what the process held), answered by another replica or
    /// the primary instead; 0 without replicas.
    pub replica_fallbacks: u64,
    /// Of those, the fetches a replica could not serve because it was
    /// promoted or follows another primary than the store's URL names: a
    /// failover the URL does not know of.
    pub replica_failovers: u64,
    /// How this registry's flipper thread is scheduled.
    pub flipper: FlipperPriority,
}

/// How a registry's flipper, the thread that switches its values at their
/// instants, is scheduled; in [`Status::flipper`].
///
/// It serializes as `"realtime"`, `"normal"` or `"not_started"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FlipperPriority {
    /// No flipper runs: the registry is not started, or it follows a
    /// [`ManualClock`](crate::ManualClock).
    #[default]
    NotStarted,
    /// Real-time (`SCHED_FIFO`, priority 1): the flipper runs the moment it
    /// wakes, ahead of every ordinary thread, for the microseconds a flip
    /// takes.
    Realtime,
    /// The ordinary priority: the process may not have a real-time one (it
    /// needs `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` of 1 or more, e.g.
    /// `LimitRTPRIO=1` in a systemd unit), it is not a Unix system, or
    /// [`Builder::realtime_flips`](crate::Builder::realtime_flips) turned it
    /// off. On a busy machine a flip may then wait for a core while the
    /// threads that serve requests still read the old value.
    Normal,
}

/// A change waiting for its instant.
///
/// It serializes as `{"field": <the field's key>, "at": "<RFC 3339>",
/// "value": <the stored JSON>}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// The field's key; `field` in JSON.
    #[serde(rename = "field")]
    pub key: &'static str,
    /// When it activates.
    #[serde(serialize_with = "rfc3339_at")]
    pub at: DateTime<Utc>,
    /// The value, as stored (JSON).
    #[serde(serialize_with = "raw_json")]
    pub value: String,
}

/// What a registry's status counts, kept under the engine's lock: each
/// field is written by the one method named after what happened (a fetch
/// succeeded or failed, a flip, a rejected entry, the store lost…), and
/// read into a [`Status`] by [`StatusData::report`].
#[derive(Default)]
pub(crate) struct StatusData {
    last_fetch: Option<Millis>,
    last_store_time: Option<Millis>,
    fetches: u64,
    failed_fetches: u64,
    consecutive_failures: u32,
    last_error: Option<String>,
    flips: u64,
    last_flip: Option<Millis>,
    late_flips: u64,
    rejected: u64,
    last_rejection: Option<String>,
    epoch: Option<String>,
    store_lost: bool,
    store_losses: u64,
    /// `(offset, error)` in nanoseconds.
    clock_offset: Option<(i64, i64)>,
    /// When the current run of failed fetches began (`None`: the last
    /// fetch succeeded).
    failing_since: Option<Millis>,
    /// How the flipper thread is scheduled, once it started.
    flipper: FlipperPriority,
}

/// The run of failed fetches a successful one ended, for the log that says
/// the registry is connected or recovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Whether it was the first successful fetch.
    pub(crate) first: bool,
    /// How many fetches failed in a row before it.
    pub(crate) failures: u32,
    /// When that run of failures began, if there was one.
    pub(crate) failing_since: Option<Millis>,
}

impl StatusData {
    /// A fetch succeeded at `now`, the store's clock reading `store_time`
    /// then (when it says): counted, and the run of failures before it
    /// ends; returns that run.
    pub(crate) fn fetch_succeeded(&mut self, now: Millis, store_time: Option<Millis>) -> Recovered {
        let recovered = Recovered {
            first: self.last_fetch.is_none(),
            failures: self.consecutive_failures,
            failing_since: self.failing_since.take(),
        };
        self.fetches += 1;
        self.consecutive_failures = 0;
        self.last_fetch = Some(now);
        self.last_store_time = store_time;
        recovered
    }

    /// A fetch failed at `now` with `error`: counted; returns how many
    /// failed in a row.
    pub(crate) fn fetch_failed(&mut self, now: Millis, error: String) -> u32 {
        if self.consecutive_failures == 0 {
            self.failing_since = Some(now);
        }
        self.consecutive_failures += 1;
        self.failed_fetches += 1;
        self.last_error = Some(error);
        self.consecutive_failures
    }

    /// The values of a new instant were published at `at`.
    pub(crate) fn flipped(&mut self, at: Millis) {
        self.flips += 1;
        self.last_flip = Some(at);
    }

    /// A fetch learned `n` changes only once they were active.
    pub(crate) fn learned_late(&mut self, n: u64) {
        self.late_flips += n;
    }

    /// A stored entry this process cannot use was seen for the first time
    /// (`message` says which and why).
    pub(crate) fn entry_rejected(&mut self, message: String) {
        self.rejected += 1;
        self.last_rejection = Some(message);
    }

    /// A fetch found the store without the registry. Returns whether that
    /// is news: a loss, counted once however many fetches find it so.
    pub(crate) fn lost_store(&mut self) -> bool {
        let news = !self.store_lost;
        if news {
            self.store_lost = true;
            self.store_losses += 1;
        }
        news
    }

    /// A fetch found the registry written again under a new epoch: a loss,
    /// counted unless it was already counted when a fetch found the store
    /// without it. Returns whether it was counted now.
    pub(crate) fn store_replaced(&mut self) -> bool {
        let news = !self.store_lost;
        if news {
            self.store_losses += 1;
        }
        news
    }

    /// A fetch found the store holding the registry, at `epoch`.
    pub(crate) fn store_holds(&mut self, epoch: Option<String>) {
        self.store_lost = false;
        self.epoch = epoch;
    }

    /// A fetch found the registry unchanged since the last one applied
    /// whole: the store holds it, at the epoch known.
    pub(crate) fn store_unchanged(&mut self) {
        self.store_lost = false;
    }

    /// A new estimate of the store's clock minus this process's, at most
    /// `error` off, both in nanoseconds.
    pub(crate) fn clock_estimated(&mut self, offset: i64, error: i64) {
        self.clock_offset = Some((offset, error));
    }

    /// The flipper thread started, scheduled as `priority` says.
    pub(crate) fn flipper_started(&mut self, priority: FlipperPriority) {
        self.flipper = priority;
    }

    /// When the last successful fetch completed.
    pub(crate) fn last_fetch(&self) -> Option<Millis> {
        self.last_fetch
    }

    /// Fetches that succeeded.
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches
    }

    /// Fetches that failed.
    pub(crate) fn failed_fetches(&self) -> u64 {
        self.failed_fetches
    }

    /// Changes learned only once they were active.
    pub(crate) fn late_flips(&self) -> u64 {
        self.late_flips
    }

    /// Stored entries rejected, each counted once.
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The store's clock minus this process's and the bound on its error,
    /// in nanoseconds, once estimated.
    pub(crate) fn clock_offset(&self) -> Option<(i64, i64)> {
        self.clock_offset
    }

    /// Whether the last fetch found the store without the registry.
    pub(crate) fn store_lost(&self) -> bool {
        self.store_lost
    }

    /// The status of a registry in namespace `namespace`, on `store`, at
    /// `now`, with `pending` its changes waiting for their instant.
    pub(crate) fn status(
        &self,
        namespace: &'static str,
        store: String,
        now: Millis,
        pending: Vec<Pending>,
    ) -> Status {
        Status {
            namespace,
            started: true,
            store,
            last_fetch: self.last_fetch.map(to_datetime),
            last_fetch_age: self
                .last_fetch
                .map(|t| Duration::from_millis(now.saturating_sub(t).max(0) as u64)),
            fetches: self.fetches,
            failed_fetches: self.failed_fetches,
            consecutive_failures: self.consecutive_failures,
            last_error: self.last_error.clone(),
            pending,
            flips: self.flips,
            last_flip: self.last_flip.map(to_datetime),
            late_flips: self.late_flips,
            rejected: self.rejected,
            last_rejection: self.last_rejection.clone(),
            bad_entries: Vec::new(),
            store_time: self.last_store_time.map(to_datetime),
            epoch: self.epoch.clone(),
            store_lost: self.store_lost,
            store_losses: self.store_losses,
            clock_offset: self
                .clock_offset
                .map(|(offset, _)| chrono::TimeDelta::nanoseconds(offset)),
            clock_offset_error: self
                .clock_offset
                .map(|(_, error)| chrono::TimeDelta::nanoseconds(error)),
            replica_fallbacks: 0,
            replica_failovers: 0,
            flipper: self.flipper,
        }
    }
}

impl Status {
    pub(crate) fn not_started(namespace: &'static str) -> Status {
        let mut status = StatusData::default().status(namespace, String::new(), 0, Vec::new());
        status.started = false;
        status
    }
}

/// An instant as RFC 3339 text in UTC, to the millisecond.
fn rfc3339_text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn rfc3339<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    t.as_ref().map(rfc3339_text).serialize(s)
}

fn rfc3339_at<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_text(t))
}

/// Whole milliseconds.
fn duration_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .serialize(s)
}

/// Milliseconds with microsecond precision: offsets are often below one.
fn delta_ms<S: Serializer>(d: &Option<chrono::TimeDelta>, s: S) -> Result<S::Ok, S::Error> {
    d.map(delta_millis).serialize(s)
}

fn delta_millis(d: chrono::TimeDelta) -> f64 {
    let micros = d.num_microseconds().unwrap_or(i64::MAX);
    micros as f64 / 1000.0
}

/// The stored JSON as JSON, or as a string if it is not JSON.
fn raw_json<S: Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::value::RawValue::from_string(value.to_owned()) {
        Ok(raw) => raw.serialize(s),
        Err(_) => s.serialize_str(value),
    }
}

/// How long ago, for people: `0.4s`, `12s`, `3m 20s`.
fn ago(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

impl fmt::Display for Status {
    /// A few lines: the store and the last fetch; the pending changes; flips,
    /// rejected values and the clock; then what is wrong, if anything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.started {
            return write!(f, "{}: not started", self.namespace);
        }
        write!(f, "{}: {}, ", self.namespace, self.store)?;
        match self.last_fetch_age {
            Some(age) => write!(f, "fetched {} ago", ago(age))?,
            None => write!(f, "never fetched")?,
        }
        writeln!(
            f,
            " ({} fetches, {} failed)",
            self.fetches, self.failed_fetches
        )?;
        match self.pending.as_slice() {
            [] => writeln!(f, "  nothing pending")?,
            [next, rest @ ..] => {
                write!(
                    f,
                    "  {} pending: {} = {} at {}",
                    self.pending.len(),
                    next.key,
                    next.value,
                    rfc3339_text(&next.at)
                )?;
                if !rest.is_empty() {
                    write!(f, ", then {} more", rest.len())?;
                }
                writeln!(f)?;
            }
        }
        write!(
            f,
            "  {} flips ({} late), {} rejected values",
            self.flips, self.late_flips, self.rejected
        )?;
        match (self.clock_offset, self.clock_offset_error) {
            (Some(offset), Some(error)) => write!(
                f,
                ", clock offset {:+.3} ms (± {:.3} ms)",
                delta_millis(offset),
                delta_millis(error)
            )?,
            _ => write!(f, ", clock offset unknown")?,
        }
        if self.consecutive_failures > 0 {
            write!(
                f,
                "\n  failing: {} fetches in a row",
                self.consecutive_failures
            )?;
            if let Some(error) = &self.last_error {
                write!(f, ", the last: {error}")?;
            }
        }
        if self.store_lost {
            write!(
                f,
                "\n  store lost: serving the timeline fetched before (losses: {})",
                self.store_losses
            )?;
        }
        if self.replica_fallbacks > 0 {
            write!(
                f,
                "\n  {} fetches answered by another server than this process's replica",
                self.replica_fallbacks
            )?;
        }
        if self.replica_failovers > 0 {
            write!(
                f,
                "\n  {} of them because a replica was promoted or follows another primary (a \
                 failover the store's URL does not name)",
                self.replica_failovers
            )?;
        }
        if self.flipper == FlipperPriority::Normal {
            write!(
                f,
                "\n  flipper at the ordinary priority: on a busy machine a flip may wait for a core"
            )?;
        }
        if !self.bad_entries.is_empty() {
            write!(
                f,
                "\n  {} bad entries (remove with `lockstep purge`): {}",
                self.bad_entries.len(),
                self.bad_entries[0]
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
