//! The one rule every JSON the project prints follows, checked over the
//! output of every command (`--json`), the fleet view and a registry's
//! `Status`, produced against a store that holds every kind of entry.
//!
//! The rule: an instant is RFC 3339 text in UTC, under a name that says it
//! is one (`at`, `…_at`, or one of [`INSTANTS`]); a duration is an integer
//! of milliseconds named `…_ms` (the clock offsets, [`FRACTIONAL_MS`], keep
//! their microseconds as a fraction); a registry's value slot is a
//! `field`, never a `key`. The console prints no JSON (its routes serve
//! HTML), so it has nothing here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use clap::CommandFactory;
use lockstep::ManualClock;
use lockstep::schema::Schema;
use lockstep::store::driver::{BoxFuture, Record, Records, Unplaced};
use lockstep::store::{Committed, Fetch, Fetched, MemoryStore, Store, StoredEntry, Write};
use lockstep::{Error, Tick};
use serde_json::{Value, json};

use crate::args::{Cli, FieldPath, Unchecked};
use crate::context::Ctx;
use crate::outcome::Outcome;
use crate::time::When;

/// Names of instants besides `at` and `…_at`.
const INSTANTS: &[&str] = &[
    "now",
    "since",
    "last_fetch",
    "last_flip",
    "store_time",
    "cancelled",
    "purged",
];

/// Durations in milliseconds that keep a fraction: a clock offset and its
/// error are often below a millisecond.
const FRACTIONAL_MS: &[&str] = &["clock_offset_ms", "clock_offset_error_ms"];

/// Words that name a duration: a key that is one, or ends in `_` and one,
/// must be `…_ms` instead.
const DURATIONS: &[&str] = &[
    "age", "ago", "tick", "every", "timeout", "delay", "interval", "elapsed", "offset", "lag",
];

/// Units other than milliseconds, as a key's suffix.
const OTHER_UNITS: &[&str] = &[
    "_s", "_sec", "_secs", "_seconds", "_millis", "_us", "_micros", "_ns", "_nanos", "_min",
    "_mins", "_minutes", "_h", "_hours", "_d", "_days",
];

/// Keys whose contents are not lockstep's to name: a value as the user
/// stored it (`value`, `stored`, `stored_instant`), and the description of
/// a field's type (`value_type`, where `key` is a map's key type and
/// `min`/`max` are bounds). The key itself is still checked.
const NOT_OURS: &[&str] = &["value", "stored", "stored_instant", "value_type"];

/// An epoch in milliseconds is above this (2001 onwards), and no duration,
/// count or id lockstep prints comes near it: a number this large is an
/// instant in disguise, whatever its name.
const EPOCH_MS: f64 = 1e12;

fn is_instant(key: &str) -> bool {
    key == "at" || key.ends_with("_at") || INSTANTS.contains(&key)
}

/// Whether `text` is an RFC 3339 instant.
fn rfc3339(text: &str) -> bool {
    DateTime::parse_from_rfc3339(text).is_ok()
}

/// Every breach of the rule in `value`, each as `where: what`.
///
/// Strict by construction: a string that parses as RFC 3339 under a name
/// that does not say "instant" is a breach (a new instant must be named as
/// one), as is a number that looks like epoch milliseconds under any name
/// (`started: 1767225600000`, `at_ms`), a `…_ms` that is not an integer, a
/// key that names a duration without `_ms` or with another unit
/// (`tick_secs`), an instant held as anything but RFC 3339 text in UTC,
/// and any key named `key`.
fn breaches(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", None, value, &mut out);
    out
}

fn walk(path: &str, key: Option<&str>, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let at = format!("{path}.{k}");
                check_name(&at, k, out);
                check_value(&at, k, v, out);
                if !NOT_OURS.contains(&k.as_str()) {
                    walk(&at, Some(k), v, out);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = format!("{path}[{i}]");
                // An array's items are named by its key.
                if let Some(k) = key {
                    check_value(&at, k, item, out);
                }
                walk(&at, key, item, out);
            }
        }
        _ => {}
    }
}

/// The breaches of a key's name.
fn check_name(at: &str, key: &str, out: &mut Vec<String>) {
    let mut breach = |what: String| out.push(format!("{at}: {what}"));
    if key == "key" {
        breach("a registry's value slot is named `field`, not `key`".into());
    }
    if let Some(unit) = OTHER_UNITS.iter().find(|u| key.ends_with(*u)) {
        breach(format!("a duration in `{unit}`: durations are `…_ms`"));
    }
    let word = key.rsplit('_').next().unwrap_or(key);
    if !key.ends_with("_ms") && DURATIONS.contains(&word) {
        breach(format!("`{key}` names a duration: name it `…_ms`"));
    }
    if let Some(stem) = key.strip_suffix("_ms")
        && is_instant(stem)
    {
        breach("an instant named as a duration: instants are RFC 3339, under `at`".into());
    }
}

