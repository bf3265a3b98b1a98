//! A registry process for the `lockstep` command's tests (`tests/cli.rs`):
//! starts the `shop` registry on `LOCKSTEP_URL`, which publishes its schema,
//! prints `ready`, then one JSON line each time the hot path sees a field
//! change: `{"field": …, "value": …, "seen_ms": …, "stale_ms": …,
//! "stalls_ms": [[from, to], …]}` (wall clock, fractional milliseconds:
//! the end of the first read that saw the change, the start of the last read
//! that did not, and the gaps of 1 ms or more between two reads in the
//! second before, when this process did not run). Lives until its standard input closes: its test ends it,
//! or ends.

use std::time::Duration;

use chrono::Utc;
use lockstep::{Percent, lockstep};
use serde::{Deserialize, Serialize};

/// How the shop looks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Mode {
    /// The default look.
    #[default]
    Light,
    /// Dark.
    Dark,
    /// A hue of one's own.
    Custom {
        /// Degrees, 0 to 359.
        hue: u16,
    },
}

/// The registry the CLI tests drive.
#[lockstep(tick = "1s", store = "redis", namespace = "shop")]
pub struct Shop {
    /// Orders per minute.
    #[lockstep(default = 10)]
    pub limit: u8,
    /// The theme's name.
    #[lockstep(default = "classic")]
    pub theme: String,
    /// Share of users on the new checkout.
    pub share: Percent,
    /// The look.
    pub mode: Mode,
    /// A banner, if any.
    pub banner: Option<String>,
}

fn values() -> [(&'static str, serde_json::Value); 5] {
    let json = |v: serde_json::Result<serde_json::Value>| v.unwrap_or_default();
    [
        ("limit", json(serde_json::to_value(SHOP.limit()))),
        ("theme", json(serde_json::to_value(&*SHOP.theme()))),
        ("share", json(serde_json::to_value(SHOP.share()))),
        ("mode", json(serde_json::to_value(&*SHOP.mode()))),
        ("banner", json(serde_json::to_value(&*SHOP.banner()))),
    ]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lockstep::Error> {
    lockstep_suite::probe::exit_when_stdin_closes();
    SHOP.start().await?;
    println!("ready");
    let watcher = tokio::task::spawn_blocking(|| {
        let wall_ms = || Utc::now().timestamp_micros() as f64 / 1000.0;
        let mut last = values();
        // The start of the last read, and the gaps of 1 ms or more between
        // two reads in the last second (this process did not run).
        let mut started_before = wall_ms();
        let mut stalls: Vec<(f64, f64)> = Vec::new();
        let mut ended_before = started_before;
        loop {
            let started = wall_ms();
            if started - ended_before >= 1.0 {
                stalls.push((ended_before, started));
            }
            stalls.retain(|(_, to)| started - to < 1000.0);
            let now = values();
            // The wall clock after the read bounds the flip from above.
            let seen_ms = wall_ms();
            for ((field, old), (_, new)) in last.iter().zip(&now) {
                if old != new {
                    println!(
                        "{}",
                        serde_json::json!({
                            "field": field,
                            "value": new,
                            "seen_ms": seen_ms,
                            "stale_ms": started_before,
                            "stalls_ms": stalls,
                        })
                    );
                }
            }
            last = now;
            started_before = started;
            ended_before = seen_ms;
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    let _ = watcher.await;
    Ok(())
}
