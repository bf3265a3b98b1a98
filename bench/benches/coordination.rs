//! Lockstep's claims, measured against what a poller does, on one real
//! `redis-server` that this benchmark starts on a free loopback port.
//!
//! ```text
//! cargo bench -p lockstep-bench --bench coordination                  # all of it (about 3 minutes)
//! cargo bench -p lockstep-bench --bench coordination -- flips --plot docs/coordination.svg
//! cargo bench -p lockstep-bench --bench coordination -- load
//! cargo bench -p lockstep-bench --bench coordination -- cost          # and the scale on paper
//! cargo bench -p lockstep-bench --bench coordination -- flips --processes 8,16 --hogs 2 \
//!     --modes lockstep,lockstep-normal                                  # a busy machine
//! ```
//!
//! A relative `--plot` path is from the workspace root (cargo runs a
//! benchmark in its package's directory, `bench/`); the `--bench` cargo
//! passes is ignored.
//!
//! - `flips`: N = 8, 16, 32 OS processes (this benchmark, re-run as workers),
//!   tick 1 s, several scheduled changes. Each worker's reader polls the
//!   hot path every 100 µs from 1 ms before the next event it knows of (a
//!   pending instant from `status()`, or its own next poll) and records, by
//!   its wall clock, when it first sees each new value. `lockstep` mode
//!   schedules the changes in the registry; `polling` mode is the baseline
//!   of Flipper, Unleash or Archaius pollers at the same store load: the
//!   value lives in a plain key that the coordinator sets at each instant,
//!   and each process GETs it once a tick at its own random phase and
//!   applies what it got on arrival. Prints lateness (min / median / p99 /
//!   max), the spread across processes of each change, early and late flips,
//!   and the lateness a request sees: how long after the instant the last
//!   read that still returned the old value started (0 when none did; a
//!   process that is not running serves no request). `--hogs N` runs N
//!   processes that spin on a core each throughout, as a busy machine has;
//!   `--modes` picks what to compare: `lockstep` (the flipper at a
//!   real-time priority where the process may have one), `lockstep-normal`
//!   (at the ordinary priority, as without the permission), `polling`.
//! - `load`: server commands counted by `INFO commandstats` for P processes
//!   living T seconds each, against P × T/tick + P; the polling baseline; and
//!   a read-per-request baseline (a GET per simulated request at a stated
//!   rate per process).
//! - `cost`: server time per fetch of registries of 1, 10, 50 and 200 fields
//!   (`usec_per_call` of `EVALSHA`, and the server's whole CPU time per
//!   fetch from `INFO cpu`), then how many processes one Redis primary
//!   serves at tick 1 s, 10 s and 10 min.
//!
//! Options: `--processes 8,16,32`, `--changes 6`, `--every 2` (ticks between
//! changes), `--plot <file.svg>` with `--plot-processes 16`, `--seconds 10`
//! and `--rate 1000` (load), `--share 0.5` (the server CPU share the scale
//! assumes usable), `--per-process` (a row per process in `flips`).

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lockstep::lockstep;
use lockstep::store::{Fetch, RedisStore, Store, Write};
use lockstep_suite::{RedisServer, entries_write};
use serde::{Deserialize, Serialize};

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

/// The registry every `lockstep` worker holds.
#[lockstep(tick = "1s", store = "redis", namespace = "coordination")]
pub struct Coordination {
    /// The value the benchmark changes: 1, 2, 3… at scheduled instants.
    pub value: u64,
}

/// The plain key the polling baseline reads and the coordinator sets.
const BASELINE_KEY: &str = "coordination:baseline";
/// The tick, in ns.
const TICK: i64 = 1_000_000_000;
/// How long before an event the reader starts polling.
const LEAD: i64 = 1_000_000;
/// The reader's pause between reads while it watches for an event.
const POLL: Duration = Duration::from_micros(100);
/// The longest the reader sleeps without looking again.
const CHUNK: i64 = 10_000_000;
/// How long after an event the reader keeps watching for it.
const GRACE: i64 = 20_000_000;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn sleep_until(ns: i64) {
    let left = ns - now_ns();
    if left > 0 {
        std::thread::sleep(Duration::from_nanos(left as u64));
    }
}

// ---------------------------------------------------------------- workers

/// What a worker does between its start and its end.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// Holds the registry; its reader watches the accessor.
    Lockstep,
    /// The same, with the flipper at the ordinary priority
    /// (`realtime_flips(false)`), as in a process that may not raise it.
    LockstepNormal,
    /// GETs the baseline key once a tick at a random phase, applies it on
    /// arrival; its reader watches the applied value.
    Polling,
    /// GETs the baseline key on every simulated request, this many a second.
    PerRequest(u32),
}

impl Mode {
    fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            "lockstep" => Mode::Lockstep,
            "lockstep-normal" => Mode::LockstepNormal,
            "polling" => Mode::Polling,
            _ => Mode::PerRequest(
                s.strip_prefix("per-request=")
                    .ok_or("mode: lockstep, lockstep-normal, polling or per-request=<rate>")?
                    .parse()?,
            ),
        })
    }

    fn arg(self) -> String {
        match self {
            Mode::Lockstep => "lockstep".into(),
            Mode::LockstepNormal => "lockstep-normal".into(),
            Mode::Polling => "polling".into(),
            Mode::PerRequest(rate) => format!("per-request={rate}"),
        }
    }
}

/// The first read that saw a new value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug)]
struct Seen {
    value: u64,
    /// The wall clock right after the read (bounds it from above).
    seen_ns: i64,
    /// Since the read before it: this sample's resolution.
    gap_ns: i64,
    /// When the last read that still returned the value before started.
    last_old_ns: i64,
}

/// What a worker reports when it ends.
#[derive(Serialize, Deserialize, Debug, Default)]
struct Report {
    index: usize,
    seen: Vec<Seen>,
    /// Store round trips made for the values (fetches, GETs).
    fetches: u64,
    failed: u64,
    /// Lockstep's own count of changes learned after they activated.
    late_flips: u64,
    /// The worker's CPU time, in seconds.
    cpu_s: f64,
}

/// The baseline's applied value: what its hot path reads.
static BASELINE: AtomicU64 = AtomicU64::new(0);
/// The baseline poller's next GET, in ns (0: none).
static NEXT_POLL: AtomicI64 = AtomicI64::new(0);

