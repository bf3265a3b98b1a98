//! The dark-launch story: a controller ramps `foobar_percent` 0 → 10 → 25 →
//! 50 → 100, one tick apart, while workers serve simulated requests and send
//! each request down the foobar path when `Percent::includes` says so. Every
//! worker switches at the same instants.
//!
//! ```text
//! cargo run -p lockstep-examples --features sqlite --example dark_launch   # SQLite file ./lockstep.db, workers as OS processes
//! LOCKSTEP_URL=redis://127.0.0.1:6379 \
//!   cargo run -p lockstep-examples --features sqlite,redis --example dark_launch   # the same on Redis
//! LOCKSTEP_URL=postgres://… \
//!   cargo run -p lockstep-examples --features sqlite,postgres --example dark_launch
//! LOCKSTEP_URL=memory:// \
//!   cargo run -p lockstep-examples --features sqlite --example dark_launch   # in-process memory store, workers as tasks
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lockstep::{Percent, lockstep};
use serde::{Deserialize, Serialize};

/// The dark launch's one flag. Without `LOCKSTEP_URL`, in the SQLite file
/// `lockstep.db` of the working directory, which every worker opens.
#[lockstep(tick = "1s", store = "sqlite", namespace = "dark_launch")]
pub struct Flags {
    /// Share of requests that take the new foobar path.
    pub foobar_percent: Percent,
}

const WORKERS: usize = 4;
const RAMP: [u8; 5] = [0, 10, 25, 50, 100];

/// What a worker saw of one value.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Seen {
    worker: usize,
    percent: f64,
    first_seen: Option<DateTime<Utc>>,
    requests: u64,
    foobar: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, worker, from, until] = args.as_slice()
        && flag == "--worker"
    {
        return worker_process(worker.parse()?, from.parse()?, until.parse()?).await;
    }
    FLAGS.start().await?;
    let processes = !FLAGS.status().store.starts_with("memory:");
    // Start from a known state: 0 % at the horizon, then the ramp a tick apart.
    let steps = FLAGS
        .ramp(Flags::FOOBAR_PERCENT, RAMP.map(Percent::whole))
        .await?;
    let from = *steps.first().unwrap_or(&Utc::now());
    let until = *steps.last().unwrap_or(&Utc::now()) + chrono::Duration::seconds(1);
    println!(
        "store: {}  tick: {}  workers: {WORKERS} ({})",
        FLAGS.status().store,
        FLAGS.tick(),
        if processes {
            "OS processes"
        } else {
            "tasks in this process"
        }
    );
    for (at, pct) in steps.iter().zip(RAMP) {
        println!("  scheduled {pct:>3} % at {}", at.format("%H:%M:%S%.3f"));
    }

    let seen: Vec<Seen> = if processes {
        let exe = std::env::current_exe()?;
        let children: Vec<_> = (0..WORKERS)
            .map(|w| {
                tokio::process::Command::new(&exe)
                    .args([
                        "--worker",
                        &w.to_string(),
                        &from.timestamp_millis().to_string(),
                        &until.timestamp_millis().to_string(),
                    ])
                    .output()
            })
            .collect();
        let mut seen = Vec::new();
        for child in children {
            let out = child.await?;
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                seen.push(serde_json::from_str(line)?);
            }
        }
        seen
    } else {
        let tasks: Vec<_> = (0..WORKERS)
            .map(|w| tokio::task::spawn_blocking(move || serve(w, from, until)))
            .collect();
        let mut seen = Vec::new();
        for task in tasks {
            seen.extend(task.await?);
        }
        seen
    };
    report(&steps, &seen);
    Ok(())
}

/// A worker in its own process: start the registry, serve, print what it saw.
async fn worker_process(
    worker: usize,
    from: i64,
    until: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    FLAGS.start().await?;
    let from = DateTime::from_timestamp_millis(from).ok_or("bad instant")?;
    let until = DateTime::from_timestamp_millis(until).ok_or("bad instant")?;
    let seen = tokio::task::spawn_blocking(move || serve(worker, from, until)).await?;
    for s in seen {
        println!("{}", serde_json::to_string(&s)?);
    }
    Ok(())
}

/// Serves a simulated request every 100 µs until `until`: the hot path reads
/// the flag and picks a path for the request's user. Requests before `from`
/// (the ramp's first step) are not counted: a store kept from an earlier run
/// still serves that run's last value until then.
fn serve(worker: usize, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Seen> {
    let mut seen: BTreeMap<u32, Seen> = BTreeMap::new();
    let mut request = 0u64;
    loop {
        let share = FLAGS.foobar_percent();
        let now = Utc::now();
        if now >= until {
            break;
        }
        if now < from {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        let entry = seen.entry(share.thousandths()).or_insert_with(|| Seen {
            worker,
            percent: share.as_f64(),
            first_seen: Some(now),
            ..Seen::default()
        });
        request += 1;
        let user = format!("user-{worker}-{request}");
        entry.requests += 1;
        if share.includes(&user) {
            entry.foobar += 1;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    seen.into_values().collect()
}

fn report(steps: &[DateTime<Utc>], seen: &[Seen]) {
    println!();
    println!("value | activates at | worker: first seen after it (ms), share on foobar path");
    for (at, pct) in steps.iter().zip(RAMP) {
        let mut line = format!("{pct:>3} % | {} |", at.format("%H:%M:%S%.3f"));
        for s in seen.iter().filter(|s| s.percent == f64::from(pct)) {
            let late = s
                .first_seen
                .map(|t| (t - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
                .unwrap_or(f64::NAN);
            let share = 100.0 * s.foobar as f64 / s.requests.max(1) as f64;
            let when = if late < 0.0 {
                "default".to_owned()
            } else {
                format!("{late:+.3} ms")
            };
            line += &format!(" w{}: {when}, {share:5.1} % |", s.worker);
        }
        println!("{line}");
    }
}
