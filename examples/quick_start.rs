//! The README's quick start, verbatim: `cargo run -p lockstep-examples --example quick_start`.

use lockstep::lockstep;

/// The values this service reads on every request.
#[lockstep(tick = "1s", store = "memory")]
pub struct Flags {
    /// Share of traffic that sees foobar, in percent.
    #[lockstep(default = 0)]
    pub foobar_percent: u8,
    /// The site's theme.
    #[lockstep(default = "classic")]
    pub theme: String,
    /// Whether the site shows a maintenance banner.
    pub maintenance: bool, // no default: Default::default()
}

#[tokio::main]
async fn main() -> Result<(), lockstep::Error> {
    FLAGS.start().await?; // LOCKSTEP_URL, or the in-process memory store

    // Anywhere, on the hot path: as cheap as reading an atomic.
    let pct: u8 = FLAGS.foobar_percent();
    println!("foobar_percent = {pct}, theme = {}", *FLAGS.theme());

    // A write takes effect at the horizon, on every process at once.
    let at = FLAGS.set(Flags::FOOBAR_PERCENT, 10).await?;
    println!("foobar_percent = 10 from {at}");
    tokio::time::sleep((at - chrono::Utc::now()).to_std().unwrap_or_default()).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    println!("foobar_percent = {}", FLAGS.foobar_percent());
    Ok(())
}