/// The hot path under test, and the next instant it may change.
trait Source: Sync {
    fn read(&self) -> u64;
    fn next_event(&self) -> Option<i64>;
}

struct LockstepSource;

impl Source for LockstepSource {
    #[inline]
    fn read(&self) -> u64 {
        COORDINATION.value()
    }

    fn next_event(&self) -> Option<i64> {
        let status = COORDINATION.status();
        status.pending.first()?.at.timestamp_nanos_opt()
    }
}

struct PollingSource;

impl Source for PollingSource {
    #[inline]
    fn read(&self) -> u64 {
        BASELINE.load(Ordering::Relaxed)
    }

    fn next_event(&self) -> Option<i64> {
        Some(NEXT_POLL.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }
}

/// Reads the hot path until `until` and records the first read of every new
/// value. Never spins: sleeps until shortly before the next event, then
/// reads every 100 µs until the event is seen or has passed.
fn watch(source: &dyn Source, until: i64) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut last = source.read();
    let mut previous = now_ns();
    let mut last_old = previous;
    let mut target: Option<i64> = None;
    loop {
        let started = now_ns();
        let value = source.read();
        let at = now_ns();
        if value == last {
            last_old = started;
        } else {
            seen.push(Seen {
                value,
                seen_ns: at,
                gap_ns: at - previous,
                last_old_ns: last_old,
            });
            last = value;
            if target.is_some_and(|t| at >= t) {
                target = None;
            }
        }
        previous = at;
        if at >= until {
            return seen;
        }
        if target.is_some_and(|t| at > t + GRACE) {
            target = None;
        }
        if target.is_none() {
            target = source.next_event().filter(|&t| t + GRACE > at);
        }
        match target {
            Some(t) if t - at > LEAD => sleep_until(at + (t - at - LEAD).min(CHUNK)),
            Some(_) => std::thread::sleep(POLL),
            None => sleep_until(at + CHUNK),
        }
    }
}

fn get_value(connection: &mut redis::Connection) -> redis::RedisResult<u64> {
    let value: Option<u64> = redis::cmd("GET").arg(BASELINE_KEY).query(connection)?;
    Ok(value.unwrap_or(0))
}

/// The baseline poller: one GET at start, then one a tick at a random phase,
/// the value applied on arrival. Returns (GETs, failed).
fn poll(mut connection: redis::Connection, until: i64) -> (u64, u64) {
    // A random phase: std's hasher keys are random per process.
    let random = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8);
    let phase = (random % TICK as u64) as i64;
    let (mut gets, mut failed) = (1, 0);
    loop {
        let now = now_ns();
        let next = (now - phase).div_euclid(TICK) * TICK + phase + TICK;
        if next >= until {
            return (gets, failed);
        }
        NEXT_POLL.store(next, Ordering::Relaxed);
        sleep_until(next);
        gets += 1;
        match get_value(&mut connection) {
            Ok(value) => BASELINE.store(value, Ordering::Relaxed),
            Err(_) => failed += 1,
        }
    }
}

/// A GET per simulated request, `rate` requests a second on one thread.
/// Returns (GETs, failed).
fn serve_per_request(mut connection: redis::Connection, rate: u32, until: i64) -> (u64, u64) {
    let interval = 1_000_000_000 / i64::from(rate.max(1));
    let mut next = now_ns();
    let (mut gets, mut failed) = (0, 0);
    while next < until {
        sleep_until(next);
        gets += 1;
        if get_value(&mut connection).is_err() {
            failed += 1;
        }
        next += interval;
        // Behind by more than a request: drop the missed ones, no burst.
        next = next.max(now_ns() - interval);
    }
    (gets, failed)
}

/// `--worker <mode> <url> <index> [<lifetime ms>]`: starts, says `ready`,
/// runs until its lifetime is over (from before its start) or until the
/// instant (ns) the coordinator sends on stdin, then prints its report.
fn worker(args: &[String]) -> Result<()> {
    let [mode, url, index, rest @ ..] = args else {
        return Err("usage: --worker <mode> <url> <index> [<lifetime ms>]".into());
    };
    let mode = Mode::parse(mode)?;
    let index: usize = index.parse()?;
    let lifetime: Option<i64> = rest.first().map(|s| s.parse()).transpose()?;
    let born = now_ns();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut connection = None;
        match mode {
            Mode::Lockstep | Mode::LockstepNormal => {
                COORDINATION
                    .builder()
                    .url(url.as_str())
                    .realtime_flips(mode == Mode::Lockstep)
                    .start()
                    .await?
            }
            Mode::Polling => {
                let mut c = redis::Client::open(url.as_str())?.get_connection()?;
                BASELINE.store(get_value(&mut c)?, Ordering::Relaxed);
                connection = Some(c);
            }
            Mode::PerRequest(_) => {
                connection = Some(redis::Client::open(url.as_str())?.get_connection()?)
            }
        }
        println!("ready");
        let until = match lifetime {
            Some(ms) => born + ms * 1_000_000,
            None => {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim().parse()?
            }
        };
        let mut report = Report {
            index,
            ..Report::default()
        };
        match mode {
            Mode::Lockstep | Mode::LockstepNormal => {
                report.seen =
                    tokio::task::spawn_blocking(move || watch(&LockstepSource, until)).await?;
                let status = COORDINATION.status();
                report.fetches = status.fetches;
                report.failed = status.failed_fetches;
                report.late_flips = status.late_flips;
            }
            Mode::Polling => {
                let c = connection.take().ok_or("no connection")?;
                let poller = std::thread::spawn(move || poll(c, until));
                report.seen =
                    tokio::task::spawn_blocking(move || watch(&PollingSource, until)).await?;
                (report.fetches, report.failed) = poller.join().map_err(|_| "poller panicked")?;
            }
            Mode::PerRequest(rate) => {
                let c = connection.take().ok_or("no connection")?;
                (report.fetches, report.failed) =
                    tokio::task::spawn_blocking(move || serve_per_request(c, rate, until)).await?;
            }
        }
        report.cpu_s = own_cpu_seconds();
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    })
}

