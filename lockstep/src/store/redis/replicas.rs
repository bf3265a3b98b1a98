//! Replicas: fetches served by a primary's replicas, writes by the primary
//! (`redis://primary:6379?replicas=host:port,host:port`).
//!
//! Each process reads one replica, its *home*: the one at its process id
//! modulo the number of replicas, so a fleet spreads over them evenly. A
//! fetch is one pipeline to the home replica: `INFO replication`, then the
//! read-only fetch script, so the replica's state travels in the same
//! round trip as the data. The answer is used when the replica says it is
//! a replica whose link to its primary is up, that follows this store's
//! primary (its replication id is the primary's), and that serves a
//! revision no older than the one this store served last for the registry
//! (a replica never takes a process back in time). Otherwise the fetch is
//! answered by the next replica, the same way, or by the primary, and
//! counted as a *fallback*
//! ([`Status::replica_fallbacks`](crate::Status::replica_fallbacks)), with
//! a warning at most once a minute (with the count of those left out).
//!
//! **Deadlines.** A replica that does not answer is left within the same
//! fetch: each replica asked gets half of what is left of the fetch's
//! deadline ([`Fetch::within`](crate::store::fetch::Fetch::within), the tick's
//! fetch timeout, which is also the horizon's margin), so a frozen home
//! replica costs half the deadline, and the primary has what the last
//! replica left (a quarter of the deadline with two frozen replicas). A
//! fetch sent at its tick is answered, whichever server answers it, or
//! given up, within that deadline: before the instant of any write made
//! before it. A replica that did not answer within its share is asked
//! after the others for the next [`ASK_LAST_FOR`]: they answer with the
//! whole deadline before them, and a frozen replica costs its share once
//! in that time, not every tick.
//!
//! **Failovers.** A replica promoted to a primary, or following another
//! primary (its replication id is not this store's primary's), is not read
//! and counted as a *failover*
//! ([`Status::replica_failovers`](crate::Status::replica_failovers)). The
//! primary's replication id is asked of the primary (`INFO replication`)
//! at the first fetch, and again, at most once a second, whenever a replica
//! says another, each time within half of what is left of the fetch's
//! deadline; a primary that cannot be asked in time leaves the replicas
//! read (no write can go through it either).
//!
//! A replica may still lag a write by a little: the writer's `WAIT` (in
//! [`RedisStore::commit`](super::RedisStore)) makes sure every replica
//! holds a write a tick before its first instant, and names the replicas
//! that did not ([`Committed::lagging`](crate::store::write::Committed::lagging)),
//! asking each for its state within half a tick (at most 5 s): a frozen
//! replica never holds the writer past the instant.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::{RedisError, Value};

use super::connection::{Connection, Connector};
use super::errors::message;
use super::replication::{self, Replication};
use super::reply::{self, Recorded};
use super::scripts::{Lua, pipelined};
use crate::store::fetch::Fetched;
use crate::tick::{Millis, Tick};

/// The longest a commit waits for its replicas.
const MAX_WAIT_MS: Millis = 2_000;

/// How often a fallback is logged at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How long a replica that did not answer within its share of a fetch's
/// deadline is asked after the others; then it is asked in its turn
/// again.
const ASK_LAST_FOR: Duration = Duration::from_secs(10);

/// How often the primary is asked its replication id at most, while a
/// replica says another.
const ASK_PRIMARY_EVERY: Duration = Duration::from_secs(1);

/// One replica: its `host:port` as the URL names it (never with the
/// password), and how to reach it.
pub(super) struct Node {
    pub(super) name: String,
    pub(super) connector: Connector,
    /// When it last did not answer within its share of a fetch's deadline.
    silent: Mutex<Option<Instant>>,
}

impl Node {
    /// The replica `name`, reached through `connector`.
    pub(super) fn new(name: String, connector: Connector) -> Node {
        Node {
            name,
            connector,
            silent: Mutex::new(None),
        }
    }

