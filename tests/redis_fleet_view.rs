//! The fleet view (promise 14) with real OS processes on a real
//! redis-server: eight members of the `crew` registry (`src/bin/member.rs`,
//! tick 2 s) in processes of their own, changes written with the real
//! `lockstep` binary, and what `lockstep fleet --json` and `set --wait` say.
//!
//! The machine may stall any thread for a while: every check judges what a
//! view said (by the store's clock where it matters), with generous
//! deadlines, never how soon something woke.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lockstep_suite::{CliRun, Probe, RedisServer, fleet_view, run_cli, wait_for};
use serde_json::Value;

const MEMBERS: usize = 8;
/// The `crew` registry's tick.
const TICK_MS: i64 = 2_000;
/// How many ticks a record outlives its process's last fetch.
const EXPIRY_TICKS: i64 = 3;

/// Eight processes each: one test at a time, so they do not compete for
/// the two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// RFC 3339 as ms since the Unix epoch.
fn millis(rfc3339: &Value) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339.as_str().expect("an instant"))
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .timestamp_millis()
}

/// The pending change a write made, in a view.
fn change<'a>(view: &'a Value, write: &Value) -> Option<&'a Value> {
    view["pending"]
        .as_array()?
        .iter()
        .find(|c| c["write"] == *write)
}

/// The live process of `pid`, in a view.
fn process(view: &Value, pid: u32) -> Option<&Value> {
    view["processes"]
        .as_array()?
        .iter()
        .find(|p| p["pid"] == pid)
}

/// Asserts that a `--wait` whose output is `set` ended (at `ended`, ms by
/// this machine's clock) before the write's instant.
fn assert_ended_before_the_instant(set: &Value, ended: i64) {
    let at = millis(&set["at"]);
    assert!(
        ended < at,
        "--wait ended {} ms after the instant",
        ended - at
    );
}

/// A private redis-server and eight members of `crew` on it.
struct Crew {
    /// Alive as long as the crew.
    _server: RedisServer,
    url: String,
    members: Vec<Probe>,
}

impl Crew {
    /// Starts them, and waits until the view lists all eight.
    fn start() -> Crew {
        let server = RedisServer::start();
        let url = server.url();
        Crew::start_on(server, &vec![url; MEMBERS])
    }

    /// A member on each of `urls` (of `server`), and waits until the view
    /// lists every one; the command line uses the server's own URL.
    fn start_on(server: RedisServer, urls: &[String]) -> Crew {
        let url = server.url();
        let mut members: Vec<Probe> = urls
            .iter()
            .map(|url| Probe::spawn(env!("CARGO_BIN_EXE_member"), url, &[]))
            .collect();
        for member in &mut members {
            assert_eq!(member.line(), "ready");
        }
        let crew = Crew {
            _server: server,
            url,
            members,
        };
        crew.until("every member is in the view", |view| {
            crew.members
                .iter()
                .all(|m| process(view, m.pid()).is_some())
        });
        crew
    }

    fn lockstep(&self, args: &[&str]) -> CliRun {
        run_cli(Some(&self.url), args)
    }

    /// `lockstep fleet crew --json`.
    fn view(&self) -> Value {
        fleet_view(&self.url, "crew")
    }

    /// The first view for which `holds` is true, read every 200 ms; panics
    /// naming `what` with the last view after [`lockstep_suite::PATIENCE`]
    /// (what must happen within so many ticks is judged by the store's
    /// clock the views carry, never by how soon a view was read).
    fn until(&self, what: &str, mut holds: impl FnMut(&Value) -> bool) -> Value {
        wait_for(what, Duration::from_millis(200), || {
            let view = self.view();
            if holds(&view) { Ok(view) } else { Err(view) }
        })
    }

    /// The member whose pid is `pid`: stopped (`SIGSTOP`) or continued.
    fn signal(&self, pid: u32, signal: libc::c_int) {
        // SAFETY: kill(2) on a child of this process, which it has not
        // waited for yet.
        let done = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(done, 0, "kill({pid}, {signal})");
    }
}