/// A worker process, seen from the coordinator.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl Worker {
    fn spawn(mode: Mode, url: &str, index: usize, lifetime_ms: Option<i64>) -> Result<Worker> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["--worker", &mode.arg(), url, &index.to_string()])
            .args(lifetime_ms.map(|ms| ms.to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        Ok(Worker {
            child,
            stdin,
            lines,
        })
    }

    fn line(&mut self) -> Result<String> {
        Ok(self.lines.next().ok_or("a worker ended early")??)
    }

    fn ready(&mut self) -> Result<()> {
        match self.line()?.as_str() {
            "ready" => Ok(()),
            other => Err(format!("a worker said {other:?}").into()),
        }
    }

    fn report(&mut self) -> Result<Report> {
        let report = serde_json::from_str(&self.line()?)?;
        self.child.wait()?;
        Ok(report)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_all(mode: Mode, url: &str, n: usize, lifetime_ms: Option<i64>) -> Result<Vec<Worker>> {
    let mut workers = (0..n)
        .map(|i| Worker::spawn(mode, url, i, lifetime_ms))
        .collect::<Result<Vec<_>>>()?;
    for w in &mut workers {
        w.ready()?;
    }
    Ok(workers)
}

// ---------------------------------------------------------------- machine

/// The machine's busy CPU time so far, in seconds, all cores together
/// (`/proc/stat`, Linux; its unit is 1/100 s).
fn machine_busy_seconds() -> f64 {
    let cpu = machine_cpu();
    match cpu.get(3..5) {
        Some(idle) => (cpu.iter().sum::<f64>() - idle.iter().sum::<f64>()) / 100.0,
        None => f64::NAN,
    }
}

/// The time so far that the machine's virtual CPUs were ready to run but
/// the hypervisor ran something else (steal), in seconds, all cores
/// together: while it lasts, nothing on that CPU runs, a flipper at a
/// real-time priority included.
fn machine_steal_seconds() -> f64 {
    machine_cpu().get(7).map_or(f64::NAN, |steal| steal / 100.0)
}

/// The first line of `/proc/stat`: the machine's CPU time by kind, in
/// 1/100 s.
fn machine_cpu() -> Vec<f64> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// This process's CPU time so far (user + system), in seconds.
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name: state is the 3rd field, utime the 14th.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    match fields.get(11..13) {
        Some(times) => times.iter().sum::<f64>() / 100.0,
        None => f64::NAN,
    }
}

/// The 1-minute load average.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Who used the machine during a run, as shares of all its cores: this
/// benchmark (its processes and its redis-server) and everything else.
#[derive(Clone, Copy)]
struct Quiet {
    start: Instant,
    machine: f64,
    steal: f64,
    own: f64,
    server: f64,
    load: f64,
}

/// `(ours, others, load average at the start, steal)`.
type Usage = (f64, f64, f64, f64);

impl Quiet {
    fn start(server: &RedisServer) -> Quiet {
        Quiet {
            start: Instant::now(),
            machine: machine_busy_seconds(),
            steal: machine_steal_seconds(),
            own: own_cpu_seconds(),
            server: server_cpu_and_output(server).0 / 1e6,
            load: load_average(),
        }
    }

    /// `workers`: the CPU seconds the workers reported.
    fn end(self, server: &RedisServer, workers: f64) -> Usage {
        let capacity = self.start.elapsed().as_secs_f64()
            * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let machine = machine_busy_seconds() - self.machine;
        let ours = own_cpu_seconds() - self.own + server_cpu_and_output(server).0 / 1e6
            - self.server
            + workers;
        let steal = machine_steal_seconds() - self.steal;
        (
            ours / capacity,
            ((machine - ours - steal) / capacity).max(0.0),
            self.load,
            steal / capacity,
        )
    }
}

fn usage(u: Usage) -> String {
    format!(
        "{:.0} % / {:.0} % (load {:.2}, steal {:.1} %)",
        u.0 * 100.0,
        u.1 * 100.0,
        u.2,
        u.3 * 100.0
    )
}

fn describe_machine(server: &RedisServer) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let info: String = server.cmd(&["INFO", "server"]);
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .to_owned();
    format!("{cores} cores ({model}), redis-server {version} on loopback")
}

// ---------------------------------------------------------------- server stats

/// `INFO commandstats` as (command → (calls, usec, failed)).
fn commandstats(server: &RedisServer) -> BTreeMap<String, (u64, u64, u64)> {
    let info: String = server.cmd(&["INFO", "commandstats"]);
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |key: &str| -> u64 {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            Some((
                name.to_owned(),
                (field("calls"), field("usec"), field("failed_calls")),
            ))
        })
        .collect()
}

/// The server's CPU time (user + system) in µs, and bytes it sent.
fn server_cpu_and_output(server: &RedisServer) -> (f64, u64) {
    let info: String = server.cmd(&["INFO", "cpu", "stats"]);
    let get = |key: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (
        (get("used_cpu_user") + get("used_cpu_sys")) * 1e6,
        get("total_net_output_bytes") as u64,
    )
}

/// Commands the fetch scripts run inside their one call (but `HSET`, which
/// the schema's publish also sends).
fn in_fetch_script(command: &str) -> bool {
    matches!(
        command,
        "time"
            | "hmget"
            | "hgetall"
            | "hexists"
            | "memory|usage"
            | "type"
            | "zrange"
            | "zadd"
            | "hdel"
            | "zrem"
            | "pexpireat"
    )
}

/// Commands the harness itself sends, left out of every count.
fn ours(command: &str) -> bool {
    matches!(command, "info" | "config|resetstat" | "flushall" | "ping")
}

// ---------------------------------------------------------------- statistics

/// min, median, p99, max (nearest rank on the sorted samples).
fn quantiles(mut v: Vec<f64>) -> Option<[f64; 4]> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    Some([v[0], q(0.5), q(0.99), v[v.len() - 1]])
}

fn median(v: Vec<f64>) -> f64 {
    quantiles(v).map_or(f64::NAN, |q| q[1])
}

