//! `lockstep console` in a real browser: a real redis-server, two registry
//! processes (`src/bin/probe.rs`), the console (the real CLI binary) and a
//! headless chromium driven through chromedriver (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them).
//!
//! Set `LOCKSTEP_CONSOLE_SCREENSHOT=docs/console.png` to write the
//! screenshot of the docs.

use std::io::{Read, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use chrono::Utc;
use fantoccini::{Client, ClientBuilder, Locator};
use lockstep::store::{RedisStore, Store, Write};
use lockstep_suite::browser::{Response, form_encode, post, session};
use lockstep_suite::{
    Chromedriver, Console, PATIENCE, Probe, RedisServer, assert_all_switched_within_5_ms, http,
    wait_for,
};

/// One test at a time: the first judges how two processes switched, which
/// a browser of another test competing for the two cores would disturb.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn probe(url: &str, args: &[&str]) -> Probe {
    Probe::spawn(env!("CARGO_BIN_EXE_probe"), url, args)
}

fn tick() -> lockstep::Tick {
    lockstep::Tick::new(Duration::from_secs(1)).unwrap()
}

/// Commits `key = value` to the probes' registry at the horizon, by `by`,
/// and waits until it is active; returns its instant (ms).
async fn write_now(store: &RedisStore, key: &str, value: serde_json::Value, by: &str) -> i64 {
    let write = Write::builder("fleet", tick())
        .by(by)
        .set(key, value)
        .build()
        .unwrap();
    let at = store.commit(&write).await.unwrap().instants[0];
    while Utc::now().timestamp_millis() <= at + 50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    at
}

/// The registry's revision: every write advances it.
async fn revision(store: &RedisStore) -> u64 {
    store
        .fetch("fleet", &["generation"])
        .await
        .unwrap()
        .revision
}

async fn browser(driver: &Chromedriver) -> Client {
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(driver.capabilities())
        .connect(&driver.url())
        .await
        .expect("a chromium session")
}