/// The breaches of the value named `key` (an array's, item by item).
fn check_value(at: &str, key: &str, value: &Value, out: &mut Vec<String>) {
    let mut breach = |what: String| out.push(format!("{at}: {what}"));
    match value {
        Value::Null | Value::Array(_) => {}
        Value::String(text) if is_instant(key) => {
            if !rfc3339(text) || !text.ends_with('Z') {
                breach(format!("instant {text:?} is not RFC 3339 in UTC"));
            }
        }
        Value::String(text) => {
            if rfc3339(text) {
                breach(format!(
                    "an instant ({text:?}) under a name that does not say so: name it `…_at`"
                ));
            }
        }
        Value::Number(n) => {
            let float = n.as_f64().unwrap_or(f64::MAX);
            if is_instant(key) {
                breach(format!("instant {n} is a number: instants are RFC 3339"));
            } else if float.abs() >= EPOCH_MS {
                breach(format!(
                    "{n} looks like epoch milliseconds: instants are RFC 3339"
                ));
            }
            if key.ends_with("_ms") && !n.is_i64() && !n.is_u64() && !FRACTIONAL_MS.contains(&key) {
                breach(format!("{n} is not a whole number of milliseconds"));
            }
        }
        Value::Bool(_) | Value::Object(_) if is_instant(key) => {
            breach(format!("instant {value} is not RFC 3339 text"));
        }
        Value::Bool(_) | Value::Object(_) => {}
    }
}

#[test]
fn the_checker_catches_each_kind_of_breach() {
    let good = json!({
        "at": "2030-01-01T00:00:01.250Z", "written_at": "2030-01-01T00:00:00Z",
        "now": null, "tick_ms": 1000, "in_ms": -5, "clock_offset_ms": 0.25,
        "field": "limit", "value": {"key": 1_900_000_000_000_i64, "at": 3},
        "value_type": {"type": "map", "key": {"type": "string"}},
        "missing": ["b"], "revision": 3, "pid": 7, "started": true,
    });
    assert_eq!(breaches(&good), Vec::<String>::new());
    for (bad, what) in [
        (json!({"key": "limit"}), "`key`"),
        (json!({"fields": [{"key": "limit"}]}), "`key` in an array"),
        (
            json!({"started_at": 1_893_456_000_000_i64}),
            "an instant as epoch ms",
        ),
        (
            json!({"started": 1_893_456_000_000_i64}),
            "epoch ms under another name",
        ),
        (
            json!({"at_ms": 1_893_456_000_000_i64}),
            "an instant named `_ms`",
        ),
        (
            json!({"first": 1_893_456_000_000_i64}),
            "epoch ms under any name",
        ),
        (
            json!({"at": "2030-01-01T01:00:00+01:00"}),
            "an instant not in UTC",
        ),
        (json!({"at": "soon"}), "an instant that is not one"),
        (
            json!({"expires": "2030-01-01T00:00:00Z"}),
            "an instant under another name",
        ),
        (json!({"tick_secs": 1}), "a duration in seconds"),
        (json!({"tick": 1000}), "a duration without its unit"),
        (json!({"last_fetch_age": 1000}), "a duration without `_ms`"),
        (json!({"lag_ms": 1.5}), "a fraction of a millisecond"),
        (json!({"since": true}), "an instant as a boolean"),
    ] {
        assert!(!breaches(&bad).is_empty(), "not caught: {what}: {bad}");
    }
}

// --- Every printed JSON, against a store holding every kind of entry ---

/// A store that also holds, for each field fetched, an entry whose instant
/// is not a number (a memory store cannot hold one); purging it succeeds.
struct WithUnplaced(MemoryStore);

impl Store for WithUnplaced {
    fn fetch_with<'a>(&'a self, fetch: Fetch<'a>) -> BoxFuture<'a, Result<Fetched, Error>> {
        Box::pin(async move {
            let mut fetched = self.0.fetch_with(fetch).await?;
            for field in fetched.fields.keys().cloned().collect::<Vec<_>>() {
                fetched.unplaced.entry(field).or_default().push(Unplaced {
                    at: "soon".into(),
                    reason: "the instant is not a number".into(),
                });
            }
            Ok(fetched)
        })
    }

    fn records<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Records, Error>> {
        self.0.records(namespace)
    }

