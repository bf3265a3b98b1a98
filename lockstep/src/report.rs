//! Reporting: the record a process leaves in the store with each fetch, for
//! the fleet view ([`crate::store::fleet()`]). It says who the process is
//! (host name, pid, program name, a random id per start, lockstep's version,
//! its build's schema digest)
//! and how it is doing (fetch and failure counts, late flips, rejected
//! values, the clock offset): never the store's URL, the environment or a
//! value.

use chrono::DateTime;

use crate::status::StatusData;
use crate::store::{EXPIRY_TICKS, MAX_REPORT_BYTES, Process, Refused, Report};
use crate::tick::{Millis, Tick, to_datetime};

/// At most this many refused entries go in a record (the first ones); fewer
/// if their names are long (the record stays within [`MAX_REPORT_BYTES`]).
const MAX_REFUSED: usize = 32;

/// Who this process is, fixed at start.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    id: String,
    host: String,
    pid: u32,
    program: String,
    started: Millis,
    schema: String,
}

impl Identity {
    /// This process, started now, running the build whose schema has the
    /// digest `schema`.
    pub(crate) fn of_this_process(now: Millis, schema: &str) -> Identity {
        Identity {
            id: format!("{:016x}", fastrand::u64(..)),
            host: host_name(),
            pid: std::process::id(),
            program: std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default(),
            started: now,
            schema: schema.to_owned(),
        }
    }

    /// The record sent with the next fetch.
    pub(crate) fn report(
        &self,
        tick: Tick,
        status: &StatusData,
        refused: &[(&'static str, Millis)],
    ) -> Report {
        let mut process = Process {
            id: self.id.clone(),
            host: self.host.clone(),
            pid: self.pid,
            program: self.program.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started: Some(to_datetime(self.started)),
            tick_ms: tick.as_millis(),
            schema: Some(self.schema.clone()),
            last_fetch: DateTime::UNIX_EPOCH,
            revision: 0,
            behind: None,
            fetches: status.fetches(),
            failed_fetches: status.failed_fetches(),
            late_flips: status.late_flips(),
            rejected: status.rejected(),
            refused: refused
                .iter()
                .take(MAX_REFUSED)
                .map(|(field, at)| Refused {
                    field: (*field).to_owned(),
                    at: *at,
                })
                .collect(),
            clock_offset_ms: status.clock_offset().map(|(ns, _)| ns as f64 / 1e6),
            store_lost: status.store_lost(),
        };
        let mut body = body_of(&process);
        // A record stays small whatever the process saw: the refused
        // entries are the only part that can grow.
        while body.len() > MAX_REPORT_BYTES && process.refused.pop().is_some() {
            body = body_of(&process);
        }
        Report {
            process: self.id.clone(),
            body,
            expires_after: tick.as_millis().saturating_mul(EXPIRY_TICKS),
        }
    }
}

/// The JSON a process sends: what it is and how it does, without the
/// fields the store fills in (`last_fetch`, `revision`) or the view does
/// (`behind`).
fn body_of(process: &Process) -> String {
    let mut value = serde_json::to_value(process).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.remove("last_fetch");
        object.remove("revision");
        object.remove("behind");
    }
    value.to_string()
}

/// The machine's host name, where the system says it.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn tick() -> Tick {
        Tick::from_secs(1).unwrap()
    }

    #[test]
    fn a_report_stays_within_the_bound_and_says_nothing_secret() {
        let identity = Identity::of_this_process(0, "0123456789abcdef");
        let mut status = StatusData::default();
        for _ in 0..3 {
            status.fetch_succeeded(0, None);
        }
        let refused: Vec<(&'static str, Millis)> = (0..10_000).map(|i| ("field", i)).collect();
        let report = identity.report(tick(), &status, &refused);
        assert!(
            report.body.len() <= MAX_REPORT_BYTES,
            "{}",
            report.body.len()
        );
        assert_eq!(report.expires_after, 3_000);
        let body: serde_json::Value = serde_json::from_str(&report.body).unwrap();
        let keys: BTreeSet<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let expected = [
            "id",
            "host",
            "pid",
            "program",
            "version",
            "started",
            "tick_ms",
            "schema",
            "fetches",
            "failed_fetches",
            "late_flips",
            "rejected",
            "refused",
            "clock_offset_ms",
            "store_lost",
        ];
        assert_eq!(keys, expected.into_iter().collect());
        assert_eq!(body["pid"], std::process::id());
        assert_eq!(body["fetches"], 3);
        assert_eq!(body["schema"], "0123456789abcdef");
    }
}
