//! Reporting: whether a fetch carries its process's report for the fleet
//! view. One rule for every store.
//!
//! A report a store cannot keep (a process id that is not a name, a body
//! over [`MAX_RECORD_BYTES`]) is not sent: the fetch goes on without it,
//! and a warning is logged once. A store that refuses a fetch with a report
//! whole (read-only credentials, a replica, a server refusing writes)
//! serves the fetch again without it, and the store's fetches then go
//! without a report for [`PAUSE`], one round trip each: a reader that may
//! not write pays one refused call a minute. A record the store did not
//! keep inside a fetch it served (a key of the wrong type) cost nothing:
//! the next fetch tries again, so the record is back as soon as the store
//! is repaired. Either way the process is missing from the fleet view
//! meanwhile, and says so once in its log.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::stored::{MAX_RECORD_BYTES, Record, check_name};

/// How long a store's fetches go without a report after it refused one.
pub(crate) const PAUSE: Duration = Duration::from_secs(60);

/// Whether a store's fetches send their reports now.
#[derive(Default)]
pub(crate) struct Reporting {
    /// When the store last refused a fetch with a report, within [`PAUSE`].
    refused: Mutex<Option<Instant>>,
    /// Whether the warning that records are not kept was logged.
    warned: AtomicBool,
}

impl Reporting {
    /// The report to send with a fetch of `namespace`: `report`, unless the
    /// store refused one within [`PAUSE`] or cannot keep it.
    pub(crate) fn send<'a>(
        &self,
        namespace: &str,
        report: Option<&'a Record>,
    ) -> Option<&'a Record> {
        let report = report?;
        if let Err(why) = keepable(report) {
            self.not_kept(namespace, &why);
            return None;
        }
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        match *refused {
            Some(at) if at.elapsed() < PAUSE => None,
            _ => {
                *refused = None;
                Some(report)
            }
        }
    }

    /// The store refused a fetch of `namespace` with a report whole, for
    /// `why`: the fetch is served without it, and the next fetches for
    /// [`PAUSE`] go without a report.
    pub(crate) fn refused(&self, namespace: &str, why: &str) {
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.not_kept(namespace, why);
    }

    /// The store did not keep the record of a fetch of `namespace`, for
    /// `why`: logged once as a warning, then at debug level.
    pub(crate) fn not_kept(&self, namespace: &str, why: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                namespace,
                reason = why,
                "lockstep: the store does not keep this process's fleet record; fetches go \
                 on, and the fleet view does not show this process until the store keeps its \
                 record again (tried with every fetch, or after {} s when the store refused \
                 the fetch with a report whole)",
                PAUSE.as_secs()
            );
        } else {
            tracing::debug!(namespace, reason = why, "lockstep: fleet record not kept");
        }
    }
}

/// Why a store cannot keep `report`, if it cannot.
fn keepable(report: &Record) -> Result<(), String> {
    check_name("process", report.process()).map_err(|e| e.to_string())?;
    if report.body().len() > MAX_RECORD_BYTES {
        return Err(format!(
            "the report of {} is {} bytes; a store keeps at most {MAX_RECORD_BYTES}",
            report.process(),
            report.body().len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(process: &str, body: usize) -> Record {
        Record::new(process.to_owned(), "x".repeat(body), 1_000)
    }

    #[test]
    fn a_report_a_store_cannot_keep_is_not_sent() {
        let reporting = Reporting::default();
        let fine = report("p1", MAX_RECORD_BYTES);
        assert_eq!(reporting.send("ns", Some(&fine)), Some(&fine));
        assert_eq!(reporting.send("ns", None), None);
        let large = report("p1", MAX_RECORD_BYTES + 1);
        assert_eq!(reporting.send("ns", Some(&large)), None);
        assert_eq!(reporting.send("ns", Some(&report("p 1", 2))), None);
        assert_eq!(reporting.send("ns", Some(&fine)), Some(&fine), "not paused");
    }

    #[test]
    fn a_refused_report_pauses_reporting_a_record_not_kept_does_not() {
        let reporting = Reporting::default();
        let fine = report("p1", 2);
        reporting.not_kept("ns", "WRONGTYPE");
        assert_eq!(reporting.send("ns", Some(&fine)), Some(&fine));
        reporting.refused("ns", "NOPERM");
        assert_eq!(reporting.send("ns", Some(&fine)), None);
        // Once the pause is over, the next fetch tries again.
        let paused_at = Instant::now()
            .checked_sub(PAUSE)
            .expect("a machine up a minute");
        *reporting.refused.lock().unwrap() = Some(paused_at);
        assert_eq!(reporting.send("ns", Some(&fine)), Some(&fine));
    }
}
