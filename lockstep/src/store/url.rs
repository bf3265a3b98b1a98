//! Store URLs: parsed once, shown without their secrets.
//!
//! Every part of lockstep that prints a store URL or a driver's message about
//! one goes through here, so that a password never shows, whatever
//! characters it holds and however the URL is mistyped, while the scheme,
//! the user name, the host and the database stay readable:
//!
//! ```
//! use lockstep::store::{redact, scheme, scrub, secrets};
//!
//! assert_eq!(redact("postgres://app:Sl/ash@db:5432/orders"), "postgres://app:***@db:5432/orders");
//! assert_eq!(redact("postgres://postgres@127.0.0.1/x"), "postgres://postgres@127.0.0.1/x");
//! assert_eq!(redact("redis:/u:pw@host"), "redis:/u:***@host");
//! let url = "redis://u:s%40cret@cache:6379/2";
//! assert_eq!(scheme(url).as_deref(), Some("redis"));
//! assert_eq!(scrub("auth failed for s@cret", &secrets(url)), "auth failed for ***");
//! ```

use std::ops::Range;

use crate::error::Error;

/// What stands in for a secret.
const MASK: &str = "***";

/// A store URL as written, with the places of its parts.
///
/// Parsing never fails: a URL lockstep cannot use is still split as well as
/// it can be, so that its secrets are found and its name can be shown in
/// the error that refuses it. User-info ends at the last `@` that a host
/// name follows, so a password may hold `/`, `#`, `?` and `@`; a missing or
/// lone `/` after the scheme (`redis:/u:pw@host`) is read the same way.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    raw: String,
    scheme: Option<Range<usize>>,
    /// The slashes after `scheme:`.
    slashes: usize,
    user: Option<Range<usize>>,
    password: Option<Range<usize>>,
    host: Range<usize>,
    path: Range<usize>,
    query: Option<Range<usize>>,
    /// Query values that are secrets (`pass=`, `password=`).
    query_secrets: Vec<Range<usize>>,
}

impl StoreUrl {
    /// Splits `url` into its parts.
    pub fn parse(url: &str) -> StoreUrl {
        let scheme_end = url
            .find(':')
            .filter(|&i| is_scheme(&url[..i]))
            .map(|i| i + 1);
        let start = scheme_end.unwrap_or(0);
        let slashes = url[start..].bytes().take_while(|&b| b == b'/').count();
        let body = start + slashes;
        let scheme = scheme_end.map(|end| 0..end - 1);
        let has_userinfo = !matches!(
            scheme.as_ref().map(|r| &url[r.clone()]),
            Some("sqlite" | "memory")
        );
        let at = if has_userinfo {
            userinfo_end(&url[body..]).map(|i| body + i)
        } else {
            None
        };
        let (user, password, host_start) = match at {
            Some(at) => {
                let info = &url[body..at];
                match info.find(':') {
                    Some(colon) => (Some(body..body + colon), Some(body + colon + 1..at), at + 1),
                    None => (Some(body..at), None, at + 1),
                }
            }
            None => (None, None, body),
        };
        let host_end = url[host_start..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |i| host_start + i);
        // With no `//`, what follows the scheme is a path (`sqlite:db`).
        let (host, path_start) = if slashes >= 2 || at.is_some() {
            (host_start..host_end, host_end)
        } else {
            (host_start..host_start, host_start)
        };
        let query_start = url[path_start..].find('?').map(|i| path_start + i);
        let path = path_start..query_start.unwrap_or(url.len());
        let query = query_start.map(|q| q + 1..url.len());
        let mut query_secrets = Vec::new();
        if let Some(query) = &query {
            let mut offset = query.start;
            for pair in url[query.clone()].split('&') {
                if let Some((key, _)) = pair.split_once('=')
                    && (key.eq_ignore_ascii_case("pass") || key.eq_ignore_ascii_case("password"))
                {
                    query_secrets.push(offset + key.len() + 1..offset + pair.len());
                }
                offset += pair.len() + 1;
            }
        }
        StoreUrl {
            raw: url.to_owned(),
            scheme,
            slashes,
            user,
            password,
            host,
            path,
            query,
            query_secrets,
        }
    }

    /// The scheme (`redis`, `postgres`, …), if the URL starts with one.
    pub fn scheme(&self) -> Option<&str> {
        self.scheme.clone().map(|r| &self.raw[r])
    }

    /// How many `/` follow `scheme:` (2 in `redis://host`).
    pub fn slashes(&self) -> usize {
        self.slashes
    }

    /// The user name as written (percent-encoded), if any. A lone
    /// user-info (`redis://token@host`) is a user name for PostgreSQL but
    /// may be a secret token for Redis: see [`StoreUrl::token`].
    pub fn user(&self) -> Option<&str> {
        self.user.clone().map(|r| &self.raw[r])
    }

    /// The password as written (percent-encoded), if any.
    pub fn password(&self) -> Option<&str> {
        self.password.clone().map(|r| &self.raw[r])
    }

    /// The host (and port; several for `redis+cluster://`), as written.
    pub fn host(&self) -> &str {
        &self.raw[self.host.clone()]
    }

