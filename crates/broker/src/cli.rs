//! The `broker` command line and how it layers over the configuration.
//!
//! Precedence, lowest first: [`BrokerConfig`] defaults, the `--config` file,
//! then each flag given on the command line.

use std::path::PathBuf;

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use eventbus::codec::MIN_MAX_FRAME_BYTES;
use eventbus::{BrokerConfig, OverflowPolicy};

use crate::http::HttpConfig;

/// The eventbus broker: routes messages between local processes.
#[derive(Debug, Parser)]
#[command(name = "broker", version)]
pub struct Cli {
    /// Settings for running the broker.
    #[command(flatten)]
    pub options: RunOptions,
    /// A subcommand instead of running the broker.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands of `broker`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the default configuration as commented TOML.
    GenerateConfig,
    /// Read a secret from stdin and print its `secret_sha256` line for the
    /// auth file (the secret never goes on a command line).
    HashSecret,
}

/// Flags that override the configuration file.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// Socket path to listen on [default: $EVENTBUS_SOCKET, else
    /// $XDG_RUNTIME_DIR/eventbus/broker.sock, else /tmp/eventbus-$UID/broker.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// TOML configuration file (see `broker generate-config`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Auth file: users, secret hashes, permissions, quotas (see
    /// docs/security.md); without one, every client of this user may do
    /// everything but cancel other clients' messages.
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Where durable queues keep their journal [default:
    /// $XDG_STATE_HOME/eventbus, else ~/.local/state/eventbus].
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// Make every queue group durable (`queue.durable`): confirmed messages
    /// survive a broker crash.
    #[arg(long)]
    pub durable: bool,
    /// Heartbeat interval offered to clients, in milliseconds.
    #[arg(long, value_name = "N")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Missed heartbeats after which a peer is declared dead.
    #[arg(long, value_name = "N")]
    pub heartbeat_misses: Option<u32>,
    /// Largest frame accepted or sent, in bytes.
    #[arg(long, value_name = "N")]
    pub max_frame_bytes: Option<usize>,
    /// Most client connections at once.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most messages waiting in each queue group (`queue.max_len`).
    #[arg(long, value_name = "N")]
    pub max_queue_len: Option<usize>,
    /// What a full queue does with a new message (`queue.overflow`).
    #[arg(long, value_name = "POLICY", value_parser = ["drop-oldest", "drop-incoming", "reject", "block"])]
    pub overflow: Option<String>,
    /// With `--overflow block`: how long a publisher waits for room, in milliseconds.
    #[arg(long, value_name = "N")]
    pub block_timeout_ms: Option<u64>,
    /// Serve the monitor (dashboard, JSON API, /metrics) on this address,
    /// e.g. 127.0.0.1:9090 (port 0: any free port, announced in the ready
    /// line); loopback only unless --http-allow-non-loopback.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Let --http (or http.listen) be an address other than loopback; the
    /// monitor has no authentication.
    #[arg(long)]
    pub http_allow_non_loopback: bool,
}

/// Everything the `broker` binary runs with: the library's configuration
/// and the monitor listener's.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub broker: BrokerConfig,
    pub http: HttpConfig,
}

/// Parses a configuration file: `[http]` is the binary's, the rest the
/// library's `BrokerConfig` (both refuse unknown keys).
pub fn parse_file(text: &str) -> anyhow::Result<Settings> {
    let mut table: toml::Table = toml::from_str(text)?;
    let http = match table.remove("http") {
        Some(value) => value.try_into().context("invalid [http] section")?,
        None => HttpConfig::default(),
    };
    let broker: BrokerConfig = toml::Value::Table(table).try_into()?;
    broker.validate()?;
    Ok(Settings { broker, http })
}

