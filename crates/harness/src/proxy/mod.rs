//! A frame-aware fault proxy for Unix-socket traffic: it sits between clients
//! and the broker and delays, paces, drops, duplicates, holds or tears whole
//! frames, so a scenario can inflict a bad network on real processes.
//!
//! ```text
//! client ──▶ FaultProxy socket ──accept──▶ connection (one per client)
//!                                            │ connects to the broker's socket
//!             per direction:  reader task ──▶ delay line ──▶ writer task
//!                             (whole frames,   (bounded)     (due time, partition,
//!                              fate decided)                  bandwidth, tear)
//! ```
//!
//! The model is a stream socket over a bad link, not a lossy datagram network:
//!
//! - The reader reads whole frames (`[u32 length][length bytes]`, at most
//!   [`MAX_FRAME_BYTES`]), so a dropped, duplicated or delayed frame never breaks the
//!   framing of the stream; only [`FaultProxy::tear`] cuts a frame, on
//!   purpose, and closes the connection after it.
//! - Latency keeps the order: a frame is released at `max(previous release,
//!   arrival + delay)`, as on a real stream.
//! - A partition *holds* frames instead of discarding them: a partitioned
//!   stream socket stalls, it does not lose bytes. The connections stay open;
//!   noticing the silent peer is the heartbeat's job, and when it gives up,
//!   its side closes, and that end is held too. After [`FaultProxy::heal`]
//!   everything held flows on, in order.
//! - Every delay line is bounded ([`DELAY_LINE_FRAMES`], [`DELAY_LINE_BYTES`]);
//!   at the bound the reader stops reading and the sender's socket fills, as
//!   a full TCP window would.
//! - When one side ends, the frames read before its end are delivered, then
//!   the other side is shut and the connection closed both ways.
//!
//! Every random choice comes from a [`Rng`] seeded by the proxy's seed, forked
//! per connection (in accept order) and direction, so a run replays.
//!
//! State is shared through one `std::sync::Mutex` (short sections, never held
//! across `.await`) and a `watch` channel that wakes writers when the faults
//! change. Dropping the [`FaultProxy`] aborts its tasks, which closes every
//! connection, and removes its socket file.

mod connection;
mod faults;
mod frame;
mod pump;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::rng::Rng;
use faults::{Flow, FlowFaults, Shared};

pub use frame::MAX_FRAME_BYTES;
pub use pump::{DELAY_LINE_BYTES, DELAY_LINE_FRAMES};
pub use stats::{DirStats, ProxyStats};

/// Which way frames flow through a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From clients to the broker.
    ToBroker,
    /// From the broker to clients.
    ToClient,
    /// Both ways.
    Both,
}

