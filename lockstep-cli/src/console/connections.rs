//! How the console holds its connections, so that no client, slow or idle
//! or many, keeps the page from others: at most [`MAX_CONNECTIONS`] at
//! once, well under a process's usual limit of 1 024 open files; a
//! connection not serving a request (sending its request head slowly, or
//! idle between requests) is closed after [`IDLE`], and the one idle the
//! longest makes room when a new one comes and all are taken; a request
//! gets [`REQUEST_TIMEOUT`] to be read and answered.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;

/// The most connections the console holds at once.
pub const MAX_CONNECTIONS: usize = 256;

/// How long a connection may go without a request in progress: its
/// request head must arrive within this, and an idle keep-alive
/// connection closes after it (the page asks every second while open).
pub const IDLE: Duration = Duration::from_secs(10);

/// How long one request may take, its body read and its answer made (a
/// store read included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The address of the client that sent a request, in its extensions.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Serves `app` on `listener`, forever.
pub async fn serve(listener: TcpListener, app: Router) {
    let open = Arc::new(Open::default());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of open files, or a connection reset before it was
            // accepted: the connections held close in time; try again.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(connection) = open.admit() else {
            // Every connection is serving a request: refuse this one.
            drop(stream);
            continue;
        };
        tokio::spawn(serve_connection(
            stream,
            Peer(peer),
            app.clone(),
            connection,
            open.clone(),
        ));
    }
}

/// One connection: its requests, until it ends, idles too long or is
/// told to make room.
async fn serve_connection(
    stream: TcpStream,
    peer: Peer,
    app: Router,
    connection: Arc<Connection>,
    open: Arc<Open>,
) {
    let activity = connection.clone();
    let service = hyper::service::service_fn(move |mut request| {
        request.extensions_mut().insert(peer);
        let app = app.clone();
        let busy = Busy::begin(activity.clone());
        async move {
            let response = match tokio::time::timeout(REQUEST_TIMEOUT, app.oneshot(request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => (
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request took longer than {} s to arrive and be answered",
                        REQUEST_TIMEOUT.as_secs()
                    ),
                )
                    .into_response(),
            };
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(IDLE)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    loop {
        tokio::select! {
            _ = &mut served => break,
            () = connection.evicted.notified() => break,
            () = tokio::time::sleep_until(connection.idle_until()) => {
                if connection.idle_for() >= IDLE {
                    break;
                }
            }
        }
    }
    open.remove(connection.id);
}

/// The connections held, by id.
#[derive(Default)]
struct Open {
    connections: Mutex<(u64, HashMap<u64, Arc<Connection>>)>,
}

impl Open {
    /// A new connection's place, making room when all are taken by
    /// evicting the one idle the longest; `None` when every connection is
    /// serving a request.
    fn admit(&self) -> Option<Arc<Connection>> {
        let mut guard = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let (next_id, connections) = &mut *guard;
        if connections.len() >= MAX_CONNECTIONS {
            let idlest = connections
                .values()
                .filter(|c| c.busy.load(Ordering::Acquire) == 0)
                .max_by_key(|c| c.idle_for())?
                .id;
            if let Some(evicted) = connections.remove(&idlest) {
                evicted.evicted.notify_one();
            }
        }
        *next_id += 1;
        let connection = Arc::new(Connection::new(*next_id));
        connections.insert(*next_id, connection.clone());
        Some(connection)
    }

    fn remove(&self, id: u64) {
        let mut guard = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        guard.1.remove(&id);
    }
}

/// One held connection: whether it is serving a request, and since when
/// it has not been.
struct Connection {
    id: u64,
    /// When it was accepted.
    accepted: Instant,
    /// Requests in progress.
    busy: AtomicUsize,
    /// When the last request ended (or the connection was accepted), in
    /// µs after `accepted`.
    idle_since_us: AtomicU64,
    /// Told when it must close to make room.
    evicted: Notify,
}

impl Connection {
    fn new(id: u64) -> Connection {
        Connection {
            id,
            accepted: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since_us: AtomicU64::new(0),
            evicted: Notify::new(),
        }
    }

    /// How long it has been without a request in progress (zero while it
    /// serves one).
    fn idle_for(&self) -> Duration {
        if self.busy.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let since = Duration::from_micros(self.idle_since_us.load(Ordering::Acquire));
        self.accepted.elapsed().saturating_sub(since)
    }

    /// When it will have been idle for [`IDLE`], if it stays so.
    fn idle_until(&self) -> Instant {
        Instant::now() + IDLE.saturating_sub(self.idle_for())
    }
}

/// A request in progress on a connection, until dropped.
struct Busy(Arc<Connection>);

impl Busy {
    fn begin(connection: Arc<Connection>) -> Busy {
        connection.busy.fetch_add(1, Ordering::AcqRel);
        Busy(connection)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let connection = &self.0;
        let now = connection.accepted.elapsed().as_micros();
        connection
            .idle_since_us
            .store(u64::try_from(now).unwrap_or(u64::MAX), Ordering::Release);
        connection.busy.fetch_sub(1, Ordering::AcqRel);
    }
}
