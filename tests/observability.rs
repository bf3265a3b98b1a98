//! What lockstep logs through `tracing`: the spans of fetches and commits
//! (with the registry, the store and the outcome) and the events an
//! operator needs: connected, recovered, a late flip, a clock off the
//! store's. One subscriber for the binary, capturing everything; each test
//! has a registry of its own and reads only its lines.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lockstep::lockstep;
use lockstep::store::MemoryStore;
use lockstep_suite::RedisServer;
use lockstep_suite::manual_clock;
use tracing_subscriber::fmt::format::FmtSpan;

/// Everything every `tracing` event of this process writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The subscriber (installed once): every level, spans logged when they
/// close, with the fields recorded by then.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_span_events(FmtSpan::CLOSE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    })
}

/// The captured lines that name the registry `namespace`.
fn lines_of(namespace: &str) -> Vec<String> {
    let text = String::from_utf8(logs().0.lock().unwrap().clone()).unwrap();
    let tags = [
        format!("namespace={namespace} "),
        format!("namespace=\"{namespace}\""),
    ];
    text.lines()
        .filter(|l| tags.iter().any(|tag| l.contains(tag)))
        .map(str::to_owned)
        .collect()
}

fn find<'a>(lines: &'a [String], all: &[&str]) -> Option<&'a String> {
    lines
        .iter()
        .find(|l| all.iter().all(|part| l.contains(part)))
}

#[lockstep(tick = "1h", store = "redis")]
struct Outage {
    level: u8,
}

#[tokio::test]
async fn fetches_are_spans_with_their_outcome_and_an_outage_ends_with_recovered() {
    logs();
    let mut server = RedisServer::start();
    let clock = manual_clock();
    OUTAGE
        .builder()
        .url(server.url())
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    let lines = lines_of("outage");
    let connected = find(&lines, &["connected", "first fetch done"]);
    assert!(connected.is_some(), "{lines:#?}");
    let span = find(&lines, &["lockstep.fetch{", "outcome=\"ok\"", "close"]);
    let span = span.unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(span.contains("store=redis://127.0.0.1:"), "{span}");

    server.kill();
    for _ in 0..2 {
        clock.advance(Duration::from_secs(60)).await;
        assert!(OUTAGE.refresh().await.is_err());
    }
    let lines = lines_of("outage");
    assert!(
        find(&lines, &["lockstep.fetch{", "outcome=\"error\"", "error="]).is_some(),
        "{lines:#?}"
    );
    assert!(find(&lines, &["recovered"]).is_none(), "{lines:#?}");

    server.revive();
    clock.advance(Duration::from_secs(60)).await;
    OUTAGE.refresh().await.unwrap();
    let lines = lines_of("outage");
    let recovered = find(&lines, &["recovered", "after 2 failed fetches over 2m"]);
    assert!(recovered.is_some(), "{lines:#?}");
    assert!(find(&lines, &["down_for=2m"]).is_some(), "{lines:#?}");
}

#[lockstep(tick = "1m", store = "memory")]
struct Commits {
    level: u8,
}

#[tokio::test]
async fn commits_and_cancels_are_spans_and_a_late_flip_is_one_warning() {
    logs();
    let clock = manual_clock();
    COMMITS
        .builder()
        .store(MemoryStore::with_clock(&clock))
        .manual_clock(&clock)
        .start()
        .await
        .unwrap();
    let at = COMMITS.set(Commits::LEVEL, 1).await.unwrap();
    COMMITS.cancel(Commits::LEVEL, at).await.unwrap();
    assert!(COMMITS.cancel(Commits::LEVEL, at).await.is_err());
    let lines = lines_of("commits");
    let commit = find(
        &lines,
        &["lockstep.commit{", "steps=1", "outcome=\"ok\"", "close"],
    );
    assert!(commit.is_some(), "{lines:#?}");
    let cancel = find(
        &lines,
        &["lockstep.cancel{", "field=\"level\"", "outcome=\"ok\""],
    );
    assert!(cancel.is_some(), "{lines:#?}");
    let refused = find(&lines, &["lockstep.cancel{", "outcome=\"error\"", "error="]);
    assert!(refused.is_some(), "{lines:#?}");

    // Learned only when already active.
    let at = COMMITS.set(Commits::LEVEL, 2).await.unwrap();
    clock.advance_to(at).await;
    let lines = lines_of("commits");
    let late = find(
        &lines,
        &["WARN", "late flip", "1 change(s)", "fields=[\"level\"]"],
    );
    assert!(late.is_some(), "{lines:#?}");
}

#[lockstep(tick = "1h", store = "memory")]
struct SteppedBack {
    level: u8,
}

#[tokio::test]
async fn a_clock_5_s_behind_the_store_is_a_warning() {
    logs();
    STEPPED_BACK
        .builder()
        .store(MemoryStore::new())
        .clock_skew(chrono::TimeDelta::seconds(-5))
        .start()
        .await
        .unwrap();
    let lines = lines_of("stepped_back");
    let warning = find(&lines, &["WARN", "ms off the store's, beyond 1s"]);
    let warning = warning.unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(
        warning.contains("+4999 ms")
            || warning.contains("+5000 ms")
            || warning.contains("+5001 ms"),
        "{warning}"
    );
    // Once, not at every fetch.
    STEPPED_BACK.refresh().await.unwrap();
    let lines = lines_of("stepped_back");
    let warnings = lines
        .iter()
        .filter(|l| l.contains("off the store's"))
        .count();
    assert_eq!(warnings, 1, "{lines:#?}");
}