/// Formats milliseconds with three significant decimals where it matters.
fn ms(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

// ---------------------------------------------------------------- flips

/// One run of `flips`: what every process saw of every change.
struct FlipRun {
    mode: Mode,
    processes: usize,
    /// The scheduled instants, ns, for values 1, 2, …
    instants: Vec<i64>,
    reports: Vec<Report>,
    /// Polling mode: when the coordinator's SET of each value returned.
    sets_ns: Vec<i64>,
    usage: Usage,
}

impl FlipRun {
    /// (process, value index, lateness in ms) of every first sighting of a
    /// scheduled value.
    /// How long after its instant each scheduled value was still read as
    /// the value before, in ms, by when that last read started (0 when it
    /// started before the instant).
    fn request_lateness(&self) -> Vec<f64> {
        let mut out = Vec::new();
        for report in &self.reports {
            for seen in &report.seen {
                let Some(k) = (seen.value as usize).checked_sub(1) else {
                    continue;
                };
                if let Some(at) = self.instants.get(k) {
                    out.push((seen.last_old_ns - at).max(0) as f64 / 1e6);
                }
            }
        }
        out
    }

    fn samples(&self) -> Vec<(usize, usize, f64)> {
        let mut out = Vec::new();
        for report in &self.reports {
            for seen in &report.seen {
                let Some(k) = (seen.value as usize).checked_sub(1) else {
                    continue;
                };
                if let Some(at) = self.instants.get(k) {
                    out.push((report.index, k, (seen.seen_ns - at) as f64 / 1e6));
                }
            }
        }
        out
    }
}

fn schedule_lockstep(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    changes: usize,
    every: i64,
) -> Result<Vec<i64>> {
    let _context = runtime.enter();
    let store = RedisStore::open(url)?;
    let mut write =
        Write::builder("coordination", COORDINATION.tick()).by("coordination benchmark");
    for k in 0..changes {
        if k > 0 {
            write = write.then_after(Duration::from_secs(every as u64));
        }
        write = write.set("value", serde_json::json!(k + 1));
    }
    let write = write.build()?;
    let committed = runtime.block_on(store.commit(&write))?;
    Ok(committed.instants.iter().map(|ms| ms * 1_000_000).collect())
}

fn flip_run(
    runtime: &tokio::runtime::Runtime,
    server: &RedisServer,
    mode: Mode,
    processes: usize,
    changes: usize,
    every: i64,
) -> Result<FlipRun> {
    let url = server.url();
    let _: () = server.cmd(&["FLUSHALL"]);
    let _: () = server.cmd(&["SET", BASELINE_KEY, "0"]);
    let quiet = Quiet::start(server);
    let mut workers = spawn_all(mode, &url, processes, None)?;
    let (instants, setter) = match mode {
        Mode::Lockstep | Mode::LockstepNormal => {
            (schedule_lockstep(runtime, &url, changes, every)?, None)
        }
        _ => {
            // The same grid a lockstep write would get: the first boundary
            // at least a tick and a quarter ahead, then `every` ticks apart.
            let now = now_ns();
            let first = (now + TICK + TICK / 4).div_euclid(TICK) * TICK + TICK;
            let instants: Vec<i64> = (0..changes as i64)
                .map(|k| first + k * every * TICK)
                .collect();
            let mut connection = server.connection()?;
            let plan = instants.clone();
            let setter = std::thread::spawn(move || {
                plan.iter()
                    .enumerate()
                    .map(|(k, &at)| {
                        sleep_until(at);
                        let _: redis::RedisResult<()> = redis::cmd("SET")
                            .arg(BASELINE_KEY)
                            .arg(k + 1)
                            .query(&mut connection);
                        now_ns()
                    })
                    .collect::<Vec<i64>>()
            });
            (instants, Some(setter))
        }
    };
    let until = instants.last().copied().unwrap_or_else(now_ns) + TICK * 3 / 2;
    for w in &mut workers {
        if let Some(stdin) = &mut w.stdin {
            writeln!(stdin, "{until}")?;
        }
    }
    let reports = workers
        .iter_mut()
        .map(Worker::report)
        .collect::<Result<Vec<_>>>()?;
    let sets_ns = match setter {
        Some(s) => s.join().map_err(|_| "setter panicked")?,
        None => Vec::new(),
    };
    let usage = quiet.end(server, reports.iter().map(|r| r.cpu_s).sum());
    Ok(FlipRun {
        mode,
        processes,
        instants,
        reports,
        sets_ns,
        usage,
    })
}

fn print_flips(runs: &[FlipRun], per_process: bool) {
    println!(
        "| N | mode | samples | lateness min | median | p99 | max (ms) | spread per change: \
         median / max (ms) | early | > 1 ms late | late flips (status) | missed | read \
         resolution (median gap, ms) | old value read after the instant: p99 / max (ms) | \
         CPU during the run: this benchmark / others |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for run in runs {
        let samples = run.samples();
        let lateness: Vec<f64> = samples.iter().map(|s| s.2).collect();
        let [min, med, p99, max] = quantiles(lateness.clone()).unwrap_or([f64::NAN; 4]);
        let spreads: Vec<f64> = (0..run.instants.len())
            .filter_map(|k| {
                let l: Vec<f64> = samples.iter().filter(|s| s.1 == k).map(|s| s.2).collect();
                let [lo, _, _, hi] = quantiles(l)?;
                Some(hi - lo)
            })
            .collect();
        let spread_max = spreads.iter().copied().fold(f64::NAN, f64::max);
        let early = lateness.iter().filter(|&&l| l < 0.0).count();
        let late = lateness.iter().filter(|&&l| l > 1.0).count();
        let missed = run.processes * run.instants.len() - samples.len();
        let gaps: Vec<f64> = run
            .reports
            .iter()
            .flat_map(|r| r.seen.iter().map(|s| s.gap_ns as f64 / 1e6))
            .collect();
        let request = quantiles(run.request_lateness()).unwrap_or([f64::NAN; 4]);
        let status_late = match run.mode {
            Mode::Lockstep | Mode::LockstepNormal => run
                .reports
                .iter()
                .map(|r| r.late_flips)
                .sum::<u64>()
                .to_string(),
            _ => "n/a".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {early} | {late} | {status_late} | \
             {missed} | {} | {} / {} | {} |",
            run.processes,
            run.mode.arg(),
            samples.len(),
            ms(min),
            ms(med),
            ms(p99),
            ms(max),
            ms(median(spreads)),
            ms(spread_max),
            ms(median(gaps)),
            ms(request[2]),
            ms(request[3]),
            usage(run.usage),
        );
    }
    for run in runs.iter().filter(|r| !r.sets_ns.is_empty()) {
        let late: Vec<String> = run
            .sets_ns
            .iter()
            .zip(&run.instants)
            .map(|(set, at)| ms((set - at) as f64 / 1e6))
            .collect();
        println!(
            "\npolling, N = {}: the coordinator's SET of each value returned {} ms after its \
             instant",
            run.processes,
            late.join(", ")
        );
    }
    if per_process {
        for run in runs {
            println!("\n{} processes, {}:\n", run.processes, run.mode.arg());
            println!("| process | min | median | p99 | max (ms) | fetches | failed |");
            println!("|---|---|---|---|---|---|---|");
            let samples = run.samples();
            for report in &run.reports {
                let l: Vec<f64> = samples
                    .iter()
                    .filter(|s| s.0 == report.index)
                    .map(|s| s.2)
                    .collect();
                let q = quantiles(l).unwrap_or([f64::NAN; 4]);
                println!(
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    report.index,
                    ms(q[0]),
                    ms(q[1]),
                    ms(q[2]),
                    ms(q[3]),
                    report.fetches,
                    report.failed
                );
            }
        }
    }
}

/// The plot: flip instants per process, lockstep above the polling
/// baseline, and both modes' lateness on a log scale.
fn plot(path: &str, lockstep: &FlipRun, polling: &FlipRun) -> Result<()> {
    use plotters::prelude::*;

    const BLUE: RGBColor = RGBColor(31, 100, 200);
    const ORANGE: RGBColor = RGBColor(230, 110, 0);
    let n = lockstep.processes.max(polling.processes);
    let span = |run: &FlipRun| {
        let first = run.instants.first().copied().unwrap_or(0);
        let last = run.instants.last().copied().unwrap_or(0);
        (last - first) as f64 / 1e9
    };
    let x_max = span(lockstep).max(span(polling)) + 1.4;
    let root = SVGBackend::new(path, (1100, 1180)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!(
            "{n} processes, one redis-server, tick 1 s: when each process first reads each change"
        ),
        ("sans-serif", 22),
    )?;
    let (top, bottom) = root.split_vertically(760);
    let (upper, lower) = top.split_vertically(380);
    let y_label = |y: &i32| {
        if *y >= 0 && (*y as usize) < n {
            format!("p{y}")
        } else {
            String::new()
        }
    };

    for (area, run, colour, title) in [
        (
            &upper,
            lockstep,
            BLUE,
            "lockstep: scheduled changes, flipped by each process's clock (grey: the scheduled instants)",
        ),
        (
            &lower,
            polling,
            ORANGE,
            "polling baseline: GET once a tick at a random phase, applied on arrival (same instants)",
        ),
    ] {
        let first = run.instants.first().copied().unwrap_or(0);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.4f64..x_max, -1i32..n as i32)?;
        chart
            .configure_mesh()
            .x_desc("time since the first scheduled change (s)")
            .y_desc("process")
            .y_labels(n + 1)
            .y_label_formatter(&y_label)
            .x_labels(16)
            .light_line_style(WHITE)
            .draw()?;
        for &at in &run.instants {
            let x = (at - first) as f64 / 1e9;
            chart.draw_series(LineSeries::new(
                [(x, -1), (x, n as i32)],
                BLACK.mix(0.35).stroke_width(1),
            ))?;
        }
        let points = run.reports.iter().flat_map(|r| {
            r.seen
                .iter()
                .filter(|s| s.value > 0)
                .map(move |s| ((s.seen_ns - first) as f64 / 1e9, r.index as i32))
        });
        if run.mode == Mode::Lockstep {
            chart.draw_series(points.map(|p| Circle::new(p, 4, colour.filled())))?;
        } else {
            chart.draw_series(points.map(|p| TriangleMarker::new(p, 6, colour.filled())))?;
        }
    }

    // The title and, beside it, the legend: outside the plot, so that no
    // point can hide under it.
    let (head, body) = bottom.split_vertically(36);
    let width = head.dim_in_pixel().0 as i32;
    head.draw(&Text::new(
        "lateness of the first read that sees each change (log scale):",
        (width / 2 - 330, 10),
        ("sans-serif", 18),
    ))?;
    let legend_x = width / 2 + 190;
    head.draw(&Circle::new((legend_x, 19), 4, BLUE.filled()))?;
    head.draw(&Text::new(
        "lockstep",
        (legend_x + 10, 11),
        ("sans-serif", 15),
    ))?;
    head.draw(&TriangleMarker::new(
        (legend_x + 100, 19),
        6,
        ORANGE.filled(),
    ))?;
    head.draw(&Text::new(
        "polling baseline",
        (legend_x + 110, 11),
        ("sans-serif", 15),
    ))?;
    let mut chart = ChartBuilder::on(&body)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0.001f64..2000.0).log_scale(), -1i32..n as i32)?;
    chart
        .configure_mesh()
        .x_desc("ms after the scheduled instant (points below 0.001 ms drawn at 0.001)")
        .y_desc("process")
        .y_labels(n + 1)
        .y_label_formatter(&y_label)
        .x_label_formatter(&|x| {
            if *x >= 1.0 {
                format!("{x:.0}")
            } else {
                format!("{x}")
            }
        })
        .light_line_style(WHITE)
        .draw()?;
    chart.draw_series(
        lockstep
            .samples()
            .into_iter()
            .map(|(p, _, l)| Circle::new((l.max(0.001), p as i32), 4, BLUE.filled())),
    )?;
    chart.draw_series(
        polling
            .samples()
            .into_iter()
            .map(|(p, _, l)| TriangleMarker::new((l.max(0.001), p as i32), 6, ORANGE.filled())),
    )?;
    root.present()?;
    Ok(())
}

