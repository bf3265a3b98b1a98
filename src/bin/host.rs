//! A program that starts a registry the ways a host application may, then
//! leaves it alone: for the tests of promise 9 (`tests/host.rs`).
//!
//! `host <how> <expected value>`, on `LOCKSTEP_URL`, where `<how>` is
//! `dropped` (`Runtime::new()?.block_on(HOST.start())`, then the runtime is
//! dropped), `current-thread` (a `current_thread` runtime that is never
//! polled again) or `blocking` (`start_blocking()`, no runtime at all). Says
//! `ready`, then watches the hot path until the value appears and says
//! `seen after <n> fetches`. Ends then, or when its standard input closes
//! (its test ended it, or ended): never on a clock of its own.

use std::time::Duration;

use lockstep::lockstep;

/// The registry the test writes to.
#[lockstep(tick = "1s", store = "redis", namespace = "host")]
pub struct Host {
    /// The value the test sets.
    pub value: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    lockstep_suite::probe::exit_when_stdin_closes();
    let args: Vec<String> = std::env::args().collect();
    let how = args.get(1).map(String::as_str).unwrap_or("dropped");
    let expected: u64 = args.get(2).map_or(Ok(1), |a| a.parse())?;
    // Kept alive, and never polled again, in the `current-thread` case.
    let mut _idle = None;
    match how {
        "dropped" => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(HOST.start())?;
            drop(runtime);
        }
        "current-thread" => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(HOST.start())?;
            _idle = Some(runtime);
        }
        "blocking" => HOST.start_blocking()?,
        other => return Err(format!("unknown mode {other}").into()),
    }
    println!("ready");
    while HOST.value() != expected {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("seen after {} fetches", HOST.status().fetches);
    Ok(())
}
