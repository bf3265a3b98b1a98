//! Rolling deploys (promise 17): two builds of the `roll` registry
//! (`src/bin/roll.rs`: v1 `level: u8, code: u32`; v2 `level: u32,
//! code: String, extra: u32`) in processes of their own on one real
//! redis-server, written to with the real `lockstep` binary and the Rust
//! API. A value some live build cannot decode is refused, naming the build
//! and its processes; forced, `--wait` and `lockstep fleet` say who rejects
//! it, and those processes do keep their value; `ls` shows both schemas;
//! once the old build is gone, its limits go with it.
//!
//! The machine may stall any thread for a while: every check judges what
//! a view or a process said, with generous deadlines, never how soon
//! something woke.

use std::collections::BTreeMap;
use std::time::Duration;

use lockstep::lockstep;
use lockstep_suite::browser::{form_encode, post, session};
use lockstep_suite::{CliRun, Console, Probe, RedisServer, fleet_view, run_cli, wait_for};
use serde_json::Value;

/// The new build, as an application of it writes through the Rust API
/// (without reporting: it is not one of the fleet's processes).
#[lockstep(tick = "2s", store = "redis", namespace = "roll")]
pub struct Roll {
    /// The level.
    pub level: u32,
    /// A code.
    pub code: String,
    /// What the new build adds.
    pub extra: u32,
}

/// A private redis-server with two processes of each build on it.
struct Deploy {
    server: RedisServer,
    url: String,
    /// By build: `v1`, `v2`.
    builds: BTreeMap<&'static str, Vec<Probe>>,
}

impl Deploy {
    /// A process of each of `builds`, once the view lists them all.
    fn start(builds: &[&'static str]) -> Deploy {
        let server = RedisServer::start();
        let url = server.url();
        let mut deploy = Deploy {
            server,
            url,
            builds: BTreeMap::new(),
        };
        for build in builds {
            deploy.spawn(build);
        }
        deploy.until_live(builds.len());
        deploy
    }

    fn spawn(&mut self, build: &'static str) {
        let mut probe = Probe::spawn(env!("CARGO_BIN_EXE_roll"), &self.url, &[build]);
        assert_eq!(probe.line(), "ready");
        self.builds.entry(build).or_default().push(probe);
    }

    fn lockstep(&self, args: &[&str]) -> CliRun {
        run_cli(Some(&self.url), args)
    }

    /// Runs a write with `--wait`, which must say all `n` live processes
    /// hold it.
    fn held_by_all(&self, args: &[&str], n: usize) {
        let run = self.lockstep(args);
        assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
        let said = format!("held by all {n} live processes");
        assert!(run.stdout.contains(&said), "{}", run.stdout);
    }

    /// `lockstep fleet roll --json`.
    fn view(&self) -> Value {
        fleet_view(&self.url, "roll")
    }

    /// Waits until the view lists exactly `n` live processes, each of a
    /// build the store holds the schema of; returns that view.
    fn until_live(&self, n: usize) -> Value {
        wait_for(
            &format!("{n} live processes"),
            Duration::from_millis(200),
            || {
                let view = self.view();
                let live = view["processes"].as_array().map_or(0, Vec::len);
                let known = view["builds"]
                    .as_array()
                    .is_some_and(|b| b.iter().all(|b| b["unknown"].is_null()));
                if live == n && known {
                    Ok(view)
                } else {
                    Err(view)
                }
            },
        )
    }

    /// The schema digest each build's processes report.
    fn digest(&self, view: &Value, build: &str) -> String {
        let pid = self.builds[build][0].pid();
        let process = view["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == pid)
            .unwrap_or_else(|| panic!("pid {pid} in {view}"));
        process["schema"].as_str().expect("a digest").to_owned()
    }

    /// What each process of `build` serves now.
    fn shown(&mut self, build: &str) -> Vec<Value> {
        self.builds
            .get_mut(build)
            .unwrap()
            .iter_mut()
            .map(|p| {
                p.tell("show");
                serde_json::from_str(&p.line()).expect("a JSON line")
            })
            .collect()
    }

    fn pids(&self, build: &str) -> Vec<u32> {
        self.builds[build].iter().map(Probe::pid).collect()
    }
}

/// The pending entries of `field` in a view.
fn pending<'a>(view: &'a Value, field: &str) -> Vec<&'a Value> {
    view["pending"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["field"] == field)
        .collect()
}

