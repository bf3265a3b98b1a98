//! Replicas: fetches served by a primary's replicas, writes by the primary
//! (`redis://primary:6379?replicas=host:port,host:port`).
//!
//! Each process reads one replica, its *home*: the one at its process id
//! modulo the number of replicas, so a fleet spreads over them evenly. A
//! fetch is one pipeline to the home replica: `ROLE`, then the read-only
//! fetch script, so the replica's link to its primary travels in the same
//! round trip as the data. `ROLE` rather than `INFO replication`: its reply
//! is a few bytes, and its fourth element is the link's state
//! (`connected`, `connect`, `connecting`, `sync`, `handshake`), which is all
//! a fetch needs. The answer is used when the replica says it is a replica
//! whose link is `connected` and it serves a revision no older than the one
//! this store served last for the registry (a replica never takes a process
//! back in time). Otherwise the fetch is answered by the next replica, the
//! same way, or by the primary, and counted as a *fallback*
//! ([`Status::replica_fallbacks`](crate::Status::replica_fallbacks)), with
//! a warning at most once a minute (with the count of those left out).
//!
//! A connected replica may still lag a write by a little: the writer's
//! `WAIT` (in [`RedisStore::commit`](super::RedisStore)) makes sure every
//! replica holds a write a tick before its first instant, and names the
//! replicas that did not ([`Committed::lagging`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::{RedisError, ServerErrorKind, Value};

use super::connection::{Connection, Connector};
use super::errors::message;
use super::reply::{self, Recorded, text};
use super::scripts::Lua;
use crate::store::Fetched;
use crate::tick::{Millis, Tick};

/// The longest a commit waits for its replicas.
const MAX_WAIT_MS: Millis = 2_000;

/// How often a fallback is logged at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// One replica: its `host:port` as the URL names it (never with the
/// password), and how to reach it.
pub(super) struct Node {
    pub(super) name: String,
    pub(super) connector: Connector,
}

/// The replicas of a store, and what its fetches learned of them.
pub(super) struct Replicas {
    nodes: Vec<Node>,
    /// The index of this process's replica.
    home: usize,
    /// The highest revision served per namespace.
    served: Mutex<HashMap<String, u64>>,
    fallbacks: AtomicU64,
    /// When the last fallback warning was logged, and how many were left
    /// out since.
    warned: Mutex<Option<(Instant, u64)>>,
}

/// Why an answer was not used.
struct Unfit(String);

impl Replicas {
    /// `nodes` (at least one), read from the one at this process's id.
    pub(super) fn new(nodes: Vec<Node>) -> Replicas {
        let home = std::process::id() as usize % nodes.len();
        Replicas::with_home(nodes, home)
    }

    fn with_home(nodes: Vec<Node>, home: usize) -> Replicas {
        Replicas {
            nodes,
            home,
            served: Mutex::default(),
            fallbacks: AtomicU64::new(0),
            warned: Mutex::new(None),
        }
    }

