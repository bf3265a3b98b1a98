//! A wide registry beside a small one on one real redis-server: `wide`
//! (`src/bin/wide.rs`, a kill switch and 24 string fields) in a process of
//! its own, with 14.4 MB of pending values planted by hand (24 fields × 10
//! entries × 60 000 bytes: beyond the pending bound and the fetch's budget),
//! and a neighbour registry in this process. A fetch ships the smallest
//! fields within its budget, so the kill switch, written with the real
//! `lockstep` binary, flips as scheduled; the neighbour's fetches never
//! fail; the process holds at most twice the values it keeps; a write that
//! would grow the registry further is refused naming the bound.
//!
//! The machine may stall any thread for a while: every check judges what a
//! process or the store said, never how soon something woke.

use std::time::Duration;

use lockstep::lockstep;
use lockstep::store::driver::{FETCH_BUDGET_BYTES, MAX_PENDING_BYTES};
use lockstep_suite::{Probe, RedisServer, run_cli, wait_for};
use serde_json::Value;

/// A registry beside the wide one, on the same server.
#[lockstep(tick = "1s", store = "redis", namespace = "neighbour")]
pub struct Neighbour {
    /// Anything.
    pub limit: u32,
}

const FIELDS: usize = 24;
const ENTRIES: usize = 10;
const VALUE_BYTES: usize = 60_000;

/// Plants `ENTRIES` pending entries of `VALUE_BYTES` bytes in each of the
/// `FIELDS` string fields of `wide`, an hour and more from now, as an older
/// lockstep or a hand would: envelopes written straight into the hashes.
fn plant(server: &RedisServer) {
    let (secs, _): (String, String) = server.cmd(&["TIME"]);
    let first = (secs.parse::<i64>().unwrap() + 3_600) * 1_000;
    let value = format!("\"{}\"", "x".repeat(VALUE_BYTES - 2));
    let mut connection = server.connection().unwrap();
    for f in 0..FIELDS {
        let mut pipe = redis::pipe();
        for e in 0..ENTRIES {
            let at = first + 2_000 * e as i64;
            let envelope =
                format!(r#"{{"f":1,"w":"planted","t":0,"by":"a hand","r":0,"v":{value}}}"#);
            pipe.cmd("HSET")
                .arg(format!("lockstep:{{wide}}:field:f{f:02}"))
                .arg(at.to_string())
                .arg(envelope)
                .ignore();
        }
        pipe.exec(&mut connection).unwrap();
    }
}

/// What the wide process says of itself.
fn show(wide: &mut Probe) -> Value {
    wide.tell("show");
    serde_json::from_str(&wide.line()).expect("a JSON line")
}

#[test]
fn a_wide_registry_is_fetched_within_its_budget_its_kill_switch_flips_and_its_neighbour_fetches() {
    let server = RedisServer::start();
    let url = server.url();
    plant(&server);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        NEIGHBOUR
            .builder()
            .url(url.clone())
            .report(false)
            .start()
            .await
            .unwrap();
    });
    let mut wide = Probe::spawn(env!("CARGO_BIN_EXE_wide"), &url, &[]);
    assert_eq!(wide.line(), "ready");

    // The kill switch, written as an operator would: the registry is beyond
    // the bound already, and a small write still goes.
    let set = run_cli(Some(&url), &["set", "wide.kill", "true", "--json"]);
    assert_eq!(set.code, 0, "{}{}", set.stdout, set.stderr);
    let at = chrono::DateTime::parse_from_rfc3339(set.json()["at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();

    // A write that would grow the pending values by more: refused, naming
    // the bound, and nothing written.
    let big = format!("\"{}\"", "y".repeat(VALUE_BYTES));
    let refused = run_cli(Some(&url), &["set", "wide.f00", &big]);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stderr
            .contains(&format!("over the {MAX_PENDING_BYTES} bytes")),
        "{}",
        refused.stderr
    );

    // After the instant and a tick: the switch flipped as scheduled (learned
    // before its instant: no late flip), every fetch of both registries
    // succeeded, and the fields past the budget were reported, not shipped.
    let shown = wait_for("the kill switch", Duration::from_millis(200), || {
        let shown = show(&mut wide);
        let now = chrono::Utc::now().timestamp_millis();
        if shown["kill"] == true && now > at + 2_000 {
            Ok(shown)
        } else {
            Err(shown)
        }
    });
    assert_eq!(shown["late_flips"], 0, "{shown}");
    assert_eq!(shown["failed"], 0, "{shown}");
    let rejected = shown["rejected"].as_u64().unwrap() as usize;
    assert!(rejected > 0 && rejected.is_multiple_of(ENTRIES), "{shown}");
    let status = NEIGHBOUR.status();
    assert_eq!(status.failed_fetches, 0, "{status:?}");
    assert!(status.fetches >= 3, "{status:?}");

    // What the process keeps: the fields within the budget, whole.
    let kept_fields = FIELDS - rejected / ENTRIES;
    let kept = (kept_fields * ENTRIES * VALUE_BYTES) as u64;
    assert!(kept <= FETCH_BUDGET_BYTES, "{kept}");
    assert!(kept_fields > 0, "{shown}");
    let grown = |what: &str| {
        shown[what].as_u64().unwrap() as i64
            - shown[&format!("{what}_before")].as_u64().unwrap() as i64
    };
    let (allocated, resident) = (grown("allocated"), grown("resident"));
    println!(
        "kept {kept_fields} of {FIELDS} fields: {kept} bytes of values; allocated {allocated} \
         bytes more ({:.2}×), resident memory {resident} more ({:.2}×)",
        allocated as f64 / kept as f64,
        resident as f64 / kept as f64
    );
    // What the process keeps for its timelines: at most twice the values.
    assert!(
        allocated <= 2 * kept as i64,
        "allocated {allocated} bytes for {kept} kept"
    );

    // The tools fetch within the same budget: `ls` shows the fields past it
    // as bad (not fetched), the others as they are.
    let ls = run_cli(Some(&url), &["ls", "wide", "--json"]);
    assert_eq!(ls.code, 0, "{}{}", ls.stdout, ls.stderr);
    let fields = ls.json()["namespaces"][0]["fields"].clone();
    let bad = fields
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["bad"].as_u64() == Some(ENTRIES as u64))
        .count();
    assert_eq!(bad, FIELDS - kept_fields, "{fields}");
}
