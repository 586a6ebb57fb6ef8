//! The monitor listener (`--http`, `[http]`): a live dashboard at `/`, a
//! JSON API under `/api/v1/`, `/healthz`, Prometheus `/metrics`, and a
//! WebSocket of live updates (`/api/v1/live`). Reference:
//! `docs/monitoring.md`.
//!
//! It runs on a thread of its own with its own single-threaded runtime, so
//! HTTP work never competes with routing for the broker's thread; what the
//! two share is the router's lock, which every handler takes only inside a
//! [`Monitor`] call (a snapshot copied under the lock, serialized after),
//! never across an await.
//!
//! - [`server`]: the accept loop: the connection limit, the request-head
//!   size and time limits, the `Host` check.
//! - [`api`]: the JSON endpoints and their query parameters.
//! - [`metrics`]: the Prometheus exposition.
//! - [`live`]: the WebSocket channel and the hub that feeds it.
//! - [`dashboard`]: the page and its script and style, compiled in.

mod api;
mod config;
mod dashboard;
mod live;
mod metrics;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use eventbus::broker::Monitor;
use tokio::sync::oneshot;

pub use config::HttpConfig;

/// How long a stopping listener waits for its connections' tasks.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// What every handler shares.
#[derive(Debug, Clone)]
struct AppState {
    monitor: Monitor,
    live: live::Hub,
    config: Arc<HttpConfig>,
}

/// A running monitor listener, stopped by [`stop`](Self::stop).
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `config.listen` (now, so a taken port fails before the broker
    /// says it is ready) and serves `monitor` on a thread of its own.
    pub fn start(config: &HttpConfig, monitor: Monitor) -> anyhow::Result<Self> {
        let listen = config.listen.context("no http.listen address")?;
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("cannot listen for HTTP on {listen}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "the monitor listens on a non-loopback address: it has no authentication, \
                 and whoever reaches it reads client ids, identities, topics and rates"
            );
        }
        let config = Arc::new(config.clone());
        let (stop, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the HTTP runtime")?;
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot serve HTTP");
                            return;
                        }
                    };
                    let state = AppState {
                        live: live::Hub::start(monitor.clone()),
                        monitor,
                        config: config.clone(),
                    };
                    server::serve(listener, api::router(state), &config, stopped).await;
                });
                runtime.shutdown_timeout(STOP_TIMEOUT);
            })
            .context("cannot start the HTTP thread")?;
        tracing::info!(%addr, "monitor listening: http://{addr}/");
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port chosen when `listen` said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every connection and waits for the thread.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the HTTP thread panicked");
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}
