//! A three-node Redis Cluster of test servers.

use std::net::TcpListener;
use std::time::Duration;

use crate::server::{RedisServer, free_port};
use crate::wait::wait_for;

/// A Redis Cluster of three primaries, each a [`RedisServer`] of its own,
/// with the 16384 slots split between them.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes, assigns the slots, joins them, and waits until
    /// every node reports the cluster ok.
    pub fn start() -> RedisCluster {
        let mut ports = Vec::new();
        while ports.len() < 3 {
            // The cluster bus listens on port + 10000.
            let port = free_port();
            let bus_free = port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok();
            if bus_free && !ports.contains(&port) {
                ports.push(port);
            }
        }
        let nodes: Vec<RedisServer> = ports
            .iter()
            .map(|&port| {
                let extra = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ];
                RedisServer::launch_with(false, port, extra.map(str::to_owned).to_vec())
            })
            .collect();
        let ranges = [(0, 5460), (5461, 10922), (10923, 16383)];
        for (node, (from, to)) in nodes.iter().zip(ranges) {
            let _: () = node.cmd(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &from.to_string(),
                &to.to_string(),
            ]);
        }
        for node in &nodes[1..] {
            let _: () = nodes[0].cmd(&["CLUSTER", "MEET", "127.0.0.1", &node.port().to_string()]);
        }
        wait_for(
            "every node of the test cluster to say cluster_state:ok",
            Duration::from_millis(50),
            || {
                let states: Vec<String> = nodes
                    .iter()
                    .map(|n| {
                        let info: String = n.cmd(&["CLUSTER", "INFO"]);
                        info.lines()
                            .find(|l| l.starts_with("cluster_state:"))
                            .unwrap_or_default()
                            .trim()
                            .to_owned()
                    })
                    .collect();
                if states.iter().all(|s| s == "cluster_state:ok") {
                    Ok(())
                } else {
                    Err(states)
                }
            },
        );
        RedisCluster { nodes }
    }

    /// `redis+cluster://127.0.0.1:<port>,…`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}