    /// The path: `/2` (a Redis database), `/orders` (a PostgreSQL
    /// database), a socket or file path.
    pub fn path(&self) -> &str {
        &self.raw[self.path.clone()]
    }

    /// The query, without its `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.clone().map(|r| &self.raw[r])
    }

    /// Whether the lone user-info is a secret: for every scheme but
    /// PostgreSQL's and MySQL's (where it names the role or user), `redis://token@host` carries
    /// a token, not a name.
    pub fn token(&self) -> bool {
        self.password.is_none()
            && self.user.is_some()
            && !matches!(
                self.scheme(),
                Some("postgres" | "postgresql" | "mysql" | "mariadb")
            )
    }

    /// The places of the secrets, in order.
    fn secret_ranges(&self) -> Vec<Range<usize>> {
        let mut ranges: Vec<Range<usize>> = self.password.iter().cloned().collect();
        if self.token() {
            ranges.extend(self.user.clone());
        }
        ranges.extend(self.query_secrets.iter().cloned());
        ranges.sort_by_key(|r| r.start);
        ranges
    }

    /// The URL as written, each secret replaced by `***`.
    pub fn redacted(&self) -> String {
        let mut out = String::with_capacity(self.raw.len());
        let mut from = 0;
        for range in self.secret_ranges() {
            out.push_str(&self.raw[from..range.start]);
            out.push_str(MASK);
            from = range.end;
        }
        out.push_str(&self.raw[from..]);
        out
    }

    /// The secrets, as written and percent-decoded, longest first (so that
    /// one holding another is replaced whole). Those of one character are
    /// left out: masked in [`StoreUrl::redacted`], but replacing a letter
    /// everywhere in a message would hide the message, not the secret.
    pub fn secrets(&self) -> Vec<String> {
        let mut found = Vec::new();
        for range in self.secret_ranges() {
            let raw = &self.raw[range];
            found.push(raw.to_owned());
            found.push(percent_decode(raw));
        }
        found.retain(|s| s.chars().count() >= 2);
        found.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        found.dedup();
        found
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("StoreUrl").field(&self.redacted()).finish()
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// `url` with its secrets replaced by `***`: the password, a lone token
/// user-info (but for PostgreSQL, where it is the role), and `pass=` /
/// `password=` query values (how `redis+unix://` URLs carry one).
pub fn redact(url: &str) -> String {
    StoreUrl::parse(url).redacted()
}

/// The scheme of `url` as written (`redis`, `postgres`, `memory`…), or
/// `None` if it has none (no `:`).
///
/// ```
/// assert_eq!(lockstep::store::scheme("memory://docs"), Some("memory".to_owned()));
/// assert_eq!(lockstep::store::scheme("web-1"), None);
/// ```
pub fn scheme(url: &str) -> Option<String> {
    StoreUrl::parse(url).scheme().map(str::to_owned)
}

/// The secrets of `url`, as written and percent-decoded, longest first: what
/// to keep out of a driver's messages.
pub fn secrets(url: &str) -> Vec<String> {
    StoreUrl::parse(url).secrets()
}

/// `message` with each of `secrets` replaced by `***` (pass them longest
/// first, as [`secrets`] gives them).
pub fn scrub(message: &str, secrets: &[String]) -> String {
    let mut message = message.to_owned();
    for secret in secrets {
        if !secret.is_empty() && message.contains(secret.as_str()) {
            message = message.replace(secret.as_str(), MASK);
        }
    }
    message
}

/// `text` with `%XX` escapes decoded (invalid UTF-8 replaced).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `e` with the secrets of `url` scrubbed from its texts.
pub(crate) fn scrub_error(e: Error, url: &StoreUrl) -> Error {
    let secrets = url.secrets();
    match e {
        Error::Url { url: shown, reason } => Error::Url {
            url: scrub(&shown, &secrets),
            reason: scrub(&reason, &secrets),
        },
        Error::Store { store, message } => Error::Store {
            store: scrub(&store, &secrets),
            message: scrub(&message, &secrets),
        },
        Error::Misconfigured { store, message } => Error::Misconfigured {
            store: scrub(&store, &secrets),
            message: scrub(&message, &secrets),
        },
        other => other,
    }
}

/// RFC 3986: a letter, then letters, digits, `+`, `-` and `.`.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

/// Where user-info ends in `body` (what follows `scheme://`): at the last
/// `@` a host name follows (letters, digits, `.`, `-`, `_`, `:`, `,`, `[`,
/// `]`, `%`, up to the end or a `/`, `?` or `#`), else at the last `@`
/// no host follows (`redis://:pw@`). An `@` in the password,
/// even followed by `/`, is so taken as part of it: when in doubt more is
/// hidden, never less.
fn userinfo_end(body: &str) -> Option<usize> {
    let host_after = |i: usize| {
        let rest = &body[i + 1..];
        rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end])
    };
    let ats = || body.match_indices('@').map(|(i, _)| i).rev();
    ats()
        .find(|&i| {
            let host = host_after(i);
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_:,[]%".contains(c))
        })
        // `redis://:pw@` names no host at all.
        .or_else(|| ats().find(|&i| host_after(i).is_empty()))
}

#[cfg(test)]
mod tests;
