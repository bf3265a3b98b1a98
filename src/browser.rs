//! The console's tests' processes: [`Console`], `lockstep console` (the real
//! CLI binary) on a free loopback port; [`Chromedriver`], Debian's
//! `chromedriver` driving a headless `chromium` with a profile of its own;
//! and [`http`], one plain HTTP/1.1 request, for the requests a page of
//! another site (or a script) would send.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cli::cli_binary;
use crate::server::free_port;
use crate::wait::{PATIENCE, wait_for};

/// `lockstep console` in a process of its own, killed on drop.
pub struct Console {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The write token it printed (`None` when `--read-only`).
    pub token: Option<String>,
    /// What it printed on stdout at start.
    pub banner: String,
}

impl Console {
    /// Starts `lockstep console --listen 127.0.0.1:0 ARGS` on the store
    /// `url` (given as `LOCKSTEP_URL`), and reads the address and token it
    /// prints.
    pub fn start(url: &str, args: &[&str]) -> Console {
        Console::spawn(&mut Command::new(cli_binary()), url, args)
    }

    /// [`Console::start`], allowed at most `files` open files, as a
    /// service manager commonly allows a service (1 024).
    pub fn start_with_open_files(url: &str, args: &[&str], files: u64) -> Console {
        use std::os::unix::process::CommandExt as _;
        let mut command = Command::new(cli_binary());
        // SAFETY: `setrlimit` is async-signal-safe and touches no memory of
        // the parent; the child runs nothing else before it `exec`s.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: files,
                    rlim_max: files,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Console::spawn(&mut command, url, args)
    }

    fn spawn(command: &mut Command, url: &str, args: &[&str]) -> Console {
        let mut child = command
            .args(["console", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("LOCKSTEP_URL", url)
            .env_remove("LOCKSTEP_CONSOLE_TOKEN")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn lockstep console");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("console ended early").unwrap();
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in `{first}`"));
        let mut banner = format!("{first}\n");
        let token = if args.contains(&"--read-only") {
            None
        } else {
            let line = lines.next().expect("console ended early").unwrap();
            banner.push_str(&line);
            banner.push('\n');
            Some(line.rsplit(' ').next().unwrap().to_owned())
        };
        // The rest of its output is not read: keep the pipe drained.
        std::thread::spawn(move || lines.for_each(drop));
        Console {
            child,
            addr,
            token,
            banner,
        }
    }

    /// `http://ADDR`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many files (sockets included) the console holds open now.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(Iterator::count)
            .unwrap_or(0)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `chromedriver` on a free loopback port, killed on drop with the
/// browser it started; its profile directory is removed.
pub struct Chromedriver {
    child: Child,
    port: u16,
    profile: PathBuf,
}

impl Chromedriver {
    /// Starts `chromedriver` (from `CHROMEDRIVER`, else `PATH`) and waits
    /// until it answers.
    pub fn start() -> Chromedriver {
        let port = free_port();
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let mut child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary}: {e} (apt-get install chromium chromium-driver)")
            });
        let profile =
            std::env::temp_dir().join(format!("lockstep-chromium-{}-{port}", std::process::id()));
        wait_for(
            &format!("{binary} to listen on port {port}"),
            Duration::from_millis(50),
            || {
                let connected = TcpStream::connect(("127.0.0.1", port)).map(drop);
                if connected.is_err()
                    && let Ok(Some(exited)) = child.try_wait()
                {
                    panic!("{binary} exited ({exited}) before it listened on port {port}");
                }
                connected
            },
        );
        Chromedriver {
            child,
            port,
            profile,
        }
    }

    /// The WebDriver URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `goog:chromeOptions` capabilities of a headless chromium with a
    /// fresh profile, that runs as root and reaches nothing on the network
    /// on its own.
    pub fn capabilities(&self) -> serde_json::Map<String, serde_json::Value> {
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let options = serde_json::json!({
            "binary": binary,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-breakpad",
                "--disable-crash-reporter", "--window-size=1200,1400",
                format!("--user-data-dir={}", self.profile.display()),
            ],
        });
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".to_owned(), options);
        caps
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A test that panicked never closed its session: the browser
        // outlives chromedriver. Its processes are the ones started with
        // this profile, which no other browser uses.
        kill_browsers_of(&self.profile);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Kills every process whose command line has `--user-data-dir=PROFILE`.
fn kill_browsers_of(profile: &std::path::Path) {
    let arg = format!("--user-data-dir={}", profile.display());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            // SAFETY: kill(2) with a pid read from /proc and a signal number.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// An HTTP response: status, headers (lower-case names) and body.
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request to `addr` (`Connection: close`): `method`, `path`,
/// extra `headers` (`Host` is `addr` unless given) and a form `body`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect to the console");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    // A server that refuses a large body may close before reading it all.
    let _ = stream.write_all(request.as_bytes());
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw)
        && matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    {
        panic!(
            "{method} {path}: no whole answer from {addr} within {} s; so far: {}",
            PATIENCE.as_secs(),
            String::from_utf8_lossy(&raw)
        );
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in `{head}`"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// `text` percent-encoded for a form body.
pub fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// A session of the console over plain HTTP: its cookie and CSRF token.
pub struct Session {
    /// The session cookie, `name=value`.
    pub cookie: String,
    /// The form's CSRF token.
    pub csrf: String,
}

/// A new session: the page's cookie and CSRF token.
pub fn session(console: &Console) -> Session {
    let page = http(console.addr, "GET", "/", &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    let cookie = page
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let csrf = page
        .body
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the page")
        .to_owned();
    Session { cookie, csrf }
}

/// A form `body` posted to `path` of `console` with the session `cookie`
/// and, when given, an `Origin` header.
pub fn post(
    console: &Console,
    path: &str,
    cookie: &str,
    origin: Option<&str>,
    body: &str,
) -> Response {
    let mut headers = vec![("Cookie", cookie)];
    if let Some(origin) = origin {
        headers.push(("Origin", origin));
    }
    http(console.addr, "POST", path, &headers, body)
}
