//! The workspace's `lockstep` CLI binary, for the tests that run it, and
//! [`run_cli`], one run of it.

use std::path::PathBuf;
use std::process::Command;

/// The workspace's `lockstep` CLI binary, built once per test process the way
/// `cargo build --workspace --all-features` builds it (so after that command,
/// as in CI, this is a no-op).
pub fn cli_binary() -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    // The test runs as target/<profile>/deps/<test>: the CLI lands in
    // target/<profile>.
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .expect("the target directory");
    BUILD.call_once(|| {
        let profile = dir
            .file_name()
            .and_then(|p| p.to_str())
            .unwrap_or("debug")
            .to_owned();
        let target_dir = dir.parent().expect("the target dir");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .args([
                "build",
                "-q",
                "--workspace",
                "--all-features",
                "--bin",
                "lockstep",
            ])
            .arg("--target-dir")
            .arg(target_dir);
        // What cargo set for this test process is not the shell's: ring's
        // build script, for one, reruns when CARGO_MANIFEST_DIR changes, and
        // everything above it would be rebuilt (and again by the next build
        // from a shell).
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_by_cargo = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
                || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*name);
            if set_by_cargo {
                cargo.env_remove(&*name);
            }
        }
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cargo.arg("--release");
            }
            other => {
                cargo.args(["--profile", other]);
            }
        }
        let status = cargo.status().expect("run cargo build --bin lockstep");
        assert!(status.success(), "cargo build --bin lockstep failed");
    });
    dir.join(format!("lockstep{}", std::env::consts::EXE_SUFFIX))
}

/// What one run of the `lockstep` binary did.
pub struct CliRun {
    /// Its exit status (-1 when a signal ended it).
    pub code: i32,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl CliRun {
    /// Its stdout as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", self.stdout, self.stderr))
    }
}

/// Runs `lockstep args…` with `LOCKSTEP_URL=url` (when given; none from
/// the test's own environment), and waits for it to end.
pub fn run_cli(url: Option<&str>, args: &[&str]) -> CliRun {
    let mut cmd = Command::new(cli_binary());
    cmd.args(args).env_remove("LOCKSTEP_URL");
    if let Some(url) = url {
        cmd.env("LOCKSTEP_URL", url);
    }
    let out = cmd.output().expect("run lockstep");
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `lockstep fleet NAMESPACE --json` on the store `url`: the view, checked
/// to have been read.
pub fn fleet_view(url: &str, namespace: &str) -> serde_json::Value {
    let run = run_cli(Some(url), &["fleet", namespace, "--json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    run.json()
}
