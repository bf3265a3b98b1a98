//! A fleet member in a process of its own.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::hammer::Switched;

/// The longest [`Probe::line`] waits for a line: far beyond any test's
/// schedule, so that a probe that hangs fails its test instead of hanging
/// the suite.
const LINE_TIMEOUT: Duration = Duration::from_secs(120);

/// A fleet member (`src/bin/probe.rs`) in a process of its own, on
/// `LOCKSTEP_URL=url`; killed on drop.
pub struct Probe {
    child: Child,
    /// Its stdout, line by line, read by a thread of its own.
    lines: mpsc::Receiver<std::io::Result<String>>,
}

impl Probe {
    /// Starts `binary` (the test's `env!("CARGO_BIN_EXE_probe")`) with `args`.
    pub fn spawn(binary: &str, url: &str, args: &[&str]) -> Probe {
        use std::io::BufRead;
        let mut child = Command::new(binary)
            .args(args)
            .env("LOCKSTEP_URL", url)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn probe");
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Probe { child, lines }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its report of the switch to the value it waits for, scheduled at
    /// `at_ns` (ns since the Unix epoch), checked: it did not see the value
    /// before the instant, flipped nothing late and failed no fetch while
    /// serving (`what` names the run in a failure). Returns the report, for
    /// what else a test checks, and the switch, for
    /// [`assert_all_switched_within_5_ms`](crate::assert_all_switched_within_5_ms).
    pub fn switched(&mut self, at_ns: i64, what: &str) -> (serde_json::Value, Switched) {
        let line = self.line();
        let report: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"));
        let seen = report["seen_ns"]
            .as_i64()
            .unwrap_or_else(|| panic!("{what}: no seen_ns: {report}"));
        assert!(
            seen >= at_ns,
            "{what}: a process saw the change {} µs early",
            (at_ns - seen) / 1000
        );
        assert_eq!(report["late_flips"], 0, "{what}: {report}");
        assert_eq!(report["failed"], 0, "{what}: {report}");
        let switched = Switched::of(&report, at_ns);
        (report, switched)
    }

    /// Its next line of output; panics when it ended, or said nothing for
    /// two minutes.
    pub fn line(&mut self) -> String {
        match self.lines.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => line.expect("probe output"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("probe ended early"),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "probe {} said nothing for {} s",
                self.child.id(),
                LINE_TIMEOUT.as_secs()
            ),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
