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
        };
        for i in 0..n {
            set.wait_for_link(i, true);
        }
        set.wait_for_acks();
        set
    }

    /// Returns once a write on the primary is acknowledged by every
    /// replica (`WAIT`): a replica that says its link is `connected` may
    /// not yet be counted by its primary.
    fn wait_for_acks(&self) {
        let mut c = self.primary.connection().expect("connect to the primary");
        let all = self.replicas.len();
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
        self.wait_for_acks();
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

    /// Zeroes every server's command statistics.
    pub fn reset_stats(&self) {
        self.primary.reset_stats();
        for replica in &self.replicas {
            replica.reset_stats();
        }
    }
}
