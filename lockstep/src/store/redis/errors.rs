//! Redis errors as lockstep's: a fault that may pass (refused connection,
//! timeout, a server loading, busy or failing over, a broken connection) is
//! [`Error::Store`]; one that retrying cannot fix (credentials or
//! permissions refused, a database that does not exist, a certificate
//! refused) is [`Error::Misconfigured`]; the scripts' own refusals are the
//! errors they stand for.

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::error::Error;
use crate::tick::{Millis, Tick};

/// A Redis error as text, never with the URL (and so never a password).
pub(super) fn message(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => {
            let kind = match e.kind() {
                ErrorKind::Io => "I/O error",
                ErrorKind::AuthenticationFailed => "authentication failed",
                ErrorKind::InvalidClientConfig => "invalid client configuration",
                _ => "error",
            };
            // The first line of the crate's own text, which names no URL.
            let text = e.to_string();
            format!("{kind}: {}", text.lines().next().unwrap_or_default())
        }
    }
}

/// Why `e` will not pass by retrying, and what to check, if it will not.
pub(super) fn misconfiguration(e: &RedisError) -> Option<String> {
    let text = e.to_string();
    let detail = e.detail().unwrap_or_default();
    let hint = match (e.kind(), e.code()) {
        (ErrorKind::AuthenticationFailed, _) | (_, Some("WRONGPASS")) => {
            "the server refused the user name or password (WRONGPASS: a wrong password, an \
             unknown or disabled ACL user); check the user and password of the URL"
        }
        (_, Some("NOAUTH")) => {
            "the server needs a password (NOAUTH); give one in the URL: \
             redis://user:password@host"
        }
        (ErrorKind::Server(ServerErrorKind::NoPerm), _) | (_, Some("NOPERM")) => {
            "the ACL user may not do this (NOPERM); fetching needs EVALSHA_RO, SCRIPT LOAD, \
             TIME and read access to the keys lockstep:* (a read-only user: `%R~lockstep:* \
             +@read +@scripting +time`), writing also EVALSHA, HSET and write access to them"
        }
        // A command a script runs, refused by the user's ACL: the server
        // answers ERR, not NOPERM.
        _ if detail.contains("user executing the script can't") => {
            "the ACL user may not run a command, or reach a key, that lockstep's script \
             runs; the fetch runs TIME besides reads of the keys lockstep:* (a read-only \
             user: `%R~lockstep:* +@read +@scripting +time`), a write also HSET, ZADD and \
             write access to them"
        }
        (ErrorKind::InvalidClientConfig, _) => "the client configuration is invalid",
        _ if text.contains("refused to switch database") || detail.contains("DB index") => {
            "the server has no such database; the number after the host in the URL must be \
             one of its databases (`databases` in redis.conf, 16 by default)"
        }
        _ if detail.contains("SELECT is not allowed in cluster mode") => {
            "a Redis Cluster has only database 0; drop the database from the URL"
        }
        _ if detail.contains("without any password configured")
            || detail.contains("no password is set") =>
        {
            "the URL gives a password but the server has none configured for that user"
        }
        _ if text.contains("certificate") || text.contains("not valid for name") => {
            "the server's TLS certificate was refused; check the host name and the CA \
             (LOCKSTEP_CA_FILE)"
        }
        _ if detail.contains("unknown command") && detail.contains("_RO") => {
            "the server is older than Redis 7 (no EVALSHA_RO); lockstep needs Redis 7 or later"
        }
        _ => return None,
    };
    Some(hint.to_owned())
}

/// `e` as lockstep's error, for the store shown as `store`.
pub(super) fn classify(e: &RedisError, store: &str) -> Error {
    match misconfiguration(e) {
        Some(hint) => Error::Misconfigured {
            store: store.to_owned(),
            message: format!("{}: {hint}", message(e)),
        },
        None => Error::Store {
            store: store.to_owned(),
            message: message(e),
        },
    }
}

/// The code and detail of a script's error reply, as one text.
fn reply(e: &RedisError) -> Option<String> {
    Some(format!("{} {}", e.code()?, e.detail().unwrap_or_default()))
}

