//! A cluster: one broker (a `broker` process, or one embedded in the test) on
//! a socket in a fresh temporary directory, the processes a test adds to it,
//! and fault proxies in front of it.
//!
//! The directory is short (`/tmp/ebc*/`) so the socket paths, `<dir>/b.sock`
//! for the broker and `<dir>/p<n>.sock` for fault proxies, stay far below the
//! ~100-byte `sun_path` limit. It holds the broker's config file and every
//! process's logs. When the cluster is dropped the broker is stopped (a
//! process is killed and reaped) and the socket file removed; then the
//! directory is removed, unless the test is panicking: then it is kept and its
//! path printed, with the logs in it.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
#[cfg(unix)]
use std::sync::atomic::Ordering;

use eventbus::{BrokerConfig, Client, ClientId, ClientOptions};
use tempfile::TempDir;

use crate::broker::{BrokerBuilder, BrokerProcess};
use crate::embedded::TestBroker;
use crate::process::{Process, ProcessBuilder};
#[cfg(unix)]
use crate::proxy::FaultProxy;
use crate::wait::DEADLINE;

/// The variable a spawned process finds the broker's socket in, unless its
/// builder sets it: what `eventbus::ClientOptions::default()` reads.
pub const SOCKET_ENV: &str = "EVENTBUS_SOCKET";

/// The broker of a cluster.
#[derive(Debug)]
enum ClusterBroker {
    Process(Box<BrokerProcess>),
    Embedded(TestBroker),
}

/// A broker, its directory, and what a test starts around it. Processes are
/// owned by the test (declare them after the cluster, so they are dropped
/// first and their logs are still there if the test fails).
///
/// ```no_run
/// # async fn demo() {
/// use eventbus_harness::{Cluster, ProcessBuilder, Ready};
/// let cluster = Cluster::start().await; // the `broker` binary as a process
/// let _worker = cluster
///     .spawn(ProcessBuilder::new("worker-1", "target/debug/my-worker").ready(Ready::JsonLine))
///     .await; // finds the broker through $EVENTBUS_SOCKET
/// let client = cluster.client("tester").await;
/// # }
/// ```
#[derive(Debug)]
pub struct Cluster {
    broker: ClusterBroker,
    path: PathBuf,
    socket: PathBuf,
    /// Fault proxies started so far, for their socket names (Unix only).
    #[cfg_attr(not(unix), allow(dead_code))]
    proxies: AtomicU32,
    dir: Option<TempDir>,
}

fn cluster_dir() -> TempDir {
    crate::embedded::short_temp_dir()
}

impl Cluster {
    /// A cluster whose broker is a `broker` process with its defaults.
    pub async fn start() -> Self {
        Self::start_with(BrokerBuilder::new()).await
    }

    /// A cluster whose broker process is started by `broker`.
    pub async fn start_with(broker: BrokerBuilder) -> Self {
        let dir = cluster_dir();
        let path = dir.path().to_owned();
        let socket = path.join("b.sock");
        let broker = broker.start(&path, &socket).await;
        Self::new(ClusterBroker::Process(Box::new(broker)), dir, socket)
    }

    /// A cluster whose broker runs inside the test ([`TestBroker`]): no
    /// binary needed, but no broker faults either.
    pub async fn embedded() -> Self {
        Self::embedded_with(|_| {}).await
    }

    /// [`embedded`](Self::embedded), its configuration adjusted by `configure`.
    pub async fn embedded_with(configure: impl FnOnce(&mut BrokerConfig)) -> Self {
        let dir = cluster_dir();
        let socket = dir.path().join("b.sock");
        let broker = TestBroker::start_at(&socket, configure);
        Self::new(ClusterBroker::Embedded(broker), dir, socket)
    }

    fn new(broker: ClusterBroker, dir: TempDir, socket: PathBuf) -> Self {
        Self {
            broker,
            path: dir.path().to_owned(),
            socket,
            proxies: AtomicU32::new(0),
            dir: Some(dir),
        }
    }

    /// The cluster directory: config, logs, sockets.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The broker's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The broker process. Panics for an [`embedded`](Self::embedded) broker.
    pub fn broker(&self) -> &BrokerProcess {
        match &self.broker {
            ClusterBroker::Process(broker) => broker,
            ClusterBroker::Embedded(_) => panic!("an embedded broker is not a process"),
        }
    }

    /// The broker process, for faults and restarts. Panics for an
    /// [`embedded`](Self::embedded) broker.
    pub fn broker_mut(&mut self) -> &mut BrokerProcess {
        match &mut self.broker {
            ClusterBroker::Process(broker) => broker,
            ClusterBroker::Embedded(_) => panic!("an embedded broker is not a process"),
        }
    }

    /// Starts `process` with its logs in the cluster directory (unless its
    /// builder chose a place) and `EVENTBUS_SOCKET` set to the broker's
    /// socket (unless its builder sets it), and waits until it is ready.
    /// Panics, with its logs, if it does not start.
    pub async fn spawn(&self, process: ProcessBuilder) -> Process {
        self.spawn_on(&self.socket, process).await
    }

    /// [`spawn`](Self::spawn), its `EVENTBUS_SOCKET` pointing at `proxy`
    /// instead of straight at the broker.
    #[cfg(unix)]
    pub async fn spawn_behind(&self, proxy: &FaultProxy, process: ProcessBuilder) -> Process {
        self.spawn_on(proxy.socket(), process).await
    }

    async fn spawn_on(&self, socket: &Path, mut process: ProcessBuilder) -> Process {
        if !process.has_log_dir() {
            process = process.logs_in(&self.path);
        }
        if !process.sets_env(SOCKET_ENV) {
            process = process.env(SOCKET_ENV, socket);
        }
        process.start().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// A [`FaultProxy`] in front of the broker, listening on
    /// `<dir>/p<n>.sock`, its random choices seeded by `seed`. It forwards to
    /// the broker's socket, so it outlives broker restarts. Panics if it cannot
    /// bind.
    #[cfg(unix)]
    pub async fn fault_proxy(&self, seed: u64) -> FaultProxy {
        let n = self.proxies.fetch_add(1, Ordering::Relaxed) + 1;
        let listen = self.path.join(format!("p{n}.sock"));
        FaultProxy::start(&listen, &self.socket, seed)
            .await
            .unwrap_or_else(|e| panic!("fault proxy cannot listen on {}: {e}", listen.display()))
    }

    /// Client options for the broker, as client `id`, with [`DEADLINE`] as
    /// the request timeout.
    pub fn client_options(&self, id: &str) -> ClientOptions {
        ClientOptions::new(&self.socket)
            .client_id(ClientId::new(id).expect("a valid client id"))
            .request_timeout(DEADLINE)
    }

    /// A client connected to the broker as `id`. Panics if it cannot connect.
    pub async fn client(&self, id: &str) -> Client {
        Client::connect(self.client_options(id))
            .await
            .unwrap_or_else(|e| panic!("{id} cannot connect to {}: {e}", self.socket.display()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        match &mut self.broker {
            ClusterBroker::Process(broker) => {
                broker.kill();
            }
            ClusterBroker::Embedded(broker) => broker.abort(),
        }
        let _ = std::fs::remove_file(&self.socket);
        let Some(dir) = self.dir.take() else { return };
        if std::thread::panicking() {
            let kept = dir.keep();
            eprintln!(
                "eventbus-harness: test failed; cluster directory kept with every log: {}",
                kept.display()
            );
        }
    }
}
