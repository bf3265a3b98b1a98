//! No secret in any output: a password in the store URL never shows in logs,
//! errors (Display and Debug), status or the store's Debug, whatever fails.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockstep::lockstep;
use lockstep::store::{RedisStore, Store};
use lockstep_suite::{RedisServer, wait_for_async};

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

#[lockstep(tick = "1s", store = "redis")]
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
    let failed = wait_for_async(
        "a fetch to fail with the server killed",
        Duration::from_millis(20),
        || match GUARDED.status() {
            status if status.consecutive_failures > 0 => Ok(status),
            status => Err(Box::new(status)),
        },
    )
    .await;
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

/// What one run of the `lockstep` binary printed, stdout and stderr, and
/// its exit status.
fn cli(env_url: Option<&str>, args: &[&str]) -> (i32, String) {
    let mut cmd = std::process::Command::new(lockstep_suite::cli_binary());
    cmd.args(args).env_remove("LOCKSTEP_URL");
    if let Some(url) = env_url {
        cmd.env("LOCKSTEP_URL", url);
    }
    let out = cmd.output().expect("run lockstep");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), printed)
}

#[test]
fn the_cli_never_prints_a_password_and_always_names_the_store() {
    let server = RedisServer::start();
    let port = server.port();
    let _: () = server.cmd(&["CONFIG", "SET", "requirepass", "Sl/ashSekr3t"]);
    let slash = format!("redis://u:Sl/ashSekr3t@127.0.0.1:{port}");
    let file = std::env::temp_dir().join(format!("lockstep-secrets-{}", std::process::id()));
    std::fs::write(&file, format!("{slash}\n")).unwrap();
    let file = file.to_str().unwrap().to_owned();
    let encoded = format!("redis://:Sl%2FashSekr3t@127.0.0.1:{port}");
    let wrong = format!("redis://default:Sl%2Fash-wrong@127.0.0.1:{port}");
    let shown_slash = format!("redis://u:***@127.0.0.1:{port}");

    let runs: Vec<(i32, String, Vec<String>)> = vec![
        (
            cli(Some(&slash), &["ls"]),
            vec![shown_slash.clone(), "percent-encode it (`/` as %2F".into()],
        ),
        (
            cli(None, &["--url", &slash, "ls"]),
            vec![shown_slash.clone()],
        ),
        (
            cli(None, &["--url-file", &file, "ls"]),
            vec![shown_slash.clone()],
        ),
        (
            cli(Some("postgres://u:Sl/ash@dbhost/orders"), &["ls"]),
            vec!["postgres://u:***@dbhost/orders".into()],
        ),
        (
            cli(Some("redis:/u:pw@host"), &["get", "shop.limit"]),
            vec![
                "redis:/u:***@host".into(),
                "`redis:` must be followed by `//`".into(),
            ],
        ),
        (
            cli(Some(&slash), &["get", &slash]),
            vec!["expected NAMESPACE.FIELD".into()],
        ),
        (cli(Some(&encoded), &["ls", "--json"]), vec![]),
        (
            cli(Some(&wrong), &["ls"]),
            vec![format!("redis://default:***@127.0.0.1:{port}")],
        ),
        (
            cli(Some("postgres://postgres@127.0.0.1:1/x"), &["ls"]),
            vec!["postgres://postgres@127.0.0.1:1/x".into()],
        ),
    ]
    .into_iter()
    .map(|((code, printed), names)| (code, printed, names))
    .collect();
    let codes: Vec<i32> = runs.iter().map(|r| r.0).collect();
    assert_eq!(codes, [1, 1, 1, 1, 1, 2, 0, 1, 1], "{runs:#?}");
    for (_, printed, names) in &runs {
        for secret in ["Sl/ash", "ashSekr3t", "Sl%2Fash", ":pw@", "pw@host"] {
            assert!(!printed.contains(secret), "`{secret}` shows in: {printed}");
        }
        for name in names {
            assert!(
                printed.contains(name.as_str()),
                "`{name}` not in: {printed}"
            );
        }
    }
    let _ = std::fs::remove_file(&file);
}

/// A PostgreSQL URL's lone user-info is the role, not a secret: the store's
/// errors name it (`role "***" does not exist` helped no one).
#[test]
fn a_postgres_role_stays_readable_in_the_stores_errors() {
    let url = "postgres://nosuchrole@localhost/postgres?host=/var/run/postgresql";
    let (code, printed) = cli(Some(url), &["ls"]);
    assert_eq!(code, 1, "{printed}");
    for name in [
        "postgres://nosuchrole@localhost/postgres",
        r#"role "nosuchrole" does not exist"#,
    ] {
        assert!(printed.contains(name), "`{name}` not in: {printed}");
    }
}
