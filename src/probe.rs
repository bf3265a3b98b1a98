//! A fleet member in a process of its own.

use std::process::{Child, Command, Stdio};

/// A fleet member (`src/bin/probe.rs`) in a process of its own, on
/// `LOCKSTEP_URL=url`; killed on drop.
pub struct Probe {
    child: Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
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
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Probe { child, lines }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its next line of output.
    pub fn line(&mut self) -> String {
        self.lines
            .next()
            .expect("probe ended early")
            .expect("probe output")
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
