//! Shared fixtures for the integration tests: a broker on a private socket, and
//! stream helpers that wait with a deadline instead of sleeping.
#![allow(dead_code, missing_docs)]

use std::future::poll_fn;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use eventbus::broker::{Broker, BrokerConfig};
use eventbus::{Client, ClientId, ClientOptions};
use futures_core::Stream;
use tokio::sync::oneshot;

/// How long any single wait in a test may take before it counts as a failure.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A broker running inside the test's runtime on its own temp socket.
pub struct TestBroker {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ebt")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

impl TestBroker {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut BrokerConfig)) -> Self {
        let dir = temp_dir();
        let socket = dir.path().join("s/b.sock");
        Self::start_in(dir, socket, configure)
    }

    /// Stops this broker gracefully and starts a new one on the same socket.
    pub async fn restart(mut self) -> Self {
        self.stop_and_wait().await;
        let dir = std::mem::replace(&mut self.dir, temp_dir());
        Self::start_in(dir, self.socket.clone(), |_| {})
    }

    fn start_in(
        dir: tempfile::TempDir,
        socket: PathBuf,
        configure: impl FnOnce(&mut BrokerConfig),
    ) -> Self {
        let mut config = BrokerConfig::new(&socket);
        // Tests often stop with deliveries unsettled; don't wait the default 5 s for them.
        config.drain_timeout_ms = 300;
        configure(&mut config);
        let broker = Broker::bind(config).expect("bind");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            broker
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("broker run");
        });
        Self {
            dir,
            socket,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn options(&self, id: &str) -> ClientOptions {
        ClientOptions::new(&self.socket)
            .client_id(ClientId::new(id).unwrap())
            .request_timeout(DEADLINE)
    }

    pub async fn client(&self, id: &str) -> Client {
        Client::connect(self.options(id)).await.expect("connect")
    }

    /// Stops the broker gracefully and waits for it.
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
                .expect("broker stops in time")
                .expect("broker task");
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The next item of a stream, failing the test after [`DEADLINE`].
pub async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    tokio::time::timeout(DEADLINE, poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)))
        .await
        .expect("stream item within the deadline")
}

/// The next item if one arrives within `wait` (`None` also when the stream ended).
pub async fn next_within<S: Stream + Unpin>(stream: &mut S, wait: Duration) -> Option<S::Item> {
    tokio::time::timeout(wait, poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)))
        .await
        .ok()
        .flatten()
}

/// Whether a stream yields nothing within `wait` (for "must not receive" checks;
/// an item that does arrive is consumed).
pub async fn quiet_for<S: Stream + Unpin>(stream: &mut S, wait: Duration) -> bool {
    tokio::time::timeout(wait, poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)))
        .await
        .is_err()
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
