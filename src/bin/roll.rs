//! One build of the `roll` registry, for the rolling deploy's tests
//! (`tests/redis_rolling_deploy.rs`): `roll v1` runs the old struct (`level: u8`,
//! `code: u32`), `roll v2` the new one (`level: u32`, `code: String`, and
//! a new field `extra`), both on `LOCKSTEP_URL`, reporting as registries do
//! by default. Prints `ready`, then answers each line `show` on its
//! standard input with one JSON line: its values and how many stored values
//! it rejected. Lives until its standard input closes: its test ends it, or
//! ends.

use std::io::BufRead;

use lockstep::lockstep;

/// The build before the deploy.
#[lockstep(tick = "2s", store = "redis", namespace = "roll")]
pub struct RollV1 {
    /// The level.
    pub level: u8,
    /// A code.
    pub code: u32,
}

/// The build after it: wider, and with a field more.
#[lockstep(tick = "2s", store = "redis", namespace = "roll")]
pub struct RollV2 {
    /// The level.
    pub level: u32,
    /// A code.
    pub code: String,
    /// What the new build adds.
    pub extra: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let build = std::env::args().nth(1).unwrap_or_default();
    let show: Box<dyn Fn() -> serde_json::Value> = match build.as_str() {
        "v1" => {
            ROLL_V1.start().await?;
            Box::new(|| {
                serde_json::json!({
                    "level": ROLL_V1.level(), "code": ROLL_V1.code(),
                    "rejected": ROLL_V1.status().rejected,
                })
            })
        }
        "v2" => {
            ROLL_V2.start().await?;
            Box::new(|| {
                serde_json::json!({
                    "level": ROLL_V2.level(), "code": &*ROLL_V2.code(),
                    "extra": ROLL_V2.extra(), "rejected": ROLL_V2.status().rejected,
                })
            })
        }
        _ => return Err("usage: roll v1|v2".into()),
    };
    println!("ready");
    // The registry refreshes on lockstep's own threads: this one only
    // answers, and ends the process when its test closes standard input.
    for line in std::io::stdin().lock().lines() {
        if line? == "show" {
            println!("{}", show());
        }
    }
    Ok(())
}