    fn commit<'a>(&'a self, write: &'a Write) -> BoxFuture<'a, Result<Committed, Error>> {
        self.0.commit(write)
    }

    fn cancel<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        key: &'a str,
        at: i64,
    ) -> BoxFuture<'a, Result<StoredEntry, Error>> {
        self.0.cancel(namespace, tick, key, at)
    }

    fn purge<'a>(
        &'a self,
        namespace: &'a str,
        tick: Tick,
        key: &'a str,
        at: &'a str,
        undecodable: bool,
    ) -> BoxFuture<'a, Result<(), Error>> {
        if at == "soon" {
            return Box::pin(async { Ok(()) });
        }
        self.0.purge(namespace, tick, key, at, undecodable)
    }

    fn namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        self.0.namespaces()
    }

    fn publish_schema<'a>(&'a self, schema: &'a Schema) -> BoxFuture<'a, Result<(), Error>> {
        self.0.publish_schema(schema)
    }

    fn schema<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Option<Schema>, Error>> {
        self.0.schema(namespace)
    }

    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// A registry of this process, on the test's store: its status, its
/// record in the fleet view, its schema (a map field: a type with a `key`).
#[lockstep::lockstep(tick = "1s", store = "memory", namespace = "rule_shop")]
struct Shop {
    #[lockstep(default = 5)]
    limit: u32,
    weights: BTreeMap<String, u32>,
    #[lockstep(default = "classic")]
    theme: String,
}

/// A registry never started: the status of one.
#[lockstep::lockstep(tick = "1s", store = "memory", namespace = "rule_idle")]
struct Idle {
    enabled: bool,
}

fn path(field: &str) -> FieldPath {
    FieldPath {
        namespace: "rule_shop".into(),
        key: field.into(),
    }
}

fn checked() -> Unchecked {
    Unchecked {
        force: false,
        tick: None,
    }
}

