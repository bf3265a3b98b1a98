//! The `lockstep` command, the real binary, against a real redis-server of
//! the test's own (and a PostgreSQL schema, a MySQL/MariaDB database and a
//! SQLite file of its own), with its effects checked through a registry
//! running in another process (`src/bin/shop.rs`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lockstep::schema::{FieldSchema, Schema};
use lockstep::store::{Fetch, RedisStore, Store, Write};
// `lockstep(url, args)`: one run of the workspace's binary.
use lockstep_suite::run_cli as lockstep;
use lockstep_suite::sql::{MysqlDatabase, PostgresSchema, SqliteFile};
use lockstep_suite::{
    CliRun, PATIENCE, RedisServer, Switched, assert_all_switched_within_5_ms,
    in_a_session_of_its_own, wait_for,
};
use serde_json::{Value, json};

/// Runs `work` to its end on a runtime of its own.
fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(work)
}

/// Runs `lockstep args…` and expects it to succeed.
fn ok(url: &str, args: &[&str]) -> CliRun {
    let run = lockstep(Some(url), args);
    assert_eq!(
        run.code, 0,
        "lockstep {args:?}: {}{}",
        run.stdout, run.stderr
    );
    run
}

/// The frames `lockstep watch --json` printed, one JSON object a line.
fn frames(watch: &CliRun) -> Vec<Value> {
    watch
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON frame"))
        .collect()
}

/// The `shop` registry in a process of its own: it lives until this is
/// dropped (which closes its standard input, and kills it) or the test
/// process ends.
struct Shop {
    child: Child,
    /// Held open: the registry ends when it closes.
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Shop {
    fn start(url: &str) -> Shop {
        let mut child = in_a_session_of_its_own(&mut Command::new(env!("CARGO_BIN_EXE_shop")))
            .env("LOCKSTEP_URL", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the shop registry");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("its stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let shop = Shop {
            child,
            stdin,
            lines,
        };
        match shop.lines.recv_timeout(PATIENCE) {
            Ok(ready) => assert_eq!(ready, "ready"),
            Err(RecvTimeoutError::Timeout) => panic!(
                "the shop registry did not say `ready` within {} s",
                PATIENCE.as_secs()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the shop registry ended before it said `ready`")
            }
        }
        shop
    }

    /// The next change the registry saw, within `timeout`.
    fn change(&self, timeout: Duration) -> Option<Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Some(serde_json::from_str(&line).expect("a JSON line")),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!("the shop registry ended"),
        }
    }

    /// Waits for the change of `field` (other fields' changes are kept for
    /// later calls); returns its value and the shop's report of it.
    fn seen(&self, field: &str, pending: &mut Vec<Value>) -> (Value, Value) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(i) = pending.iter().position(|c| c["field"] == field) {
                let change = pending.remove(i);
                return (change["value"].clone(), change);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let change = self.change(left).unwrap_or_else(|| {
                panic!(
                    "the registry did not see `{field}` change within {} s; the changes it \
                     saw of other fields: {pending:?}",
                    PATIENCE.as_secs()
                )
            });
            pending.push(change);
        }
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every key of namespace `ns` with its content: what a refused command
/// must leave as it was. Of the fleet's keys, which the registry's running
/// process updates at each fetch, only who is in them.
fn dump(server: &RedisServer, ns: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let keys: Vec<String> = server.cmd(&["KEYS", &format!("lockstep:{{{ns}}}:*")]);
    keys.into_iter()
        .map(|key| {
            let kind: String = server.cmd(&["TYPE", &key]);
            let members =
                |ids: Vec<String>| ids.into_iter().map(|id| (id, String::new())).collect();
            let mut content: Vec<(String, String)> = match kind.as_str() {
                "hash" if key.ends_with(":fleet") => members(server.cmd(&["HKEYS", &key])),
                "zset" => members(server.cmd(&["ZRANGE", &key, "0", "-1"])),
                "set" => members(server.cmd(&["SMEMBERS", &key])),
                "hash" => server.cmd(&["HGETALL", &key]),
                _ => vec![(kind, server.cmd(&["GET", &key]))],
            };
            content.sort();
            (key, content)
        })
        .collect()
}

fn millis(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?}: {e}"))
        .timestamp_millis()
}

/// The instant in `shop.limit = 42 at 2026-…Z (in 1.6s)`.
fn printed_instant(line: &str) -> i64 {
    let rest = line
        .split(" at ")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"));
    millis(rest.split_whitespace().next().unwrap())
}