    /// The replicas' names (`host:port`), in the URL's order.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.name.as_str())
    }

    /// How many fetches another server than the home replica answered.
    pub(super) fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// The fetch of `fields` of `namespace` (the read-only `script` with
    /// `keys` and `args`): from the home replica if it is fit to serve, else
    /// from the next fit one, else `None` (the primary's turn).
    pub(super) async fn fetch(
        &self,
        namespace: &str,
        script: &Lua,
        keys: &[String],
        args: &[String],
        fields: &[&str],
    ) -> Option<Fetched> {
        let held = self.held(namespace);
        let mut why = Vec::new();
        for i in 0..self.nodes.len() {
            let node = &self.nodes[(self.home + i) % self.nodes.len()];
            match fetch_from(node, script, keys, args, fields, held).await {
                Ok(fetched) => {
                    if i > 0 {
                        self.fell_back(namespace, &why, &node.name);
                    }
                    self.served(namespace, fetched.revision);
                    return Some(fetched);
                }
                Err(Unfit(reason)) => why.push(format!("{}: {reason}", node.name)),
            }
        }
        self.fell_back(namespace, &why, "the primary");
        None
    }

    /// A replica answered with `revision`.
    fn served(&self, namespace: &str, revision: u64) {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        let held = served.entry(namespace.to_owned()).or_default();
        *held = (*held).max(revision);
    }

    /// The primary answered with `revision`: what it holds is the truth,
    /// even a lower revision (the store lost its data, see
    /// [`Epoch`](crate::store::Epoch)), and the replicas are measured
    /// against it from now on.
    pub(super) fn primary_served(&self, namespace: &str, revision: u64) {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        served.insert(namespace.to_owned(), revision);
    }

    fn held(&self, namespace: &str) -> u64 {
        let served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        served.get(namespace).copied().unwrap_or(0)
    }

    fn fell_back(&self, namespace: &str, why: &[String], to: &str) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *warned {
            Some((last, left_out)) if last.elapsed() < WARN_EVERY => *left_out += 1,
            _ => {
                let left_out = warned.map_or(0, |(_, n)| n);
                tracing::warn!(
                    namespace,
                    reason = why.join("; "),
                    answered_by = to,
                    left_out,
                    "lockstep: this process's replica cannot serve the fetch (its link to the \
                     primary is down, or it is behind what this process holds); answered by \
                     another server (counted in status: replica_fallbacks)"
                );
                *warned = Some((Instant::now(), 0));
            }
        }
    }

    /// After a commit on `connection` (to the primary of `store`): `WAIT`
    /// for every replica until a tick before `first` (ms), and the replicas
    /// that did not acknowledge it.
    pub(super) async fn wait(
        &self,
        connection: &mut Connection,
        store: &str,
        tick: Tick,
        first: Millis,
    ) -> Vec<String> {
        let names: Vec<String> = self.names().map(str::to_owned).collect();
        let now = crate::tick::now_millis();
        let timeout = wait_timeout(first, tick.as_millis(), now, MAX_WAIT_MS);
        let mut pipe = redis::pipe();
        pipe.ignore_errors()
            .cmd("ROLE")
            .cmd("WAIT")
            .arg(names.len())
            .arg(timeout);
        let replies = connection.req_packed_commands(&pipe, 0, 2).await;
        let (offset, acknowledged) = match replies.as_deref() {
            Ok([role, Value::Int(n)]) => (primary_offset(role), *n as usize),
            _ => (None, 0),
        };
        let lagging = match offset {
            _ if acknowledged >= names.len() => Vec::new(),
            Some(offset) => self.lagging(offset).await,
            // The primary did not say where it is: none is known to hold it.
            None => names,
        };
        if !lagging.is_empty() {
            tracing::warn!(
                store,
                lagging = lagging.join(", "),
                timeout_ms = timeout,
                "lockstep: the write stands on the primary, but these replicas did not \
                 acknowledge it a tick before its first instant; a process reading one of them \
                 may serve the old value after the instant unless the replica catches up"
            );
        }
        lagging
    }

    /// The replicas that do not hold what the primary held at
    /// `primary_offset` (its replication offset right after a write): those
    /// whose link is not `connected`, whose offset is lower, or that do not
    /// answer.
    async fn lagging(&self, primary_offset: i64) -> Vec<String> {
        let mut lagging = Vec::new();
        for node in &self.nodes {
            let offset = async {
                let mut connection = node.connector.connection().await.ok()?;
                let role: Value = redis::cmd("ROLE").query_async(&mut connection).await.ok()?;
                let (connected, offset) = replica_state(&role)?;
                connected.then_some(offset)
            }
            .await;
            if offset.is_none_or(|o| o < primary_offset) {
                lagging.push(node.name.clone());
            }
        }
        lagging
    }
}

