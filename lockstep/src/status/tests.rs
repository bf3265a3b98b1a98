//! `Status`'s tests: how it prints, for a person and as JSON.

use super::*;

/// A registry 2.5 s after its last fetch, with two pending changes,
/// failing and with a bad entry.
fn status() -> Status {
    let at = |ms| to_datetime(ms);
    let data = StatusData {
        last_fetch: Some(1_900_000_000_000),
        last_store_time: Some(1_900_000_000_001),
        fetches: 12,
        failed_fetches: 3,
        consecutive_failures: 2,
        last_error: Some("connection refused".into()),
        flips: 4,
        last_flip: Some(1_899_999_990_000),
        late_flips: 1,
        rejected: 1,
        clock_offset: Some((1_234_567, 250_000)),
        ..StatusData::default()
    };
    let pending = vec![
        Pending {
            key: "share",
            at: at(1_900_000_060_000),
            value: "25".into(),
        },
        Pending {
            key: "theme",
            at: at(1_900_000_120_000),
            value: "\"dark\"".into(),
        },
    ];
    let mut status = data.status(
        "flags",
        "redis://127.0.0.1:6379".into(),
        1_900_000_002_500,
        pending,
    );
    status.bad_entries = vec!["`flags.share` at …: not a u8; skipped".into()];
    status
}

#[test]
fn display_is_a_short_summary() {
    assert_eq!(
        status().to_string(),
        "flags: redis://127.0.0.1:6379, fetched 2.5s ago (12 fetches, 3 failed)\n  \
         2 pending: share = 25 at 2030-03-17T17:47:40Z, then 1 more\n  \
         4 flips (1 late), 1 rejected values, clock offset +1.234 ms (± 0.250 ms)\n  \
         failing: 2 fetches in a row, the last: connection refused\n  \
         1 bad entries (remove with `lockstep purge`): `flags.share` at …: not a u8; skipped"
    );
    assert_eq!(
        Status::not_started("flags").to_string(),
        "flags: not started"
    );
}

#[test]
fn replica_fallbacks_are_shown_when_there_were_some() {
    let mut status = status();
    assert!(!status.to_string().contains("replica"));
    assert_eq!(
        serde_json::to_value(&status).unwrap()["replica_fallbacks"],
        0
    );
    status.replica_fallbacks = 3;
    assert!(
        status
            .to_string()
            .contains("\n  3 fetches answered by another server than this process's replica"),
        "{status}"
    );
    assert_eq!(
        serde_json::to_value(&status).unwrap()["replica_fallbacks"],
        3
    );
}

#[test]
fn it_serializes_times_as_rfc3339_and_durations_in_ms() {
    let json = serde_json::to_value(status()).unwrap();
    assert_eq!(json["namespace"], "flags");
    assert_eq!(json["last_fetch"], "2030-03-17T17:46:40Z");
    assert_eq!(json["store_time"], "2030-03-17T17:46:40.001Z");
    assert_eq!(json["last_fetch_age_ms"], 2_500);
    assert_eq!(json["clock_offset_ms"], 1.234);
    assert_eq!(json["clock_offset_error_ms"], 0.25);
    assert_eq!(
        json["pending"][1],
        serde_json::json!({"field": "theme", "at": "2030-03-17T17:48:40Z", "value": "dark"})
    );
    assert_eq!(json["pending"][0]["value"], 25);
    let idle = serde_json::to_value(Status::not_started("flags")).unwrap();
    assert_eq!(idle["last_fetch"], serde_json::Value::Null);
    assert_eq!(idle["last_fetch_age_ms"], serde_json::Value::Null);
}
