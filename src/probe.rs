//! A fleet member in a process of its own, and what such a process does to
//! live exactly as long as its test.

use std::io::Write as _;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;

use crate::hammer::Switched;
use crate::wait::PATIENCE;

/// A helper process (`src/bin/probe.rs`, `host.rs`, `member.rs`) in a
/// process of its own, on `LOCKSTEP_URL=url`; killed on drop.
///
/// It holds the helper's standard input open: the helper ends when that
/// closes ([`exit_when_stdin_closes`]), which dropping the `Probe` does, and
/// so does the end of the test process however it ends. A helper never
/// ends on a clock of its own.
pub struct Probe {
    child: Child,
    /// What was started, for messages.
    command: String,
    /// Its standard input, held open until the `Probe` is dropped.
    stdin: Option<ChildStdin>,
    /// Its stdout, line by line, read by a thread of its own.
    lines: mpsc::Receiver<std::io::Result<String>>,
    /// The last line it printed.
    last: Option<String>,
}

/// Makes `command` start its process in a session of its own, as a service
/// manager starts a server: a fleet member is not scheduled as part of the
/// terminal session that runs the tests.
///
/// Linux schedules the processes of one session as one group (autogroup).
/// Eight fleet members whose watchers wake every 100 µs, in one group with
/// two CPU hogs (`yes > /dev/null &` in the shell that runs `cargo test`),
/// kept processes of other groups — the database server, redis-server —
/// off both cores for 1.5 to 6 s (measured with `perf sched`), which no
/// fetch deadline survives. Each member in a session of its own, as in a
/// real fleet, and none waits longer than about 100 ms.
pub fn in_a_session_of_its_own(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: `setsid` is async-signal-safe and touches no memory of the
    // parent; the child runs nothing else before it `exec`s.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

impl Probe {
    /// Starts `binary` (the test's `env!("CARGO_BIN_EXE_probe")`) with `args`.
    pub fn spawn(binary: &str, url: &str, args: &[&str]) -> Probe {
        use std::io::BufRead;
        let mut child = in_a_session_of_its_own(&mut Command::new(binary))
            .args(args)
            .env("LOCKSTEP_URL", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {binary}: {e}"));
        let name = std::path::Path::new(binary)
            .file_name()
            .map_or_else(|| binary.into(), |n| n.to_string_lossy());
        let command = std::iter::once(&*name)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        let stdin = child.stdin.take();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Probe {
            child,
            command,
            stdin,
            lines,
            last: None,
        }
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
    /// [`PATIENCE`], naming it and the last line it printed.
    pub fn line(&mut self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => {
                let line = line.expect("probe output");
                self.last = Some(line.clone());
                line
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                "`{}` (pid {}) ended early; its last line: {:?}",
                self.command,
                self.child.id(),
                self.last
            ),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "`{}` (pid {}) said nothing for {} s; its last line: {:?}",
                self.command,
                self.child.id(),
                PATIENCE.as_secs(),
                self.last
            ),
        }
    }

    /// Writes `line` to its standard input.
    pub fn tell(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("its standard input is open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("`{}`: {line}: {e}", self.command));
    }
}

/// The helper's side of [`Probe`]: ends this process when its standard
/// input closes (its test dropped the `Probe`, or ended), whatever it is
/// doing. Lines written to it are ignored.
pub fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 256];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        std::process::exit(0);
    });
}

impl Drop for Probe {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