// ---------------------------------------------------------------- load

fn load(server: &RedisServer, opts: &Options) -> Result<()> {
    let url = server.url();
    let t = opts.seconds;
    println!(
        "\n## Store load: P processes, each living {t} s (tick 1 s), commands counted by the \
         server\n"
    );
    println!(
        "| P | mode | store round trips counted | expected | other commands (once per process) \
         | server CPU | CPU during the run: this benchmark / others |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &p in &opts.processes {
        for mode in [Mode::Lockstep, Mode::Polling, Mode::PerRequest(opts.rate)] {
            let _: () = server.cmd(&["FLUSHALL"]);
            let _: () = server.cmd(&["SET", BASELINE_KEY, "0"]);
            // A registry with one value, as a fetch would find it.
            if mode == Mode::Lockstep {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                schedule_lockstep(&runtime, &url, 1, 1)?;
            }
            server.reset_stats();
            let quiet = Quiet::start(server);
            let (cpu0, _) = server_cpu_and_output(server);
            let mut workers = spawn_all(mode, &url, p, Some(t as i64 * 1000))?;
            let reports = workers
                .iter_mut()
                .map(Worker::report)
                .collect::<Result<Vec<_>>>()?;
            let (cpu1, _) = server_cpu_and_output(server);
            let used = quiet.end(server, reports.iter().map(|r| r.cpu_s).sum());
            let stats = commandstats(server);
            let (main, expected) = match mode {
                // Registries fetch with their report: one EVALSHA each.
                Mode::Lockstep | Mode::LockstepNormal => {
                    ("evalsha", format!("{p} × {t} + {p} = {}", p * t + p))
                }
                Mode::Polling => ("get", format!("{p} × {t} + {p} = {}", p * t + p)),
                Mode::PerRequest(rate) => (
                    "get",
                    format!(
                        "{p} × {rate} × {t} = {}",
                        p as u64 * u64::from(rate) * t as u64
                    ),
                ),
            };
            let (calls, _, failed) = stats.get(main).copied().unwrap_or_default();
            let reported: u64 = reports.iter().map(|r| r.fetches).sum();
            // Commands a script runs are counted too; they are part of its
            // call. Each fetch's record is one HSET and one ZADD: the HSETs
            // beyond the ZADDs are the schema's, sent on their own.
            let records = stats.get("zadd").map_or(0, |s| s.0);
            let other: Vec<String> = stats
                .iter()
                .filter(|(name, _)| name.as_str() != main && !ours(name))
                .filter(|(name, _)| mode != Mode::Lockstep || !in_fetch_script(name))
                .filter_map(|(name, (c, _, _))| {
                    let c = if name == "hset" {
                        c - records.min(*c)
                    } else {
                        *c
                    };
                    (c > 0).then(|| format!("{} {c}", name.to_uppercase().replace('|', "\\|")))
                })
                .collect();
            let failed_note = if failed > 0 {
                format!(" ({failed} refused: NOSCRIPT before the first SCRIPT LOAD)")
            } else {
                String::new()
            };
            println!(
                "| {p} | {} | {} {}{failed_note}; workers counted {reported} | {expected} | {} | \
                 {:.3} s ({:.2} % of a core) | {} |",
                mode.arg(),
                calls,
                main.to_uppercase(),
                other.join(", "),
                (cpu1 - cpu0) / 1e6,
                (cpu1 - cpu0) / 1e6 / t as f64 * 100.0,
                usage(used),
            );
        }
    }
    println!(
        "\n(P processes start one after another, so the window the server counts in is a little \
         longer than {t} s; each process lives {t} s from before its first store call.)"
    );
    Ok(())
}

