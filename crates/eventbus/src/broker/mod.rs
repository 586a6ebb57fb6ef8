//! The broker: accepts connections and routes frames between them.
//!
//! Data flows one way: the listener accepts a connection and spawns its
//! connection task; that task reads frames and hands each batch to the
//! router, which owns all routing state and pushes frames into the bounded
//! outbound queues that each connection's writer drains. A ticker drives
//! heartbeats and expiry.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use eventbus::broker::{Broker, BrokerConfig};
//! let broker = Broker::bind(BrokerConfig::new("/tmp/eventbus-demo/broker.sock"))?;
//! broker.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod auth;
mod command;
mod config;
mod confirm;
mod connection;
mod effects;
mod ids;
pub mod journal;
pub mod monitor;
mod queue;
mod refusal;
mod router;
mod shrink;
mod slab;
mod stats;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use interprocess::local_socket::traits::tokio::Listener as _;
use tokio_util::task::TaskTracker;

pub use auth::{
    AuthConfig, AuthError, BadSecretHash, QuotaOverrides, TopicRulesConfig, UserConfig, hash_secret,
};
pub use config::{
    BrokerConfig, ConfigError, DurabilityConfig, MemoryConfig, QueueConfig, QueueOverride,
    QuotaConfig, SubscriberConfig,
};
pub use monitor::{Monitor, MonitorConfig};
pub use stats::rss_bytes;

// For the fuzz targets (`crate::fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub use router::fuzz_model;

/// The edge on one frame body, for the fuzz targets (`crate::fuzzing`):
/// `None` for a command, else whether its refusal is `Unreadable` (a
/// publish or reply prost reads that the broker's readers refused even
/// once encoded canonically).
#[cfg(fuzzing)]
pub(crate) fn fuzz_edge(body: bytes::Bytes) -> Result<Option<bool>, crate::codec::FrameError> {
    use refusal::{ProtocolRefusal, Refusal};
    let inbound = command::decode(body, &mut command::TopicCache::default())?;
    Ok(inbound
        .err()
        .map(|r| matches!(r.refusal, Refusal::Protocol(ProtocolRefusal::Unreadable))))
}

use crate::transport::{BindError, Listener};
use effects::RouterCell;
use refusal::DisconnectReason;
use router::Router;

/// How often a draining broker checks whether deliveries are still in flight.
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// How long the listener waits after an accept error that may pass (a file
/// descriptor shortage), so it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// State shared by the listener, the connection tasks and the ticker.
#[derive(Debug)]
pub(crate) struct Shared {
    config: Arc<BrokerConfig>,
    /// Who each connection is.
    auth: auth::Authenticator,
    router: RouterCell,
    tracker: TaskTracker,
    /// Accepted sockets not yet closed, registered or not: what
    /// `max_connections` bounds.
    sockets: AtomicUsize,
}

/// Why the broker stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Accepting connections failed in a way that will not recover.
    #[error("accepting connections failed: {0}")]
    Accept(#[source] std::io::Error),
    /// The ticker (heartbeats, ack timeouts, request expiry) stopped, which
    /// only a bug can cause: rather than run on without timers, the broker
    /// shuts down and says why.
    #[error("the ticker stopped: {0}")]
    Ticker(String),
}

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The socket could not be taken.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The auth file is unusable.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The journal of durable queues could not be opened.
    #[error("the journal could not be opened: {0}")]
    Journal(#[from] journal::OpenError),
}

/// A broker bound to its socket, ready to [`run`](Broker::run).
#[derive(Debug)]
pub struct Broker {
    listener: Listener,
    shared: Arc<Shared>,
    socket: PathBuf,
}

impl Broker {
    /// Validates `config` and takes the socket.
    ///
    /// Fails if the configuration is invalid, or if another broker is listening on the socket; a socket file left by a
    /// dead broker is replaced.
    pub fn bind(config: BrokerConfig) -> Result<Self, StartError> {
        config.validate()?;
        let users = config
            .auth_file
            .as_deref()
            .map(AuthConfig::load)
            .transpose()?;
        let auth = auth::Authenticator::new(users.as_ref(), &config)?;
        let listener = crate::transport::bind(&config.socket)?;
        let socket = config.socket.clone();
        let config = Arc::new(config);
        let router = RouterCell::new(Router::new(config.clone(), Instant::now()));
        if config.uses_journal() {
            // Opened once the socket is ours: a second broker on the same
            // socket fails above and never touches the journal.
            let confirmations = router.confirmations().clone();
            let (journal, recovered) =
                journal::Journal::open(config.journal_config(), move |report| {
                    confirmations.synced(&report);
                })?;
            tracing::info!(
                dir = %config.journal_dir().display(),
                queues = recovered.queues.len(),
                messages = recovered.queues.iter().map(|q| q.messages.len()).sum::<usize>(),
                results = recovered.results.len(),
                "journal opened"
            );
            router.with(|r| r.attach_journal(journal, &recovered));
        }
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                router,
                auth,
                config,
                tracker: TaskTracker::new(),
                sockets: AtomicUsize::new(0),
            }),
            socket,
        })
    }

    /// The socket path clients connect to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A read-only [`Monitor`] of this broker, for dashboards and exporters.
    /// The first call turns on what it records (the task ring, per-worker
    /// statistics and one-second samples, bounded by [`MonitorConfig`]); a
    /// broker never asked for one records nothing. Call it before
    /// [`run`](Self::run) for samples to be taken.
    pub fn monitor(&self) -> Monitor {
        Monitor::attach(self.shared.clone())
    }

    /// Serves clients until `shutdown` completes, then shuts down gracefully:
    /// stops accepting, refuses new publishes, waits up to the drain timeout for
    /// in-flight deliveries to be acknowledged, says goodbye to every client,
    /// flushes their queues and removes the socket file.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: stop it with `shutdown`, not by dropping it. A
    /// dropped `run` stops accepting (the socket file is removed), but skips
    /// the drain and the goodbyes: the connections already open, the ticker
    /// and the sampler go on as tasks of the runtime until it shuts down,
    /// and the journal, if any, is closed only when the last of them lets
    /// go of it (a record appended is written all the same; nothing
    /// confirmed is lost).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        let Self {
            listener,
            shared,
            socket,
        } = self;
        let mut ticker = tokio::spawn(tick(shared.clone()));
        let sampler = tokio::spawn(monitor::sample(shared.clone()));
        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                stopped = &mut ticker => {
                    let why = ticker_stopped(stopped);
                    tracing::error!(why, "bug: the ticker stopped; shutting down");
                    break Err(RunError::Ticker(why));
                }
                accepted = listener.accept() => match accepted {
                    Ok(stream) => {
                        let accepted = connection::Accepted::new(shared.clone());
                        shared.tracker.spawn(connection::serve(stream, accepted));
                    }
                    Err(e) if is_transient(&e) => {
                        tracing::warn!(error = %e, "accept failed; continuing");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    Err(e) => break Err(RunError::Accept(e)),
                },
            }
        };
        // Dropping the listener removes the socket file: no new clients from here on.
        drop(listener);
        tracing::info!(socket = %socket.display(), "shutting down");
        drain(&shared).await;
        ticker.abort();
        sampler.abort();
        shared
            .router
            .with(|router| router.close_all(DisconnectReason::ShuttingDown));
        shared.tracker.close();
        let drain_timeout = Duration::from_millis(shared.config.drain_timeout_ms);
        if tokio::time::timeout(drain_timeout, shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the drain timeout; leaving them");
        }
        close_journal(&shared).await;
        result
    }
}

