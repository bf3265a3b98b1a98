//! Observing a registry from outside: the metrics it records (cargo feature
//! `metrics`) and the thresholds of the events it logs.
//!
//! Everything here runs where fetches, commits and flips run, on lockstep's
//! own threads: never on the hot path, which reads a value and nothing else.
//! Without the feature every function is empty and compiles away.
//!
//! The metrics go through the [`metrics`](https://docs.rs/metrics/0.24)
//! facade, so any exporter (Prometheus, OpenTelemetry, statsd) plugs in by
//! installing its recorder; each carries the label `namespace` (the
//! registry's), and the commit counter also `outcome`:
//!
//! | name | kind | what |
//! |---|---|---|
//! | `lockstep_fetches_total` | counter | fetches done, whatever their outcome |
//! | `lockstep_fetch_failures_total` | counter | fetches that failed (the store down, slow, refusing) |
//! | `lockstep_fetch_seconds` | histogram | a successful fetch's round trip, in seconds |
//! | `lockstep_last_fetch_age_seconds` | gauge | seconds since the last successful fetch, set at every fetch (0 on success) |
//! | `lockstep_pending_changes` | gauge | changes this process holds that are not active yet |
//! | `lockstep_flips_total` | counter | switches to the values of a new instant |
//! | `lockstep_late_flips_total` | counter | changes already active when this process learned them |
//! | `lockstep_rejected_values_total` | counter | stored entries this process could not use, each counted once |
//! | `lockstep_store_losses_total` | counter | times the store was seen losing the registry |
//! | `lockstep_clock_offset_seconds` | gauge | the store's clock minus this process's, in seconds |
//! | `lockstep_commits_total` | counter | writes and cancels committed by this process, with `outcome` = `ok` or `error` |

use std::time::Duration;

use crate::tick::Millis;
use crate::timeline::Timeline;

/// A clock offset beyond this is logged (a warning when it crosses, an
/// info when it comes back): the fleet's agreement is only as good as its
/// clocks.
pub(crate) const CLOCK_OFFSET_WARN: Duration = Duration::from_secs(1);

/// Names the metrics and says what they mean, once per process, for
/// exporters that show descriptions.
pub(crate) fn describe() {
    #[cfg(feature = "metrics")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
            describe_counter!(
                "lockstep_fetches_total",
                "Fetches of a registry, whatever their outcome."
            );
            describe_counter!(
                "lockstep_fetch_failures_total",
                "Fetches of a registry that failed."
            );
            describe_histogram!(
                "lockstep_fetch_seconds",
                Unit::Seconds,
                "Round-trip time of a successful fetch."
            );
            describe_gauge!(
                "lockstep_last_fetch_age_seconds",
                Unit::Seconds,
                "Time since the last successful fetch, as of the latest fetch."
            );
            describe_gauge!(
                "lockstep_pending_changes",
                "Changes held that are not active yet."
            );
            describe_counter!("lockstep_flips_total", "Switches to new values.");
            describe_counter!(
                "lockstep_late_flips_total",
                "Changes already active when this process learned them."
            );
            describe_counter!(
                "lockstep_rejected_values_total",
                "Stored entries this process could not use."
            );
            describe_counter!(
                "lockstep_store_losses_total",
                "Times the store was seen losing the registry."
            );
            describe_gauge!(
                "lockstep_clock_offset_seconds",
                Unit::Seconds,
                "The store's clock minus this process's."
            );
            describe_counter!(
                "lockstep_commits_total",
                "Writes and cancels committed by this process."
            );
        });
    }
}

/// A fetch ended: `round_trip` if it succeeded, and how long ago the last
/// successful fetch was (`None`: never).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn fetched(
    namespace: &'static str,
    round_trip: Option<Duration>,
    age: Option<Duration>,
) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("lockstep_fetches_total", "namespace" => namespace).increment(1);
        match round_trip {
            Some(rtt) => {
                metrics::histogram!("lockstep_fetch_seconds", "namespace" => namespace)
                    .record(rtt.as_secs_f64());
            }
            None => {
                metrics::counter!("lockstep_fetch_failures_total", "namespace" => namespace)
                    .increment(1);
            }
        }
        if let Some(age) = age {
            metrics::gauge!("lockstep_last_fetch_age_seconds", "namespace" => namespace)
                .set(age.as_secs_f64());
        }
    }
}

/// How many changes of `timelines` are waiting for their instant at `now`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn pending<V>(namespace: &'static str, timelines: &[Timeline<V>], now: Millis) {
    #[cfg(feature = "metrics")]
    {
        let pending: usize = timelines.iter().map(|t| t.pending_after(now).len()).sum();
        metrics::gauge!("lockstep_pending_changes", "namespace" => namespace).set(pending as f64);
    }
}

/// A flip happened.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn flipped(namespace: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("lockstep_flips_total", "namespace" => namespace).increment(1);
}

/// `n` changes were learned only once active.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn late_flips(namespace: &'static str, n: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!("lockstep_late_flips_total", "namespace" => namespace).increment(n);
}

/// `n` stored entries were rejected (each once).
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn rejected(namespace: &'static str, n: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!("lockstep_rejected_values_total", "namespace" => namespace).increment(n);
}

/// The store lost the registry.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn store_lost(namespace: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("lockstep_store_losses_total", "namespace" => namespace).increment(1);
}

/// A new estimate of the store's clock offset, in nanoseconds.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn clock_offset(namespace: &'static str, offset_nanos: i64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("lockstep_clock_offset_seconds", "namespace" => namespace)
        .set(offset_nanos as f64 / 1e9);
}

/// A commit or cancel ended.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn committed(namespace: &str, ok: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "lockstep_commits_total",
        "namespace" => namespace.to_owned(),
        "outcome" => if ok { "ok" } else { "error" }
    )
    .increment(1);
}

/// Whether a clock offset estimate of `offset` nanoseconds, with the error
/// bound `error`, is beyond [`CLOCK_OFFSET_WARN`] for sure.
pub(crate) fn clock_off(offset: i64, error: i64) -> bool {
    let threshold = CLOCK_OFFSET_WARN.as_nanos() as i64;
    offset.unsigned_abs().saturating_sub(error.unsigned_abs()) > threshold as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn an_offset_is_off_only_beyond_its_error() {
        assert!(!clock_off(0, 0));
        assert!(!clock_off(900 * MS, 10 * MS));
        assert!(!clock_off(1_005 * MS, 10 * MS));
        assert!(clock_off(1_020 * MS, 10 * MS));
        assert!(clock_off(-5_000 * MS, MS));
        assert!(clock_off(5_000 * MS, MS));
    }
}