// ---------------------------------------------------------------- cost

/// What `count` fetches in a row cost, on average.
#[derive(Clone, Copy)]
struct Measured {
    /// `usec_per_call` of the fetch's command (commandstats).
    command_us: f64,
    /// The server's CPU time per fetch, everything included.
    cpu_us: f64,
    reply_bytes: f64,
    round_trip_us: f64,
}

/// One row of the per-fetch cost table: a fetch without a report
/// (`EVALSHA_RO`, as tools fetch) and with one (`EVALSHA`, as registries
/// fetch), measured one after the other on the same data.
struct Cost {
    fields: usize,
    entries: usize,
    plain: Measured,
    reporting: Option<Measured>,
}

/// A way to fetch, and the one command each of its calls sends.
type Call<'a> = (&'a str, &'a mut dyn FnMut() -> Result<()>);

/// Times `count` calls of each of `calls`, taking turns in blocks of 50 so
/// that the machine's load weighs on each alike: the commands' time from
/// commandstats, the server's CPU time and output of each block, the
/// client's round trips.
fn measure(server: &RedisServer, count: usize, calls: &mut [Call]) -> Result<Vec<Measured>> {
    const BLOCK: usize = 50;
    let mut cpu = vec![0.0; calls.len()];
    let mut output = vec![0u64; calls.len()];
    let mut round_trips = vec![Vec::with_capacity(count); calls.len()];
    server.reset_stats();
    for _ in 0..count.div_ceil(BLOCK) {
        for (i, (_, call)) in calls.iter_mut().enumerate() {
            let (cpu0, out0) = server_cpu_and_output(server);
            for _ in 0..BLOCK {
                let start = Instant::now();
                call()?;
                round_trips[i].push(start.elapsed().as_secs_f64() * 1e6);
            }
            let (cpu1, out1) = server_cpu_and_output(server);
            cpu[i] += cpu1 - cpu0;
            output[i] += out1.saturating_sub(out0);
        }
    }
    let stats = commandstats(server);
    calls
        .iter()
        .zip(round_trips)
        .enumerate()
        .map(|(i, ((command, _), round_trips))| {
            let n = round_trips.len();
            let (calls, usec, _) = stats.get(*command).copied().unwrap_or_default();
            if calls != n as u64 {
                return Err(format!("{calls} {command} for {n} fetches").into());
            }
            Ok(Measured {
                command_us: usec as f64 / calls.max(1) as f64,
                cpu_us: cpu[i] / n as f64,
                reply_bytes: output[i] as f64 / n as f64,
                round_trip_us: median(round_trips),
            })
        })
        .collect()
}

/// The fleet's record as a registry keeps it: its body, and what a record
/// costs the store.
struct Record {
    body: String,
    /// The record as stored in the fleet's hash (`HSTRLEN`).
    stored_bytes: u64,
    /// `MEMORY USAGE` of the fleet's hash and expiry set, per record, with
    /// [`RECORDS`] of them.
    memory_bytes: f64,
}

/// How many records the memory per record is measured over.
const RECORDS: usize = 1000;

/// The record a real registry keeps: a worker runs `Coordination` for a
/// moment; then [`RECORDS`] processes with that body.
fn record(
    server: &RedisServer,
    runtime: &tokio::runtime::Runtime,
    store: &RedisStore,
) -> Result<Record> {
    let _: () = server.cmd(&["FLUSHALL"]);
    let (fleet, expiry) = (
        "lockstep:{coordination}:fleet",
        "lockstep:{coordination}:fleet:expiry",
    );
    for mut worker in spawn_all(Mode::Lockstep, &server.url(), 1, Some(1_500))? {
        worker.report()?;
    }
    let held: Vec<(String, String)> = server.cmd(&["HGETALL", fleet]);
    let (id, stored) = held.first().ok_or("the worker kept no record")?;
    let stored_bytes: u64 = server.cmd(&["HSTRLEN", fleet, id]);
    let record: serde_json::Value = serde_json::from_str(stored)?;
    let body = record["body"]
        .as_str()
        .ok_or("a record without a body")?
        .to_owned();
    for i in 0..RECORDS {
        let report =
            lockstep::store::driver::Record::new(format!("{:016x}", i), body.clone(), 3_000);
        runtime
            .block_on(store.fetch_with(Fetch::new("coordination", &[]).reporting(Some(&report))))?;
    }
    let usage =
        |key: &str| -> Result<u64> { Ok(server.cmd(&["MEMORY", "USAGE", key, "SAMPLES", "0"])) };
    let held: u64 = server.cmd(&["HLEN", fleet]);
    Ok(Record {
        body,
        stored_bytes,
        memory_bytes: (usage(fleet)? + usage(expiry)?) as f64 / held as f64,
    })
}

