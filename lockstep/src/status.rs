//! Status: what a registry can tell about its health.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::tick::{Millis, to_datetime};

/// A registry's health at one moment; from [`Registry::status`](crate::Registry::status).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Status {
    /// The registry's namespace.
    pub namespace: &'static str,
    /// Whether `start` was called.
    pub started: bool,
    /// The store, without credentials.
    pub store: String,
    /// When the last successful fetch completed.
    pub last_fetch: Option<DateTime<Utc>>,
    /// How long ago that was.
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
    pub clock_offset: Option<chrono::TimeDelta>,
    /// The bound on that estimate's error: half that round trip.
    pub clock_offset_error: Option<chrono::TimeDelta>,
}

/// A change waiting for its instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The field's key.
    pub key: &'static str,
    /// When it activates.
    pub at: DateTime<Utc>,
    /// The value, as stored (JSON).
    pub value: String,
}

#[derive(Default)]
pub(crate) struct StatusData {
    pub(crate) last_fetch: Option<Millis>,
    pub(crate) last_store_time: Option<Millis>,
    pub(crate) fetches: u64,
    pub(crate) failed_fetches: u64,
    pub(crate) consecutive_failures: u32,
    pub(crate) last_error: Option<String>,
    pub(crate) flips: u64,
    pub(crate) last_flip: Option<Millis>,
    pub(crate) late_flips: u64,
    pub(crate) rejected: u64,
    pub(crate) last_rejection: Option<String>,
    pub(crate) epoch: Option<String>,
    pub(crate) store_lost: bool,
    pub(crate) store_losses: u64,
    /// `(offset, error)` in nanoseconds.
    pub(crate) clock_offset: Option<(i64, i64)>,
}

impl StatusData {
    pub(crate) fn report(
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
        }
    }
}

impl Status {
    pub(crate) fn not_started(namespace: &'static str) -> Status {
        let mut status = StatusData::default().report(namespace, String::new(), 0, Vec::new());
        status.started = false;
        status
    }
}