/// A fault-injecting proxy in front of a broker's socket.
///
/// ```no_run
/// # async fn demo() {
/// use std::time::Duration;
/// use eventbus::{Client, ClientOptions};
/// use eventbus_harness::{Cluster, Direction};
/// let cluster = Cluster::start().await;
/// let proxy = cluster.fault_proxy(7).await;
/// proxy.set_latency(Direction::Both, Duration::from_millis(20), Duration::from_millis(5));
/// // Any client behind it: this one, or a process started with `Cluster::spawn_behind`.
/// let client = Client::connect(ClientOptions::new(proxy.socket())).await.unwrap();
/// proxy.partition();
/// // ... frames are held both ways ...
/// proxy.heal();
/// # drop(client);
/// # }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    socket: PathBuf,
    shared: Arc<Shared>,
    listener: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `listen` (a Unix socket path) and, for each accepted
    /// connection, connects to `upstream` (the broker's socket) and pumps
    /// frames both ways. `seed` seeds every random decision.
    ///
    /// Fails if `listen` cannot be bound (it exists already, say).
    pub async fn start(listen: &Path, upstream: &Path, seed: u64) -> std::io::Result<FaultProxy> {
        let listener = UnixListener::bind(listen)?;
        let shared = Shared::new();
        let task = tokio::spawn(accept_loop(
            listener,
            upstream.to_owned(),
            shared.clone(),
            Rng::new(seed),
        ));
        Ok(FaultProxy {
            socket: listen.to_owned(),
            shared,
            listener: task,
        })
    }

    /// Where clients connect.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Delays each frame in `dir` by `base` plus a uniform random part in
    /// `[0, jitter]`, keeping the order. Applies to frames read after the call.
    pub fn set_latency(&self, dir: Direction, base: Duration, jitter: Duration) {
        self.set(dir, |f| {
            f.latency = base;
            f.jitter = jitter;
        });
    }

    /// Limits each connection's `dir` flow to `bytes_per_sec` (`None`:
    /// unlimited). Each frame is delivered once all its bytes would have
    /// crossed the link, after the frames before it.
    pub fn set_bandwidth(&self, dir: Direction, bytes_per_sec: Option<u64>) {
        self.set(dir, |f| f.bandwidth = bytes_per_sec);
    }

    /// Drops each whole frame in `dir` with `probability` (0 to 1).
    pub fn set_drop(&self, dir: Direction, probability: f64) {
        self.set(dir, |f| f.drop = probability);
    }

    /// Writes each frame in `dir` twice with `probability` (0 to 1).
    pub fn set_duplicate(&self, dir: Direction, probability: f64) {
        self.set(dir, |f| f.duplicate = probability);
    }

    fn set(&self, dir: Direction, change: impl Fn(&mut FlowFaults)) {
        self.shared.update(|s| {
            for flow in Flow::of(dir) {
                change(s.flow_mut(flow));
            }
        });
    }

    /// Starts a partition: no frame flows either way, on current and new
    /// connections, which stay open. Frames read meanwhile are held (up to the
    /// delay lines' bounds), and so is the end of a stream; all flow, in
    /// order, after [`heal`](Self::heal).
    pub fn partition(&self) {
        self.partition_one_way(Direction::Both);
    }

    /// Starts a one-way partition: frames in `dir` are held (on current and
    /// new connections) while the other way flows, as when one side's
    /// answers are stuck; [`heal`](Self::heal) releases them, in order.
    pub fn partition_one_way(&self, dir: Direction) {
        self.shared.update(|s| {
            for flow in Flow::of(dir) {
                s.hold(flow, true);
            }
        });
    }

    /// Ends a partition, both ways.
    pub fn heal(&self) {
        self.shared.update(|s| s.held = [false; 2]);
    }

    /// Whether a partition (either way) is in force.
    pub fn is_partitioned(&self) -> bool {
        self.shared.with(|s| s.held.contains(&true))
    }

    /// Removes every fault: latency, bandwidth, drop, duplicate, partition
    /// and an armed tear. Frames already delayed keep their release times.
    pub fn clear(&self) {
        self.shared.update(|s| {
            s.flows = Default::default();
            s.held = [false; 2];
            s.tear = None;
        });
    }

    /// Arms a one-shot tear: the next frame to be written in `dir` (on any
    /// connection; with [`Direction::Both`] whichever comes first) is written
    /// only up to half its bytes, then its connection is closed both ways.
    pub fn tear(&self, dir: Direction) {
        self.shared.update(|s| s.tear = Some(dir));
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept loop owns the connections' tasks, which own their pumps:
        // aborting it drops them all, and with them every socket.
        self.listener.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Accepts clients until aborted; each connection runs on its own task.
async fn accept_loop(listener: UnixListener, upstream: PathBuf, shared: Arc<Shared>, root: Rng) {
    let upstream: Arc<Path> = upstream.into();
    let mut connections = JoinSet::new();
    let mut accepted = 0u64;
    loop {
        tokio::select! {
            next = listener.accept() => match next {
                Ok((client, _)) => {
                    accepted += 1;
                    shared.with(|s| s.stats.connections += 1);
                    let (upstream, shared) = (upstream.clone(), shared.clone());
                    let rng = root.fork(accepted);
                    connections.spawn(async move {
                        connection::serve(client, &upstream, shared, rng).await;
                    });
                }
                // Out of descriptors, say: back off rather than spin, and let
                // the open connections finish meanwhile.
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The pause after a failed `accept` (too many open files, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
