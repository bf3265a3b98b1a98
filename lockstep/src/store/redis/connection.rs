//! Connection repair: how the store reaches Redis, one server or a cluster,
//! and how a connection broken in a way the client does not repair is
//! replaced.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

/// How the store reaches Redis: one server, or a cluster.
#[derive(Clone)]
pub(super) enum Connector {
    Single(std::sync::Arc<SingleConnector>),
    #[cfg(feature = "cluster")]
    Cluster(std::sync::Arc<ClusterConnector>),
}

/// One server's connection manager, and what it takes to make a new one.
///
/// The manager reconnects after a connection drops, but not after a
/// connection attempt that failed with anything but an I/O error: the error
/// of a handshake whose reply was cut off (a parse error) or whose
/// credentials were refused would be handed back to every later call, for
/// good, without trying again. Such a manager is replaced.
pub(super) struct SingleConnector {
    client: Client,
    config: ConnectionManagerConfig,
    manager: Mutex<ConnectionManager>,
    /// Whether a call took the manager since [`Connector::let_go_if_idle`]
    /// last looked.
    used: AtomicBool,
    /// Whether the manager may hold a connection (it took a call since it
    /// was made).
    holding: AtomicBool,
}

impl SingleConnector {
    /// A connector that connects on first use.
    pub(super) fn new(
        client: Client,
        config: ConnectionManagerConfig,
    ) -> Result<SingleConnector, RedisError> {
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(SingleConnector {
            client,
            config,
            manager: Mutex::new(manager),
            used: AtomicBool::new(false),
            holding: AtomicBool::new(false),
        })
    }

    fn manager(&self) -> ConnectionManager {
        self.used.store(true, Ordering::Relaxed);
        self.holding.store(true, Ordering::Relaxed);
        self.manager
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// After `e`: a fresh manager if the connection is broken in a way the
    /// manager itself may not repair. The next call connects anew.
    fn repair(&self, e: &RedisError) {
        if !e.is_unrecoverable_error() || e.is_io_error() {
            return;
        }
        let config = self.config.clone();
        if let Ok(fresh) = ConnectionManager::new_lazy_with_config(self.client.clone(), config) {
            *self.manager.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        }
    }
}

/// A cluster client and the connection it makes on first use.
#[cfg(feature = "cluster")]
pub(super) struct ClusterConnector {
    pub(super) client: redis::cluster::ClusterClient,
    pub(super) connection: tokio::sync::OnceCell<redis::cluster_async::ClusterConnection>,
}

impl Connector {
    /// A connection: the managed one, or the cluster's, made on first use.
    pub(super) async fn connection(&self) -> Result<Connection, RedisError> {
        match self {
            Connector::Single(c) => Ok(Connection::Single(c.manager())),
            #[cfg(feature = "cluster")]
            Connector::Cluster(cluster) => cluster
                .connection
                .get_or_try_init(|| cluster.client.get_async_connection())
                .await
                .map(|c| Connection::Cluster(c.clone())),
        }
    }

    /// Closes the connection if no call took it since the last time this
    /// was asked: the next call connects anew. A process reading replicas
    /// asks at each fetch a replica served, so that it holds no connection
    /// to the primary it has had nothing to send for a tick or more (the
    /// primary would otherwise hold one for every process of the fleet).
    /// A call under way keeps its connection until it ends.
    pub(super) fn let_go_if_idle(&self) {
        match self {
            Connector::Single(single) => {
                if single.used.swap(false, Ordering::Relaxed)
                    || !single.holding.swap(false, Ordering::Relaxed)
                {
                    return;
                }
                let config = single.config.clone();
                if let Ok(fresh) =
                    ConnectionManager::new_lazy_with_config(single.client.clone(), config)
                {
                    *single.manager.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
                }
            }
            #[cfg(feature = "cluster")]
            Connector::Cluster(_) => {}
        }
    }

    /// Repairs what `e` may have broken.
    pub(super) fn after(&self, e: &RedisError) {
        match self {
            Connector::Single(single) => single.repair(e),
            #[cfg(feature = "cluster")]
            Connector::Cluster(_) => {}
        }
    }
}

/// A connection to one server or to a cluster.
pub(super) enum Connection {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Connection::Cluster(c) => c.get_db(),
        }
    }
}