/// The text of the first element `css` finds, waiting until `ok` holds
/// for it (the page refreshes itself; it is never reloaded here).
async fn wait_text(client: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
            && ok(&text)
        {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "`{css}` did not show what was expected within {} s; the page:\n{}",
            PATIENCE.as_secs(),
            client.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The store clock the page's live part was drawn at (`data-now`). The
/// page replaces its live part as it refreshes itself, so an element found
/// may be gone by the time it is asked: it is found again.
async fn drawn(client: &Client) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let found = match client.find(Locator::Css("#live-body")).await {
            Ok(live) => live.attr("data-now").await,
            Err(e) => Err(e),
        };
        match found {
            Ok(Some(now)) => return now,
            other => assert!(
                std::time::Instant::now() < deadline,
                "no `#live-body` with a `data-now` for {} s: {other:?}",
                PATIENCE.as_secs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reads_sets_through_the_form_and_shows_both_processes_switch() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    let url = server.url();
    let mut probes = [probe(&url, &["42"]), probe(&url, &["42"])];
    for probe in &mut probes {
        assert_eq!(probe.line(), "ready");
    }
    let store = RedisStore::open(&url).unwrap();
    write_now(&store, "generation", serde_json::json!(7), "seed").await;
    let console = Console::start(&url, &[]);
    let token = console.token.clone().unwrap();
    let driver = Chromedriver::start();
    let client = browser(&driver).await;
    client
        .goto(&format!("{}/", console.origin()))
        .await
        .unwrap();

    // Reads a value.
    let value = wait_text(
        &client,
        r#"tr[data-field="fleet.generation"] td.value"#,
        |t| t == "7",
    )
    .await;
    assert_eq!(value, "7");

    // Unlocks writes with the token, then sets through the form.
    let unlock = client
        .find(Locator::Css("#unlock input[name=token]"))
        .await
        .unwrap();
    unlock.send_keys(&token).await.unwrap();
    client
        .find(Locator::Css("#unlock button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "#unlocked", |_| true).await;
    let form = client.find(Locator::Css("#form-set")).await.unwrap();
    form.find(Locator::Css("select[name=field]"))
        .await
        .unwrap()
        .select_by_value("fleet.generation")
        .await
        .unwrap();
    form.find(Locator::Css("input[name=value]"))
        .await
        .unwrap()
        .send_keys("42")
        .await
        .unwrap();
    form.find(Locator::Css("input[name=at]"))
        .await
        .unwrap()
        .send_keys("+10s")
        .await
        .unwrap();
    form.find(Locator::Css("button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The preview: the horizon and the exact instant, and nothing written yet.
    let horizon = wait_text(&client, "#horizon", |_| true).await;
    let shown = wait_text(&client, "#preview td.instant", |_| true).await;
    let at = chrono::DateTime::parse_from_rfc3339(&shown)
        .unwrap()
        .timestamp_millis();
    let horizon = chrono::DateTime::parse_from_rfc3339(&horizon)
        .unwrap()
        .timestamp_millis();
    assert!(at >= horizon, "{shown} is before the horizon");
    assert_eq!(at % 1000, 0, "{shown} is not on a tick boundary");
    let before = revision(&store).await;
    let entries = store.fetch("fleet", &["generation"]).await.unwrap();
    assert!(
        entries.fields["generation"].iter().all(|e| e.at != at),
        "the preview wrote"
    );
    client
        .find(Locator::Css("#confirm button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let done = wait_text(&client, "#done", |_| true).await;
    assert!(done.contains(&shown), "{done} (expected {shown})");
    assert_eq!(revision(&store).await, before + 1);
    let entry = store.fetch("fleet", &["generation"]).await.unwrap().fields["generation"]
        .iter()
        .find(|e| e.at == at)
        .cloned()
        .expect("the entry at the previewed instant");
    assert_eq!(entry.value.as_deref(), Ok("42"));
    assert!(entry.origin.unwrap().by.starts_with("console "));

    // The page (refreshing itself, never reloaded) shows the pending change
    // and that both processes hold it before the instant.
    client
        .find(Locator::Css("#back"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let pending = format!(r#"li.pending[data-field="fleet.generation"][data-at="{at}"] .held"#);
    let held = wait_text(&client, &pending, |t| t == "2 of 2 processes hold it").await;
    assert_eq!(held, "2 of 2 processes hold it");
    assert!(
        Utc::now().timestamp_millis() < at,
        "the holders showed only after the instant"
    );
    if let Ok(path) = std::env::var("LOCKSTEP_CONSOLE_SCREENSHOT") {
        let png = client.screenshot().await.unwrap();
        std::fs::write(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path),
            png,
        )
        .unwrap();
    }

    // After the instant the page shows the new value, and both processes
    // switched together, none before the instant.
    let now = wait_text(
        &client,
        r#"tr[data-field="fleet.generation"] td.value"#,
        |t| t == "42",
    )
    .await;
    assert_eq!(now, "42");
    // By the store clock the page was drawn at, the instant had come.
    let drawn_at: i64 = drawn(&client).await.parse().unwrap();
    assert!(drawn_at >= at, "42 shown at {drawn_at}, before {at}");
    let at_ns = at * 1_000_000;
    let mut switched = Vec::new();
    for probe in &mut probes {
        switched.push(probe.switched(at_ns, "console").1);
    }
    assert_all_switched_within_5_ms(&switched, 0.0);
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_the_token_or_from_another_origin_is_refused_and_writes_nothing() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    // A store with a password: no page, header or line printed shows it.
    let _: String = server.cmd(&["CONFIG", "SET", "requirepass", "s3cret-pw"]);
    let url = server.url().replacen("redis://", "redis://:s3cret-pw@", 1);
    let mut registry = probe(&url, &["--serve"]);
    assert_eq!(registry.line(), "ready");
    let store = RedisStore::open(&url).unwrap();
    let console = Console::start(&url, &[]);
    let origin = console.origin();
    let s = session(&console);
    let set = |csrf: &str| {
        format!(
            "csrf={}&field=fleet.generation&value=42&at=",
            form_encode(csrf)
        )
    };
    let before = revision(&store).await;

    // No token given in this session: refused, for the preview and the write.
    for path in ["/preview/set", "/write/set"] {
        let r = post(&console, path, &s.cookie, Some(&origin), &set(&s.csrf));
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("has not given the console"), "{}", r.body);
    }
    // A wrong token does not unlock.
    let wrong = format!("csrf={}&token=not-the-token-at-all", s.csrf);
    assert_eq!(
        post(&console, "/login", &s.cookie, Some(&origin), &wrong).status,
        403
    );
    let r = post(
        &console,
        "/write/set",
        &s.cookie,
        Some(&origin),
        &set(&s.csrf),
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // The token, from another origin: refused.
    let token = console.token.clone().unwrap();
    let login = format!("csrf={}&token={}", s.csrf, form_encode(&token));
    let r = post(
        &console,
        "/login",
        &s.cookie,
        Some("http://evil.example"),
        &login,
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post(&console, "/login", &s.cookie, Some(&origin), &login);
    assert_eq!(r.status, 303, "{}", r.body);

    // Unlocked, a write from another origin, without an origin, with another
    // session's CSRF token or without the cookie is refused.
    let other = session(&console);
    for (origin, cookie, csrf, why) in [
        (
            Some("http://evil.example"),
            &s.cookie,
            &s.csrf,
            "Origin (http://evil.example)",
        ),
        (None, &s.cookie, &s.csrf, "Origin (none)"),
        (Some(origin.as_str()), &s.cookie, &other.csrf, "CSRF token"),
        (
            Some(origin.as_str()),
            &String::new(),
            &s.csrf,
            "no console session",
        ),
    ] {
        let r = post(&console, "/write/set", cookie, origin, &set(csrf));
        assert_eq!(r.status, 403, "{why}: {}", r.body);
        assert!(r.body.contains(why), "{why}: {}", r.body);
        assert!(r.body.contains("nothing was written"), "{}", r.body);
    }
    // A page of another site reaching the console by DNS rebinding.
    let r = http(
        console.addr,
        "POST",
        "/write/set",
        &[
            ("Host", "evil.example"),
            ("Origin", "http://evil.example"),
            ("Cookie", &s.cookie),
        ],
        &set(&s.csrf),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // A value the schema refuses, as `lockstep set` refuses it.
    let bad = format!("csrf={}&field=fleet.generation&value=-5&at=", s.csrf);
    let r = post(&console, "/write/set", &s.cookie, Some(&origin), &bad);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("fleet.generation (u64)"), "{}", r.body);
    assert!(r.body.contains("nothing was written"), "{}", r.body);
    // A body over 64 KiB.
    let huge = format!(
        "csrf={}&field=fleet.b&value={}",
        s.csrf,
        "x".repeat(70 * 1024)
    );
    let r = post(&console, "/write/set", &s.cookie, Some(&origin), &huge);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(revision(&store).await, before, "a refused write wrote");

    // And the same session, origin and token write.
    let r = post(
        &console,
        "/write/set",
        &s.cookie,
        Some(&origin),
        &set(&s.csrf),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(revision(&store).await, before + 1);
    // No page, header or line printed shows the password.
    let page = http(console.addr, "GET", "/", &[("Cookie", &s.cookie)], "");
    let headers = format!("{:?}", page.headers);
    for text in [&r.body, &page.body, &headers, &console.banner] {
        assert!(!text.contains("s3cret-pw"), "{text}");
    }
    assert!(
        page.body.contains(r#"id="form-set""#),
        "unlocked: {}",
        page.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_serves_no_write_route() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    let url = server.url();
    let mut registry = probe(&url, &["--serve"]);
    assert_eq!(registry.line(), "ready");
    let store = RedisStore::open(&url).unwrap();
    let console = Console::start(&url, &["--read-only"]);
    assert!(console.banner.contains("(read-only)"), "{}", console.banner);
    let origin = console.origin();
    let page = http(console.addr, "GET", "/", &[], "");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(r#"data-field="fleet.generation""#),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<form"), "{}", page.body);
    assert!(page.header("set-cookie").is_none());
    let before = revision(&store).await;
    let body = "field=fleet.generation&value=42&values=1,2&at=%2B5s&token=x&csrf=x";
    for path in [
        "/login",
        "/preview/set",
        "/preview/ramp",
        "/preview/cancel",
        "/write/set",
        "/write/ramp",
        "/write/cancel",
        "/",
        "/live",
    ] {
        let r = post(&console, path, "", Some(&origin), body);
        assert!(
            [404, 405].contains(&r.status),
            "{path}: {} {}",
            r.status,
            r.body
        );
    }
    assert_eq!(revision(&store).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_value_and_writer_render_as_text() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    let url = server.url();
    let mut registry = probe(&url, &["--serve"]);
    assert_eq!(registry.line(), "ready");
    let store = RedisStore::open(&url).unwrap();
    let hostile = "<script>alert(1)</script>";
    write_now(
        &store,
        "b",
        serde_json::json!(hostile),
        "<img src=x onerror=alert(2)>",
    )
    .await;
    let console = Console::start(&url, &["--read-only"]);
    let driver = Chromedriver::start();
    let client = browser(&driver).await;
    client
        .goto(&format!("{}/", console.origin()))
        .await
        .unwrap();
    let shown = wait_text(&client, r#"tr[data-field="fleet.b"] td.value"#, |t| {
        !t.is_empty()
    })
    .await;
    assert_eq!(shown, format!("\"{hostile}\""));
    let by = wait_text(
        &client,
        r#"table.history[data-field="fleet.b"] tr:nth-child(2) td:nth-child(3)"#,
        |t| !t.is_empty(),
    )
    .await;
    assert_eq!(by, "<img src=x onerror=alert(2)>");
    // Once the page has refreshed itself (drawn at a later store clock),
    // nothing ran either.
    let first = drawn(&client).await;
    let deadline = std::time::Instant::now() + PATIENCE;
    while drawn(&client).await == first {
        assert!(
            std::time::Instant::now() < deadline,
            "the page did not refresh itself within {} s (drawn at {first})",
            PATIENCE.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        wait_text(&client, r#"tr[data-field="fleet.b"] td.value"#, |t| !t
            .is_empty())
        .await,
        format!("\"{hostile}\"")
    );
    assert!(client.get_alert_text().await.is_err(), "an alert is open");
    let counts = client
        .execute(
            "return [document.scripts.length, document.images.length, \
             document.querySelectorAll('[data-field=\"fleet.b\"] script').length]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        counts,
        serde_json::json!([1, 0, 0]),
        "only the page's own script"
    );
    client.close().await.unwrap();
}

/// The form fields of the preview's confirmation, as a form body.
fn confirmation(preview: &Response) -> String {
    assert_eq!(preview.status, 200, "{}", preview.body);
    let form = preview
        .body
        .split(r#"id="confirm""#)
        .nth(1)
        .expect("a confirm form");
    let form = form.split("</form>").next().unwrap();
    form.split("<input ")
        .skip(1)
        .map(|input| {
            let attr = |name: &str| {
                input
                    .split(&format!(r#"{name}=""#))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap()
                    .replace("&quot;", "\"")
                    .replace("&amp;", "&")
            };
            format!("{}={}", attr("name"), form_encode(&attr("value")))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The instants a page lists, in its order (`td class="mono instant"`).
fn instants(page: &str) -> Vec<i64> {
    page.split(r#"class="mono instant">"#)
        .skip(1)
        .map(|r| {
            let text = r.split('<').next().unwrap();
            chrono::DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_millis()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_and_a_cancel_through_the_forms_write_what_the_preview_showed() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    let url = server.url();
    let mut registry = probe(&url, &["--serve"]);
    assert_eq!(registry.line(), "ready");
    let store = RedisStore::open(&url).unwrap();
    let console = Console::start(&url, &[]);
    let origin = console.origin();
    let s = session(&console);
    let token = console.token.clone().unwrap();
    let login = format!("csrf={}&token={}", s.csrf, form_encode(&token));
    let r = post(&console, "/login", &s.cookie, Some(&origin), &login);
    assert_eq!(r.status, 303, "{}", r.body);

    // A ramp: the preview lists one instant a step, `every` apart, and
    // writes nothing; the confirmation writes exactly those.
    let before = revision(&store).await;
    let ramp = format!(
        "csrf={}&field=fleet.a&values=10,50,100&every=2s&from=%2B30s",
        s.csrf
    );
    let preview = post(&console, "/preview/ramp", &s.cookie, Some(&origin), &ramp);
    let shown = instants(&preview.body);
    assert_eq!(shown.len(), 3, "{}", preview.body);
    assert_eq!([shown[1] - shown[0], shown[2] - shown[1]], [2_000, 2_000]);
    assert_eq!(revision(&store).await, before, "the preview wrote");
    let body = confirmation(&preview);
    let done = post(&console, "/write/ramp", &s.cookie, Some(&origin), &body);
    assert_eq!(done.status, 200, "{}", done.body);
    let fetched = store.fetch("fleet", &["a"]).await.unwrap();
    let written: Vec<(i64, String)> = fetched.fields["a"]
        .iter()
        .map(|e| (e.at, e.value.clone().unwrap()))
        .collect();
    let expected: Vec<(i64, String)> = shown
        .iter()
        .copied()
        .zip(["10", "50", "100"].map(str::to_owned))
        .collect();
    assert_eq!(written, expected);

    // A ramp the tick refuses, as `lockstep ramp` refuses it.
    let odd = format!("csrf={}&field=fleet.a&values=1,2&every=1500ms", s.csrf);
    let r = post(&console, "/preview/ramp", &s.cookie, Some(&origin), &odd);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("not a whole number of ticks"), "{}", r.body);

    // A cancel of the middle step: previewed with its value, then removed.
    let middle = lockstep::store::to_datetime(shown[1]).to_rfc3339();
    let cancel = format!("csrf={}&field=fleet.a&at={}", s.csrf, form_encode(&middle));
    let preview = post(
        &console,
        "/preview/cancel",
        &s.cookie,
        Some(&origin),
        &cancel,
    );
    assert_eq!(instants(&preview.body), [shown[1]]);
    assert!(
        preview.body.contains(r#"<td class="value">50</td>"#),
        "{}",
        preview.body
    );
    assert_eq!(revision(&store).await, before + 1, "the preview cancelled");
    let body = confirmation(&preview);
    let done = post(&console, "/write/cancel", &s.cookie, Some(&origin), &body);
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("cancelled fleet.a = 50"),
        "{}",
        done.body
    );
    let left: Vec<i64> = store.fetch("fleet", &["a"]).await.unwrap().fields["a"]
        .iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(left, [shown[0], shown[2]]);
    // A cancel of an instant with no entry says which instants have one.
    let r = post(
        &console,
        "/preview/cancel",
        &s.cookie,
        Some(&origin),
        &cancel,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("its pending entries are at"), "{}", r.body);
    assert!(r.body.contains("nothing was removed"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_cannot_be_read_spoils_only_its_own_part_of_the_page() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = RedisServer::start();
    let url = server.url();
    let mut registry = probe(&url, &["--serve"]);
    assert_eq!(registry.line(), "ready");
    // Another registry's schema, garbled in the store.
    let _: () = server.cmd(&["HSET", "lockstep:{broken}:meta", "schema", "{not json"]);
    let console = Console::start(&url, &["--read-only"]);
    for path in ["/", "/live"] {
        let page = http(console.addr, "GET", path, &[], "");
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(
            page.body.contains(r#"data-field="fleet.generation""#),
            "{path}: the readable registry is shown: {}",
            page.body
        );
        assert!(
            page.body.contains(r#"data-namespace="broken""#)
                && page.body.contains("Cannot read this registry: ")
                && page.body.contains("schema"),
            "{path}: the unreadable one says why: {}",
            page.body
        );
    }
}

/// Lets this test process open `files` files (sockets included), as far as
/// its hard limit allows.
fn allow_open_files(files: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_cur.max(files.min(limit.rlim_max));
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= files,
        "this test opens {files} connections, but may have only {} files open (hard limit)",
        limit.rlim_cur
    );
}

/// A connection that sends half a request head and then nothing more.
fn half_a_request(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect to the console");
    let _ = stream.write_all(format!("GET /live HTTP/1.1\r\nHost: {addr}\r\n").as_bytes());
    stream
}

#[test]
fn slow_clients_cannot_keep_the_page_from_answering() {
    let _alone = ONE_AT_A_TIME.blocking_lock();
    allow_open_files(2_000);
    let server = RedisServer::start();
    // Allowed 1 024 open files, as a service commonly is.
    let console = Console::start_with_open_files(&server.url(), &["--read-only"], 1_024);
    // Its files once it has served a page (the store's connection open).
    assert_eq!(http(console.addr, "GET", "/live", &[], "").status, 200);
    let before = console.open_files();
    // More half-open connections than it may have files open.
    let slow: Vec<TcpStream> = (0..1_100).map(|_| half_a_request(console.addr)).collect();
    let live = http(console.addr, "GET", "/live", &[], "");
    assert_eq!(live.status, 200, "{}", live.body);
    let page = http(console.addr, "GET", "/", &[], "");
    assert_eq!(page.status, 200, "{}", page.body);
    // And each slow client is let go: it reads the end of its connection.
    for (n, mut stream) in slow.into_iter().enumerate() {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!(
                "slow connection {n} was still open after {} s: {e}",
                PATIENCE.as_secs()
            ),
        }
    }
    wait_for(
        "the console to hold no more files than before the slow clients came",
        Duration::from_millis(100),
        || match console.open_files() {
            n if n <= before => Ok(()),
            n => Err(format!("{n} open, {before} before")),
        },
    );
}

#[test]
fn wrong_tokens_cost_the_client_that_gives_them_time() {
    let _alone = ONE_AT_A_TIME.blocking_lock();
    let server = RedisServer::start();
    let console = Console::start(&server.url(), &[]);
    let token = console.token.clone().unwrap();
    let s = session(&console);
    let origin = console.origin();
    let login = |token: &str| {
        let body = format!("csrf={}&token={}", s.csrf, form_encode(token));
        post(&console, "/login", &s.cookie, Some(&origin), &body)
    };
    // Wrong tokens, waiting each time as told, until the console makes
    // this client wait 8 s or more and the right token, sent within that
    // wait, is refused too.
    let mut checked = 0;
    let wait = loop {
        let sent = std::time::Instant::now();
        let answer = login("not-the-console-token");
        if answer.status == 403 {
            checked += 1;
            assert!(
                checked < 100,
                "{checked} wrong tokens checked, none refused"
            );
            continue;
        }
        assert_eq!(answer.status, 429, "{}", answer.body);
        assert!(checked >= 5, "refused after {checked} wrong tokens");
        let wait: u64 = answer
            .body
            .split("try again in ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no wait in {}", answer.body));
        if wait >= 8 {
            let right_sent = std::time::Instant::now();
            let right = login(&token);
            // Judged only when it surely went within the wait; otherwise
            // (a stalled machine) the next, longer wait is tried.
            if right_sent.duration_since(sent) < Duration::from_secs(wait - 1) {
                assert_eq!(right.status, 429, "the right token: {}", right.body);
                break wait;
            }
        }
        std::thread::sleep(Duration::from_secs(wait));
    };
    // After it, the right token unlocks the session.
    std::thread::sleep(Duration::from_secs(wait));
    let unlocked = login(&token);
    assert_eq!(unlocked.status, 303, "{}", unlocked.body);
}
