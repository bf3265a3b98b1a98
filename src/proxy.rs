//! A TCP proxy that hurts the link between a client and a server.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// A TCP proxy on a free loopback port in front of a server, that can hurt
/// the link the way networks do: break it, cut a reply in the middle, or
/// slow it down. Every connection is two threads copying bytes; at most
/// [`Proxy::MAX_CONNECTIONS`] at once (more are closed at once). Stops, and
/// closes every connection, on drop.
pub struct Proxy {
    port: u16,
    link: Arc<Link>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the proxy's threads share.
struct Link {
    upstream: std::net::SocketAddr,
    stop: AtomicBool,
    broken: AtomicBool,
    fault: std::sync::Mutex<Fault>,
    pipes: std::sync::Mutex<Vec<Pipe>>,
    accepted: std::sync::atomic::AtomicU64,
    from_server: std::sync::atomic::AtomicU64,
}

/// How the server's bytes are hurt on their way to the client.
#[derive(Clone, Copy, Default)]
struct Fault {
    /// `(generation, n)`: each connection forwards at most `n` bytes of the
    /// server's replies from its opening, then is closed (those open when
    /// this is set are closed at once). The generation tells a connection's
    /// threads that it was set again.
    cut: Option<(u64, u64)>,
    /// `(chunk, delay)`: the reply goes in chunks of at most `chunk` bytes,
    /// each after `delay`.
    slow: Option<(usize, Duration)>,
}

/// One proxied connection: both sockets, and the two threads copying.
struct Pipe {
    client: std::net::TcpStream,
    server: std::net::TcpStream,
    threads: [JoinHandle<()>; 2],
}

impl Pipe {
    fn close(&self) {
        let _ = self.client.shutdown(std::net::Shutdown::Both);
        let _ = self.server.shutdown(std::net::Shutdown::Both);
    }