    /// Whether it did not answer in time in the last [`ASK_LAST_FOR`].
    fn recently_silent(&self) -> bool {
        let silent = self.silent.lock().unwrap_or_else(|e| e.into_inner());
        silent.is_some_and(|at| at.elapsed() < ASK_LAST_FOR)
    }

    /// Notes whether it answered a fetch in time.
    fn answered(&self, in_time: bool) {
        *self.silent.lock().unwrap_or_else(|e| e.into_inner()) = (!in_time).then(Instant::now);
    }
}

/// The replicas of a store, the primary they follow, and what its fetches
/// learned of them.
pub(super) struct Replicas {
    nodes: Vec<Node>,
    /// The primary, asked for its replication id.
    primary: Connector,
    /// The index of this process's replica.
    home: usize,
    /// The highest revision served per namespace.
    served: Mutex<HashMap<String, u64>>,
    /// The primary's replication id, and when it was asked.
    primary_id: Mutex<Option<(String, Instant)>>,
    fallbacks: AtomicU64,
    failovers: AtomicU64,
    /// When the last fallback warning was logged, and how many were left
    /// out since.
    warned: Mutex<Option<(Instant, u64)>>,
}

/// Why an answer was not used.
struct Unfit {
    reason: String,
    /// The replica was promoted, or follows another primary.
    failover: bool,
}

impl Unfit {
    fn new(reason: impl Into<String>) -> Unfit {
        Unfit {
            reason: reason.into(),
            failover: false,
        }
    }
}

