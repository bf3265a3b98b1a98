//! No secret in any output: a password in the store URL never shows in logs,
//! errors (Display and Debug), status or the store's Debug, whatever fails.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockstep::lockstep;
use lockstep::store::{RedisStore, Store};
use lockstep_suite::RedisServer;

const SECRET: &str = "s3cret-Pa55";

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

#[lockstep(tick = "1s", backend = "redis")]
struct Guarded {
    level: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_never_shows_in_logs_errors_or_status() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let mut server = RedisServer::start();
    let _: () = server.cmd(&["CONFIG", "SET", "requirepass", SECRET]);
    let good = format!("redis://:{SECRET}@127.0.0.1:{}", server.port());
    let wrong = format!("redis://default:{SECRET}-wrong@127.0.0.1:{}", server.port());
    let mut shown = Vec::new();

    // A registry that works, then loses its store and gets it back.
    GUARDED.builder().url(&good).start().await.unwrap();
    GUARDED.set(Guarded::LEVEL, 3).await.unwrap();
    shown.push(format!("{:?}", GUARDED.status()));
    server.kill();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let failed = GUARDED.status();
    assert!(failed.consecutive_failures > 0, "{failed:?}");
    shown.push(format!("{failed:?}"));
    if let Err(e) = GUARDED.set(Guarded::LEVEL, 4).await {
        shown.push(format!("{e} {e:?}"));
    }
    server.revive();
    let _: () = server.cmd(&["CONFIG", "SET", "requirepass", SECRET]);

    // The wrong password, a bad URL, a bad scheme: errors, all redacted.
    let store = RedisStore::open(&wrong).unwrap();
    shown.push(format!("{store:?} {}", store.describe()));
    let e = store.fetch("guarded", &["level"]).await.unwrap_err();
    shown.push(format!("{e} {e:?}"));
    for url in [
        format!("redis://:{SECRET}@127.0.0.1:notaport"),
        format!("mongodb://:{SECRET}@127.0.0.1"),
    ] {
        let e = GUARDED.builder().url(url).start().await.unwrap_err();
        shown.push(format!("{e} {e:?}"));
    }

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("fetch failed"),
        "the failures were logged:\n{logs}"
    );
    for text in shown.iter().chain([&logs]) {
        assert!(!text.contains(SECRET), "the password shows in: {text}");
    }
    println!(
        "{} bytes of logs and {} messages checked",
        logs.len(),
        shown.len()
    );
}