fn cost(server: &RedisServer, opts: &Options) -> Result<Vec<Cost>> {
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let _context = runtime.enter();
    let store = RedisStore::open(&url)?;
    let tick = lockstep::Tick::new(Duration::from_secs(1))?;
    let record = record(server, &runtime, &store)?;
    // One process fetching again and again: its record replaced each time.
    let report = lockstep::store::driver::Record::new(
        "0123456789abcdef".to_owned(),
        record.body.clone(),
        3_000,
    );
    let mut rows = Vec::new();
    for fields in [1usize, 10, 50, 200] {
        for entries in [2usize, 17] {
            let _: () = server.cmd(&["FLUSHALL"]);
            let keys: Vec<String> = (0..fields).map(|i| format!("field_{i:03}")).collect();
            // Each field gets `entries` entries, written as lockstep writes
            // them: a change now and then, one per tick.
            let write = entries_write("cost", tick, "coordination benchmark", &keys, entries);
            runtime.block_on(store.commit(&write))?;
            let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let fetch = |report: Option<&lockstep::store::driver::Record>| -> Result<()> {
                let fetched = runtime
                    .block_on(store.fetch_with(Fetch::new("cost", &key_refs).reporting(report)))?;
                debug_assert_eq!(fetched.fields.len(), fields);
                Ok(())
            };
            for _ in 0..50 {
                fetch(None)?;
                fetch(Some(&report))?;
            }
            let count = if fields * entries > 1000 { 500 } else { 2000 };
            let measured = measure(
                server,
                count,
                &mut [
                    ("evalsha_ro", &mut || fetch(None)),
                    ("evalsha", &mut || fetch(Some(&report))),
                ],
            )?;
            rows.push(Cost {
                fields,
                entries,
                plain: measured[0],
                reporting: Some(measured[1]),
            });
        }
    }
    // The read-per-request baseline's unit: one GET of a small value.
    let _: () = server.cmd(&["SET", BASELINE_KEY, "1000"]);
    let mut connection = server.connection()?;
    let mut get = || -> Result<()> {
        get_value(&mut connection)?;
        Ok(())
    };
    let get = Cost {
        fields: 1,
        entries: 0,
        plain: measure(server, 5000, &mut [("get", &mut get)])?[0],
        reporting: None,
    };

    println!("\n## Server cost per fetch\n");
    println!(
        "| fields | entries per field | fetch µs per call (EVALSHA_RO, commandstats) | with \
         report (EVALSHA) | server CPU µs per fetch (all in) | with report | reply bytes | \
         round trip, client (µs, median) | with report |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let cell = |m: Option<Measured>, f: fn(&Measured) -> f64| {
        m.map_or("—".to_owned(), |m| format!("{:.1}", f(&m)))
    };
    for r in rows.iter().chain([&get]) {
        let (what, entries) = if r.entries == 0 {
            (
                "GET of one value (read-per-request baseline)".to_owned(),
                "—".to_owned(),
            )
        } else {
            (r.fields.to_string(), r.entries.to_string())
        };
        println!(
            "| {what} | {entries} | {:.1} | {} | {:.1} | {} | {:.0} | {:.0} | {} |",
            r.plain.command_us,
            cell(r.reporting, |m| m.command_us),
            r.plain.cpu_us,
            cell(r.reporting, |m| m.cpu_us),
            r.plain.reply_bytes,
            r.plain.round_trip_us,
            cell(r.reporting, |m| m.round_trip_us),
        );
    }
    println!(
        "\n(2 entries: the active value and one pending change; 17: a field with a full \
         history, the active entry and the 16 superseded ones the store keeps. Commandstats \
         time is the script's execution; the CPU figure adds reading the request, writing the \
         reply and the server's housekeeping, from `INFO cpu` over 500 to 2000 fetches. With \
         report: the same fetch, as a registry sends it, keeping the process's record; the \
         two take turns, 50 fetches at a time.)"
    );
    let extra: Vec<f64> = rows
        .iter()
        .filter_map(|r| Some(r.reporting?.command_us - r.plain.command_us))
        .collect();
    println!(
        "\n## Reporting\n\nA record as a registry keeps it: a body of {} bytes, {} bytes stored \
         in `lockstep:{{ns}}:fleet` (`HSTRLEN`), {:.0} bytes of server memory per record \
         (`MEMORY USAGE` of the fleet's hash and expiry set over {RECORDS} records). Records \
         per registry: one per live process (a record lasts 3 ticks after its process's last \
         fetch; each fetch deletes at most 32 expired ones, and both keys expire with the \
         last record). Keeping the record adds a median of {:.1} µs of script time to a \
         fetch ({:.1} to {:.1} across the rows above).",
        record.body.len(),
        record.stored_bytes,
        record.memory_bytes,
        median(extra.clone()),
        extra.iter().copied().fold(f64::INFINITY, f64::min),
        extra.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    scale(&rows, opts.share);
    Ok(rows)
}

/// How many processes one Redis primary serves, from the measured cost.
fn scale(rows: &[Cost], share: f64) {
    println!(
        "\n## Scale on paper: processes one Redis primary serves\n\nAssumed: Redis runs \
         commands on one thread, and {:.0} % of that core is usable for fetches (the rest is \
         headroom for writes, persistence, replication and slow moments). Each process \
         fetches once a tick, so processes = usable server µs per tick ÷ server µs per fetch, \
         with usable µs per tick = {share} × tick. Two bases: the script's own time \
         (commandstats), and the server's whole CPU time per fetch (all in, measured one \
         fetch at a time, so every fetch also pays a trip through the event loop).\n",
        share * 100.0
    );
    println!("| registry | basis | µs per fetch | tick 1 s | tick 10 s | tick 10 min |");
    println!("|---|---|---|---|---|---|");
    for r in rows
        .iter()
        .filter(|r| matches!((r.fields, r.entries), (10, 2) | (50, 2) | (200, 17)))
    {
        let reporting = r.reporting.unwrap_or(r.plain);
        for (basis, per_fetch) in [
            ("commandstats", r.plain.command_us),
            ("all in", r.plain.cpu_us),
            ("all in, with report", reporting.cpu_us),
        ] {
            let cells: Vec<String> = [1.0f64, 10.0, 600.0]
                .iter()
                .map(|tick| {
                    let usable = share * tick * 1e6;
                    format!(
                        "{} ÷ {per_fetch:.1} ≈ **{}**",
                        thousands(usable),
                        thousands(usable / per_fetch)
                    )
                })
                .collect();
            println!(
                "| {} fields × {} entries ({:.0} kB a reply) | {basis} | {per_fetch:.1} | {} |",
                r.fields,
                r.entries,
                r.plain.reply_bytes / 1e3,
                cells.join(" | ")
            );
        }
    }
    println!(
        "\nEach process also holds one connection, and Redis accepts 10 000 clients by \
         default (`maxclients`): past that, connections and not CPU are the limit."
    );
    if let Some(r) = rows.iter().find(|r| (r.fields, r.entries) == (200, 17)) {
        let per_second = share * 1e6 / r.plain.cpu_us;
        println!(
            "Bandwidth: at {:.0} fetches a second, the 200-field registry's {:.0} kB replies \
             make {:.0} MB/s; a 1 Gbit/s link carries 125 MB/s.",
            per_second,
            r.plain.reply_bytes / 1e3,
            per_second * r.plain.reply_bytes / 1e6
        );
    }
}

/// 12345.6 → "12 346".
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------- main

struct Options {
    sections: Vec<String>,
    processes: Vec<usize>,
    changes: usize,
    every: i64,
    plot: Option<String>,
    plot_processes: usize,
    seconds: usize,
    rate: u32,
    share: f64,
    per_process: bool,
    hogs: usize,
    modes: Vec<Mode>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            sections: Vec::new(),
            processes: vec![8, 16, 32],
            changes: 6,
            every: 2,
            plot: None,
            plot_processes: 16,
            seconds: 10,
            rate: 1000,
            share: 0.5,
            per_process: false,
            hogs: 0,
            modes: vec![Mode::Lockstep, Mode::Polling],
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "flips" | "load" | "cost" => o.sections.push(arg.clone()),
                // What `cargo bench` passes every benchmark.
                "--bench" => {}
                "--processes" => {
                    o.processes = value()?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()?
                }
                "--changes" => o.changes = value()?.parse()?,
                "--every" => o.every = value()?.parse()?,
                "--plot" => o.plot = Some(from_the_workspace_root(value()?)),
                "--plot-processes" => o.plot_processes = value()?.parse()?,
                "--seconds" => o.seconds = value()?.parse()?,
                "--rate" => o.rate = value()?.parse()?,
                "--share" => o.share = value()?.parse()?,
                "--per-process" => o.per_process = true,
                "--hogs" => o.hogs = value()?.parse()?,
                "--modes" => {
                    o.modes = value()?
                        .split(',')
                        .map(Mode::parse)
                        .collect::<Result<_>>()?
                }
                other => {
                    return Err(format!(
                        "unknown argument {other:?}; expected flips, load, cost, --processes \
                         8,16,32, --changes N, --every TICKS, --plot FILE.svg, --plot-processes \
                         N, --seconds S, --rate R, --share F, --per-process, --hogs N, --modes \
                         lockstep,lockstep-normal,polling"
                    )
                    .into());
                }
            }
        }
        if o.sections.is_empty() {
            o.sections = vec!["flips".into(), "load".into(), "cost".into()];
        }
        if o.changes == 0 || o.every < 1 {
            return Err("--changes and --every must be at least 1".into());
        }
        Ok(o)
    }
}

