//! A fleet member for the multi-process tests: starts a registry on
//! `LOCKSTEP_URL`, says `ready`, then watches the hot path until the value
//! named on the command line appears and prints, as JSON, when it did.
//!
//! `probe <expected value> [<clock skew ms> [store]]`

use std::time::Duration;

use chrono::Utc;
use lockstep::lockstep;

/// The registry every probe holds.
#[lockstep(tick = "1s", backend = "redis", namespace = "fleet")]
pub struct Fleet {
    /// The value the test flips.
    pub generation: u64,
    /// More fields, to show a fetch is one call whatever their number.
    pub a: u32,
    /// See `a`.
    pub b: String,
    /// See `a`.
    pub c: Vec<u8>,
}

/// The same registry, flipping by the store's clock.
#[lockstep(tick = "1s", backend = "redis", namespace = "fleet", clock = "store")]
pub struct FleetOnStoreClock {
    /// The value the test flips.
    pub generation: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let expected: u64 = args.get(1).ok_or("usage: probe <value>")?.parse()?;
    let skew_ms: i64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let follow_store = args.get(3).is_some_and(|s| s == "store");
    let skew = chrono::TimeDelta::milliseconds(skew_ms);
    let generation: fn() -> u64 = if follow_store {
        FLEET_ON_STORE_CLOCK
            .builder()
            .clock_skew(skew)
            .start()
            .await?;
        || FLEET_ON_STORE_CLOCK.generation()
    } else {
        FLEET.builder().clock_skew(skew).start().await?;
        || FLEET.generation()
    };
    println!("ready");
    let watcher = tokio::task::spawn_blocking(move || {
        loop {
            let value = generation();
            // The wall clock after the load bounds the flip from above.
            let seen = Utc::now();
            if value == expected {
                return seen;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    });
    let seen = watcher.await?;
    // Stay a little longer so fetch counting sees whole ticks.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = if follow_store {
        FLEET_ON_STORE_CLOCK.status()
    } else {
        FLEET.status()
    };
    let offset = status
        .clock_offset
        .map(|d| d.num_microseconds().unwrap_or(0));
    println!(
        "{}",
        serde_json::json!({
            "seen_ns": seen.timestamp_nanos_opt(),
            "fetches": status.fetches,
            "failed": status.failed_fetches,
            "late_flips": status.late_flips,
            "clock_offset_us": offset,
        })
    );
    Ok(())
}