impl Replicas {
    /// `nodes` (at least one) following `primary`, read from the one at
    /// this process's id.
    pub(super) fn new(nodes: Vec<Node>, primary: Connector) -> Replicas {
        let home = std::process::id() as usize % nodes.len();
        Replicas {
            nodes,
            primary,
            home,
            served: Mutex::default(),
            primary_id: Mutex::new(None),
            fallbacks: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
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

    /// How many fetches a replica could not serve because it was promoted
    /// or follows another primary.
    pub(super) fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// The fetch of `fields` of `namespace` (the read-only `script` with
    /// `keys` and `args`) within `deadline`: from the home replica if it is
    /// fit to serve, else from the next fit one, else `None` (the primary's
    /// turn, with what is left of the deadline). The replicas that recently
    /// did not answer in time are asked after the others.
    pub(super) async fn fetch(
        &self,
        namespace: &str,
        script: &Lua,
        keys: &[String],
        args: &[String],
        fields: &[&str],
        deadline: Duration,
    ) -> Option<Fetched> {
        let started = Instant::now();
        let held = self.held(namespace);
        let mut why = Vec::new();
        let mut order: Vec<usize> = (0..self.nodes.len())
            .map(|i| (self.home + i) % self.nodes.len())
            .collect();
        // A stable sort: the home replica, then the next, among those that
        // answer and among the recently silent alike.
        order.sort_by_key(|&n| self.nodes[n].recently_silent());
        if order[0] != self.home {
            why.push(format!(
                "{}: it did not answer a fetch in time in the last {} s, so the others were \
                 asked first",
                self.nodes[self.home].name,
                ASK_LAST_FOR.as_secs()
            ));
        }
        for n in order {
            let node = &self.nodes[n];
            let share = deadline.saturating_sub(started.elapsed()) / 2;
            let attempt = fetch_from(node, script, keys, args, fields, held);
            let answered = tokio::time::timeout(share, attempt).await;
            node.answered(answered.is_ok());
            let answer = match answered {
                Ok(Ok((fetched, id))) => {
                    // The primary, if it must be asked, within half of
                    // what is left after the replica answered.
                    let within = deadline.saturating_sub(started.elapsed()) / 2;
                    self.check_follows(&id, within).await.map(|()| fetched)
                }
                Ok(Err(unfit)) => Err(unfit),
                Err(_) => Err(Unfit::new(format!(
                    "it did not answer within {} ms (half of what was left of the fetch's \
                     deadline)",
                    share.as_millis()
                ))),
            };
            match answer {
                Ok(fetched) => {
                    if n != self.home {
                        self.fell_back(namespace, &why, &node.name);
                    }
                    self.served(namespace, fetched.revision);
                    return Some(fetched);
                }
                Err(unfit) => {
                    if unfit.failover {
                        self.failovers.fetch_add(1, Ordering::Relaxed);
                    }
                    why.push(format!("{}: {}", node.name, unfit.reason));
                }
            }
        }
        self.fell_back(namespace, &why, "the primary");
        None
    }

    /// Whether a replica following replication `id` follows this store's
    /// primary: asked of the primary, `within` that time, when its id is
    /// not known yet, or is another and was asked over
    /// [`ASK_PRIMARY_EVERY`] ago.
    async fn check_follows(&self, id: &str, within: Duration) -> Result<(), Unfit> {
        let known = self
            .primary_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let primary = match known {
            Some((primary, _)) if primary == id => return Ok(()),
            Some((primary, asked)) if asked.elapsed() < ASK_PRIMARY_EVERY => primary,
            known => match tokio::time::timeout(within, self.ask_primary())
                .await
                .ok()
                .flatten()
            {
                Some(primary) => primary,
                // The primary cannot say (in time): nothing is written
                // through it either, and the replica serves what it holds.
                None if known.is_none() => return Ok(()),
                None => known.map(|(p, _)| p).unwrap_or_default(),
            },
        };
        if primary == id {
            return Ok(());
        }
        Err(Unfit {
            reason: format!(
                "it follows another primary (replication id {id}; this store's primary's is \
                 {primary}): a failover this process's URL does not name"
            ),
            failover: true,
        })
    }

    /// The primary's replication id, kept for [`Replicas::check_follows`].
    async fn ask_primary(&self) -> Option<String> {
        let asked = async {
            match replication::ask(&self.primary).await? {
                Replication::Primary { id, .. } => Some(id),
                Replication::Replica { .. } => None,
            }
        }
        .await;
        if let Some(id) = &asked {
            *self.primary_id.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((id.clone(), Instant::now()));
        }
        asked
    }

    /// A replica answered with `revision`.
    fn served(&self, namespace: &str, revision: u64) {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        let held = served.entry(namespace.to_owned()).or_default();
        *held = (*held).max(revision);
    }

    /// The primary answered with `revision`: what it holds is the truth,
    /// even a lower revision (the store lost its data, see
    /// [`Epoch`](crate::store::stored::Epoch)), and the replicas are measured
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
                    "lockstep: this process's replica cannot serve the fetch (it does not \
                     answer in time, its link to the primary is down, it follows another \
                     primary, or it is behind what this process holds); answered by another \
                     server (counted in status: replica_fallbacks)"
                );
                *warned = Some((Instant::now(), 0));
            }
        }
    }

    /// After a commit on `connection` (to the primary of `store`): `WAIT`
    /// for every replica until a tick before `first` (ms), and the replicas
    /// that did not acknowledge it, each asked within [`ask_within`]: the
    /// whole wait ends half a tick before `first` at the latest, or after
    /// 2 s and that.
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
            .cmd("INFO")
            .arg("replication")
            .cmd("WAIT")
            .arg(names.len())
            .arg(timeout);
        let replies = connection.req_packed_commands(&pipe, 0, 2).await;
        let (primary, acknowledged) = match replies.as_deref() {
            Ok([info, Value::Int(n)]) => (replication::parse(info), *n as usize),
            _ => (None, 0),
        };
        let lagging = match primary {
            _ if acknowledged >= names.len() => Vec::new(),
            Some(Replication::Primary { id, offset }) => {
                self.lagging(&id, offset, ask_within(tick)).await
            }
            // The primary did not say where it is: none is known to hold it.
            _ => names,
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

    /// The replicas that do not hold what the primary (replication `id`)
    /// held at `offset` (right after a write): those whose link is down,
    /// that follow another primary, whose offset is lower, or that do not
    /// answer within `within`. Asked all at once.
    async fn lagging(&self, id: &str, offset: i64, within: Duration) -> Vec<String> {
        let mut asked = tokio::task::JoinSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let connector = node.connector.clone();
            asked.spawn(async move {
                let state = tokio::time::timeout(within, replication::ask(&connector))
                    .await
                    .ok()
                    .flatten();
                (i, state)
            });
        }
        let mut behind = vec![true; self.nodes.len()];
        while let Some(Ok((i, state))) = asked.join_next().await {
            behind[i] = !matches!(
                state,
                Some(Replication::Replica { linked: true, id: ref followed, offset: at })
                    if followed == id && at >= offset
            );
        }
        self.nodes
            .iter()
            .zip(behind)
            .filter(|(_, behind)| *behind)
            .map(|(node, _)| node.name.clone())
            .collect()
    }
}

