//! The record a fetch writes for the fleet view: checked before it is sent,
//! and given up for a while when the database refuses to keep it.
//!
//! A reader may hold credentials that may read the tables but not write
//! them (`SELECT` only, a read-only replica or transaction, a SQLite file
//! opened `mode=ro`), or the database may refuse a write for a while (a full
//! disk, a lock held too long): a fetch with a report is then refused. A
//! refused record never
//! costs the registry its values: the fetch is sent again at once without
//! the report, on the same connection, and the store stops reporting for
//! [`RETRY_AFTER`] (logged once each time), so a reader without write access
//! pays one refused statement every ten minutes, not one per fetch. The
//! process is missing from the fleet view meanwhile.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::dialect::Class;
use crate::error::Error;
use crate::store::{MAX_REPORT_BYTES, Report, check_name};

/// How long a store fetches without its report after the database refused
/// one.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(600);

/// Whether a store sends its reports now.
#[derive(Default)]
pub(crate) struct Reporting {
    /// When the database last refused a record, if it did within
    /// [`RETRY_AFTER`].
    refused: Mutex<Option<Instant>>,
}

impl Reporting {
    /// `report` if this store sends reports now, checked: a process id the
    /// layout cannot hold or a body over [`MAX_REPORT_BYTES`] is refused
    /// before anything is sent.
    pub(crate) fn admit<'a>(
        &self,
        namespace: &str,
        report: Option<&'a Report>,
    ) -> Result<Option<&'a Report>, Error> {
        let Some(report) = report else {
            return Ok(None);
        };
        check_name("process", &report.process)?;
        if report.body.len() > MAX_REPORT_BYTES {
            return Err(Error::InvalidValue {
                namespace: namespace.to_owned(),
                key: format!("report of {}", report.process),
                reason: format!(
                    "it is {} bytes; a report is at most {MAX_REPORT_BYTES} bytes",
                    report.body.len()
                ),
            });
        }
        let mut refused = self.lock();
        match *refused {
            Some(at) if at.elapsed() < RETRY_AFTER => Ok(None),
            _ => {
                *refused = None;
                Ok(Some(report))
            }
        }
    }

    /// Whether a fetch with a report that failed with an error of `class`
    /// is to be sent again without it: the database refused the statement
    /// on a connection that is fine. Reporting stops for [`RETRY_AFTER`].
    pub(crate) fn refused(&self, class: Class, store: &str, namespace: &str, e: &str) -> bool {
        if !matches!(class, Class::Misconfigured | Class::Refused) {
            return false;
        }
        *self.lock() = Some(Instant::now());
        tracing::warn!(
            store,
            namespace,
            error = e,
            "lockstep: the store refused this process's report for the fleet view (read-only \
             credentials?); fetching without it, and trying again in {} minutes",
            RETRY_AFTER.as_secs() / 60
        );
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(process: &str, body: usize) -> Report {
        Report {
            process: process.to_owned(),
            body: "x".repeat(body),
            expires_after: 1_000,
        }
    }

    #[test]
    fn reports_are_checked_before_they_are_sent() {
        let reporting = Reporting::default();
        let fine = report("p1", MAX_REPORT_BYTES);
        assert_eq!(reporting.admit("ns", Some(&fine)).ok(), Some(Some(&fine)));
        assert!(matches!(
            reporting.admit("ns", Some(&report("p1", MAX_REPORT_BYTES + 1))),
            Err(Error::InvalidValue { .. })
        ));
        assert!(matches!(
            reporting.admit("ns", Some(&report("p 1", 2))),
            Err(Error::InvalidName { .. })
        ));
        assert_eq!(reporting.admit("ns", None).ok(), Some(None));
    }

    #[test]
    fn a_refused_report_stops_reporting_a_broken_connection_does_not() {
        let reporting = Reporting::default();
        let fine = report("p1", 2);
        assert!(!reporting.refused(Class::Broken, "s", "ns", "gone"));
        assert!(!reporting.refused(Class::MissingLayout, "s", "ns", "gone"));
        assert_eq!(reporting.admit("ns", Some(&fine)).ok(), Some(Some(&fine)));
        assert!(reporting.refused(Class::Misconfigured, "s", "ns", "denied"));
        assert_eq!(reporting.admit("ns", Some(&fine)).ok(), Some(None));
        // Checked even while not sent.
        assert!(reporting.admit("ns", Some(&report("p1", 5_000))).is_err());
    }
}
