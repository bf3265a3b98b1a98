//! Concurrent writers, through the Rust API and the CLI at once: every
//! acknowledged write is in the store, or was replaced by another write at
//! the same field and instant — zero lost.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lockstep::store::{RedisStore, Store, Write};
use lockstep_suite::RedisServer;

const WRITERS: usize = 8;
/// How many of the writers use the `lockstep` CLI (one process per write).
const CLI_WRITERS: usize = 2;
const WRITES: usize = 500;
const FIELDS: [&str; 4] = ["a", "b", "c", "d"];

/// The registry written to; its schema lets the CLI check every value.
#[lockstep::lockstep(tick = "1s", store = "redis", static_name = "SHARED")]
struct Writers {
    a: String,
    b: String,
    c: String,
    d: String,
}

/// One acknowledged write: its field, instant and unique value.
type Acked = (String, i64, String);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_writers_lose_nothing() {
    let server = RedisServer::start();
    let url = server.url();
    let tick = lockstep::Tick::new(Duration::from_secs(1)).unwrap();
    // Instants far enough ahead to stay pending (never pruned) for the test,
    // few enough that writers collide on the same field and instant.
    let base = chrono::Utc::now().timestamp_millis() / 1000 * 1000 + 600_000;
    RedisStore::open(&url)
        .unwrap()
        .publish_schema(&SHARED.schema())
        .await
        .unwrap();
    let cli = lockstep_suite::cli_binary();
    let mut writers: Vec<tokio::task::JoinHandle<Vec<Acked>>> = (0..CLI_WRITERS)
        .map(|w| {
            let (url, cli) = (url.clone(), cli.clone());
            tokio::task::spawn_blocking(move || {
                let mut acked = Vec::new();
                for i in 0..WRITES {
                    let field = FIELDS[fastrand::usize(..FIELDS.len())];
                    let at = base + 1000 * fastrand::i64(0..40);
                    let when = chrono::DateTime::from_timestamp_millis(at)
                        .unwrap()
                        .to_rfc3339();
                    let value = format!("\"cli{w}-{i}\"");
                    let out = std::process::Command::new(&cli)
                        .args([
                            "--url",
                            &url,
                            "--json",
                            "set",
                            &format!("writers.{field}"),
                            &value,
                        ])
                        .args(["--at", &when])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    acked.push((field.to_owned(), at, value));
                }
                acked
            })
        })
        .collect();
    writers.extend((CLI_WRITERS..WRITERS).map(|w| {
        let url = url.clone();
        tokio::spawn(async move {
            let store = RedisStore::open(&url).unwrap();
            let mut acked: Vec<Acked> = Vec::new();
            for i in 0..WRITES {
                let field = FIELDS[fastrand::usize(..FIELDS.len())];
                let at = base + 1000 * fastrand::i64(0..40);
                let value = format!("w{w}-{i}");
                // Some writes carry two steps.
                let mut write = Write::builder("writers", tick)
                    .by(format!("writer {w}"))
                    .at(at)
                    .set(field, serde_json::json!(value));
                if i % 7 == 0 {
                    write = write
                        .then_at(at + 1000)
                        .set(field, serde_json::json!(value));
                }
                let write = write.build().unwrap();
                let committed = store.commit(&write).await.expect("a write was refused");
                for (step, at) in write.steps().iter().zip(committed.instants) {
                    for (key, value) in step.values() {
                        acked.push((key.clone(), at, value.clone()));
                    }
                }
            }
            acked
        })
    }));
    let mut acked: Vec<Acked> = Vec::new();
    for writer in writers {
        acked.extend(writer.await.unwrap());
    }

    let keys: Vec<&str> = FIELDS.to_vec();
    let stored = RedisStore::open(&url)
        .unwrap()
        .fetch("writers", &keys)
        .await
        .unwrap();
    let stored: BTreeMap<(String, i64), String> = stored
        .fields
        .iter()
        .flat_map(|(key, entries)| {
            entries
                .iter()
                .map(move |e| ((key.clone(), e.at), e.value.clone().unwrap()))
        })
        .collect();
    let mut by_slot: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    for (key, at, value) in &acked {
        by_slot
            .entry((key.clone(), *at))
            .or_default()
            .insert(value.clone());
    }
    let mut lost = 0;
    for (slot, values) in &by_slot {
        match stored.get(slot) {
            // Present, as one of the writes to that very field and instant.
            Some(value) if values.contains(value) => {}
            _ => lost += 1,
        }
    }
    println!(
        "{} acknowledged writes of {} entries to {} (field, instant) slots; {} stored; {lost} lost",
        WRITERS * WRITES,
        acked.len(),
        by_slot.len(),
        stored.len()
    );
    assert_eq!(lost, 0);
    assert_eq!(stored.len(), by_slot.len(), "an entry nobody acknowledged");
}