/// Every printed JSON, by command (`set --wait` adds its wait under `wait`).
struct Printed(Vec<(&'static str, String, Value)>);

impl Printed {
    fn add(&mut self, command: &'static str, what: impl Into<String>, json: Value) {
        self.0.push((command, what.into(), json));
    }

    fn outcome(&mut self, command: &'static str, what: &str, outcome: &Outcome) {
        self.add(command, what, outcome.json.clone());
    }
}

/// Every JSON the `lockstep` command prints (each command, each kind of
/// entry: active, pending, past, bad, unplaced; a fleet with a live
/// registry's record and its refused entries; each answer of `--wait`),
/// the library's `Status` (started and not) and `Fleet`, follow the rule.
/// Every command of the command line is covered but `console`, which serves
/// HTML: a new command fails this test until its JSON is checked here.
#[test]
fn every_printed_json_follows_the_rule() {
    let printed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(print_everything());
    let mut found = Vec::new();
    for (command, what, json) in &printed.0 {
        for breach in breaches(json) {
            found.push(format!("{command} ({what}){breach}"));
        }
    }
    assert!(
        found.is_empty(),
        "{} breaches:\n{}",
        found.len(),
        found.join("\n")
    );

    let covered: BTreeSet<&str> = printed.0.iter().map(|(c, _, _)| *c).collect();
    for command in Cli::command().get_subcommands() {
        let name = command.get_name();
        assert!(
            name == "console" || covered.contains(name),
            "`{name} --json` is not checked"
        );
    }
}

async fn print_everything() -> Printed {
    let mut printed = Printed(Vec::new());
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap());
    let store = Arc::new(WithUnplaced(MemoryStore::with_clock(&clock)));
    let ctx = Ctx {
        store: store.clone(),
    };
    let tick = Tick::from_secs(1).unwrap();
    SHOP.builder()
        .store(store.clone())
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();

    // An active value, a map, a ramp, a bad entry the registry refuses.
    let (set, written) = crate::set::set(&ctx, &path("limit"), "7", None, &checked())
        .await
        .unwrap();
    printed.outcome("set", "a value", &set);
    SHOP.refresh().await.unwrap();
    printed.outcome(
        "set",
        "--wait: held",
        &crate::wait::until_held(&ctx, &written).await.0,
    );
    clock.advance(Duration::from_secs(3)).await;
    let (set, _) = crate::set::set(&ctx, &path("weights"), r#"{"eu": 3}"#, None, &checked())
        .await
        .unwrap();
    printed.outcome("set", "a map", &set);
    let (ramp, _) = crate::set::ramp(&ctx, &path("theme"), "a,b,c", None, None, &checked())
        .await
        .unwrap();
    printed.outcome("ramp", "three entries", &ramp);
    let bad = Write::builder("rule_shop", tick)
        .set("limit", json!("lots"))
        .build()
        .unwrap();
    store.commit(&bad).await.unwrap();
    // The first fetch refuses it, the next one's record says so.
    SHOP.refresh().await.unwrap();
    SHOP.refresh().await.unwrap();

    printed.add(
        "status",
        "started",
        serde_json::to_value(SHOP.status()).unwrap(),
    );
    printed.add(
        "status",
        "not started",
        serde_json::to_value(IDLE.status()).unwrap(),
    );
    printed.add(
        "fleet",
        "the library's",
        serde_json::to_value(SHOP.fleet().await.unwrap()).unwrap(),
    );
    printed.outcome(
        "fleet",
        "a live registry",
        &crate::fleet::fleet(&ctx, "rule_shop").await.unwrap(),
    );
    printed.outcome(
        "ls",
        "every registry",
        &crate::ls::ls(&ctx, None).await.unwrap(),
    );
    printed.outcome(
        "ls",
        "one",
        &crate::ls::ls(&ctx, Some("rule_shop")).await.unwrap(),
    );
    for field in ["limit", "weights", "theme"] {
        printed.outcome(
            "get",
            field,
            &crate::get::get(&ctx, &path(field)).await.unwrap(),
        );
        printed.outcome(
            "history",
            field,
            &crate::get::history(&ctx, &path(field)).await.unwrap(),
        );
    }
    let mut frames = Vec::new();
    crate::watch::watch(&ctx, None, Some(1), None, true, &mut |frame| {
        frames.push(frame)
    })
    .await
    .unwrap();
    for frame in &frames {
        printed.outcome("watch", "a frame", frame);
    }

    // Cancel a pending entry of the ramp; purge the bad entry, and one
    // whose instant is not a number.
    let last = SHOP.fleet().await.unwrap().pending.last().unwrap().at;
    let cancelled = crate::cancel::cancel(&ctx, &path("theme"), When::At(last), &checked())
        .await
        .unwrap();
    printed.outcome("cancel", "a pending entry", &cancelled);
    let bad_at = store.0.fetch("rule_shop", &["limit"]).await.unwrap().fields["limit"]
        .last()
        .unwrap()
        .at;
    let bad_at = crate::view::instant(bad_at);
    printed.outcome(
        "purge",
        "a bad entry",
        &crate::cancel::purge(&ctx, &path("limit"), &bad_at, &checked())
            .await
            .unwrap(),
    );
    printed.outcome(
        "purge",
        "an unplaced one",
        &crate::cancel::purge(&ctx, &path("limit"), "soon", &checked())
            .await
            .unwrap(),
    );

    // `--wait`: cancelled before it is held; a process that missed fetches;
    // a registry no process reports on.
    let (_, written) = crate::set::set(&ctx, &path("theme"), "\"x\"", None, &checked())
        .await
        .unwrap();
    let at = written.instants[0];
    store.cancel("rule_shop", tick, "theme", at).await.unwrap();
    printed.outcome(
        "set",
        "--wait: gone",
        &crate::wait::until_held(&ctx, &written).await.0,
    );
    let stale = Record::new(
        "stale",
        json!({"id": "stale", "host": "vm", "pid": 9, "program": "shop",
               "started": 1_893_456_000_000_i64, "tick_ms": 1000})
        .to_string(),
        3_000,
    );
    store
        .fetch_with(Fetch::new("rule_shop", &["limit"]).reporting(Some(&stale)))
        .await
        .unwrap();
    clock.advance(Duration::from_millis(1_500)).await;
    let (_, written) = crate::set::set(&ctx, &path("limit"), "8", None, &checked())
        .await
        .unwrap();
    SHOP.refresh().await.unwrap();
    printed.outcome(
        "set",
        "--wait: late",
        &crate::wait::until_held(&ctx, &written).await.0,
    );
    printed.outcome(
        "fleet",
        "a process that missed fetches",
        &crate::fleet::fleet(&ctx, "rule_shop").await.unwrap(),
    );
    let mut quiet = SHOP.schema();
    quiet.namespace = "rule_quiet".into();
    store.publish_schema(&quiet).await.unwrap();
    let quiet_limit = FieldPath {
        namespace: "rule_quiet".into(),
        key: "limit".into(),
    };
    let (_, written) = crate::set::set(&ctx, &quiet_limit, "1", None, &checked())
        .await
        .unwrap();
    printed.outcome(
        "set",
        "--wait: unreported",
        &crate::wait::until_held(&ctx, &written).await.0,
    );
    printed
}