#[test]
fn eight_processes_hold_a_change_before_it_activates_and_set_wait_says_so() {
    let _alone = alone();
    let crew = Crew::start();
    let set = crew.lockstep(&[
        "set",
        "crew.release",
        "1",
        "--at",
        "+10s",
        "--wait",
        "--json",
    ]);
    assert_eq!(set.code, 0, "{}{}", set.stdout, set.stderr);
    let set = set.json();
    let at = millis(&set["at"]);
    assert_eq!(set["wait"]["held_by"], MEMBERS, "{set}");
    assert_eq!(set["wait"]["of"], MEMBERS, "{set}");
    let view = crew.view();
    // Read by the store's clock before the instant, as the view says.
    assert!(millis(&view["store_time"]) < at, "{view:#}");
    let held = change(&view, &set["write"]).unwrap_or_else(|| panic!("{view:#}"));
    assert_eq!(held["field"], "release");
    assert_eq!(millis(&held["at"]), at);
    assert_eq!(held["value"], 1);
    assert_eq!(
        (&held["held_by"], &held["of"]),
        (&MEMBERS.into(), &MEMBERS.into()),
        "{view:#}"
    );
    assert_eq!(held["missing"], Value::Array(Vec::new()));
    let mut pids: Vec<u64> = view["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            for key in ["id", "host", "pid", "program", "last_fetch", "revision"] {
                assert!(p.get(key).is_some(), "{key} missing: {p}");
            }
            assert_eq!(p["program"], "member");
            p["pid"].as_u64().unwrap()
        })
        .collect();
    pids.sort_unstable();
    let mut expected: Vec<u64> = crew.members.iter().map(|m| u64::from(m.pid())).collect();
    expected.sort_unstable();
    assert_eq!(pids, expected);

    // At the horizon, less than a tick may remain once some member has
    // not fetched yet: it is on schedule, waited for, and not named.
    let set = crew.lockstep(&["set", "crew.release", "2", "--wait"]);
    assert_eq!(set.code, 0, "{}{}", set.stdout, set.stderr);
    assert!(
        set.stdout
            .contains(&format!("held by all {MEMBERS} live processes")),
        "{}",
        set.stdout
    );
}

#[test]
fn readers_with_the_documented_read_only_user_are_in_the_view_and_counted_by_wait() {
    let _alone = alone();
    let server = RedisServer::start();
    let password = lockstep_suite::documented_reader(&[&server]);
    let reader = format!("redis://reader:{password}@127.0.0.1:{}", server.port());
    // Two members with every permission (they publish the schema), two as
    // the documented reader.
    let urls = [server.url(), server.url(), reader.clone(), reader];
    // Returns once the view lists all four.
    let crew = Crew::start_on(server, &urls);
    let set = crew.lockstep(&["set", "crew.release", "3", "--wait"]);
    assert_eq!(set.code, 0, "{}{}", set.stdout, set.stderr);
    assert!(
        set.stdout.contains("held by all 4 live processes"),
        "{}",
        set.stdout
    );
    let view = crew.view();
    for member in &crew.members {
        let process = process(&view, member.pid()).unwrap_or_else(|| panic!("{view:#}"));
        assert_eq!(process["behind"], Value::Null, "{process}");
    }
}

