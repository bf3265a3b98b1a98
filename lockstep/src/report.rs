//! Reporting: the record a process leaves in the store with each fetch, for
//! the fleet view ([`crate::store::fleet()`]). It says who the process is
//! (host name, pid, program name, a random id per start, lockstep's version,
//! its build's schema digest)
//! and how it is doing (fetch and failure counts, late flips, rejected
//! values, the clock offset): never the store's URL, the environment or a
//! value.
//!
//! The record is a wire format between builds of different versions during
//! a rolling deploy ([`Body`]): its instants stay milliseconds since the
//! Unix epoch, whatever the fleet view prints; readers
//! ([`Process`](crate::store::Process)) take them as milliseconds or RFC 3339.

use serde::Serialize;

use crate::status::StatusData;
use crate::store::EXPIRY_TICKS;
use crate::store::driver::{MAX_RECORD_BYTES, Record};
use crate::this_process::{host_name, program_name};
use crate::tick::{Millis, Tick};

/// At most this many refused entries go in a record (the first ones); fewer
/// if their names are long (the record stays within [`MAX_RECORD_BYTES`]).
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
            program: program_name(),
            started: now,
            schema: schema.to_owned(),
        }
    }

    /// The record sent with the next fetch.
    pub(crate) fn record(
        &self,
        tick: Tick,
        status: &StatusData,
        refused: &[(&'static str, Millis)],
    ) -> Record {
        let mut record = Body {
            id: &self.id,
            host: &self.host,
            pid: self.pid,
            program: &self.program,
            version: env!("CARGO_PKG_VERSION"),
            started: self.started,
            tick_ms: tick.as_millis(),
            schema: &self.schema,
            fetches: status.fetches(),
            failed_fetches: status.failed_fetches(),
            late_flips: status.late_flips(),
            rejected: status.rejected(),
            refused: refused
                .iter()
                .take(MAX_REFUSED)
                .map(|&(field, at)| RefusedEntry { field, at })
                .collect(),
            clock_offset_ms: status.clock_offset().map(|(ns, _)| ns as f64 / 1e6),
            store_lost: status.store_lost(),
        };
        let mut body = record.body();
        // A record stays small whatever the process saw: the refused
        // entries are the only part that can grow.
        while body.len() > MAX_RECORD_BYTES && record.refused.pop().is_some() {
            body = record.body();
        }
        Record::new(
            self.id.clone(),
            body,
            tick.as_millis().saturating_mul(EXPIRY_TICKS),
        )
    }
}

/// The JSON a process sends: what it is and how it does, without what the
/// store fills in (when it last fetched, the revision served) or the view
/// does (whether it is behind). Its instants are milliseconds since the
/// Unix epoch, as every version of lockstep has written them: other builds
/// of the fleet read it during a rolling deploy.
#[derive(Serialize)]
struct Body<'a> {
    id: &'a str,
    host: &'a str,
    pid: u32,
    program: &'a str,
    version: &'static str,
    /// When the registry started (ms).
    started: Millis,
    tick_ms: i64,
    schema: &'a str,
    fetches: u64,
    failed_fetches: u64,
    late_flips: u64,
    rejected: u64,
    refused: Vec<RefusedEntry>,
    clock_offset_ms: Option<f64>,
    store_lost: bool,
}

/// An entry the process could not decode, in its record.
#[derive(Serialize)]
struct RefusedEntry {
    field: &'static str,
    /// The entry's instant (ms).
    at: Millis,
}

impl Body<'_> {
    /// The record as JSON text, its keys sorted.
    fn body(&self) -> String {
        serde_json::to_value(self).unwrap_or_default().to_string()
    }
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
        let report = identity.record(tick(), &status, &refused);
        assert!(
            report.body().len() <= MAX_RECORD_BYTES,
            "{}",
            report.body().len()
        );
        assert_eq!(report.expires_after(), 3_000);
        let body: serde_json::Value = serde_json::from_str(report.body()).unwrap();
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
        // The wire's instants stay milliseconds, as older builds read them.
        assert_eq!(body["started"], 0);
        assert_eq!(
            body["refused"][0],
            serde_json::json!({"field": "field", "at": 0})
        );
    }
}