/// `path`, relative to the workspace root if it is relative: the benchmark
/// runs in `bench/`, and the commands that regenerate `docs/` name paths
/// from the root.
fn from_the_workspace_root(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the bench package is in the workspace root");
    root.join(path).display().to_string()
}

fn flips(server: &RedisServer, opts: &Options) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let _hogs = (0..opts.hogs)
        .map(|_| Hog::spawn())
        .collect::<Result<Vec<_>>>()?;
    let mut runs = Vec::new();
    let mut sizes = opts.processes.clone();
    if opts.plot.is_some() && !sizes.contains(&opts.plot_processes) {
        sizes.push(opts.plot_processes);
    }
    for &n in &sizes {
        for &mode in &opts.modes {
            eprintln!("flips: {n} processes, {}…", mode.arg());
            runs.push(flip_run(
                &runtime,
                server,
                mode,
                n,
                opts.changes,
                opts.every,
            )?);
        }
    }
    println!(
        "\n## Flip coordination: {} changes {} tick(s) apart, tick 1 s, {} CPU hog(s)\n",
        opts.changes, opts.every, opts.hogs
    );
    print_flips(&runs, opts.per_process);
    if let Some(path) = &opts.plot {
        let find = |mode| {
            runs.iter()
                .find(|r| r.mode == mode && r.processes == opts.plot_processes)
        };
        if let (Some(l), Some(p)) = (find(Mode::Lockstep), find(Mode::Polling)) {
            plot(path, l, p)?;
            println!("\nplot: {path}");
        }
    }
    Ok(())
}

/// A process of this benchmark that keeps one core busy until its standard
/// input closes (its parent ended it, or died).
struct Hog(Child);

impl Hog {
    fn spawn() -> Result<Hog> {
        let child = Command::new(std::env::current_exe()?)
            .arg("--hog")
            .stdin(Stdio::piped())
            .spawn()?;
        Ok(Hog(child))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--hog`: spins until standard input closes.
fn hog() -> Result<()> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let closed = done.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().lines().count();
        closed.store(true, Ordering::Relaxed);
    });
    let mut spins = 0u64;
    while !done.load(Ordering::Relaxed) {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--worker") {
        return worker(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "--hog") {
        return hog();
    }
    let opts = Options::parse(&args)?;
    let server = RedisServer::start();
    println!("machine: {}", describe_machine(&server));
    for section in &opts.sections {
        match section.as_str() {
            "flips" => flips(&server, &opts)?,
            "load" => load(&server, &opts)?,
            _ => {
                cost(&server, &opts)?;
            }
        }
    }
    Ok(())
}
