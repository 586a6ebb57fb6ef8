//! A cluster: one broker process on a socket in a fresh temporary directory,
//! and the collectors a scenario adds to it.
//!
//! The directory is short (`/tmp/e2e*/`) so the socket paths, `<dir>/b.sock`
//! for the broker and `<dir>/p<n>.sock` for fault proxies, stay far below the
//! ~100-byte `sun_path` limit. It holds the broker's config file and every
//! process's logs. When the cluster is dropped the broker is killed and reaped
//! and the socket file removed; then the directory is removed, unless the test
//! is panicking: then it is kept and its path printed, with the logs in it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use tempfile::TempDir;

use crate::broker::{BrokerBuilder, BrokerProcess};
use crate::collector::{CollectorBuilder, CollectorProcess};
use crate::driver::Driver;
use crate::proxy::FaultProxy;

/// A broker and its directory. Collectors are owned by the scenario.
///
/// ```no_run
/// # async fn demo() {
/// use e2e::{Cluster, CollectorBuilder, CollectorKind};
/// let cluster = Cluster::start().await;
/// let _procmond = cluster.add_collector(CollectorBuilder::new(CollectorKind::Process, 1)).await;
/// let driver = cluster.driver().await;
/// let reply = driver
///     .request_task(CollectorKind::Process, "t-1", e2e::DEADLINE)
///     .await
///     .unwrap();
/// assert_eq!(reply.collector_id, "procmond-1");
/// # }
/// ```
#[derive(Debug)]
pub struct Cluster {
    dir: Option<TempDir>,
    path: PathBuf,
    socket: PathBuf,
    broker: BrokerProcess,
    /// Fault proxies started so far, for their socket names.
    proxies: AtomicU32,
}

impl Cluster {
    /// A cluster whose broker runs with its defaults.
    pub async fn start() -> Self {
        Self::start_with(BrokerBuilder::new()).await
    }

    /// A cluster whose broker is started by `broker`.
    pub async fn start_with(broker: BrokerBuilder) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("e2e")
            .tempdir_in("/tmp")
            .expect("create the cluster directory under /tmp");
        let path = dir.path().to_owned();
        let socket = path.join("b.sock");
        let broker = broker.start(&path, &socket).await;
        Self {
            dir: Some(dir),
            path,
            socket,
            broker,
            proxies: AtomicU32::new(0),
        }
    }

    /// The cluster directory: config, logs, socket.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The broker's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The broker.
    pub fn broker(&self) -> &BrokerProcess {
        &self.broker
    }

    /// The broker, for faults and restarts.
    pub fn broker_mut(&mut self) -> &mut BrokerProcess {
        &mut self.broker
    }

    /// Starts a collector on this cluster's broker, at any time, and waits for
    /// its ready line (it has joined its queue group by then).
    pub async fn add_collector(&self, collector: CollectorBuilder) -> CollectorProcess {
        collector.start(&self.path, &self.socket).await
    }

    /// A [`FaultProxy`] in front of the broker, listening on
    /// `<dir>/p<n>.sock`, its random choices seeded by `seed`. It forwards to
    /// the broker's socket, so it outlives broker restarts. Panics if it cannot
    /// bind.
    ///
    /// A driver behind it is `Driver::connect(proxy.socket())`; a collector,
    /// [`add_collector_behind`](Self::add_collector_behind).
    pub async fn fault_proxy(&self, seed: u64) -> FaultProxy {
        let n = self.proxies.fetch_add(1, Ordering::Relaxed) + 1;
        let listen = self.path.join(format!("p{n}.sock"));
        FaultProxy::start(&listen, &self.socket, seed)
            .await
            .unwrap_or_else(|e| panic!("fault proxy cannot listen on {}: {e}", listen.display()))
    }

    /// Starts a collector that connects through `proxy` instead of straight to
    /// the broker, and waits for its ready line (so it needs the proxy to let
    /// its handshake and subscription through).
    pub async fn add_collector_behind(
        &self,
        proxy: &FaultProxy,
        collector: CollectorBuilder,
    ) -> CollectorProcess {
        collector.start(&self.path, proxy.socket()).await
    }

    /// A new driver connected to the broker. Panics if it cannot connect.
    pub async fn driver(&self) -> Driver {
        Driver::connect(&self.socket)
            .await
            .unwrap_or_else(|e| panic!("driver cannot connect to {}: {e}", self.socket.display()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.broker.kill_if_started();
        let _ = std::fs::remove_file(&self.socket);
        let Some(dir) = self.dir.take() else { return };
        if std::thread::panicking() {
            let kept = dir.keep();
            eprintln!(
                "e2e: test failed; cluster directory kept with every log: {}",
                kept.display()
            );
        }
    }
}