/// One attempt at `node`: `INFO replication` and the fetch in one
/// pipeline; the fetch and the replication id the replica follows.
async fn fetch_from(
    node: &Node,
    script: &Lua,
    keys: &[String],
    args: &[String],
    fields: &[&str],
    held: u64,
) -> Result<(Fetched, String), Unfit> {
    let failed = |e: &RedisError| {
        node.connector.after(e);
        Unfit::new(message(e))
    };
    let mut connection = node.connector.connection().await.map_err(|e| failed(&e))?;
    let mut pipe = redis::pipe();
    pipe.ignore_errors()
        .cmd("INFO")
        .arg("replication")
        .add_command(script.call(keys, args));
    let replies = pipelined(&mut connection, &pipe, 2, &[script])
        .await
        .map_err(|e| failed(&e))?;
    let [info, reply]: [Value; 2] = replies
        .try_into()
        .map_err(|_| Unfit::new("unexpected reply to a fetch"))?;
    let id = match replication::parse(&info) {
        Some(Replication::Replica {
            linked: true, id, ..
        }) => id,
        Some(Replication::Replica { linked: false, .. }) => {
            return Err(Unfit::new("its link to the primary is down"));
        }
        Some(Replication::Primary { .. }) => {
            return Err(Unfit {
                reason: "it answers as a primary, not as a replica: it was promoted".to_owned(),
                failover: true,
            });
        }
        None => {
            let why = match info {
                Value::ServerError(e) => format!("INFO replication was refused: {e:?}"),
                _ => "its INFO replication says neither primary nor replica".to_owned(),
            };
            return Err(Unfit::new(why));
        }
    };
    let reply = reply.extract_error().map_err(|e| failed(&e))?;
    let (fetched, _) = reply::fetched(reply, fields)
        .filter(|(_, recorded)| !matches!(recorded, Recorded::Refused(_)))
        .ok_or_else(|| Unfit::new("unexpected reply to a fetch"))?;
    if fetched.revision < held {
        return Err(Unfit::new(format!(
            "it serves revision {}, older than the {held} this process holds",
            fetched.revision
        )));
    }
    Ok((fetched, id))
}

/// How long each replica that did not acknowledge a commit has to say
/// where it is: half a tick, at most 5 s. Ample for a replica that answers
/// (a fresh connection included, on a loaded machine), and the commit
/// still returns half a tick before its first instant at the latest.
fn ask_within(tick: Tick) -> Duration {
    (tick.as_duration() / 2).min(Duration::from_secs(5))
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

    #[test]
    fn a_commit_waits_until_a_tick_before_its_instant_but_never_for_ever() {
        // Instant at 10 s, tick 1 s, now 0: 9 s, capped at 2 s.
        assert_eq!(wait_timeout(10_000, 1_000, 0, 2_000), 2_000);
        assert_eq!(wait_timeout(10_000, 1_000, 8_100, 2_000), 900);
        // Already too late: 1 ms, never 0 (which WAIT reads as no limit).
        assert_eq!(wait_timeout(10_000, 1_000, 9_500, 2_000), 1);
    }
}
