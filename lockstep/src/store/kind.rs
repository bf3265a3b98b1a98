//! Store kinds: the one table of the stores lockstep can open.
//!
//! Each row names a kind as a registry declares it (`#[lockstep(store =
//! "redis")]`), its URL schemes and their forms, the cargo feature that
//! builds it, the URL a registry of that kind connects to when none is
//! given, and how to open one. Everything that knows about kinds reads it:
//! [`open`](super::open) (a URL's scheme picks the row), the URL checks and
//! [`supported_schemes`](super::url::supported_schemes), a registry's
//! default URL, and the check `#[lockstep]` compiles into every
//! declaration ([`declared`]: a kind this build lacks, or none at all, is a
//! compile error). Adding a store is its own module, one row here, and one
//! `conformance!` line in the tests.

use std::sync::Arc;

use super::contract::Store;
use super::url::StoreUrl;
use crate::clock::ClockSource;
use crate::error::Error;

/// How a kind opens a store at a URL of one of its schemes.
pub(crate) type Open = fn(&str, &ClockSource) -> Result<Arc<dyn Store>, Error>;

/// One URL scheme of a kind.
#[derive(Debug)]
pub(crate) struct Scheme {
    /// The scheme, as URLs begin: `redis`, `postgresql`.
    pub(crate) name: &'static str,
    /// The form its URLs take, for messages.
    pub(crate) form: &'static str,
    /// How [`supported_schemes`](super::url::supported_schemes) shows it:
    /// `""` leaves it out.
    pub(crate) shown: &'static str,
    /// Whether its URLs name a host after `//` (checked before a driver
    /// reads them); otherwise a path or a name.
    pub(crate) host: bool,
}

/// One kind of store lockstep can open.
#[derive(Debug)]
pub(crate) struct Kind {
    /// The name a registry declares: `#[lockstep(store = "redis")]`.
    pub(crate) name: &'static str,
    /// Its URL schemes.
    pub(crate) schemes: &'static [Scheme],
    /// The cargo feature of lockstep that builds it; `""` when always built.
    pub(crate) feature: &'static str,
    /// What a declaration of this kind is told when the feature is off.
    pub(crate) missing: &'static str,
    /// The URL a registry of this kind connects to when none is given
    /// (`LOCKSTEP_URL` unset).
    pub(crate) default_url: &'static str,
    /// How to open one; `None` when this build lacks the feature.
    pub(crate) open: Option<Open>,
}

/// A row of [`KINDS`]: `open` is compiled only with the kind's feature.
macro_rules! kind {
    (
        name: $name:literal,
        feature: $feature:literal,
        default_url: $default:literal,
        schemes: $schemes:expr,
        open: $open:expr $(,)?
    ) => {{
        #[cfg(feature = $feature)]
        const OPEN: Option<Open> = Some($open);
        #[cfg(not(feature = $feature))]
        const OPEN: Option<Open> = None;
        Kind {
            name: $name,
            schemes: $schemes,
            feature: $feature,
            missing: concat!(
                "store \"",
                $name,
                "\" needs the cargo feature `",
                $feature,
                "` of lockstep: lockstep = { version = \"0.1\", features = [\"",
                $feature,
                "\"] }"
            ),
            default_url: $default,
            open: OPEN,
        }
    }};
}

