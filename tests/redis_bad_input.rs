//! Bad input written straight into Redis: each kind is rejected for its
//! field alone, loudly (status and log), the field keeps its last good
//! value, other fields are unaffected, and the process keeps serving.

use chrono::Utc;
use lockstep::lockstep;
use lockstep_suite::{RedisServer, wait_for_switch};

#[lockstep(tick = "1s", store = "redis")]
struct Victim {
    #[lockstep(default = 1)]
    count: u8,
    #[lockstep(default = 0.5)]
    ratio: f64,
    #[lockstep(default = "a")]
    name: String,
    #[lockstep(default = 0)]
    other: u32,
}

/// Stores `raw` as the entry of `field` at `at` (ms), bypassing lockstep.
fn poke(server: &RedisServer, field: &str, at: i64, raw: &[u8]) {
    let mut c = server.connection().unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("lockstep:{{victim}}:field:{field}"))
        .arg(at.to_string())
        .arg(raw)
        .query(&mut c)
        .unwrap();
}

fn envelope(value: &str) -> Vec<u8> {
    format!(r#"{{"f":1,"v":{value}}}"#).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_value_is_rejected_for_its_field_alone() {
    let server = RedisServer::start();
    VICTIM.builder().url(server.url()).start().await.unwrap();
    // Good values first, active now.
    let at = VICTIM
        .change()
        .set(Victim::COUNT, 7)
        .set(Victim::RATIO, 0.25)
        .set(Victim::NAME, "good".to_string())
        .apply()
        .await
        .unwrap()[0];
    wait_for_switch("the good values", at, (7, 0.25, "good".to_owned()), || {
        (VICTIM.count(), VICTIM.ratio(), VICTIM.name().to_string())
    })
    .await;

    let nested = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge = format!("\"{}\"", "x".repeat(lockstep::MAX_VALUE_BYTES + 1));
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("garbage bytes", "count", vec![0xff, 0x00, 0x13, 0x37]),
        (
            "invalid UTF-8",
            "name",
            b"{\"f\":1,\"v\":\"\xc3\x28\"}".to_vec(),
        ),
        ("not an envelope", "count", b"7".to_vec()),
        ("wrong JSON type", "count", envelope("\"seven\"")),
        ("out of range", "count", envelope("300")),
        ("negative for unsigned", "count", envelope("-1")),
        ("NaN", "ratio", envelope("NaN")),
        ("infinity", "ratio", envelope("1e999")),
        ("deeply nested", "name", envelope(&nested)),
        ("over the size cap", "name", envelope(&huge)),
        (
            "a future format version",
            "count",
            br#"{"f":2,"v":9}"#.to_vec(),
        ),
        ("no value", "count", br#"{"f":1}"#.to_vec()),
    ];
    let mut rejected = VICTIM.status().rejected;
    let mut last_other = Utc::now();
    for (i, (what, field, raw)) in cases.iter().enumerate() {
        // Active now, after the good entry (not on a tick boundary, which
        // only a hand-written entry can be).
        let bad_at = at.timestamp_millis() + 1 + i as i64;
        poke(&server, field, bad_at, raw);
        let other = VICTIM
            .set(Victim::OTHER, rejected as u32 + 1)
            .await
            .unwrap();
        VICTIM.refresh().await.unwrap();
        let status = VICTIM.status();
        assert_eq!(
            status.rejected,
            rejected + 1,
            "{what} was not rejected: {status:?}"
        );
        let why = status.last_rejection.unwrap_or_default();
        assert!(why.contains(&format!("victim.{field}")), "{what}: {why}");
        assert!(
            why.len() < 600,
            "{what}: the message quotes too much: {} bytes",
            why.len()
        );
        assert_eq!(
            (VICTIM.count(), VICTIM.ratio(), VICTIM.name().as_str()),
            (7, 0.25, "good"),
            "{what} changed a value"
        );
        // The other field still takes its writes: the same fetch learned it.
        assert!(
            status
                .pending
                .iter()
                .any(|p| p.key == "other" && p.at == other),
            "{what}: {:?}",
            status.pending
        );
        last_other = other;
        // Clean the bad entry so the next case starts from good values.
        let mut c = server.connection().unwrap();
        let _: () = redis::cmd("HDEL")
            .arg(format!("lockstep:{{victim}}:field:{field}"))
            .arg(bad_at.to_string())
            .query(&mut c)
            .unwrap();
        rejected += 1;
        println!("{what}: rejected");
    }

    wait_for_switch("victim.other", last_other, rejected as u32, || {
        VICTIM.other()
    })
    .await;

    // A key of the wrong Redis type breaks that field only.
    let _: () = server.cmd(&["DEL", "lockstep:{victim}:field:name"]);
    let _: () = server.cmd(&["SET", "lockstep:{victim}:field:name", "oops"]);
    VICTIM.refresh().await.unwrap();
    let status = VICTIM.status();
    assert_eq!(status.rejected, rejected + 1, "{status:?}");
    assert!(status.last_rejection.unwrap().contains("WRONGTYPE"));
    assert_eq!((VICTIM.count(), VICTIM.name().as_str()), (7, "good"));

    // Fields the registry does not have are ignored.
    let _: () = server.cmd(&["HSET", "lockstep:{victim}:field:unknown", "0", "junk"]);
    VICTIM.refresh().await.unwrap();
    assert_eq!(VICTIM.status().rejected, rejected + 1);
    assert_eq!(VICTIM.status().failed_fetches, 0);
}