/// The shop's report of a change of `field` due at `at` (ms): never seen
/// before the instant, and no read of the old value that started 5 ms or
/// more after it, or after the shop ran again if it was not running then
/// ([`assert_all_switched_within_5_ms`]).
fn assert_on_time(field: &str, at: i64, change: Value) {
    let ms = |key: &str| {
        change[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {change}"))
    };
    let seen = ms("seen_ms") - at as f64;
    assert!(seen >= 0.0, "`{field}` flipped {:.3} ms early", -seen);
    let stalls_ms = change["stalls_ms"]
        .as_array()
        .unwrap_or_else(|| panic!("stalls_ms: {change}"))
        .iter()
        .map(|pair| {
            (
                pair[0].as_f64().unwrap() - at as f64,
                pair[1].as_f64().unwrap() - at as f64,
            )
        })
        .collect();
    let switched = Switched {
        seen_ms: seen,
        stale_ms: ms("stale_ms") - at as f64,
        stalls_ms,
    };
    assert_all_switched_within_5_ms(&[switched], 0.0);
}

#[test]
fn a_good_set_reaches_a_registry_in_another_process_at_the_printed_instant() {
    let server = RedisServer::start();
    let url = server.url();
    let shop = Shop::start(&url);
    let mut pending = Vec::new();

    // JSON, at the horizon; the text output names the instant.
    let run = ok(&url, &["set", "shop.limit", "42"]);
    assert!(
        run.stdout.starts_with("shop.limit = 42 at "),
        "{}",
        run.stdout
    );
    let limit_at = printed_instant(run.stdout.trim());
    // A bare word for a string field, with --json output.
    let theme = ok(&url, &["set", "shop.theme", "dark", "--json"]).json();
    assert_eq!(theme["value"], "dark");
    // The instant as RFC 3339, to the millisecond.
    let theme_at = millis(theme["at"].as_str().unwrap());
    // A user enum, a few ticks ahead.
    let run = ok(
        &url,
        &[
            "set",
            "shop.mode",
            r#"{"Custom": {"hue": 120}}"#,
            "--at",
            "+3s",
        ],
    );
    let mode_at = printed_instant(run.stdout.trim());
    assert!(
        mode_at >= Utc::now().timestamp_millis() + 1_500,
        "{}",
        run.stdout
    );
    assert_eq!(mode_at % 1000, 0, "instants are tick boundaries");

    for (field, at, value) in [
        ("limit", limit_at, json!(42)),
        ("theme", theme_at, json!("dark")),
        ("mode", mode_at, json!({"Custom": {"hue": 120}})),
    ] {
        let (seen_value, seen) = shop.seen(field, &mut pending);
        assert_eq!(seen_value, value, "{field}");
        assert_on_time(field, at, seen);
    }
    let history = ok(&url, &["history", "shop.limit", "--json"]).json();
    let by = history["entries"][0]["by"].as_str().unwrap();
    assert!(by.starts_with("cli ") && by.contains('@'), "{by}");
}

#[test]
fn every_refusal_exits_1_and_leaves_the_store_unchanged() {
    let server = RedisServer::start();
    let url = server.url();
    let _shop = Shop::start(&url);
    // `legacy`: in the store, but no registry published its schema;
    // `old`: published by a lockstep that did not describe types.
    block_on(async {
        let store = RedisStore::open(&url).unwrap();
        let write = Write::builder(
            "legacy",
            lockstep::Tick::new(Duration::from_secs(1)).unwrap(),
        )
        .by("test")
        .set("x", json!(1))
        .build()
        .unwrap();
        store.commit(&write).await.unwrap();
        let old = Schema {
            namespace: "old".into(),
            tick_secs: 1,
            fields: vec![FieldSchema {
                key: "limit".into(),
                rust_type: "u8".into(),
                value_type: None,
                default: json!(0),
                doc: String::new(),
            }],
        };
        store.publish_schema(&old).await.unwrap();
    });
    // A pending entry to cancel wrongly.
    let pending = ok(
        &url,
        &["set", "shop.banner", "sale", "--at", "+30s", "--json"],
    )
    .json();
    let pending_at = pending["at"].as_str().unwrap().to_owned();
    let off_grid = "2999-01-01T00:00:00Z";

    let refusals: &[(&[&str], &str)] = &[
        (
            &["set", "shop.limit", "300"],
            "shop.limit (u8): 300 is out of range for u8: expected an integer from 0 to 255; \
             nothing was written",
        ),
        (&["set", "shop.limit", "-1"], "-1 is out of range for u8"),
        (
            &["set", "shop.limit", "ten"],
            "shop.limit (u8): `ten` is not JSON: expected an integer from 0 to 255; nothing was \
             written",
        ),
        (&["set", "shop.limit", "4.5"], "4.5 is not an integer (u8)"),
        (
            &["set", "shop.share", "101"],
            "101 is not a percentage: expected a number from 0 to 100",
        ),
        (
            &["set", "shop.mode", "Sepia"],
            r#""Sepia" is not a variant: expected one of "Light", "Dark", {"Custom": {"hue": u16}}"#,
        ),
        (
            &["set", "shop.mode", r#"{"Custom": {"hue": "red"}}"#],
            r#"at .Custom.hue: "red" is not an integer (u16)"#,
        ),
        (
            &["set", "shop.banner", "[1]"],
            "[1] is not a string: expected a string, or null",
        ),
        (
            &["set", "shop.limt", "1"],
            "registry `shop` has no field `limt`; its fields are: limit, theme, share, mode, \
             banner",
        ),
        (
            &["set", "shopp.limit", "1"],
            "no registry `shopp` in redis://127.0.0.1:",
        ),
        (&["set", "shopp.limit", "1"], "; it has: legacy, old, shop"),
        (
            &["set", "shop.limit", "5", "--at", "+0s"],
            "is too soon for `shop`: the earliest instant a write made now may affect is",
        ),
        (
            &["set", "legacy.x", "1"],
            "registry `legacy` has published no schema, so the value cannot be checked",
        ),
        (&["set", "legacy.x", "1", "--force"], "pass it with --tick"),
        (
            &["set", "old.limit", "1"],
            "the schema of `old` has no value types",
        ),
        (
            &["ramp", "shop.limit", "0,10,300"],
            "value 3 (300): 300 is out of range for u8",
        ),
        (
            &["ramp", "shop.limit", "1,2", "--every", "500ms"],
            "--every 500ms is shorter than the tick of `shop` (1s)",
        ),
        (
            &["ramp", "shop.limit", "1,2", "--every", "1500ms"],
            "--every 1s 500ms is not a whole number of ticks of `shop` (the tick is 1s)",
        ),
        (
            &["ramp", "shop.limit", "1,2", "--every", "1500ms"],
            "use --every 1s or 2s; nothing was written",
        ),
        (
            &["set", "shop.limit", "5", "--at", "2020-01-01T00:00:00Z"],
            "--at: 2020-01-01T00:00:00Z is in the past (it is now ",
        ),
        (
            &["ramp", "shop.limit", "1,2", "--from", "+0s"],
            "is too soon",
        ),
        (&["cancel", "shop.banner", "--at", "+0s"], "is too soon"),
        (
            &["cancel", "shop.banner", "--at", off_grid],
            "`shop.banner` has no entry at 2999-01-01 00:00:00 UTC to cancel; its pending \
             entries are at: ",
        ),
        (&["get", "shop.nope"], "has no field `nope`"),
        (&["ls", "nope"], "no registry `nope`"),
    ];
    let before = dump(&server, "shop");
    let others = (dump(&server, "legacy"), dump(&server, "old"));
    for (args, message) in refusals {
        let run = lockstep(Some(&url), args);
        assert_eq!(
            run.code, 1,
            "lockstep {args:?}: {}{}",
            run.stdout, run.stderr
        );
        assert!(
            run.stderr.contains(message),
            "lockstep {args:?}\n  said: {}  not: {message}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "lockstep {args:?}: {}", run.stdout);
        assert_eq!(dump(&server, "shop"), before, "lockstep {args:?} wrote");
        assert_eq!(
            (dump(&server, "legacy"), dump(&server, "old")),
            others,
            "lockstep {args:?} wrote"
        );
    }
    let cancel_hint = lockstep(Some(&url), &["cancel", "shop.banner", "--at", off_grid]);
    assert!(
        cancel_hint.stderr.contains(&pending_at),
        "{}",
        cancel_hint.stderr
    );

    // Usage mistakes: status 2, nothing written.
    for args in [
        &["set", "shop.limit"][..],
        &["set", "shop", "1"],
        &["set", "shop.limit", "1", "--at", "tomorrow"],
        &["ramp", "shop.limit", "1,2", "--every", "often"],
        &["watch", "--for", "ever"],
        &["frobnicate"],
        &["set", "shop.limit", "1", "--tick", "1s"],
    ] {
        let run = lockstep(Some(&url), args);
        assert_eq!(
            run.code, 2,
            "lockstep {args:?}: {}{}",
            run.stdout, run.stderr
        );
        assert!(run.stderr.contains("error"), "{}", run.stderr);
    }
    let run = lockstep(None, &["ls"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("set LOCKSTEP_URL"), "{}", run.stderr);
    // Times that say what is wrong with them.
    for (args, message) in [
        (
            &["set", "shop.limit", "1", "--at", "10m"][..],
            "did you mean +10m (from now)?",
        ),
        (
            &["set", "shop.limit", "1", "--at", "2030-01-01T09:00:00"],
            "is missing a time zone",
        ),
    ] {
        let run = lockstep(Some(&url), args);
        assert_eq!(run.code, 2, "lockstep {args:?}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{}", run.stderr);
    }
    // A memory store is another process's: refused, saying so.
    let run = lockstep(Some("memory://flags"), &["ls"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("can never see a registry's memory store"),
        "{}",
        run.stderr
    );
    assert_eq!(dump(&server, "shop"), before);

    // --force writes what the checks cannot vouch for.
    ok(&url, &["set", "legacy.x", "2", "--force", "--tick", "1s"]);
    ok(&url, &["set", "old.limit", "7", "--force"]);
    assert_ne!(dump(&server, "legacy"), others.0);
}

#[test]
fn a_ramp_activates_one_entry_per_tick() {
    let server = RedisServer::start();
    let url = server.url();
    let shop = Shop::start(&url);
    let ramp = ok(&url, &["ramp", "shop.limit", "0,10,25,50,100", "--json"]).json();
    let entries = ramp["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    let instants: Vec<i64> = entries
        .iter()
        .map(|e| millis(e["at"].as_str().unwrap()))
        .collect();
    for pair in instants.windows(2) {
        assert_eq!(pair[1] - pair[0], 1000, "one tick apart: {instants:?}");
    }
    // The default is 10: every step is a change the registry sees.
    let mut pending = Vec::new();
    for (entry, at) in entries.iter().zip(&instants) {
        let (value, seen) = shop.seen("limit", &mut pending);
        assert_eq!(value, entry["value"]);
        assert_on_time("limit", *at, seen);
    }
    let history = ok(&url, &["history", "shop.limit", "--json"]).json();
    let states: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["past", "past", "past", "past", "active"]);
}

#[test]
fn cancel_removes_a_pending_entry_and_only_beyond_the_horizon() {
    let server = RedisServer::start();
    let url = server.url();
    let shop = Shop::start(&url);
    let set = ok(
        &url,
        &["set", "shop.banner", "sale", "--at", "+3s", "--json"],
    )
    .json();
    let at = set["at"].as_str().unwrap().to_owned();
    let get = ok(&url, &["get", "shop.banner", "--json"]).json();
    assert_eq!(get["pending"][0]["at"], at.as_str());
    assert_eq!(get["pending"][0]["value"], "sale");
    assert_eq!(get["value"], Value::Null);
    assert_eq!(get["default"], true);

    let run = ok(&url, &["cancel", "shop.banner", "--at", &at]);
    assert_eq!(
        run.stdout.trim(),
        format!("cancelled shop.banner = \"sale\" at {at}")
    );
    let history = ok(&url, &["history", "shop.banner", "--json"]).json();
    assert_eq!(history["entries"], json!([]));
    let again = lockstep(Some(&url), &["cancel", "shop.banner", "--at", &at]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("has no entry at"), "{}", again.stderr);

    // An entry at the horizon or nearer is not cancelled any more: every
    // process may already hold it.
    let set = ok(&url, &["set", "shop.theme", "neon", "--json"]).json();
    let theme_at = millis(set["at"].as_str().unwrap());
    let wait = theme_at - 900 - Utc::now().timestamp_millis();
    std::thread::sleep(Duration::from_millis(wait.max(0) as u64));
    let late = lockstep(
        Some(&url),
        &["cancel", "shop.theme", "--at", set["at"].as_str().unwrap()],
    );
    assert_eq!(late.code, 1, "{}", late.stdout);
    assert!(late.stderr.contains("is too soon"), "{}", late.stderr);
    let mut pending = Vec::new();
    let (value, seen) = shop.seen("theme", &mut pending);
    assert_eq!(value, "neon");
    assert_on_time("theme", theme_at, seen);
    // The cancelled banner never shows: not by the time the registry sees
    // a change written after its instant passed (the registry reports the
    // changes it sees in the order it sees them).
    let banner_at = millis(&at);
    let wait = banner_at - Utc::now().timestamp_millis();
    std::thread::sleep(Duration::from_millis(wait.max(0) as u64));
    let after = ok(&url, &["set", "shop.limit", "11", "--json"]).json();
    assert!(millis(after["at"].as_str().unwrap()) > banner_at, "{after}");
    let (value, _) = shop.seen("limit", &mut pending);
    assert_eq!(value, 11);
    pending.extend(std::iter::from_fn(|| shop.change(Duration::ZERO)));
    assert!(
        pending.iter().all(|c| c["field"] != "banner"),
        "{pending:?}"
    );
}

#[test]
fn read_commands_print_text_and_json_that_parses() {
    let server = RedisServer::start();
    let url = server.url();
    let _shop = Shop::start(&url);
    ok(&url, &["set", "shop.share", "12.5", "--at", "+30s"]);

    let ls = ok(&url, &["ls"]).stdout;
    assert!(ls.starts_with("shop  (tick 1s)\n"), "{ls}");
    assert!(ls.contains("limit   u8"), "{ls}");
    assert!(ls.contains("10 (default)"), "{ls}");
    assert!(ls.contains("next: 12.5 at "), "{ls}");
    let ls = ok(&url, &["ls", "shop", "--json"]).json();
    let fields = ls["namespaces"][0]["fields"].as_array().unwrap();
    let keys: Vec<&str> = fields
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["limit", "theme", "share", "mode", "banner"]);
    assert_eq!(fields[0]["value"], 10);
    assert_eq!(fields[0]["type"], "u8");
    assert_eq!(fields[2]["next"]["value"], 12.5);
    assert_eq!(ls["namespaces"][0]["tick_ms"], 1000);

    let get = ok(&url, &["get", "shop.mode", "--json"]).json();
    assert_eq!(get["value"], "Light");
    assert_eq!(get["value_type"]["type"], "enum");
    let text = ok(&url, &["get", "shop.share"]).stdout;
    assert!(text.contains("pending  12.5  at "), "{text}");
    ok(&url, &["history", "shop.share", "--json"]).json();
    assert!(
        ok(&url, &["history", "shop.share"])
            .stdout
            .contains("pending")
    );

    let started = Instant::now();
    let watch = ok(&url, &["watch", "shop", "--json", "--count", "2"]);
    let frames = frames(&watch);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1]["next"]["field"], "shop.share");
    assert!(frames[1]["next"]["in_ms"].as_i64().unwrap() > 0);
    let text = ok(&url, &["watch", "--for", "1500ms"]).stdout;
    assert!(
        text.contains("next change: shop.share = 12.5 at "),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[test]
fn watch_reads_a_registry_once_and_its_records_once_a_frame() {
    let server = RedisServer::start();
    let url = server.url();
    let _shop = Shop::start(&url);
    ok(&url, &["set", "shop.share", "12.5", "--at", "+30s"]);
    // The scripts a tool runs, loaded (a first call is refused NOSCRIPT and
    // sent again, which would count twice).
    ok(&url, &["fleet", "shop"]);
    server.reset_stats();
    let watch = ok(&url, &["watch", "shop", "--json", "--count", "2"]);
    let frames = frames(&watch);
    assert_eq!(frames.len(), 2);
    let next = &frames[1]["next"];
    assert_eq!(next["field"], "shop.share");
    assert_eq!(next["of"], 1, "the fleet view beside it: {next}");
    assert!(next["held_by"].is_u64(), "{next}");
    // A tool's reads are `EVALSHA_RO`s (the shop process fetches with
    // `EVALSHA`): per frame the records, and the registry once a tick (the
    // tick is a second: once or twice in two frames), not once more for
    // the fleet view.
    let reads = server.calls("evalsha_ro");
    assert!(
        (3..=4).contains(&reads),
        "{reads} reads for 2 frames: the registry is fetched again for its fleet view"
    );
}

#[test]
fn passwords_are_never_printed() {
    let server = RedisServer::start();
    let _shop = Shop::start(&server.url());
    let _: () = server.cmd(&["CONFIG", "SET", "requirepass", "s3cret-pw"]);
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}", server.port());
    let wrong = format!("redis://:wrong-pw@127.0.0.1:{}", server.port());
    let file = std::env::temp_dir().join(format!("lockstep-cli-url-{}", std::process::id()));
    std::fs::write(&file, format!("{url}\n")).unwrap();
    let file_arg = file.to_str().unwrap();

    let runs = [
        lockstep(Some(&url), &["ls", "--json"]),
        lockstep(None, &["--url", &url, "ls"]),
        lockstep(None, &["--url-file", file_arg, "get", "shop.limit"]),
        lockstep(Some(&wrong), &["ls"]),
        lockstep(None, &["--url", &url, "get", &url]),
        lockstep(None, &[&format!("--url={url}"), "frobnicate"]),
        lockstep(
            None,
            &["--url", "redis://:s3cret-pw@127.0.0.1:notaport", "ls"],
        ),
    ];
    let codes: Vec<i32> = runs.iter().map(|r| r.code).collect();
    assert_eq!(codes, [0, 0, 0, 1, 2, 2, 1]);
    for run in &runs {
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(
            !all.contains("s3cret-pw") && !all.contains("wrong-pw"),
            "{all}"
        );
    }
    assert_eq!(
        runs[0].json()["store"],
        format!("redis://:***@127.0.0.1:{}", server.port())
    );
    assert!(runs[1].stderr.contains("use LOCKSTEP_URL or --url-file"));
    assert!(
        runs[3].stderr.contains("redis://:***@127.0.0.1"),
        "{}",
        runs[3].stderr
    );
    let _ = std::fs::remove_file(&file);
}

/// The commands against the SQL stores: the URL picks the store, and the
/// same set, get, ls, history, ramp, cancel and refusals work.
fn the_commands_work_on(url: &str, what: &str) {
    let shop = Shop::start(url);
    let mut pending = Vec::new();

    let run = ok(url, &["set", "shop.limit", "42"]);
    let limit_at = printed_instant(run.stdout.trim());
    let ramp = ok(url, &["ramp", "shop.share", "10,50", "--json"]).json();
    let share_at: Vec<i64> = ramp["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| millis(e["at"].as_str().unwrap()))
        .collect();
    assert_eq!(share_at.len(), 2, "{what}: {ramp}");
    assert_eq!(share_at[1] - share_at[0], 1000, "{what}: one tick apart");
    let banner = ok(
        url,
        &["set", "shop.banner", "sale", "--at", "+5s", "--json"],
    )
    .json();

    // A refusal writes nothing: everything the CLI can see of the store is
    // as it was.
    let seen_by_cli = || {
        ["limit", "share", "banner"].map(|field| {
            let field = format!("shop.{field}");
            (
                ok(url, &["history", &field, "--json"]).json()["entries"].clone(),
                ok(url, &["get", &field, "--json"]).json()["pending"].clone(),
            )
        })
    };
    let before = seen_by_cli();
    for args in [
        &["set", "shop.limit", "300"][..],
        &["set", "shop.limit", "7", "--at", "+0s"][..],
        &["ramp", "shop.share", "10,abc"][..],
        &["set", "shop.nope", "1"][..],
    ] {
        let refused = lockstep(Some(url), args);
        assert_eq!(refused.code, 1, "{what}: {args:?}: {}", refused.stdout);
        assert!(!refused.stderr.is_empty(), "{what}: {args:?} said nothing");
    }
    assert_eq!(seen_by_cli(), before, "{what}: a refused command wrote");

    let cancelled = ok(
        url,
        &[
            "cancel",
            "shop.banner",
            "--at",
            banner["at"].as_str().unwrap(),
        ],
    );
    assert!(
        cancelled.stdout.starts_with("cancelled shop.banner"),
        "{what}: {}",
        cancelled.stdout
    );
    let ls = ok(url, &["ls", "--json"]).json();
    assert_eq!(ls["namespaces"][0]["namespace"], "shop", "{what}: {ls}");

    for (field, at, value) in [
        ("limit", limit_at, json!(42)),
        ("share", share_at[0], json!(10)),
        ("share", share_at[1], json!(50)),
    ] {
        let (seen_value, seen) = shop.seen(field, &mut pending);
        assert_eq!(seen_value, value, "{what}: {field}");
        assert_on_time(field, at, seen);
    }
    let history = ok(url, &["history", "shop.banner", "--json"]).json();
    assert_eq!(history["entries"], json!([]), "{what}");
    let limit = ok(url, &["get", "shop.limit", "--json"]).json();
    assert_eq!(limit["value"], 42, "{what}: {limit}");
}

#[test]
fn the_commands_work_on_a_sqlite_file() {
    let file = SqliteFile::create();
    the_commands_work_on(&file.url(), "SQLite");
}

#[test]
fn the_commands_work_on_a_postgres_schema() {
    let schema = PostgresSchema::create();
    the_commands_work_on(schema.url(), "PostgreSQL");
}

#[test]
fn the_commands_work_on_a_mysql_database() {
    let db = MysqlDatabase::create();
    the_commands_work_on(&db.url(), "MySQL");
    // `mariadb://` names the same store.
    let mariadb = db.url().replacen("mysql://", "mariadb://", 1);
    let limit = ok(&mariadb, &["get", "shop.limit", "--json"]).json();
    assert_eq!(limit["value"], 42, "mariadb://: {limit}");
}

/// Plants three entries no process serves in `shop.limit`, the way a buggy
/// or hostile writer could: an envelope that is not JSON and a value of the
/// wrong type, both active after the good entry at `after` (so the newest
/// entry at or before now is bad), and an instant that is not a number.
/// Returns the instants of the first two.
fn plant_bad_entries(server: &RedisServer, after: i64) -> (i64, i64) {
    let (garbage, wrong) = (after + 10, after + 20);
    let key = "lockstep:{shop}:field:limit";
    let _: () = server.cmd(&["HSET", key, &garbage.to_string(), "not json"]);
    let _: () = server.cmd(&["HSET", key, &wrong.to_string(), r#"{"f":1,"v":300}"#]);
    let _: () = server.cmd(&["HSET", key, "soon", r#"{"f":1,"v":7}"#]);
    (garbage, wrong)
}

#[test]
fn get_and_history_show_bad_entries_as_bad_and_set_still_works() {
    let server = RedisServer::start();
    let url = server.url();
    let _shop = Shop::start(&url);
    let set = ok(&url, &["set", "shop.limit", "42", "--json"]).json();
    let good_at = millis(set["at"].as_str().unwrap());
    std::thread::sleep(Duration::from_millis(
        (good_at + 100 - Utc::now().timestamp_millis()).max(0) as u64,
    ));
    let (garbage, wrong) = plant_bad_entries(&server, good_at);

    let get = ok(&url, &["get", "shop.limit", "--json"]).json();
    // The value is the last entry that decodes, not the planted ones.
    assert_eq!(get["value"], 42, "{get}");
    assert_eq!(get["since"], set["at"], "{get}");
    let bad = get["bad"].as_array().unwrap();
    let bad_at: Vec<Option<i64>> = bad.iter().map(|b| b["at"].as_str().map(millis)).collect();
    assert!(bad_at.contains(&Some(garbage)), "{get}");
    assert!(bad_at.contains(&Some(wrong)), "{get}");
    let reasons: Vec<&str> = bad.iter().map(|b| b["reason"].as_str().unwrap()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("does not decode as u8")),
        "{reasons:?}"
    );
    assert_eq!(bad.len(), 3, "the non-numeric instant too: {get}");

    let text = ok(&url, &["get", "shop.limit"]).stdout;
    let row = |first: &str| {
        text.lines()
            .filter(|l| l.trim_start().starts_with(first))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };
    assert!(row("now ")[0].starts_with("now 42 since"), "{text}");
    let garbage_at =
        lockstep::store::to_datetime(garbage).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let bad_rows = row("bad ");
    assert!(
        bad_rows
            .iter()
            .any(|l| l.contains(&format!(" at {garbage_at} "))),
        "{text}"
    );
    assert!(
        bad_rows
            .iter()
            .any(|l| l.starts_with("bad 300 at ") && l.contains("out of range for u8")),
        "{text}"
    );
    assert!(
        text.contains("no process serves it (remove: lockstep purge shop.limit --at "),
        "{text}"
    );
    let history = ok(&url, &["history", "shop.limit", "--json"]).json();
    let states: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "bad").count(),
        3,
        "{history}"
    );
    assert!(states.contains(&"active"), "{history}");
    let text = ok(&url, &["history", "shop.limit"]).stdout;
    assert!(text.contains("bad: does not decode as u8"), "{text}");
    let ls = ok(&url, &["ls", "shop", "--json"]).json();
    assert_eq!(ls["namespaces"][0]["fields"][0]["value"], 42, "{ls}");
    assert_eq!(ls["namespaces"][0]["fields"][0]["bad"], 3, "{ls}");

    // Writes still work beside them.
    ok(&url, &["set", "shop.limit", "43"]);
}

#[test]
fn purge_removes_a_bad_entry_and_a_good_one_only_beyond_the_horizon() {
    let server = RedisServer::start();
    let url = server.url();
    let _shop = Shop::start(&url);
    let set = ok(&url, &["set", "shop.limit", "42", "--json"]).json();
    let good_at = set["at"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(
        (millis(set["at"].as_str().unwrap()) + 100 - Utc::now().timestamp_millis()).max(0) as u64,
    ));
    let (garbage, _) = plant_bad_entries(&server, millis(set["at"].as_str().unwrap()));
    let garbage_at =
        lockstep::store::to_datetime(garbage).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);

    let before = dump(&server, "shop");
    // A good entry any process may be serving is never purged.
    let refused = lockstep(Some(&url), &["purge", "shop.limit", "--at", &good_at]);
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert_eq!(dump(&server, "shop"), before, "a refused purge wrote");
    let missing = lockstep(
        Some(&url),
        &["purge", "shop.limit", "--at", "2999-01-01T00:00:00Z"],
    );
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("has no entry at") && missing.stderr.contains(&garbage_at),
        "{}",
        missing.stderr
    );
    assert!(
        refused.stderr.contains("is too soon") && refused.stderr.contains("nothing was removed"),
        "{}",
        refused.stderr
    );

    let purged = ok(
        &url,
        &["purge", "shop.limit", "--at", &garbage_at, "--json"],
    )
    .json();
    assert_eq!(
        millis(purged["purged"].as_str().unwrap()),
        garbage,
        "{purged}"
    );
    assert_eq!(purged["undecodable"], true, "{purged}");
    let get = ok(&url, &["get", "shop.limit", "--json"]).json();
    let left: Vec<Option<i64>> = get["bad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["at"].as_str().map(millis))
        .collect();
    assert!(!left.contains(&Some(garbage)), "{get}");
    // The entry whose instant is not a number goes by its stored text.
    let text = ok(&url, &["purge", "shop.limit", "--at", "soon"]).stdout;
    assert!(text.starts_with("purged shop.limit at soon"), "{text}");
}

#[test]
fn bad_entries_show_as_bad_on_a_sqlite_file() {
    let file = SqliteFile::create();
    let url = file.url();
    let _shop = Shop::start(&url);
    let tick = lockstep::Tick::new(Duration::from_secs(1)).unwrap();
    let now = Utc::now().timestamp_millis();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (garbage, wrong) = (tick.ceil(now + 3_000), tick.ceil(now + 4_000));
    rt.block_on(async {
        let store = lockstep::store::open(&url).unwrap();
        let write = lockstep_suite::raw_write(
            "shop",
            tick,
            "test",
            vec![
                (
                    lockstep::store::StepAt::At(garbage),
                    vec![("limit", "not json")],
                ),
                (lockstep::store::StepAt::At(wrong), vec![("limit", "300")]),
            ],
        );
        store.commit(&write).await.unwrap();
    });
    let get = ok(&url, &["get", "shop.limit", "--json"]).json();
    assert_eq!(
        get["pending"],
        json!([]),
        "bad entries are no pending change: {get}"
    );
    let bad: Vec<i64> = get["bad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| millis(b["at"].as_str().unwrap()))
        .collect();
    assert_eq!(bad, [garbage, wrong], "{get}");
    let text = ok(&url, &["history", "shop.limit"]).stdout;
    assert!(text.contains("bad: not JSON"), "{text}");
    assert!(text.contains("bad: does not decode as u8"), "{text}");
    ok(&url, &["set", "shop.limit", "5"]);

    let at = lockstep::store::to_datetime(wrong).to_rfc3339();
    let purged = ok(&url, &["purge", "shop.limit", "--at", &at]);
    assert!(
        purged.stdout.starts_with("purged shop.limit = 300 at "),
        "{}",
        purged.stdout
    );
    let get = ok(&url, &["get", "shop.limit", "--json"]).json();
    assert_eq!(get["bad"].as_array().unwrap().len(), 1, "{get}");
}

#[test]
fn instants_after_year_9999_and_ramps_over_1000_steps_are_refused_clearly() {
    let server = RedisServer::start();
    let url = server.url();
    let _shop = Shop::start(&url);
    let before = dump(&server, "shop");
    let far = lockstep(Some(&url), &["set", "shop.limit", "1", "--at", "+1000000y"]);
    assert_eq!(far.code, 2, "{}", far.stdout);
    assert!(
        far.stderr
            .contains("the instant is after 9999-12-31T23:59:59.999Z, the latest lockstep accepts"),
        "{}",
        far.stderr
    );
    assert!(far.stderr.contains("expected RFC 3339"), "{}", far.stderr);
    let edge = lockstep(
        Some(&url),
        &["set", "shop.limit", "1", "--at", "9999-12-31T23:59:59.500Z"],
    );
    assert_eq!(edge.code, 1, "{}", edge.stdout);
    assert!(
        edge.stderr.contains(
            "rounded up to a tick boundary (1s), is after 9999-12-31T23:59:59.999Z, the latest \
             lockstep accepts"
        ),
        "{}",
        edge.stderr
    );
    let values = vec!["1"; 20_000].join(",");
    let long = lockstep(Some(&url), &["ramp", "shop.limit", &values]);
    assert_eq!(long.code, 1, "{}", long.stdout);
    assert!(
        long.stderr
            .contains("a ramp of 20000 values is too long: one write holds at most 1000 steps"),
        "{}",
        long.stderr
    );
    assert_eq!(dump(&server, "shop"), before, "a refused write wrote");
    // 1000 steps are a ramp like any other.
    let values = vec!["1"; 1000].join(",");
    ok(&url, &["ramp", "shop.limit", &values]);
}

/// What a terminal would act on (an escape, a bell, a carriage return)
/// anywhere in `text`.
fn acted_on(text: &str) -> Option<char> {
    text.chars().find(|c| c.is_control() && *c != '\n')
}

#[test]
fn hostile_store_contents_never_reach_the_terminal_and_a_bad_registry_spoils_only_itself() {
    let server = RedisServer::start();
    let url = server.url();
    let _shop = Shop::start(&url);
    let title = "\u{1b}]0;pwned\u{7}";
    let clear = "\u{1b}[2J\u{1b}[H";
    // A value: a JSON string holding escapes, as any writer may set.
    let set = ok(
        &url,
        &["set", "shop.theme", r#""\u001b]0;pwned\u0007""#, "--json"],
    )
    .json();
    let at = millis(set["at"].as_str().unwrap());
    // Planted by hand: an entry whose writer is named with escapes, and a
    // string of escapes where a number belongs (the reason it is refused
    // quotes it).
    let envelope = |by: &str, value: &str| {
        format!(
            r#"{{"f":1,"w":"ab","t":5,"by":{},"v":{}}}"#,
            json!(by),
            json!(value)
        )
    };
    let at_plus = |ms: i64| (at + ms).to_string();
    let theme = "lockstep:{shop}:field:theme";
    let _: () = server.cmd(&["HSET", theme, &at_plus(1000), &envelope(title, "x")]);
    let limit = "lockstep:{shop}:field:limit";
    let _: () = server.cmd(&["HSET", limit, &at_plus(2000), &envelope("x", clear)]);
    // A process's record naming its host and program with escapes.
    block_on(async {
        let store = RedisStore::open(&url).unwrap();
        let report = lockstep::store::driver::Record::new(
            "evil",
            json!({"id": "evil", "host": title, "pid": 1, "program": clear}).to_string(),
            600_000,
        );
        store
            .fetch_with(Fetch::new("shop", &["theme"]).reporting(Some(&report)))
            .await
            .unwrap();
    });
    // Keys named like registries under namespaces lockstep refuses.
    let _: () = server.cmd(&["HSET", "lockstep:{x:y}:meta", "schema", "{}"]);
    let _: () = server.cmd(&[
        "HSET",
        &format!("lockstep:{{{clear}}}:meta"),
        "schema",
        "{}",
    ]);

    let runs = [
        ok(&url, &["get", "shop.theme"]),
        ok(&url, &["history", "shop.theme"]),
        ok(&url, &["history", "shop.limit"]),
        ok(&url, &["fleet", "shop"]),
        ok(&url, &["ls"]),
        ok(&url, &["watch", "--count", "1"]),
        lockstep(Some(&url), &["get", &format!("{clear}.theme")]),
    ];
    for run in &runs {
        for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            assert_eq!(
                acted_on(text),
                None,
                "a control character reached the terminal on {stream}: {text:?}"
            );
        }
    }
    // Shown, written out.
    let [get, history, bad, fleet, ls, watch, named] = runs;
    assert!(
        get.stdout.contains(r#""\u001b]0;pwned\u0007""#),
        "{}",
        get.stdout
    );
    assert!(
        history.stdout.contains(r"\x1b]0;pwned\x07"),
        "{}",
        history.stdout
    );
    assert!(
        bad.stdout.contains(r#""\u001b[2J\u001b[H" is not an"#),
        "{}",
        bad.stdout
    );
    assert!(
        fleet.stdout.contains(r"\x1b]0;pwned\x07"),
        "{}",
        fleet.stdout
    );
    assert!(fleet.stdout.contains(r"\x1b[2J\x1b[H"), "{}", fleet.stdout);
    assert_eq!(named.code, 2, "{}", named.stderr);
    assert!(named.stderr.contains(r"\x1b[2J\x1b[H"), "{}", named.stderr);
    // Every registry that can be read is listed; the others are named,
    // with why.
    for text in [&ls.stdout, &watch.stdout] {
        assert!(text.contains("shop  (tick 1s)"), "{text}");
        assert!(text.contains("x:y  (cannot be read: "), "{text}");
        assert!(text.contains(r"\x1b[2J\x1b[H  (cannot be read: "), "{text}");
    }
    let ls = ok(&url, &["ls", "--json"]).json();
    let by_name = |name: &str| {
        ls["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["namespace"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name:?} not listed: {ls}"))
    };
    let history = ok(&url, &["history", "shop.theme", "--json"]).json();
    let values: Vec<&Value> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["value"])
        .collect();
    assert!(
        values.contains(&&json!(title)),
        "JSON stays JSON: {history}"
    );
    assert!(by_name("x:y")["error"].is_string(), "{ls}");
    assert!(by_name(clear)["error"].is_string(), "{ls}");
    // Named alone, it is refused as a name.
    let alone = lockstep(Some(&url), &["ls", "x:y"]);
    assert_eq!(alone.code, 2, "{}{}", alone.stdout, alone.stderr);
}

/// The store's clock (`TIME`), in ms.
fn store_millis(server: &RedisServer) -> i64 {
    let [secs, micros]: [String; 2] = server.cmd(&["TIME"]);
    secs.parse::<i64>().unwrap() * 1000 + micros.parse::<i64>().unwrap() / 1000
}

#[test]
fn fleet_flags_a_process_served_an_older_revision_than_the_store_held_before_its_fetch() {
    let server = RedisServer::start();
    let url = server.url();
    let shop = Shop::start(&url);
    let set = ok(&url, &["set", "shop.theme", r#""dark""#, "--json"]).json();
    // The write's revision and when it was written, from its envelope.
    let (revision, written) = {
        let entries: BTreeMap<String, String> =
            server.cmd(&["HGETALL", "lockstep:{shop}:field:theme"]);
        let envelope: Value =
            serde_json::from_str(&entries[&millis(set["at"].as_str().unwrap()).to_string()])
                .unwrap();
        (
            envelope["r"].as_u64().unwrap(),
            envelope["t"].as_i64().unwrap(),
        )
    };
    // A 1 s tick's fetch timeout is 250 ms: a fetch a second after the
    // write, served the revision before it, is behind.
    wait_for(
        "the store's clock to pass a second after the write",
        Duration::from_millis(20),
        || match store_millis(&server) - written {
            after if after > 1_000 => Ok(()),
            after => Err(format!("{after} ms after")),
        },
    );
    // The record of a process whose replica follows another primary, as
    // a build that does not check it keeps it: fetched now, served the
    // revision before the write.
    let seen = store_millis(&server);
    let body = json!({
        "id": "stale", "host": "h2", "pid": 7, "program": "shop", "tick_ms": 1000
    });
    let record = json!({"seen": seen, "revision": revision - 1, "body": body.to_string()});
    let _: () = server.cmd(&[
        "HSET",
        "lockstep:{shop}:fleet",
        "stale",
        &record.to_string(),
    ]);
    let expires = (seen + 600_000).to_string();
    let _: () = server.cmd(&["ZADD", "lockstep:{shop}:fleet:expiry", &expires, "stale"]);
    wait_for(
        "the shop to report the write's revision",
        Duration::from_millis(20),
        || {
            let view = ok(&url, &["fleet", "shop", "--json"]).json();
            let processes = view["processes"].as_array().unwrap().clone();
            match processes.iter().find(|p| p["id"] != "stale") {
                Some(p) if p["revision"].as_u64() == Some(revision) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    );
    let view = ok(&url, &["fleet", "shop", "--json"]).json();
    for process in view["processes"].as_array().unwrap() {
        let expected = if process["id"] == "stale" {
            json!(revision)
        } else {
            Value::Null
        };
        assert_eq!(process["behind"], expected, "{process}");
    }
    let text = ok(&url, &["fleet", "shop"]).stdout;
    assert!(
        text.contains("1 process is BEHIND: the last fetch was served an older revision"),
        "{text}"
    );
    let row = text.lines().find(|l| l.contains("h2")).unwrap();
    assert!(
        row.contains(&format!("{} BEHIND {revision}", revision - 1)),
        "{row}"
    );
    drop(shop);
}

#[test]
fn a_record_that_claims_to_live_for_ever_is_left_out_and_set_wait_still_answers() {
    let server = RedisServer::start();
    let url = server.url();
    let shop = Shop::start(&url);
    // Planted by hand: a process that fetched a minute ago and whose
    // record never expires.
    let seen = store_millis(&server) - 60_000;
    let body = json!({"id": "forged", "host": "h", "pid": 9, "program": "x", "tick_ms": 1000});
    let record = json!({"seen": seen, "revision": 0, "body": body.to_string()});
    let _: () = server.cmd(&[
        "HSET",
        "lockstep:{shop}:fleet",
        "forged",
        &record.to_string(),
    ]);
    let _: () = server.cmd(&["ZADD", "lockstep:{shop}:fleet:expiry", "+inf", "forged"]);
    let set = ok(&url, &["set", "shop.limit", "9", "--wait"]);
    assert!(
        set.stdout.contains("held by all 1 live process of `shop`"),
        "{}",
        set.stdout
    );
    let view = ok(&url, &["fleet", "shop", "--json"]).json();
    assert_eq!(view["ignored"], 1, "{view}");
    let ids: Vec<&Value> = view["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["id"])
        .collect();
    assert!(!ids.contains(&&json!("forged")), "{view}");
    let text = ok(&url, &["fleet", "shop"]).stdout;
    assert!(
        text.contains("1 record left out: it claims to live longer than the registry's expiry"),
        "{text}"
    );
    drop(shop);
}