/// Every kind of store, in the order messages list them.
pub(crate) const KINDS: &[Kind] = &[
    Kind {
        name: "memory",
        schemes: &[Scheme {
            name: "memory",
            form: "memory://[name]",
            shown: "memory://",
            host: false,
        }],
        feature: "",
        missing: "",
        default_url: "memory://",
        open: Some(|url, clock| Ok(Arc::new(super::memory::MemoryStore::from_url(url, clock)?))),
    },
    kind! {
        name: "redis",
        feature: "redis",
        default_url: "redis://127.0.0.1:6379",
        schemes: &[
            network("redis", "redis://[user[:password]@]host[:port][/db]", "redis://"),
            network(
                "rediss",
                "rediss://[user[:password]@]host[:port][/db]",
                "rediss:// (TLS)",
            ),
            network(
                "redis+unix",
                "redis+unix:///path/to/socket[?db=N&pass=…]",
                "redis+unix://",
            ),
            network("unix", "unix:///path/to/socket[?db=N&pass=…]", "unix://"),
            network(
                "redis+cluster",
                "redis+cluster://[user[:password]@]host:port,host:port",
                "redis+cluster://",
            ),
            network(
                "rediss+cluster",
                "rediss+cluster://[user[:password]@]host:port,host:port",
                "",
            ),
        ],
        open: |url, _| Ok(Arc::new(super::redis::RedisStore::open(url)?)),
    },
    kind! {
        name: "postgres",
        feature: "postgres",
        default_url: "postgres://127.0.0.1:5432/postgres",
        schemes: &[
            network(
                "postgres",
                "postgres://[user[:password]@]host[:port]/database[?sslmode=…]",
                "postgres://",
            ),
            network(
                "postgresql",
                "postgresql://[user[:password]@]host[:port]/database[?sslmode=…]",
                "postgresql://",
            ),
        ],
        open: |url, _| Ok(Arc::new(super::sql::postgres::PostgresStore::open(url)?)),
    },
    kind! {
        name: "sqlite",
        feature: "sqlite",
        default_url: "sqlite://lockstep.db",
        schemes: &[Scheme {
            name: "sqlite",
            form: "sqlite://path/to/file.db",
            shown: "sqlite://path, sqlite:path",
            host: false,
        }],
        open: |url, _| Ok(Arc::new(super::sql::sqlite::SqliteStore::open(url)?)),
    },
    kind! {
        name: "mysql",
        feature: "mysql",
        default_url: "mysql://root@127.0.0.1:3306/lockstep",
        schemes: &[
            network(
                "mysql",
                "mysql://[user[:password]@]host[:port]/database[?ssl-mode=…]",
                "mysql://",
            ),
            network(
                "mariadb",
                "mariadb://[user[:password]@]host[:port]/database[?ssl-mode=…]",
                "mariadb://",
            ),
        ],
        open: |url, _| Ok(Arc::new(super::sql::mysql::MysqlStore::open(url)?)),
    },
];

/// A scheme whose URLs name a host after `//`.
const fn network(name: &'static str, form: &'static str, shown: &'static str) -> Scheme {
    Scheme {
        name,
        form,
        shown,
        host: true,
    }
}

/// The kind a registry declares by `name`.
pub(crate) fn named(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The kind whose URLs begin with `scheme`, and that scheme.
pub(crate) fn of_scheme(scheme: &str) -> Option<(&'static Kind, &'static Scheme)> {
    KINDS.iter().find_map(|k| {
        let found = k.schemes.iter().find(|s| s.name == scheme)?;
        Some((k, found))
    })
}

/// What `#[lockstep(store = "…")]` compiles into a declaration: a const
/// evaluation that fails, and so fails the build, when `name` is no kind
/// (the message lists every kind) or one this build of lockstep lacks the
/// feature of.
pub const fn declared(name: &str) {
    let mut i = 0;
    while i < KINDS.len() {
        if same(KINDS[i].name, name) {
            if KINDS[i].open.is_none() {
                panic!("{}", KINDS[i].missing);
            }
            return;
        }
        i += 1;
    }
    panic!("{}", UNKNOWN);
}

/// Whether `a` and `b` are the same text (`==` is not `const`).
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The prefix of [`UNKNOWN`].
const UNKNOWN_PREFIX: &str = "unknown store; expected one of:";

/// What a declaration naming no kind is told: the kinds' names, in
/// quotes, written out from [`KINDS`] when lockstep is compiled.
pub(crate) const UNKNOWN: &str = match std::str::from_utf8(&UNKNOWN_BYTES) {
    Ok(text) => text,
    Err(_) => panic!("the kinds' names are UTF-8"),
};

/// [`UNKNOWN`]'s length: the prefix, then ` "name"` and a comma between.
const UNKNOWN_LEN: usize = {
    let mut len = UNKNOWN_PREFIX.len();
    let mut i = 0;
    while i < KINDS.len() {
        len += KINDS[i].name.len() + 3 + if i > 0 { 1 } else { 0 };
        i += 1;
    }
    len
};

const UNKNOWN_BYTES: [u8; UNKNOWN_LEN] = {
    let mut out = [0u8; UNKNOWN_LEN];
    let mut at = 0;
    at = put(&mut out, at, UNKNOWN_PREFIX);
    let mut i = 0;
    while i < KINDS.len() {
        if i > 0 {
            at = put(&mut out, at, ",");
        }
        at = put(&mut out, at, " \"");
        at = put(&mut out, at, KINDS[i].name);
        at = put(&mut out, at, "\"");
        i += 1;
    }
    assert!(at == UNKNOWN_LEN);
    out
};

/// Writes `text` into `out` at `at`; returns where it ends.
const fn put(out: &mut [u8], at: usize, text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        out[at + i] = bytes[i];
        i += 1;
    }
    at + bytes.len()
}