/// How often the ticker samples the broker's resident memory.
const MEMORY_SAMPLE: Duration = Duration::from_millis(250);
/// The share of the machine's memory the default high watermark is.
const DEFAULT_WATERMARK_SHARE: f64 = 0.4;

/// The resident memory above which the alarm goes off: configured, else a
/// share of the machine's memory where the platform tells it.
fn high_watermark(memory: &MemoryConfig) -> Option<u64> {
    match memory.high_watermark_bytes {
        0 => stats::system_memory_bytes()
            .map(|total| (total as f64 * DEFAULT_WATERMARK_SHARE) as u64),
        bytes => Some(bytes),
    }
}

/// Why the ticker task ended (it never ends by itself).
fn ticker_stopped(stopped: Result<(), tokio::task::JoinError>) -> String {
    match stopped {
        Ok(()) => "it returned".to_owned(),
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            format!("it panicked: {}", effects::panic_text(panic.as_ref()))
        }
        Err(e) => e.to_string(),
    }
}

/// Closes the journal, if there is one: its last records written and synced
/// (on a blocking thread, as closing joins the journal's threads).
async fn close_journal(shared: &Shared) {
    let Some(journal) = shared.router.with(Router::detach_journal) else {
        return;
    };
    let closed = tokio::task::spawn_blocking(move || journal.close()).await;
    match closed {
        Ok(Ok(())) => tracing::info!("journal closed"),
        Ok(Err(e)) => tracing::error!(error = %e, "closing the journal failed"),
        Err(e) => tracing::error!(error = %e, "closing the journal panicked"),
    }
}

/// Waits, up to the drain timeout, for deliveries in flight to be acknowledged.
async fn drain(shared: &Shared) {
    shared.router.with(Router::begin_drain);
    let deadline = Instant::now() + Duration::from_millis(shared.config.drain_timeout_ms);
    let mut tick = tokio::time::interval(DRAIN_POLL);
    loop {
        let in_flight = shared.router.with(|router| router.in_flight_count());
        if in_flight == 0 {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                in_flight,
                "drain timeout: deliveries still in flight are lost"
            );
            return;
        }
        tick.tick().await;
    }
}

/// Runs the router's periodic work when it is due: the next heartbeat or
/// deadline, or sooner when the router schedules something earlier.
async fn tick(shared: Arc<Shared>) {
    let wake = shared.router.with(|router| router.ticker());
    let watermark = high_watermark(&shared.config.memory);
    let mut sampled: Option<Instant> = None;
    loop {
        let now = Instant::now();
        // Resident memory, for the alarm, at most every MEMORY_SAMPLE.
        let rss = (watermark.is_some() && sampled.is_none_or(|at| now - at >= MEMORY_SAMPLE)).then(
            || {
                sampled = Some(now);
                rss_bytes()
            },
        );
        let due = shared.router.with(|router| {
            if let Some(rss) = rss {
                router.sample_memory(rss, watermark);
            }
            router.tick(now)
        });
        tokio::select! {
            () = tokio::time::sleep_until(due.into()) => {}
            // A permit stored since the tick above is not lost.
            () = wake.notified() => {}
        }
    }
}

/// Accept errors that concern one connection or a passing resource shortage.
fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | OutOfMemory
    ) || e
        .raw_os_error()
        .is_some_and(|code| code == 23 || code == 24) // ENFILE, EMFILE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ticker_that_panicked_is_told_with_its_message() {
        let stopped = tokio::spawn(async { panic!("a timer bug") }).await;
        assert_eq!(ticker_stopped(stopped), "it panicked: a timer bug");
        assert_eq!(ticker_stopped(Ok(())), "it returned");
    }
}