impl RunOptions {
    /// The effective configuration: defaults, then the file, then the flags.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut settings = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                parse_file(&text).with_context(|| path.display().to_string())?
            }
            None => Settings {
                broker: BrokerConfig::default(),
                http: HttpConfig::default(),
            },
        };
        if let Some(addr) = self.http {
            settings.http.listen = Some(addr);
        }
        if self.http_allow_non_loopback {
            settings.http.allow_non_loopback = true;
        }
        settings.http.validate()?;
        settings.broker = self.config_from(settings.broker)?;
        Ok(settings)
    }

    /// The library's configuration: `config` with the flags applied.
    #[cfg(test)]
    pub fn config(&self) -> anyhow::Result<BrokerConfig> {
        self.settings().map(|s| s.broker)
    }

    fn config_from(&self, config: BrokerConfig) -> anyhow::Result<BrokerConfig> {
        let mut config = config;
        self.apply(&mut config);
        config.validate()?;
        // `BrokerConfig::validate` leaves this one to the codec, which silently
        // raises a smaller limit; refusing it here is clearer for an operator.
        anyhow::ensure!(
            config.max_frame_bytes >= MIN_MAX_FRAME_BYTES,
            "invalid broker configuration: max_frame_bytes = {}: must be at least {MIN_MAX_FRAME_BYTES}",
            config.max_frame_bytes
        );
        Ok(config)
    }

    /// Overrides `config` with every flag that was given.
    fn apply(&self, config: &mut BrokerConfig) {
        if let Some(socket) = &self.socket {
            config.socket = socket.clone();
        }
        if let Some(path) = &self.auth_file {
            config.auth_file = Some(path.clone());
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = Some(dir.clone());
        }
        if self.durable {
            config.queue.durable = true;
        }
        if let Some(ms) = self.heartbeat_interval_ms {
            config.heartbeat_interval_ms = ms;
        }
        if let Some(misses) = self.heartbeat_misses {
            config.heartbeat_misses = misses;
        }
        if let Some(bytes) = self.max_frame_bytes {
            config.max_frame_bytes = bytes;
        }
        if let Some(max) = self.max_connections {
            config.max_connections = max;
        }
        if let Some(len) = self.max_queue_len {
            config.queue.max_len = len;
        }
        if let Some(policy) = &self.overflow {
            config.queue.overflow = match policy.as_str() {
                "drop-oldest" => OverflowPolicy::DropOldest,
                "drop-incoming" => OverflowPolicy::DropIncoming,
                "reject" => OverflowPolicy::Reject,
                _ => OverflowPolicy::Block,
            };
        }
        if let Some(ms) = self.block_timeout_ms {
            config.queue.block_timeout_ms = ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("broker").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::write(
            &file,
            "socket = \"/tmp/from-file.sock\"\nheartbeat_misses = 7\nmax_connections = 9\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let cli = parse(&["--config", file, "--max-connections", "11"]);
        let config = cli.options.config().unwrap();
        assert_eq!(config.socket, PathBuf::from("/tmp/from-file.sock"));
        assert_eq!(config.heartbeat_misses, 7);
        assert_eq!(config.max_connections, 11);
        let defaults = BrokerConfig::default();
        assert_eq!(config.heartbeat_interval_ms, defaults.heartbeat_interval_ms);

        let cli = parse(&["--config", file, "--socket", "/tmp/flag.sock"]);
        assert_eq!(
            cli.options.config().unwrap().socket,
            PathBuf::from("/tmp/flag.sock")
        );
    }

    #[test]
    fn queue_bound_and_overflow_policy_flags() {
        let cli = parse(&["--max-queue-len", "100", "--overflow", "drop-oldest"]);
        let config = cli.options.config().unwrap();
        assert_eq!(config.queue.max_len, 100);
        assert_eq!(config.queue.overflow, OverflowPolicy::DropOldest);
        let cli = parse(&["--overflow", "block", "--block-timeout-ms", "250"]);
        let config = cli.options.config().unwrap();
        assert_eq!(config.queue.overflow, OverflowPolicy::Block);
        assert_eq!(config.queue.block_timeout_ms, 250);
        assert!(
            Cli::try_parse_from(["broker", "--overflow", "sometimes"]).is_err(),
            "unknown policies are usage errors"
        );
    }

    #[test]
    fn out_of_range_flags_are_refused() {
        let cli = parse(&["--heartbeat-misses", "0"]);
        let err = cli.options.config().unwrap_err();
        assert!(format!("{err:#}").contains("heartbeat_misses"), "{err:#}");
        let cli = parse(&["--max-frame-bytes", "10"]);
        let err = cli.options.config().unwrap_err();
        assert!(
            format!("{err:#}").contains("max_frame_bytes = 10"),
            "{err:#}"
        );
    }

    #[test]
    fn the_http_section_is_the_binarys_and_flags_override_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::write(
            &file,
            "max_connections = 9\n[http]\nlisten = \"127.0.0.1:9100\"\nmax_connections = 3\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let settings = parse(&["--config", file]).options.settings().unwrap();
        assert_eq!(settings.broker.max_connections, 9);
        assert_eq!(settings.http.max_connections, 3);
        assert_eq!(
            settings.http.listen,
            Some("127.0.0.1:9100".parse().unwrap())
        );
        let settings = parse(&["--config", file, "--http", "127.0.0.1:0"])
            .options
            .settings()
            .unwrap();
        assert_eq!(settings.http.listen, Some("127.0.0.1:0".parse().unwrap()));
        let err = parse(&["--http", "0.0.0.0:9000"])
            .options
            .settings()
            .unwrap_err();
        assert!(format!("{err:#}").contains("allow_non_loopback"), "{err:#}");
        parse(&["--http", "0.0.0.0:9000", "--http-allow-non-loopback"])
            .options
            .settings()
            .unwrap();
        assert!(
            parse_file("[http]\nnope = 1\n").is_err(),
            "unknown keys refused"
        );
        assert!(parse_file("nope = 1\n").is_err());
    }

    #[test]
    fn generate_config_is_a_subcommand() {
        assert!(matches!(
            parse(&["generate-config"]).command,
            Some(Command::GenerateConfig)
        ));
    }
}
