//! A fleet member for the fleet view's tests (`tests/redis_fleet_view.rs`):
//! starts the `crew` registry (tick 2 s) on `LOCKSTEP_URL`, reporting as
//! registries do by default, says `ready`, and keeps it fresh until killed
//! or its standard input closes (its test ended it, or ended).

use lockstep::lockstep;

/// The registry the fleet view's tests write to.
#[lockstep(tick = "2s", store = "redis", namespace = "crew")]
pub struct Crew {
    /// The value the tests change.
    pub release: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lockstep::Error> {
    lockstep_suite::probe::exit_when_stdin_closes();
    CREW.start().await?;
    println!("ready");
    std::future::pending::<()>().await;
    Ok(())
}
