//! A private `redis-server` per test, and the ways the fault tests hurt it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::wait::{PATIENCE, wait_for};

/// A `redis-server` of the test's own.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    persistent: bool,
    extra: Vec<String>,
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

impl RedisServer {
    /// A server without persistence: a restart comes back empty.
    pub fn start() -> RedisServer {
        RedisServer::launch(false)
    }

    /// A server that saves to disk (append-only file): a restart keeps data.
    pub fn start_persistent() -> RedisServer {
        RedisServer::launch(true)
    }

    fn launch(persistent: bool) -> RedisServer {
        RedisServer::launch_with(persistent, free_port(), Vec::new())
    }

    pub(crate) fn launch_with(persistent: bool, port: u16, extra: Vec<String>) -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "lockstep-redis-{}-{port}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = RedisServer {
            port,
            dir,
            child: None,
            persistent,
            extra,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(binary());
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", if self.persistent { "yes" } else { "no" }])
            .args(["--appendfsync", "always", "--enable-debug-command", "local"])
            .arg("--unixsocket")
            .arg(self.dir.join("redis.sock"))
            .args(["--unixsocketperm", "700"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}): install redis-server (apt-get install redis-server) \
                 or point REDIS_SERVER at one",
                binary()
            )
        });
        self.child = Some(child);
        let port = self.port;
        wait_for(
            &format!("redis-server on port {port} to answer PING"),
            Duration::from_millis(20),
            || {
                let answer = self
                    .connection()
                    .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
                if answer.is_ok() {
                    return Ok(());
                }
                if let Some(exited) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    panic!("redis-server on port {port} exited ({exited}) before it answered PING");
                }
                answer.map(drop)
            },
        );
    }

    /// A server that also speaks TLS on a second port, with the given PEM
    /// certificate, key and CA files; returns it and its TLS port.
    pub fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
    ) -> (RedisServer, u16) {
        let tls_port = free_port();
        let extra = vec![
            "--tls-port".to_owned(),
            tls_port.to_string(),
            "--tls-cert-file".to_owned(),
            cert.display().to_string(),
            "--tls-key-file".to_owned(),
            key.display().to_string(),
            "--tls-ca-cert-file".to_owned(),
            ca.display().to_string(),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        (
            RedisServer::launch_with(false, free_port(), extra),
            tls_port,
        )
    }

    /// The server's temporary directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis+unix://<dir>/redis.sock`.
    pub fn socket_url(&self) -> String {
        format!("redis+unix://{}", self.dir.join("redis.sock").display())
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// A plain connection, for the test to look and poke. It gives up after
    /// [`PATIENCE`], not sooner: a server starved of CPU on a loaded
    /// machine may take seconds to answer its handshake.
    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        client.get_connection_with_timeout(PATIENCE)
    }

    /// Runs one command.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut c = self.connection().expect("connect to the test redis-server");
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut c)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// How many times the server ran `command` since the last
    /// [`RedisServer::reset_stats`] (from `INFO commandstats`).
    pub fn calls(&self, command: &str) -> u64 {
        self.calls_of([command])[0]
    }

    /// How many scripts the server ran (`EVALSHA`, as fetches with a report
    /// and writes are sent, and `EVALSHA_RO`, as fetches without): with no
    /// writer about, the fetches. Each is one round trip.
    pub fn scripts_run(&self) -> u64 {
        self.calls_of(["evalsha", "evalsha_ro"]).iter().sum()
    }

    /// [`RedisServer::calls`] of each of `commands`, read at one instant
    /// (one `INFO commandstats`), so that counts taken while clients run
    /// agree with each other.
    pub fn calls_of<const N: usize>(&self, commands: [&str; N]) -> [u64; N] {
        let info: String = self.cmd(&["INFO", "commandstats"]);
        commands.map(|command| {
            let prefix = format!("cmdstat_{command}:calls=");
            info.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        })
    }

    /// Zeroes the command statistics.
    pub fn reset_stats(&self) {
        let _: () = self.cmd(&["CONFIG", "RESETSTAT"]);
    }

    /// `kill -9`, then a new server on the same port and directory (keeping
    /// its data only if persistent), after `down` of silence.
    pub fn restart(&mut self, down: Duration) {
        self.kill();
        std::thread::sleep(down);
        self.spawn();
    }

    /// `kill -9` without restarting.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again after [`RedisServer::kill`].
    pub fn revive(&mut self) {
        self.spawn();
    }

    /// SIGSTOP: the server holds its connections but answers nothing.
    pub fn freeze(&self) {
        signal("-STOP", self.pid());
    }

    /// SIGCONT after [`RedisServer::freeze`].
    pub fn thaw(&self) {
        signal("-CONT", self.pid());
    }

    /// `CLIENT PAUSE` for `how_long`: the server holds every client's commands.
    pub fn pause_clients(&self, how_long: Duration) {
        let _: () = self.cmd(&["CLIENT", "PAUSE", &how_long.as_millis().to_string(), "ALL"]);
    }

    /// `DEBUG SLEEP`: the server blocks for `how_long`. Returns once the
    /// server is asleep (a `PING` goes unanswered for 100 ms); the command
    /// runs on a thread of its own, which the handle joins.
    ///
    /// Waiting a fixed 20 ms for the command to reach the server was not
    /// enough on a loaded machine: a test's fetch was answered before the
    /// server fell asleep ("the store answered while asleep"). Nor is any
    /// fixed time: the thread sending it may not run for a while. The server
    /// is watched until it sleeps, or until the command has returned
    /// without its sleep being seen.
    pub fn sleep_server(&self, how_long: Duration) -> std::thread::JoinHandle<()> {
        let url = self.url();
        let seconds = format!("{:.3}", how_long.as_secs_f64());
        let handle = std::thread::spawn(move || {
            let client = redis::Client::open(url).expect("url");
            if let Ok(mut c) = client.get_connection() {
                let _: redis::RedisResult<()> =
                    redis::cmd("DEBUG").arg("SLEEP").arg(seconds).query(&mut c);
            }
        });
        wait_for(
            "the server to fall asleep (a PING unanswered for 100 ms) after DEBUG SLEEP",
            Duration::from_millis(5),
            || {
                if self.unanswered_ping(Duration::from_millis(100)) {
                    return Ok(());
                }
                assert!(
                    !handle.is_finished(),
                    "DEBUG SLEEP {how_long:?} returned before the server was seen asleep"
                );
                Err("a PING answered")
            },
        );
        handle
    }

    /// Whether a `PING` on a connection of its own goes unanswered for
    /// `wait` (a raw socket: a client library would wait for its handshake).
    fn unanswered_ping(&self, wait: Duration) -> bool {
        use std::io::{Read, Write};
        let Ok(mut socket) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = socket.set_read_timeout(Some(wait));
        if socket.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
            return false;
        }
        // Its first byte is enough to tell an answer.
        let mut first = [0u8; 1];
        match socket.read_exact(&mut first) {
            Ok(()) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }

    /// `CLIENT KILL TYPE normal`: closes every client connection.
    pub fn kill_clients(&self) {
        let _: redis::RedisResult<i64> = self.connection().and_then(|mut c| {
            redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .query(&mut c)
        });
    }
}

fn signal(which: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(which)
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill {which} {pid}");
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            signal("-CONT", child.id());
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates the read-only user of docs/stores.md, word for word (its
/// `ACL SETUSER reader …`), on each of `servers` (ACLs do not replicate);
/// returns its password.
pub fn documented_reader(servers: &[&RedisServer]) -> String {
    let docs = include_str!("../docs/stores.md");
    let line = docs
        .split('`')
        .find(|s| s.starts_with("ACL SETUSER reader "))
        .expect("docs/stores.md gives a read-only user as `ACL SETUSER reader …`");
    let words: Vec<&str> = line.split_whitespace().collect();
    for server in servers {
        let _: () = server.cmd(&words);
    }
    words
        .iter()
        .find_map(|word| word.strip_prefix('>'))
        .expect("a password in the documented ACL")
        .to_owned()
}
