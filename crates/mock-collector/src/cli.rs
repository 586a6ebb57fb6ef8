//! The command line, and the [`CollectorConfig`] it turns into.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use eventbus::ClientId;

use crate::faults::FaultPlan;
use crate::registry::CollectorType;

/// How long a graceful shutdown waits for running tasks.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A collector that takes tasks from the eventbus and does real, light work:
/// processes and sockets (from /proc), or a bounded directory walk.
#[derive(Debug, Clone, Parser)]
#[command(name = "mock-collector", version)]
pub struct Cli {
    /// Collector type: process|network|filesystem (aliases procmond|netmond|fsmond).
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: CollectorType,
    /// Instance number, used in the default client id `<alias>-<instance>`.
    #[arg(long)]
    pub instance: u32,
    /// Broker socket (default: $EVENTBUS_SOCKET, else the per-user default path).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Client id (default `<alias>-<instance>`, e.g. `procmond-1`).
    #[arg(long)]
    pub id: Option<ClientId>,
    /// Most tasks held at once; tasks run concurrently up to this many.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub prefetch: u32,
    /// Pause before replying to each task, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub delay_ms: u64,
    /// Every Nth task gets an error reply.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub fail_every: Option<u64>,
    /// Abort (SIGABRT) on receiving the Nth task, before replying.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub crash_after: Option<u64>,
    /// Freeze the whole process on receiving the Nth task (heartbeats stop too).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub hang_after: Option<u64>,
    /// Heartbeat interval to ask the broker for, in milliseconds (3 misses allowed).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_interval_ms: Option<u64>,
    /// Exit (code 3) when the broker is lost instead of reconnecting.
    #[arg(long)]
    pub no_reconnect: bool,
    /// Publish a snapshot event on `events.<capability>.<kind>` every N milliseconds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub emit_interval_ms: Option<u64>,
    /// Directory a filesystem collector reports in its events (default: the cwd).
    #[arg(long, value_name = "PATH")]
    pub watch_path: Option<PathBuf>,
}

/// Why the command line could not be turned into a [`CollectorConfig`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The default client id `<alias>-<instance>` is not a valid client id.
    #[error("invalid default client id: {0}")]
    ClientId(#[from] eventbus::names::NameError),
    /// No `--watch-path` and the current directory is unreadable.
    #[error("cannot read the current directory: {0}")]
    CurrentDir(#[source] std::io::Error),
}

/// Everything a collector run needs, with defaults resolved.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// The collector type.
    pub kind: CollectorType,
    /// The client id to connect as.
    pub client_id: ClientId,
    /// The broker socket.
    pub socket: PathBuf,
    /// Queue prefetch, and the bound on concurrent tasks.
    pub prefetch: u32,
    /// Pause before each reply.
    pub delay: Duration,
    /// Injected faults.
    pub faults: FaultPlan,
    /// Heartbeat interval to ask for.
    pub heartbeat: Option<Duration>,
    /// Whether to reconnect after losing the broker.
    pub reconnect: bool,
    /// Interval of snapshot events, if any.
    pub emit_interval: Option<Duration>,
    /// Directory of filesystem events.
    pub watch_path: PathBuf,
    /// How long shutdown waits for running tasks.
    pub drain_timeout: Duration,
}

impl Cli {
    /// Resolves defaults into a [`CollectorConfig`].
    pub fn into_config(self) -> Result<CollectorConfig, ConfigError> {
        let client_id = match self.id {
            Some(id) => id,
            None => ClientId::new(self.kind.default_client_id(self.instance))?,
        };
        let watch_path = match self.watch_path {
            Some(path) => path,
            None => std::env::current_dir().map_err(ConfigError::CurrentDir)?,
        };
        Ok(CollectorConfig {
            kind: self.kind,
            client_id,
            socket: self
                .socket
                .unwrap_or_else(eventbus::transport::default_socket_path),
            prefetch: self.prefetch,
            delay: Duration::from_millis(self.delay_ms),
            faults: FaultPlan {
                fail_every: self.fail_every,
                crash_after: self.crash_after,
                hang_after: self.hang_after,
            },
            heartbeat: self.heartbeat_interval_ms.map(Duration::from_millis),
            reconnect: !self.no_reconnect,
            emit_interval: self.emit_interval_ms.map(Duration::from_millis),
            watch_path,
            drain_timeout: DRAIN_TIMEOUT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_defaults_resolve() {
        let cli = Cli::try_parse_from([
            "mock-collector",
            "--type",
            "netmond",
            "--instance",
            "2",
            "--socket",
            "/tmp/x.sock",
        ])
        .unwrap();
        let config = cli.into_config().unwrap();
        assert_eq!(config.kind, CollectorType::Network);
        assert_eq!(config.client_id.as_str(), "netmond-2");
        assert_eq!(config.prefetch, 4);
        assert_eq!(config.faults, FaultPlan::default());
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["mock-collector", "--type", "diskmond", "--instance", "1"][..],
            &[
                "mock-collector",
                "--type",
                "process",
                "--instance",
                "1",
                "--prefetch",
                "0",
            ],
            &[
                "mock-collector",
                "--type",
                "process",
                "--instance",
                "1",
                "--id",
                "bad id",
            ],
            &["mock-collector", "--type", "process"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}
