use proptest::prelude::*;

use super::*;

#[test]
fn passwords_are_hidden_and_names_kept() {
    for (url, shown) in [
        ("redis://u:p4ss@h:1/0", "redis://u:***@h:1/0"),
        ("redis://:p4ss@h", "redis://:***@h"),
        ("redis://token@h", "redis://***@h"),
        ("redis://h:6379", "redis://h:6379"),
        ("memory://", "memory://"),
        ("redis://u:p@ss@h/x?y=@", "redis://u:***@h/x?y=@"),
        ("redis://u:Sl/ashSekr3t@host", "redis://u:***@host"),
        ("redis://u:a?b#c@host/2", "redis://u:***@host/2"),
        ("postgres://u:Sl/ash@host/db", "postgres://u:***@host/db"),
        (
            "postgres://postgres@127.0.0.1/x",
            "postgres://postgres@127.0.0.1/x",
        ),
        ("redis:/u:pw@host", "redis:/u:***@host"),
        ("redis:u:pw@host", "redis:u:***@host"),
        ("redis//u:pw@host", "redis//u:***@host"),
        ("mongodb://:pw@h", "mongodb://:***@h"),
        (
            "redis+unix:///tmp/r.sock?user=app&pass=s3cret&db=1",
            "redis+unix:///tmp/r.sock?user=app&pass=***&db=1",
        ),
        ("sqlite:///tmp/a@b.db", "sqlite:///tmp/a@b.db"),
        ("sqlite:lockstep.db?mode=rwc", "sqlite:lockstep.db?mode=rwc"),
    ] {
        assert_eq!(redact(url), shown, "{url}");
    }
}

#[test]
fn parts_are_found() {
    let url = StoreUrl::parse("postgres://app:s%40cret@db:5432/or%64ers?sslmode=require");
    assert_eq!(url.scheme(), Some("postgres"));
    assert_eq!(url.user(), Some("app"));
    assert_eq!(url.password(), Some("s%40cret"));
    assert_eq!(url.host(), "db:5432");
    assert_eq!(url.path(), "/or%64ers");
    assert_eq!(url.query(), Some("sslmode=require"));
    assert!(!url.token());
    let sqlite = StoreUrl::parse("sqlite:data/lockstep.db");
    assert_eq!(sqlite.host(), "");
    assert_eq!(sqlite.path(), "data/lockstep.db");
    assert_eq!(
        format!("{:?}", StoreUrl::parse("redis://:pw@h")),
        "StoreUrl(\"redis://:***@h\")"
    );
}

#[test]
fn secrets_are_found_and_scrubbed() {
    let url = "postgres://app:s%40cret@db:5432/x?sslmode=require&password=other";
    let found = secrets(url);
    assert!(found.contains(&"s%40cret".to_owned()), "{found:?}");
    assert!(found.contains(&"s@cret".to_owned()), "{found:?}");
    assert!(found.contains(&"other".to_owned()), "{found:?}");
    let shown = scrub("auth failed for s@cret and other", &found);
    assert_eq!(shown, "auth failed for *** and ***");
    assert!(secrets("sqlite://lockstep.db?mode=rwc").is_empty());
    assert!(secrets("postgres://127.0.0.1/db").is_empty());
    assert!(
        secrets("postgres://token@h/db").is_empty(),
        "a role, not a secret"
    );
    assert_eq!(secrets("redis://token@h/0"), vec!["token".to_owned()]);
    assert_eq!(percent_decode("a%2"), "a%2");
    assert_eq!(percent_decode("a%2F%zz"), "a/%zz");
}

/// A URL as people write and mistype them, with the parts it holds.
#[derive(Debug)]
struct Generated {
    url: String,
    scheme: String,
    user: String,
    password: String,
    host: String,
    database: String,
}

fn generated() -> impl Strategy<Value = Generated> {
    let scheme = prop::sample::select(vec![
        "redis",
        "rediss",
        "redis+cluster",
        "postgres",
        "postgresql",
        "mongodb",
        "mysql",
        "http",
    ]);
    let separator = prop::sample::select(vec!["://", ":/", ":", ":///", "//"]);
    // Any characters but `:` (which separates user from password and must be
    // percent-encoded in a user name); the password holds anything.
    let user = "[^:]{1,12}";
    // Any characters around a random core, so that it cannot be part of
    // what is printed around it by chance (`" ` in a Debug form).
    let password = ("\\PC{0,8}", "[a-zA-Z0-9]{6}", "\\PC{0,8}")
        .prop_map(|(a, core, b)| format!("{a}{core}{b}"));
    let host = "[a-z][a-z0-9.-]{0,10}(:[0-9]{1,5})?";
    let database = "(/[a-z0-9_]{1,8})?";
    let query = prop::sample::select(vec!["", "?sslmode=require", "?db=2&pass=qq-pw-77"]);
    (scheme, separator, user, password, host, database, query).prop_map(
        |(scheme, sep, user, password, host, database, query)| Generated {
            url: format!("{scheme}{sep}{user}:{password}@{host}{database}{query}"),
            scheme: scheme.to_owned(),
            user,
            password,
            host,
            database,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn no_password_shows_and_every_name_does(g in generated()) {
        // A password that is part of the rest of the URL cannot be told
        // from it (`ed` in `redis`).
        let rest = g.url.replacen(&format!(":{}@", g.password), ":@", 1);
        prop_assume!(!rest.contains(&g.password) && !g.password.contains("***"));
        let url = StoreUrl::parse(&g.url);
        let shown = url.redacted();
        prop_assert!(!shown.contains(&g.password), "{shown}");
        prop_assert!(!shown.contains("qq-pw-77"), "{shown}");
        for name in [&g.scheme, &g.user, &g.host, &g.database] {
            prop_assert!(shown.contains(name.as_str()), "{name} not in {shown}");
        }
        prop_assert_eq!(url.password(), Some(g.password.as_str()));

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _entered = runtime.enter();
        let said = match crate::store::open(&g.url) {
            Ok(store) => store.describe(),
            Err(e) => format!("{e} {e:?}"),
        };
        prop_assert!(!said.contains(&g.password), "{said}");
        prop_assert!(!said.contains("qq-pw-77"), "{said}");
        prop_assert!(said.contains(&g.scheme), "{said}");
        prop_assert!(said.contains(&g.host), "{said}");
    }
}
