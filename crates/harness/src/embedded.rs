//! [`TestBroker`]: a broker inside the test's own runtime, on a socket in a
//! fresh temporary directory: no binary to build, nothing to reap.

use std::path::{Path, PathBuf};

use eventbus::{Broker, BrokerConfig, Client, ClientId, ClientOptions};
use tempfile::TempDir;
use tokio::sync::oneshot;

use crate::wait::DEADLINE;

/// How long an embedded broker waits for unsettled deliveries when it stops:
/// tests often stop with some, and need not wait the default 5 s.
const DRAIN_TIMEOUT_MS: u64 = 300;

/// A short temporary directory under `/tmp` (on Unix), so socket paths stay
/// far below the ~100-byte limit of `sun_path`.
pub fn short_temp_dir() -> TempDir {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("ebh");
        b
    };
    #[cfg(unix)]
    let dir = builder.tempdir_in("/tmp");
    #[cfg(not(unix))]
    let dir = builder.tempdir();
    dir.expect("create a temporary directory")
}

/// A broker running inside the test's runtime on its own socket.
///
/// ```no_run
/// # async fn demo() {
/// use eventbus_harness::{TestBroker, next};
/// let broker = TestBroker::start().await;
/// let client = broker.client("tester").await;
/// let mut events = client.subscribe("events.#").await.unwrap();
/// client.publish("events.a", "x").unwrap();
/// assert_eq!(next(&mut events).await.unwrap().payload(), "x");
/// broker.shutdown().await;
/// # }
/// ```
#[derive(Debug)]
pub struct TestBroker {
    socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Dropped last: the broker stops before its directory goes.
    dir: Option<TempDir>,
}

impl TestBroker {
    /// A broker with the default configuration.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A broker whose configuration `configure` adjusts. Its socket is
    /// `<temporary directory>/s/b.sock`: the broker creates `s/` itself,
    /// private, as it would on a host.
    pub async fn start_with(configure: impl FnOnce(&mut BrokerConfig)) -> Self {
        let dir = short_temp_dir();
        let socket = dir.path().join("s").join("b.sock");
        let mut broker = Self::start_at(&socket, configure);
        broker.dir = Some(dir);
        broker
    }

    /// A broker on `socket` (whose directory the caller owns).
    pub(crate) fn start_at(socket: &Path, configure: impl FnOnce(&mut BrokerConfig)) -> Self {
        let mut config = BrokerConfig::new(socket);
        config.drain_timeout_ms = DRAIN_TIMEOUT_MS;
        configure(&mut config);
        let broker = Broker::bind(config).expect("bind the embedded broker");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            broker
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("the embedded broker runs");
        });
        Self {
            socket: socket.to_owned(),
            stop: Some(stop),
            task: Some(task),
            dir: None,
        }
    }

    /// Its socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its temporary directory (where the socket is), if it owns one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(TempDir::path)
    }

    /// Client options for it, as client `id`, with [`DEADLINE`] as the request timeout.
    pub fn options(&self, id: &str) -> ClientOptions {
        ClientOptions::new(&self.socket)
            .client_id(ClientId::new(id).expect("a valid client id"))
            .request_timeout(DEADLINE)
    }

    /// A client connected as `id`.
    pub async fn client(&self, id: &str) -> Client {
        Client::connect(self.options(id))
            .await
            .expect("connect to the embedded broker")
    }

    /// Stops it gracefully and starts a new one on the same socket, with the
    /// default configuration.
    pub async fn restart(self) -> Self {
        self.restart_with(|_| {}).await
    }

    /// Stops it gracefully and starts a new one on the same socket, with the
    /// default configuration as `configure` changes it (the same data
    /// directory, for a durable broker's journal).
    pub async fn restart_with(mut self, configure: impl FnOnce(&mut BrokerConfig)) -> Self {
        self.stop_and_wait().await;
        let mut next = Self::start_at(&self.socket, configure);
        next.dir = self.dir.take();
        next
    }

    /// Stops it gracefully and waits for it.
    pub async fn shutdown(mut self) {
        self.stop_and_wait().await;
    }

    async fn stop_and_wait(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the embedded broker stops in time")
                .expect("the embedded broker's task");
        }
    }
}

impl TestBroker {
    /// Stops it at once, without draining: a crash, as far as its clients
    /// can tell (for a graceful stop, [`shutdown`](Self::shutdown)).
    pub fn abort(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.abort();
    }
}
