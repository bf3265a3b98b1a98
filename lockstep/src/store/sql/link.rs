//! The connections of one SQL store.
//!
//! A store keeps up to [`IDLE`] connections open between calls and opens one
//! more for a call that finds none idle, so a fetch never waits behind a
//! write. A call costs exactly its statements: no ping when a connection is
//! taken or given back (a pool's health checks would double a fetch's round
//! trips). A connection is owned by the call that uses it and given back only
//! when the call ends well, so a call that fails, times out or is dropped
//! midway takes its connection with it; a call that found its idle
//! connection closed under it (a server restart, an idle timeout) is sent
//! again once on a new one when that is safe: fetches only read, commits
//! carry their write id. A store that can tell which file its connections
//! read (SQLite) checks before each call that the path still names it, and
//! opens the new file when it does not.
//!
//! Errors are classed by the dialect: what retrying cannot fix is
//! [`Error::Misconfigured`], the rest [`Error::Store`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::dialect::{Class, Dialect, FileId};
use crate::error::Error;
use crate::store::contract::BoxFuture;
use crate::store::url::{redact, scrub, secrets};

/// Why a call failed: the database or the connection, a refusal of
/// lockstep's own, or something lockstep found wrong in the database; the
/// last two leave the connection fine.
pub(crate) enum Failure {
    Sql(sqlx::Error),
    Refused(Error),
    Store(String),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Sql(e)
    }
}

/// How many connections a store keeps open between calls.
const IDLE: usize = 2;

/// How long opening a connection (and creating the layout) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one call may take once connected; past it the call fails and
/// its connection is closed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A store's connections, and how it names itself.
pub(crate) struct Link<D: Dialect> {
    dialect: D,
    /// Idle connections, and what the store's file was when each opened.
    idle: Mutex<Vec<(D::Conn, FileId)>>,
    shown: Arc<str>,
    secrets: Vec<String>,
}

impl<D: Dialect> Link<D> {
    /// A link that connects with `dialect`, to the store at `url`.
    pub(crate) fn new(dialect: D, url: &str) -> Link<D> {
        Link {
            dialect,
            idle: Mutex::new(Vec::new()),
            shown: redact(url).into(),
            secrets: secrets(url),
        }
    }

    /// The store's URL, without its password.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// Runs `op` on a connection: an idle one, else a new one. `op` hands
    /// the connection back with its result. With `retry`, a call that failed
    /// on an idle connection because the connection was broken is sent again
    /// once, on a new connection.
    pub(crate) async fn call<'f, T: Send + 'f>(
        &self,
        retry: bool,
        op: impl Fn(D::Conn) -> BoxFuture<'f, (D::Conn, Result<T, Failure>)> + Send,
    ) -> Result<T, Error> {
        let mut retry = retry;
        loop {
            let identity = self.dialect.file_id();
            let idle = {
                let mut idle = self.lock();
                if idle.last().is_some_and(|(_, was)| *was != identity) {
                    // The path names another file now (deleted and created
                    // again, or replaced): the open connections read one that
                    // no other process will write.
                    idle.clear();
                }
                idle.pop()
            };
            let reused = idle.is_some();
            let (conn, identity) = match idle {
                Some((conn, _)) => (conn, identity),
                // What the file is once this connection opened (it may have
                // created it).
                None => (self.connect().await?, self.dialect.file_id()),
            };
            let Ok((conn, result)) = tokio::time::timeout(CALL_TIMEOUT, op(conn)).await else {
                return Err(self.store_error(format!(
                    "no answer within {CALL_TIMEOUT:?}; the connection was closed (a write \
                     may or may not have been committed: sending it again with the same \
                     write id is safe)"
                )));
            };
            match result {
                Ok(value) => {
                    self.give_back(conn, identity);
                    return Ok(value);
                }
                Err(Failure::Refused(e)) => {
                    self.give_back(conn, identity);
                    return Err(e);
                }
                Err(Failure::Store(message)) => {
                    self.give_back(conn, identity);
                    return Err(self.store_error(message));
                }
                Err(Failure::Sql(e)) => {
                    // The connection goes: it may be broken, or inside a
                    // transaction that failed.
                    drop(conn);
                    let class = D::class(&e);
                    let again = (reused && class == Class::Broken) || class == Class::MissingLayout;
                    if retry && again {
                        retry = false;
                        continue;
                    }
                    return Err(self.sql_error(&e));
                }
            }
        }
    }

    async fn connect(&self) -> Result<D::Conn, Error> {
        match tokio::time::timeout(CONNECT_TIMEOUT, self.dialect.connect()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.sql_error(&e)),
            Err(_) => {
                Err(self.store_error(format!("could not connect within {CONNECT_TIMEOUT:?}")))
            }
        }
    }

    fn give_back(&self, conn: D::Conn, identity: FileId) {
        let mut idle = self.lock();
        if idle.len() < IDLE {
            idle.push((conn, identity));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(D::Conn, FileId)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sql_error(&self, e: &sqlx::Error) -> Error {
        let message = match e {
            sqlx::Error::Database(db) => match db.code() {
                Some(code) => format!("{} (SQLSTATE or code {code})", db.message()),
                None => db.message().to_owned(),
            },
            other => other.to_string(),
        };
        match D::class(e) {
            Class::Misconfigured => Error::Misconfigured {
                store: self.shown.to_string(),
                message: scrub(&message, &self.secrets),
            },
            _ => self.store_error(message),
        }
    }

    fn store_error(&self, message: String) -> Error {
        Error::Store {
            store: self.shown.to_string(),
            message: scrub(&message, &self.secrets),
        }
    }
}