#[test]
fn a_rolling_deploy_refuses_what_a_live_build_cannot_decode_and_says_who_rejects_a_forced_write() {
    let mut deploy = Deploy::start(&["v1", "v1", "v2", "v2"]);
    let view = deploy.view();
    let (v1, v2) = (deploy.digest(&view, "v1"), deploy.digest(&view, "v2"));
    assert_ne!(v1, v2);
    let v1_name = format!("build {} (2 processes of roll)", &v1[..8]);

    // Values one build cannot decode, a field one build lacks: refused,
    // naming the build, its processes and why; nothing written.
    for (path, value, why) in [
        (
            "roll.level",
            "300",
            "its `level` is u8: 300 is out of range for u8",
        ),
        (
            "roll.code",
            "abc",
            "its `code` is u32: \"abc\" is not an integer",
        ),
        ("roll.extra", "6", "it has no field `extra`"),
    ] {
        let run = deploy.lockstep(&["set", path, value]);
        assert_eq!(run.code, 1, "{path}: {}{}", run.stdout, run.stderr);
        for part in [v1_name.as_str(), why, "nothing was written", "--force"] {
            assert!(
                run.stderr.contains(part),
                "{path}: {part:?} in {}",
                run.stderr
            );
        }
        assert!(!run.stderr.contains(&v2[..8]), "{}", run.stderr);
    }
    assert_eq!(
        deploy.view()["revision"],
        0,
        "a refused write wrote nothing"
    );

    // The console's forms refuse the same, for the preview and the write.
    let console = Console::start(&deploy.url, &[]);
    let origin = console.origin();
    let s = session(&console);
    let token = console.token.clone().expect("a write token");
    let login = format!("csrf={}&token={}", s.csrf, form_encode(&token));
    let r = post(&console, "/login", &s.cookie, Some(&origin), &login);
    assert_eq!(r.status, 303, "{}", r.body);
    let set = format!("csrf={}&field=roll.level&value=300&at=", s.csrf);
    for path in ["/preview/set", "/write/set"] {
        let r = post(&console, path, &s.cookie, Some(&origin), &set);
        assert_eq!(r.status, 422, "{path}: {}", r.body);
        assert!(r.body.contains(&v1_name), "{path}: {}", r.body);
        assert!(r.body.contains("out of range for u8"), "{path}: {}", r.body);
    }
    drop(console);
    assert_eq!(
        deploy.view()["revision"],
        0,
        "a refused write wrote nothing"
    );

    // The Rust API refuses the same, naming the same build.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        ROLL.builder()
            .url(deploy.url.clone())
            .report(false)
            .start()
            .await
            .unwrap();
        let refused = ROLL.set(Roll::LEVEL, 300).await.unwrap_err();
        assert!(
            matches!(&refused, lockstep::Error::NotServed { refusals, .. }
                if refusals.len() == 1 && refusals[0].processes.len() == 2),
            "{refused:?}"
        );
        assert!(refused.to_string().contains(&v1_name), "{refused}");
        // Forced, it is written.
        ROLL.change()
            .set(Roll::CODE, "x")
            .force()
            .apply()
            .await
            .unwrap();
    });
    assert_eq!(deploy.view()["revision"], 1, "only the forced write");

    // What every build decodes goes through as before.
    deploy.held_by_all(&["set", "roll.level", "200", "--wait"], 4);

    // Forced: written, with a warning naming who will not serve it; `--wait`
    // does not say "all hold it", and names the old build's processes as
    // rejecting it.
    let run = deploy.lockstep(&["set", "roll.level", "400", "--force", "--wait", "--json"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("written with --force"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&v1_name), "{}", run.stderr);
    let out = run.json();
    let at = chrono::DateTime::parse_from_rfc3339(out["at"].as_str().expect("the write's instant"))
        .expect("an RFC 3339 instant")
        .timestamp_millis();
    let rejecting: Vec<u64> = out["wait"]["missing"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["why"] == "cannot decode it")
        .map(|m| {
            assert!(m["build"].as_str().unwrap().contains(&v1[..8]), "{m}");
            m["pid"].as_u64().unwrap()
        })
        .collect();
    let mut expected: Vec<u64> = deploy.pids("v1").into_iter().map(u64::from).collect();
    expected.sort_unstable();
    let mut rejecting = rejecting;
    rejecting.sort_unstable();
    assert_eq!(rejecting, expected, "{out}");
    assert!(out["wait"]["held_by"].as_u64().unwrap() <= 2, "{out}");

    // `lockstep fleet` says the same, as text and JSON, before the instant.
    let view = deploy.view();
    let change = pending(&view, "level")
        .into_iter()
        .find(|c| c["value"] == 400)
        .cloned();
    if let Some(change) = change {
        let rejected = change["rejected"].as_array().unwrap();
        assert_eq!(rejected.len(), 1, "{change}");
        assert_eq!(rejected[0]["processes"].as_array().unwrap().len(), 2);
        assert!(change["held_by"].as_u64().unwrap() <= 2, "{change}");
        let text = deploy.lockstep(&["fleet", "roll"]).stdout;
        assert!(text.contains(&format!("rejected by {v1_name}")), "{text}");
        assert!(text.contains("BUILD"), "{text}");
    }

    // After the instant: the new build serves 400, the old one keeps 200,
    // as the view said.
    wait_for("the instant of 400", Duration::from_millis(200), || {
        let now = chrono::Utc::now().timestamp_millis();
        if now > at + 2_500 { Ok(()) } else { Err(now) }
    });
    for shown in deploy.shown("v2") {
        assert_eq!(shown["level"], 400, "{shown}");
    }
    for shown in deploy.shown("v1") {
        assert_eq!(shown["level"], 200, "{shown}");
        assert!(shown["rejected"].as_u64().unwrap() >= 1, "{shown}");
    }

    // `ls` shows both live schemas.
    let ls = deploy.lockstep(&["ls", "roll"]);
    assert!(
        ls.stdout.contains("2 live builds with different schemas"),
        "{}",
        ls.stdout
    );
    assert!(ls.stdout.contains("level: u8, code: u32"), "{}", ls.stdout);
    assert!(
        ls.stdout.contains("level: u32, code: String, extra: u32"),
        "{}",
        ls.stdout
    );
    let ls = deploy.lockstep(&["ls", "roll", "--json"]);
    let builds = &ls.json()["namespaces"][0]["builds"];
    assert_eq!(builds.as_array().unwrap().len(), 2, "{builds}");

    // An old process restarts (the schema published last is v1's again):
    // the new field is still refused naming the old build, not "no field".
    deploy.builds.get_mut("v1").unwrap().remove(0);
    deploy.spawn("v1");
    let run = deploy.lockstep(&["set", "roll.extra", "6"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("it has no field `extra`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&v1[..8]), "{}", run.stderr);

    // The old build gone (its records expired), its limits go with it.
    deploy.builds.remove("v1");
    deploy.until_live(2);
    deploy.held_by_all(&["set", "roll.extra", "6", "--wait"], 2);
    runtime.block_on(async {
        ROLL.set(Roll::LEVEL, 70_000).await.unwrap();
    });
    drop(deploy.server);
}

#[test]
fn a_build_publishes_its_schema_again_when_the_store_lost_it_or_holds_it_changed() {
    let deploy = Deploy::start(&["v2"]);
    let digest = deploy.digest(&deploy.view(), "v2");
    let key = "lockstep:{roll}:schemas";
    let stored: String = deploy.server.cmd(&["HGET", key, &digest]);
    assert!(stored.contains("\"extra\""), "{stored}");
    let until_restored = |what: &str| {
        wait_for(what, Duration::from_millis(100), || {
            let now: Option<String> = deploy.server.cmd(&["HGET", key, &digest]);
            let latest: Option<String> =
                deploy
                    .server
                    .cmd(&["HGET", "lockstep:{roll}:meta", "schema"]);
            if now.as_deref() == Some(stored.as_str()) && latest.is_some() {
                Ok(())
            } else {
                Err((now, latest))
            }
        })
    };

    // Removed, rewritten with a wrong type, the latest removed: the
    // process's next fetch says so, and it publishes its own again.
    let _: i64 = deploy.server.cmd(&["HDEL", key, &digest]);
    until_restored("the schema published again after it was removed");
    let wrong = stored.replace("\"max\":4294967295", "\"max\":255");
    assert_ne!(wrong, stored);
    let _: i64 = deploy.server.cmd(&["HSET", key, &digest, &wrong]);
    until_restored("the schema published again after a wrong type was written over it");
    let _: i64 = deploy
        .server
        .cmd(&["HDEL", "lockstep:{roll}:meta", "schema"]);
    until_restored("the schema published again after the latest was removed");

    // A change that keeps the length: no tool trusts it (it does not hash
    // to its digest), and a write says it could not check that build.
    let same_length = stored.replace("\"rust_type\":\"u32\"", "\"rust_type\":\"u64\"");
    assert_eq!(
        (same_length.len(), same_length != stored),
        (stored.len(), true)
    );
    let _: i64 = deploy.server.cmd(&["HSET", key, &digest, &same_length]);
    let ls = deploy.lockstep(&["ls", "roll"]);
    assert!(
        ls.stdout.contains("does not match its digest"),
        "{}",
        ls.stdout
    );
    let set = deploy.lockstep(&["set", "roll.level", "7"]);
    assert_eq!(set.code, 0, "{}{}", set.stdout, set.stderr);
    assert!(set.stderr.contains("was not checked"), "{}", set.stderr);
    assert!(
        set.stderr.contains("does not match its digest"),
        "{}",
        set.stderr
    );
}
