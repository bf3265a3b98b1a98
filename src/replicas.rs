//! A primary and its replicas, each a private `redis-server`, each
//! replica's link to the primary through a [`Proxy`] the test can cut.

use std::time::Duration;

use crate::proxy::Proxy;
use crate::server::{RedisServer, free_port};
use crate::wait::wait_for;

/// A primary and its replicas (`redis-server --replicaof`), killed on drop.
pub struct RedisReplicas {
    /// The primary.
    pub primary: RedisServer,
    /// The replicas, in the order of [`RedisReplicas::url`]'s list.
    pub replicas: Vec<RedisServer>,
    /// Each replica's link to the primary.
    links: Vec<Proxy>,
    /// The primaries [`RedisReplicas::fail_over`] made.
    others: Vec<RedisServer>,
}

impl RedisReplicas {
    /// A primary and `n` replicas, each replica in sync with it on return.
    pub fn start(n: usize) -> RedisReplicas {
        // Full syncs at once, without waiting for more replicas to join.
        let primary = RedisServer::launch_with(
            false,
            free_port(),
            vec!["--repl-diskless-sync-delay".to_owned(), "0".to_owned()],
        );
        let mut replicas = Vec::new();
        let mut links = Vec::new();
        for _ in 0..n {
            let link = Proxy::to(primary.port());
            let replica = RedisServer::launch_with(
                false,
                free_port(),
                vec![
                    "--replicaof".to_owned(),
                    "127.0.0.1".to_owned(),
                    link.port().to_string(),
                ],
            );
            replicas.push(replica);
            links.push(link);
        }
        let set = RedisReplicas {
            primary,
            replicas,
            links,
            others: Vec::new(),
        };
        for i in 0..n {
            set.wait_for_link(i, true);
        }
        set.wait_for_acks(n);
        set
    }

    /// Returns once a write on the primary is acknowledged by `all` of
    /// its replicas (`WAIT`): a replica that says its link is `connected`
    /// may not yet be counted by its primary.
    fn wait_for_acks(&self, all: usize) {
        let mut c = self.primary.connection().expect("connect to the primary");
        wait_for(
            &format!("all {all} replicas to acknowledge a write (WAIT)"),
            Duration::ZERO,
            || {
                let _: () = redis::cmd("SET")
                    .arg("lockstep-suite:in-sync")
                    .arg(1)
                    .query(&mut c)
                    .expect("SET on the primary");
                let acked: usize = redis::cmd("WAIT")
                    .arg(all)
                    .arg(100)
                    .query(&mut c)
                    .expect("WAIT on the primary");
                if acked == all {
                    Ok(())
                } else {
                    Err(format!("{acked} acknowledged"))
                }
            },
        );
    }

    /// `redis://127.0.0.1:<primary>?replicas=127.0.0.1:<replica>,…`.
    pub fn url(&self) -> String {
        format!("{}?replicas={}", self.primary.url(), self.names().join(","))
    }

    /// Each replica's `host:port`, as the URL names them.
    pub fn names(&self) -> Vec<String> {
        self.replicas
            .iter()
            .map(|r| format!("127.0.0.1:{}", r.port()))
            .collect()
    }

    /// The link state of replica `i` (`ROLE`'s fourth element:
    /// `connected`, `connect`, `connecting`, `sync`, …).
    pub fn link_state(&self, i: usize) -> String {
        let role: redis::Value = self.replicas[i].cmd(&["ROLE"]);
        match role {
            redis::Value::Array(items) => match items.get(3) {
                Some(redis::Value::BulkString(s)) => String::from_utf8_lossy(s).into_owned(),
                other => format!("{other:?}"),
            },
            other => format!("{other:?}"),
        }
    }

    /// Cuts replica `i` off its primary (and keeps it off until
    /// [`RedisReplicas::restore`]); returns once the replica says its link
    /// is down.
    pub fn cut(&self, i: usize) {
        self.links[i].break_link();
        self.wait_for_link(i, false);
    }

    /// Lets replica `i` reach its primary again; returns once it is in
    /// sync.
    pub fn restore(&self, i: usize) {
        self.links[i].restore();
        self.wait_for_link(i, true);
        self.wait_for_acks(self.replicas.len());
    }

    fn wait_for_link(&self, i: usize, connected: bool) {
        let what = if connected { "up" } else { "down" };
        wait_for(
            &format!("replica {i}'s link to be {what}"),
            Duration::from_millis(20),
            || {
                let state = self.link_state(i);
                if (state == "connected") == connected {
                    Ok(())
                } else {
                    Err(state)
                }
            },
        );
    }

    /// Promotes replica `i` (`REPLICAOF NO ONE`): it answers as a primary,
    /// with what it held, and takes no more writes from the primary.
    pub fn promote(&self, i: usize) {
        let _: () = self.replicas[i].cmd(&["REPLICAOF", "NO", "ONE"]);
    }

    /// A failover the store's URL does not name: a new server, made a
    /// replica of the primary until it holds what the primary holds, is
    /// promoted, and replica `i` follows it. Replica `i` then serves what
    /// the primary held, connected, and never a write made after. Returns
    /// once replica `i` is in sync with the new primary.
    pub fn fail_over(&mut self, i: usize) {
        let other = RedisServer::launch_with(
            false,
            free_port(),
            vec![
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                self.primary.port().to_string(),
            ],
        );
        self.wait_for_acks(self.replicas.len() + 1);
        let _: () = other.cmd(&["REPLICAOF", "NO", "ONE"]);
        let port = other.port().to_string();
        let _: () = self.replicas[i].cmd(&["REPLICAOF", "127.0.0.1", &port]);
        self.others.push(other);
        wait_for(
            &format!("replica {i} to follow the new primary"),
            Duration::from_millis(20),
            || match (self.link_state(i), self.master_port(i)) {
                (state, Some(p)) if state == "connected" && p.to_string() == port => Ok(()),
                (state, p) => Err(format!("link `{state}` to port {p:?}")),
            },
        );
    }

    /// The port of the primary replica `i` follows (`ROLE`).
    fn master_port(&self, i: usize) -> Option<i64> {
        let role: redis::Value = self.replicas[i].cmd(&["ROLE"]);
        match role {
            redis::Value::Array(items) => match items.get(2) {
                Some(redis::Value::Int(port)) => Some(*port),
                _ => None,
            },
            _ => None,
        }
    }

    /// Zeroes every server's command statistics.
    pub fn reset_stats(&self) {
        self.primary.reset_stats();
        for replica in &self.replicas {
            replica.reset_stats();
        }
    }
}