#[test]
fn a_frozen_process_is_named_by_the_view_and_by_wait_and_catches_up_when_continued() {
    let _alone = alone();
    let crew = Crew::start();
    let pid = crew.members[3].pid();
    // Frozen just after a fetch, its record lives three ticks more: the
    // checks below fit in that.
    crew.until("the member to freeze fetched just now", |view| {
        let p = process(view, pid).expect("the member is live");
        millis(&view["store_time"]) - millis(&p["last_fetch"]) < 500
    });
    crew.signal(pid, libc::SIGSTOP);
    let run = crew.lockstep(&[
        "set",
        "crew.release",
        "7",
        "--at",
        "+8s",
        "--wait",
        "--json",
    ]);
    let ended = Utc::now().timestamp_millis();
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let set = run.json();
    assert_ended_before_the_instant(&set, ended);
    let at = millis(&set["at"]);
    assert!(
        run.stderr.contains(&format!(" pid {pid} (member, ")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("lockstep cancel crew.release --at 20")
            && run.stderr.contains("missed a fetch"),
        "{}",
        run.stderr
    );
    for lagging in set["wait"]["missing"].as_array().unwrap() {
        let why = if lagging["pid"] == pid {
            "missed a fetch"
        } else {
            // Another member whose fetch was not due yet, if any.
            "due"
        };
        assert_eq!(lagging["why"], why, "{set}");
    }
    assert!(
        set["wait"]["missing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["pid"] == pid),
        "{set}"
    );

    let write = &set["write"];
    let view = crew.until("7 of 8 hold it", |view| {
        // Only while the frozen member's record lives (three ticks from its
        // last fetch, by the store's clock) can 7 of 8 hold it.
        assert!(
            process(view, pid).is_some(),
            "the frozen member left the view before the 7 others held the change: {view:#}"
        );
        change(view, write).is_some_and(|c| c["held_by"] == MEMBERS - 1 && c["of"] == MEMBERS)
    });
    let frozen = process(&view, pid).expect("the frozen member is still live");
    assert_eq!(
        change(&view, write).unwrap()["missing"],
        Value::Array(vec![frozen["id"].clone()]),
        "{view:#}"
    );

    crew.signal(pid, libc::SIGCONT);
    let view = crew.until("8 of 8 hold it", |view| {
        change(view, write).is_some_and(|c| c["held_by"] == MEMBERS && c["of"] == MEMBERS)
    });
    assert!(millis(&view["store_time"]) < at, "{view:#}");
}

#[test]
fn a_killed_process_leaves_the_view_within_the_expiry() {
    let _alone = alone();
    let mut crew = Crew::start();
    let killed = crew.members.remove(5);
    let pid = killed.pid();
    drop(killed);
    // Its record expires three ticks after its last fetch, by the store's
    // clock; a tick of slack for a loaded machine.
    let mut last_fetch = None;
    let view = crew.until("the killed member left the view", |view| {
        match process(view, pid) {
            Some(p) => {
                last_fetch = Some(millis(&p["last_fetch"]));
                false
            }
            None => true,
        }
    });
    if let Some(seen) = last_fetch {
        let left = millis(&view["store_time"]);
        assert!(
            left - seen <= (EXPIRY_TICKS + 1) * TICK_MS,
            "it left the view {} ms after its last fetch",
            left - seen
        );
    }
    let live: Vec<&Value> = view["processes"].as_array().unwrap().iter().collect();
    assert_eq!(live.len(), MEMBERS - 1, "{view:#}");
    for member in &crew.members {
        assert!(process(&view, member.pid()).is_some(), "{view:#}");
    }
}

/// Each command's successful calls since the last `CONFIG RESETSTAT`, from
/// `INFO commandstats`.
fn calls(server: &RedisServer) -> BTreeMap<String, u64> {
    let info: String = server.cmd(&["INFO", "commandstats"]);
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let stat = |key: &str| -> u64 {
                stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            let ok = stat("calls") - stat("failed_calls") - stat("rejected_calls");
            Some((name.to_owned(), ok))
        })
        .collect()
}

#[test]
fn reporting_costs_no_round_trip_one_fetch_per_process_per_tick_plus_one_at_start() {
    let _alone = alone();
    let server = RedisServer::start();
    let url = server.url();
    server.reset_stats();
    let spawned = Instant::now();
    let mut members: Vec<Probe> = (0..MEMBERS)
        .map(|_| Probe::spawn(env!("CARGO_BIN_EXE_member"), &url, &[]))
        .collect();
    for member in &mut members {
        assert_eq!(member.line(), "ready");
    }
    let ready = Instant::now();
    std::thread::sleep(Duration::from_millis(5 * TICK_MS as u64));
    let mut at_start = calls(&server);
    // Each member publishes its schema once, after its first fetch: a
    // script of its own, not a fetch.
    *at_start.entry("evalsha".to_owned()).or_default() -= MEMBERS as u64;
    let (since_spawn, since_ready) = (spawned.elapsed(), ready.elapsed());

    // The steady state: fetches alone, each one round trip with its report.
    server.reset_stats();
    let window = Instant::now();
    std::thread::sleep(Duration::from_millis(5 * TICK_MS as u64));
    let steady = calls(&server);
    let seconds = window.elapsed().as_secs_f64();

    let fetches = |c: &BTreeMap<String, u64>| {
        c.get("evalsha").copied().unwrap_or(0) + c.get("evalsha_ro").copied().unwrap_or(0)
    };
    let ticks = |d: Duration| d.as_millis() as f64 / TICK_MS as f64;
    let per_member = 1 + ticks(since_ready).floor() as u64..=1 + ticks(since_spawn).ceil() as u64;
    let expected = MEMBERS as u64 * per_member.start()..=MEMBERS as u64 * per_member.end();
    println!(
        "{MEMBERS} processes: {} fetches in the {:.2} s from their spawn (expected {expected:?}), \
         {} in {seconds:.2} s of steady state; every call in it: {steady:?}",
        fetches(&at_start),
        since_spawn.as_secs_f64(),
        fetches(&steady),
    );
    assert!(
        expected.contains(&fetches(&at_start)),
        "{at_start:?}, expected {expected:?} fetches"
    );
    let whole = (seconds * 1000.0 / TICK_MS as f64).floor() as u64;
    let expected = MEMBERS as u64 * whole..=MEMBERS as u64 * (whole + 1);
    assert!(
        expected.contains(&fetches(&steady)),
        "{steady:?}, expected {expected:?} fetches"
    );
    // Every fetch reports: one EVALSHA of the reporting script, no
    // read-only fetch beside it. (The commands the scripts run inside are
    // counted too by `INFO commandstats`: they are not round trips.)
    assert_eq!(steady.get("evalsha_ro"), None, "{steady:?}");
}

/// Plants `n` records of processes in `namespace`'s fleet on
/// `connection`, each last fetched 3 s ago by the store's clock (again if
/// planted before), at revision 0, expiring in 10 minutes: processes that
/// stopped fetching a tick and a half ago, missing their fetches, still
/// within the 3 ticks (6 s) a record lives.
fn plant_records(connection: &mut redis::Connection, namespace: &str, n: usize) {
    let script = r#"
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        for i = 1, tonumber(ARGV[1]) do
          local id = 'fake' .. i
          local body = cjson.encode({id = id, host = 'h', pid = i, program = 'fake'})
          redis.call('HSET', KEYS[1], id, cjson.encode({seen = now - 3000, revision = 0, body = body}))
          redis.call('ZADD', KEYS[2], now + 600000, id)
        end
        return 1"#;
    let _: i64 = redis::cmd("EVAL")
        .arg(script)
        .arg(2)
        .arg(format!("lockstep:{{{namespace}}}:fleet"))
        .arg(format!("lockstep:{{{namespace}}}:fleet:expiry"))
        .arg(n)
        .query(connection)
        .expect("planting records");
}

/// Planted records kept as [`plant_records`] plants them, whatever time
/// passes: planted again every half tick, on a thread of its own, until
/// dropped (the view leaves out a record whose last fetch is over 3 ticks
/// old, and a slow machine may take longer than that).
struct Planted {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Planted {
    fn keep(server: &RedisServer, namespace: &'static str, n: usize) -> Planted {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut connection = server.connection().expect("connect");
        plant_records(&mut connection, namespace, n);
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(TICK_MS as u64 / 2));
                    plant_records(&mut connection, namespace, n);
                }
            }
        });
        Planted {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_hundred_thousand_records_are_judged_before_the_instant() {
    let _alone = alone();
    let server = RedisServer::start();
    let url = server.url();
    let mut member = Probe::spawn(env!("CARGO_BIN_EXE_member"), &url, &[]);
    assert_eq!(member.line(), "ready");
    let planted = Planted::keep(&server, "crew", 100_000);
    for json in [true, false] {
        let mut args = vec!["set", "crew.release", "5", "--at", "+30s", "--wait"];
        if json {
            args.push("--json");
        }
        let run = run_cli(Some(&url), &args);
        let ended = Utc::now().timestamp_millis();
        assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
        if json {
            let set = run.json();
            assert_ended_before_the_instant(&set, ended);
            // Every planted process is named (and the member too, when it
            // had not fetched the write yet).
            let missing = set["wait"]["missing"].as_array().unwrap();
            let fakes = missing.iter().filter(|p| p["program"] == "fake").count();
            assert_eq!(fakes, 100_000);
        } else {
            assert!(
                run.stderr
                    .contains(" of 100001 live processes of `crew` do not hold"),
                "{}",
                &run.stderr[..run.stderr.len().min(2000)]
            );
            assert!(
                run.stderr
                    .contains(" more (`lockstep fleet crew` or `--json` lists them all)"),
                "{}",
                &run.stderr[..run.stderr.len().min(2000)]
            );
        }
    }
    drop(planted);
}