/// The `BEFORE_HORIZON <requested> <horizon>` error of the scripts.
pub(super) fn before_horizon(e: &RedisError, namespace: &str, tick: Tick) -> Option<Error> {
    let detail = reply(e)?;
    let rest = detail.strip_prefix("BEFORE_HORIZON ")?;
    let mut parts = rest.split_whitespace().map(|p| p.parse::<Millis>());
    let requested = parts.next()?.ok()?;
    let horizon = parts.next()?.ok()?;
    Some(Error::BeforeHorizon {
        namespace: namespace.to_owned(),
        requested: crate::tick::to_datetime(requested),
        earliest: crate::tick::to_datetime(horizon),
        tick,
    })
}

/// The `TOO_MUCH_PENDING <bytes> <limit>` error of the commit script.
pub(super) fn too_much_pending(e: &RedisError, namespace: &str) -> Option<Error> {
    let detail = reply(e)?;
    let rest = detail.strip_prefix("TOO_MUCH_PENDING ")?;
    let mut parts = rest.split_whitespace().map(|p| p.parse::<u64>());
    let pending = parts.next()?.ok()?;
    let limit = parts.next()?.ok()?;
    Some(Error::TooMuchPending {
        namespace: namespace.to_owned(),
        pending,
        limit,
    })
}

/// The `WRONGTYPE_KEY <key> <type>` and `TOO_LARGE <key> <bytes>` errors of
/// the scripts, raised before anything is written.
pub(super) fn refused(e: &RedisError, store: &str) -> Option<Error> {
    let detail = reply(e)?;
    if let Some(rest) = detail.strip_prefix("WRONGTYPE_KEY ") {
        let (key, kind) = rest.rsplit_once(' ')?;
        return Some(Error::Store {
            store: store.to_owned(),
            message: format!(
                "WRONGTYPE the key {key} holds a {kind}, not the hash lockstep keeps there; \
                 nothing was written (remove or rename that key)"
            ),
        });
    }
    let rest = detail.strip_prefix("TOO_LARGE ")?;
    let (key, bytes) = rest.rsplit_once(' ')?;
    let (namespace, field) = key.strip_prefix("lockstep:{")?.split_once("}:field:")?;
    Some(Error::InvalidValue {
        namespace: namespace.to_owned(),
        key: field.to_owned(),
        reason: format!(
            "it is {bytes} bytes of JSON; values are at most {} bytes",
            crate::value::MAX_VALUE_BYTES
        ),
    })
}

/// Whether a call failed because its connection had been closed under it (the
/// server's idle `timeout`, `CLIENT KILL`, a proxy or a restart), rather than
/// because the server cannot be reached. The connection manager reconnects
/// on such an error, so an idempotent call sent again waits for the new
/// connection instead of failing: a registry fetching less often than the
/// server's idle timeout would otherwise fail every first fetch of a tick.
pub(super) fn closed_under_us(e: &RedisError) -> bool {
    e.is_connection_dropped() && !e.is_connection_refusal()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(kind: ServerErrorKind, detail: &str) -> RedisError {
        RedisError::from((ErrorKind::Server(kind), "server error", detail.to_owned()))
    }

    #[test]
    fn what_retrying_cannot_fix_is_a_misconfiguration() {
        let auth = RedisError::from((
            ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        for e in [
            auth,
            server(ServerErrorKind::NoPerm, "this user has no permissions"),
            server(ServerErrorKind::ResponseError, "DB index is out of range"),
            server(
                ServerErrorKind::ResponseError,
                "The user executing the script can't run this command or subcommand script: \
                 104ae65d, on @user_script:1.",
            ),
        ] {
            let classified = classify(&e, "redis://h");
            assert!(
                matches!(classified, Error::Misconfigured { .. }),
                "{e}: {classified}"
            );
        }
        for e in [
            server(ServerErrorKind::BusyLoading, "Redis is loading the dataset"),
            server(ServerErrorKind::MasterDown, "Link with MASTER is down"),
            server(ServerErrorKind::TryAgain, "Multiple keys request"),
            server(ServerErrorKind::ClusterDown, "The cluster is down"),
            RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
            RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        ] {
            let classified = classify(&e, "redis://h");
            assert!(classified.is_transient(), "{e}: {classified}");
        }
    }
}
