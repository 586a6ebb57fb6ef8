//! [`TcpFaultProxy`]: a byte-stream fault proxy for TCP, for links the
//! frame-aware [`FaultProxy`](crate::FaultProxy) cannot sit on (it speaks
//! eventbus frames over Unix sockets): a NATS connection, say. The fleet's
//! loopback fallback puts one in front of each node's connection to each
//! NATS server, where network namespaces would cut a link.
//!
//! ```text
//! client ──▶ 127.0.0.1:<port> ──accept──▶ connection ──connect──▶ target
//!                     per direction: read a chunk ─▶ (delay) ─▶ write it
//! ```
//!
//! - [`partition`](TcpFaultProxy::partition) *holds* bytes: the pumps stop
//!   reading and new connections wait to be connected upstream, as over a cut
//!   link (connections stall, they are not reset). [`heal`](TcpFaultProxy::heal)
//!   lets everything flow on in order.
//! - [`set_delay`](TcpFaultProxy::set_delay) holds each chunk that long
//!   before writing it (latency; a slow link's throughput too).
//! - [`reset`](TcpFaultProxy::reset) closes every open connection (a lost
//!   connection, as after a NAT or firewall timeout).
//!
//! Each direction holds at most one chunk of [`CHUNK_BYTES`]; beyond that the
//! sender's socket fills, as a full TCP window would. Dropping the proxy
//! closes its listener and every connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The most bytes a direction reads (and holds) at once.
pub const CHUNK_BYTES: usize = 16 * 1024;

/// The link's faults, shared with every pump.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Faults {
    partitioned: bool,
    delay: Duration,
    /// Bumped by `reset`: connections older than this generation close.
    generation: u64,
}

/// A TCP proxy with faults, on loopback, in front of one target address.
#[derive(Debug)]
pub struct TcpFaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    faults: watch::Sender<Faults>,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpFaultProxy {
    /// A proxy on a free `127.0.0.1` port forwarding to `target`. Must be
    /// called on a tokio runtime, which runs its tasks.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (faults, watcher) = watch::channel(Faults::default());
        let accepted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(listener, target, watcher, accepted.clone()));
        Ok(Self {
            addr,
            target,
            faults,
            accepted,
            task,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where it forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Holds every byte, both ways, and every new connection, until [`heal`](Self::heal).
    pub fn partition(&self) {
        self.faults.send_modify(|f| f.partitioned = true);
    }

    /// Ends a [`partition`](Self::partition).
    pub fn heal(&self) {
        self.faults.send_modify(|f| f.partitioned = false);
    }

    /// Whether it is partitioned.
    pub fn is_partitioned(&self) -> bool {
        self.faults.borrow().partitioned
    }

    /// Holds each chunk `delay` before writing it (zero: none).
    pub fn set_delay(&self, delay: Duration) {
        self.faults.send_modify(|f| f.delay = delay);
    }

    /// Closes every connection open now; later ones are unaffected.
    pub fn reset(&self) {
        self.faults.send_modify(|f| f.generation += 1);
    }
}

impl Drop for TcpFaultProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    faults: watch::Receiver<Faults>,
    accepted: Arc<AtomicU64>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = listener.accept() => {
                let Ok((client, _)) = incoming else { continue };
                accepted.fetch_add(1, Ordering::Relaxed);
                connections.spawn(connection(client, target, faults.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Waits until the link is not partitioned; `false` if the connection was
/// reset (its generation passed) or the proxy is gone meanwhile.
async fn wait_open(faults: &mut watch::Receiver<Faults>, generation: u64) -> bool {
    faults
        .wait_for(|f| !f.partitioned || f.generation != generation)
        .await
        .is_ok_and(|f| f.generation == generation)
}

async fn connection(client: TcpStream, target: SocketAddr, mut faults: watch::Receiver<Faults>) {
    let generation = faults.borrow().generation;
    if !wait_open(&mut faults, generation).await {
        return;
    }
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (up_read, up_write) = upstream.into_split();
    let mut reset = faults.clone();
    tokio::select! {
        _ = async {
            tokio::join!(
                pump(client_read, up_write, faults.clone(), generation),
                pump(up_read, client_write, faults, generation),
            )
        } => {}
        _ = reset.wait_for(|f| f.generation != generation) => {}
    }
}

/// Copies one direction chunk by chunk, honouring the faults, until either
/// side ends; then shuts the writing side.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
    generation: u64,
) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        if !wait_open(&mut faults, generation).await {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = faults.borrow().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // Read before a partition began, held until it heals.
        if !wait_open(&mut faults, generation).await {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::DEADLINE;

    /// An echo server on loopback.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, bytes: &[u8], within: Duration) -> bool {
        let mut back = vec![0u8; bytes.len()];
        stream.write_all(bytes).await.unwrap();
        tokio::time::timeout(within, stream.read_exact(&mut back))
            .await
            .is_ok_and(|r| r.is_ok() && back == bytes)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn forwards_holds_during_a_partition_and_delivers_after_the_heal() {
        let proxy = TcpFaultProxy::start(echo().await).await.unwrap();
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut stream, b"one", DEADLINE).await);
        proxy.partition();
        stream.write_all(b"held").await.unwrap();
        let mut back = [0u8; 4];
        let during =
            tokio::time::timeout(Duration::from_millis(200), stream.read_exact(&mut back)).await;
        assert!(during.is_err(), "bytes crossed a partition");
        // A new connection waits too.
        let mut late = TcpStream::connect(proxy.addr()).await.unwrap();
        late.write_all(b"late").await.unwrap();
        proxy.heal();
        tokio::time::timeout(DEADLINE, stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"held");
        tokio::time::timeout(DEADLINE, late.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"late");
        assert_eq!(proxy.accepted(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reset_closes_open_connections_only() {
        let proxy = TcpFaultProxy::start(echo().await).await.unwrap();
        let mut old = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut old, b"x", DEADLINE).await);
        proxy.reset();
        let mut rest = Vec::new();
        // EOF or a reset: either way closed, and nothing more came.
        let _ = tokio::time::timeout(DEADLINE, old.read_to_end(&mut rest))
            .await
            .expect("the old connection closed");
        assert!(rest.is_empty());
        let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut new, b"y", DEADLINE).await);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn delay_holds_each_chunk() {
        let proxy = TcpFaultProxy::start(echo().await).await.unwrap();
        proxy.set_delay(Duration::from_millis(50));
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        let start = tokio::time::Instant::now();
        assert!(round_trip(&mut stream, b"slow", DEADLINE).await);
        // Delayed both ways: at least two delays.
        assert!(
            start.elapsed() >= Duration::from_millis(100),
            "{:?}",
            start.elapsed()
        );
    }
}
