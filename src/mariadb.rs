//! A MariaDB server of a test's own: `mariadbd` on a free loopback port,
//! its data directory in a temporary directory of its own, for the tests
//! that must stop and restart the server (the machine's shared server on
//! 3306 is never touched).
//!
//! The binaries come from `MARIADBD` and `MARIADB_INSTALL_DB`, else `PATH`,
//! else `/usr/sbin` and `/usr/bin` (Debian's `mariadb-server`). The server
//! runs with `--skip-grant-tables` (root, no password; MariaDB still listens
//! on TCP with it, MySQL 8 would not) and InnoDB's default durability
//! (`innodb_flush_log_at_trx_commit = 1`), so what was committed before a
//! SIGKILL is there after the restart. It is killed on drop, and a watchdog
//! shell kills it and removes its directory when the test process ends
//! without dropping it (killed itself).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::wait::PATIENCE;

/// The database the server is started with, named by [`MariadbServer::url`].
pub const DATABASE: &str = "lockstep";

/// A private `mariadbd`, killed (SIGKILL) on drop and its data removed.
pub struct MariadbServer {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Told the pid of each server started; kills the last one and removes
    /// `dir` when its standard input closes.
    watchdog: Child,
    watchdog_in: Option<ChildStdin>,
}

fn no_mariadb(why: &str) -> ! {
    panic!(
        "no private MariaDB server for this test ({why}). It needs `mariadbd` and \
         `mariadb-install-db` (apt-get install mariadb-server; `bash .ci/run` installs it), \
         found through MARIADBD and MARIADB_INSTALL_DB, PATH, /usr/sbin or /usr/bin"
    )
}

/// `name` from the environment variable `env`, else `PATH`, else `fallback`.
fn binary(env: &str, name: &str, fallback: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.exists())
        })
        .unwrap_or_else(|| Path::new(fallback).join(name))
}

fn as_root() -> bool {
    // SAFETY: `geteuid` reads the process's credentials, nothing else.
    unsafe { libc::geteuid() == 0 }
}

impl MariadbServer {
    /// Creates a data directory with `mariadb-install-db`, starts the server
    /// on a free port and creates [`DATABASE`]. Panics, saying what is
    /// missing, when it cannot.
    pub fn start() -> MariadbServer {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lockstep-mariadb-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("temp dir");
        let install = binary("MARIADB_INSTALL_DB", "mariadb-install-db", "/usr/bin");
        let mut command = Command::new(&install);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if as_root() {
            command.arg("--user=root");
        }
        let installed = command
            .output()
            .unwrap_or_else(|e| no_mariadb(&format!("cannot run {}: {e}", install.display())));
        if !installed.status.success() {
            no_mariadb(&format!(
                "{} failed: {}{}",
                install.display(),
                String::from_utf8_lossy(&installed.stdout).trim(),
                String::from_utf8_lossy(&installed.stderr).trim()
            ));
        }
        let script = format!(
            "pid=; while read p; do pid=$p; done; \
             [ -n \"$pid\" ] && [ \"$pid\" != - ] && kill -9 \"$pid\"; rm -rf '{}'",
            dir.display()
        );
        let mut watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| no_mariadb(&format!("cannot start a shell: {e}")));
        let watchdog_in = watchdog.stdin.take();
        let mut server = MariadbServer {
            dir,
            port: crate::free_port(),
            child: None,
            watchdog,
            watchdog_in,
        };
        server.launch();
        server.execute(&[&format!("CREATE DATABASE {DATABASE}")]);
        server
    }

    /// `mysql://root@127.0.0.1:<port>/lockstep`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL (no shutdown, no flush: a crash) and
    /// waits for it to be gone. Its port and data stay for [`Self::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.tell_watchdog("-");
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory (after
    /// InnoDB's crash recovery); returns once it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Runs `statements` in [`DATABASE`] (or on the server, before it
    /// exists), on a connection of their own.
    pub fn execute(&self, statements: &[&str]) {
        let url = format!("mysql://root@127.0.0.1:{}", self.port);
        let statements: Vec<String> = statements.iter().map(|s| (*s).to_owned()).collect();
        if let Err(e) = crate::sql::mysql_execute(&url, statements) {
            panic!("the private MariaDB failed: {e}; its log: {}", self.log());
        }
    }

    /// The server's error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    fn tell_watchdog(&mut self, line: &str) {
        if let Some(stdin) = self.watchdog_in.as_mut() {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    fn launch(&mut self) {
        let mariadbd = binary("MARIADBD", "mariadbd", "/usr/sbin");
        let mut command = Command::new(&mariadbd);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .arg(format!(
                "--log-error={}",
                self.dir.join("error.log").display()
            ))
            .args([
                "--skip-grant-tables",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M",
                // Nothing to load or dump: less work right after a start.
                "--innodb-buffer-pool-load-at-startup=OFF",
                "--innodb-buffer-pool-dump-at-shutdown=OFF",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if as_root() {
            command.arg("--user=root");
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| no_mariadb(&format!("cannot run {}: {e}", mariadbd.display())));
        let pid = child.id().to_string();
        self.tell_watchdog(&pid);
        self.child = Some(child);
        let url = format!("mysql://root@127.0.0.1:{}", self.port);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if crate::sql::connects::<sqlx::MySqlConnection>(&url) {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                no_mariadb(&format!(
                    "mariadbd exited ({exited:?}) or did not accept a connection within {} s: {}",
                    PATIENCE.as_secs(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for MariadbServer {
    fn drop(&mut self) {
        self.kill();
        // Its input closed, the watchdog removes the directory.
        drop(self.watchdog_in.take());
        let _ = self.watchdog.wait();
    }
}