    fn finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    fn join(self) {
        self.close();
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

impl Proxy {
    /// The most connections open at once; more are closed on arrival.
    pub const MAX_CONNECTIONS: usize = 256;

    /// A proxy to `127.0.0.1:<port>`, forwarding faithfully until told
    /// otherwise.
    pub fn to(port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port_here = listener.local_addr().expect("local address").port();
        let link = Arc::new(Link {
            upstream: ([127, 0, 0, 1], port).into(),
            stop: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            fault: std::sync::Mutex::new(Fault::default()),
            pipes: std::sync::Mutex::new(Vec::new()),
            accepted: Default::default(),
            from_server: Default::default(),
        });
        let shared = link.clone();
        let acceptor = std::thread::Builder::new()
            .name("proxy-accept".to_owned())
            .spawn(move || accept(&shared, &listener))
            .expect("spawn the proxy");
        Proxy {
            port: port_here,
            link,
            acceptor: Some(acceptor),
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<proxy port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Closes every connection, and closes new ones as soon as they arrive,
    /// until [`Proxy::restore`].
    pub fn break_link(&self) {
        self.link.broken.store(true, Ordering::SeqCst);
        for pipe in self.link.pipes().iter() {
            pipe.close();
        }
    }

    /// Closes every open connection, and cuts every later one after `bytes`
    /// bytes of the server's replies from its opening, until
    /// [`Proxy::restore`]: the client sees a reply end in the middle.
    ///
    /// Open connections are closed rather than given `bytes` more: counted
    /// from now, a reply under way when the cut is set (or set again) would
    /// get `bytes` more than what it had already, and with `bytes` just
    /// under a reply's size it came through whole, and was applied, in a
    /// test counting the fetches applied through a cut link.
    pub fn cut_after(&self, bytes: u64) {
        {
            let mut fault = self.link.fault();
            let generation = fault.cut.map_or(0, |(g, _)| g) + 1;
            fault.cut = Some((generation, bytes));
        }
        // After the fault is set: a connection whose thread read the fault
        // before is in `pipes` by now (it is pushed under the lock it was
        // made under).
        for pipe in self.link.pipes().iter() {
            pipe.close();
        }
    }

    /// Sends the server's replies in chunks of at most `chunk` bytes, each
    /// after `delay`, until [`Proxy::restore`].
    pub fn delay_chunks(&self, chunk: usize, delay: Duration) {
        self.link.fault().slow = Some((chunk.max(1), delay));
    }

    /// Back to forwarding faithfully (connections cut stay closed).
    pub fn restore(&self) {
        *self.link.fault() = Fault::default();
        self.link.broken.store(false, Ordering::SeqCst);
    }

    /// Bytes of the server's replies forwarded so far.
    pub fn bytes_from_server(&self) -> u64 {
        self.link.from_server.load(Ordering::SeqCst)
    }

    /// Connections accepted so far, including those closed at once.
    pub fn connections(&self) -> u64 {
        self.link.accepted.load(Ordering::SeqCst)
    }
}

impl Link {
    fn fault(&self) -> std::sync::MutexGuard<'_, Fault> {
        self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pipes(&self) -> std::sync::MutexGuard<'_, Vec<Pipe>> {
        self.pipes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The acceptor thread: one [`Pipe`] per connection, unless broken or full.
fn accept(link: &Arc<Link>, listener: &TcpListener) {
    for client in listener.incoming() {
        if link.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        link.accepted.fetch_add(1, Ordering::SeqCst);
        let mut pipes = link.pipes();
        let (done, open): (Vec<Pipe>, Vec<Pipe>) = pipes.drain(..).partition(Pipe::finished);
        *pipes = open;
        done.into_iter().for_each(Pipe::join);
        if link.broken.load(Ordering::SeqCst) || pipes.len() >= Proxy::MAX_CONNECTIONS {
            continue; // dropping `client` closes it
        }
        let Ok(server) =
            std::net::TcpStream::connect_timeout(&link.upstream, Duration::from_secs(2))
        else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(client_in), Ok(server_out), Ok(server_in), Ok(client_out)) = (
            client.try_clone(),
            server.try_clone(),
            server.try_clone(),
            client.try_clone(),
        ) else {
            continue;
        };
        let requests = std::thread::spawn(move || {
            let (mut from, mut to) = (client_in, server_out);
            let _ = std::io::copy(&mut from, &mut to);
            let _ = from.shutdown(std::net::Shutdown::Both);
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
        let shared = link.clone();
        let replies = std::thread::spawn(move || replies(&shared, server_in, client_out));
        pipes.push(Pipe {
            client,
            server,
            threads: [requests, replies],
        });
    }
}

/// Copies the server's replies to the client, hurt as the link says.
fn replies(link: &Link, mut from: std::net::TcpStream, mut to: std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 16 * 1024];
    // The cut generation this connection counts from (the one set when it
    // opened), and its bytes since.
    let counting = link.fault().cut.map(|(g, _)| g);
    let mut since = 0u64;
    'reading: while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        let mut data = &buf[..n];
        while !data.is_empty() {
            let fault = *link.fault();
            let mut take = data.len();
            if let Some((chunk, delay)) = fault.slow {
                std::thread::sleep(delay);
                take = take.min(chunk);
            }
            if link.broken.load(Ordering::SeqCst) || link.stop.load(Ordering::SeqCst) {
                break 'reading;
            }
            if let Some((generation, limit)) = fault.cut {
                // A cut set (again) while this connection is open: `cut_after`
                // is closing it. Not a byte more, or the rest of a reply under
                // way would pass before the close and arrive whole.
                if counting != Some(generation) {
                    break 'reading;
                }
                take = take.min(limit.saturating_sub(since) as usize);
            }
            if take > 0 {
                if to.write_all(&data[..take]).is_err() {
                    break 'reading;
                }
                since += take as u64;
                link.from_server.fetch_add(take as u64, Ordering::SeqCst);
                data = &data[take..];
            }
            if fault.cut.is_some_and(|(_, limit)| since >= limit) {
                break 'reading;
            }
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.link.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor with a connection of our own.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let pipes: Vec<Pipe> = self.link.pipes().drain(..).collect();
        pipes.into_iter().for_each(Pipe::join);
    }
}