/// The URL schemes this build understands, for error messages.
pub fn supported_schemes() -> &'static str {
    static SCHEMES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let built = KINDS.iter().filter(|k| k.open.is_some());
        let known: Vec<&str> = built
            .flat_map(|k| k.schemes.iter().map(|s| s.shown))
            .filter(|shown| !shown.is_empty())
            .collect();
        let off: Vec<String> = KINDS
            .iter()
            .filter(|k| k.open.is_none())
            .map(|k| format!("`{}` for {}://", k.feature, k.schemes[0].name))
            .collect();
        let mut text = known.join(", ");
        if !off.is_empty() {
            text += &format!(" (enable the features {} of lockstep)", off.join(", "));
        }
        text
    });
    &SCHEMES
}

/// The kind and scheme of `url` if lockstep can open it; else why not, naming what
/// is accepted, with the URL shown without its secrets. Refuses what a
/// driver would misread: a missing `//`, and a `/`, `?` or `#` in the user
/// name or password (they end the host part for the drivers' parsers, which
/// would then echo the password as a host or path).
pub(crate) fn check(url: &StoreUrl) -> Result<(&'static Kind, &'static Scheme), Error> {
    let refuse = |reason: String| Error::Url {
        url: url.redacted(),
        reason,
    };
    let Some(scheme) = url.scheme() else {
        return Err(refuse(format!(
            "no scheme; expected one of: {}",
            supported_schemes()
        )));
    };
    let Some((kind, found)) = of_scheme(scheme) else {
        return Err(refuse(format!(
            "unknown scheme `{scheme}`; expected one of: {}",
            supported_schemes()
        )));
    };
    if !found.host {
        return Ok((kind, found));
    }
    let form = found.form;
    if url.slashes() < 2 {
        return Err(refuse(format!(
            "`{scheme}:` must be followed by `//`; expected {form}"
        )));
    }
    let user_info = [("user name", url.user()), ("password", url.password())];
    for (what, part) in user_info {
        if let Some(c) = part.and_then(|p| p.chars().find(|c| "/?#".contains(*c))) {
            return Err(refuse(format!(
                "the {what} holds `{c}`, which drivers read as the end of the host: \
                 percent-encode it (`/` as %2F, `?` as %3F, `#` as %23, `@` as %40); expected \
                 {form}"
            )));
        }
    }
    Ok((kind, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_drivers_would_misread_are_refused_naming_what_is_accepted() {
        for (url, says) in [
            ("redis:/u:pw@host", "`redis:` must be followed by `//`"),
            (
                "redis://u:Sl/ashSekr3t@host",
                "percent-encode it (`/` as %2F",
            ),
            ("postgres://u:Sl/ash@host/db", "the password holds `/`"),
            ("postgres://u?x:pw@host/db", "the user name holds `?`"),
            (
                "mongodb://u:pw@db",
                "unknown scheme `mongodb`; expected one of: memory://",
            ),
            ("u:pw@host", "unknown scheme `u`"),
            ("localhost", "no scheme"),
        ] {
            let e = check(&StoreUrl::parse(url)).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("pw") && !e.contains("Sl/ash"), "{url}: {e}");
        }
        for url in [
            "redis://u:p@ss@h",
            "postgres:///db?host=/var/run/postgresql",
            "sqlite:x.db",
            "memory://",
        ] {
            assert!(check(&StoreUrl::parse(url)).is_ok(), "{url}");
        }
    }

    #[test]
    fn every_kind_and_scheme_is_named_once() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        let mut schemes: Vec<&str> = KINDS
            .iter()
            .flat_map(|k| k.schemes.iter().map(|s| s.name))
            .collect();
        let (kinds, all) = (names.len(), schemes.len());
        names.sort_unstable();
        names.dedup();
        schemes.sort_unstable();
        schemes.dedup();
        assert_eq!((names.len(), schemes.len()), (kinds, all));
        for kind in KINDS {
            assert!(
                kind.default_url.starts_with(kind.schemes[0].name),
                "{}",
                kind.name
            );
            assert_eq!(named(kind.name).map(|k| k.name), Some(kind.name));
        }
    }

    #[test]
    fn a_declaration_naming_no_kind_is_told_every_kind() {
        assert_eq!(
            UNKNOWN,
            "unknown store; expected one of: \"memory\", \"redis\", \"postgres\", \"sqlite\", \
             \"mysql\""
        );
        assert_eq!(of_scheme("mariadb").map(|(k, _)| k.name), Some("mysql"));
        assert!(of_scheme("mongodb").is_none());
    }
}