/// One attempt at `node`: `ROLE` and the fetch in one pipeline.
async fn fetch_from(
    node: &Node,
    script: &Lua,
    keys: &[String],
    args: &[String],
    fields: &[&str],
    held: u64,
) -> Result<Fetched, Unfit> {
    let failed = |e: &RedisError| {
        node.connector.after(e);
        Unfit(message(e))
    };
    let mut connection = node.connector.connection().await.map_err(|e| failed(&e))?;
    let mut pipe = redis::pipe();
    pipe.ignore_errors()
        .cmd("ROLE")
        .add_command(script.call(keys, args));
    let mut replies = connection
        .req_packed_commands(&pipe, 0, 2)
        .await
        .map_err(|e| failed(&e))?;
    if let Some(Value::ServerError(e)) = replies.get(1)
        && e.kind() == Some(ServerErrorKind::NoScript)
    {
        // Loaded once per server; the next fetches find it.
        script
            .load()
            .exec_async(&mut connection)
            .await
            .map_err(|e| failed(&e))?;
        replies = connection
            .req_packed_commands(&pipe, 0, 2)
            .await
            .map_err(|e| failed(&e))?;
    }
    let [role, reply]: [Value; 2] = replies
        .try_into()
        .map_err(|_| Unfit("unexpected reply to a fetch".to_owned()))?;
    match replica_state(&role) {
        Some((true, _)) => {}
        Some((false, _)) => {
            let state = match &role {
                Value::Array(items) => items.get(3).and_then(text),
                _ => None,
            };
            return Err(Unfit(format!(
                "its link to the primary is `{}`, not `connected`",
                state.unwrap_or_default()
            )));
        }
        None => {
            let role = match &role {
                Value::Array(items) => items.first().and_then(text),
                _ => None,
            };
            return Err(Unfit(format!(
                "it answers as a {}, not as a replica",
                role.unwrap_or_else(|| "server".to_owned())
            )));
        }
    }
    let reply = reply.extract_error().map_err(|e| failed(&e))?;
    let (fetched, _) = reply::fetched(reply, fields)
        .filter(|(_, recorded)| !matches!(recorded, Recorded::Refused(_)))
        .ok_or_else(|| Unfit("unexpected reply to a fetch".to_owned()))?;
    if fetched.revision < held {
        return Err(Unfit(format!(
            "it serves revision {}, older than the {held} this process holds",
            fetched.revision
        )));
    }
    Ok(fetched)
}

/// `(whether the link to the primary is connected, the replication offset
/// processed)` from a replica's `ROLE`; `None` from anything but a replica.
fn replica_state(role: &Value) -> Option<(bool, i64)> {
    let Value::Array(items) = role else {
        return None;
    };
    if text(items.first()?)? != "slave" {
        return None;
    }
    let connected = text(items.get(3)?)? == "connected";
    let offset = match items.get(4)? {
        Value::Int(n) => *n,
        other => text(other)?.parse().ok()?,
    };
    Some((connected, offset))
}

/// The primary's replication offset from its `ROLE`.
fn primary_offset(role: &Value) -> Option<i64> {
    let Value::Array(items) = role else {
        return None;
    };
    if text(items.first()?)? != "master" {
        return None;
    }
    match items.get(1)? {
        Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// How long a commit waits for the replicas (ms): until a tick before its
/// first instant, the earliest a process's last fetch before the instant
/// may be sent, at most `cap`, at least 1 ms (`WAIT 0` would wait for
/// ever). A write at the horizon leaves at least the fetch timeout.
fn wait_timeout(first_instant: i64, tick: i64, now: i64, cap: i64) -> i64 {
    (first_instant - tick - now).clamp(1, cap.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_replica_is_fit_only_when_its_link_is_connected() {
        let role = |state: &str| {
            Value::Array(vec![
                bulk("slave"),
                bulk("127.0.0.1"),
                Value::Int(6379),
                bulk(state),
                Value::Int(1234),
            ])
        };
        assert_eq!(replica_state(&role("connected")), Some((true, 1234)));
        for state in ["connect", "connecting", "sync", "handshake"] {
            assert_eq!(replica_state(&role(state)), Some((false, 1234)), "{state}");
        }
        let master = Value::Array(vec![bulk("master"), Value::Int(99), Value::Array(vec![])]);
        assert_eq!(replica_state(&master), None);
        assert_eq!(primary_offset(&master), Some(99));
        assert_eq!(primary_offset(&role("connected")), None);
    }

    #[test]
    fn a_commit_waits_until_a_tick_before_its_instant_but_never_for_ever() {
        // Instant at 10 s, tick 1 s, now 0: 9 s, capped at 2 s.
        assert_eq!(wait_timeout(10_000, 1_000, 0, 2_000), 2_000);
        assert_eq!(wait_timeout(10_000, 1_000, 8_100, 2_000), 900);
        // Already too late: 1 ms, never 0 (which WAIT reads as no limit).
        assert_eq!(wait_timeout(10_000, 1_000, 9_500, 2_000), 1);
    }
}
