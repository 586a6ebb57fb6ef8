//! Broker configuration: every bound the broker enforces, with its default.
//!
//! Read from TOML by the `broker` binary (`broker generate-config` prints this
//! file's defaults with comments); built in code by an embedding agent.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::monitor::{MAX_HISTORY_SECONDS, MAX_TASKS, MonitorConfig};
use crate::broker::journal::JournalConfig;
use crate::codec::{DEFAULT_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES};
use crate::framed::{OutboundLimits, OverflowPolicy};
use crate::topic::TopicFilter;

mod queue;

pub(crate) use queue::QueuePolicy;
pub use queue::{QueueConfig, QueueOverride};

/// What a journal record may take beyond the largest frame: the broker's
/// stamps on a message, or a kept reply's source and requester.
const RECORD_ALLOWANCE: u64 = 4096;

/// How the broker runs and what it bounds. Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// Socket path to listen on.
    pub socket: PathBuf,
    /// Most client connections at once; more are refused with `ConnectionLimit`.
    pub max_connections: usize,
    /// Largest frame accepted or sent, in bytes (header excluded).
    pub max_frame_bytes: usize,
    /// Most subscriptions (plain and queue) one client may hold.
    pub max_subscriptions_per_client: usize,
    /// Heartbeat interval offered to clients, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Missed heartbeats after which a peer is declared dead.
    pub heartbeat_misses: u32,
    /// Longest heartbeat interval a client may ask for, in milliseconds.
    pub max_heartbeat_interval_ms: u64,
    /// Most missed heartbeats a client may ask for before it counts as dead.
    pub max_heartbeat_misses: u32,
    /// How long a new connection has to send its `Hello`, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// How long a graceful shutdown waits for in-flight work, in milliseconds.
    pub drain_timeout_ms: u64,
    /// Most requests awaiting a reply at once, across all clients.
    pub max_pending_requests: usize,
    /// Most unsettled direct messages one client may hold; more are refused with
    /// `QueueFull`.
    pub max_direct_in_flight: usize,
    /// Most recipients of one gather; a gather to more is refused with
    /// `QuotaExceeded`.
    pub max_gather_recipients: usize,
    /// Extra user ids allowed to connect besides the broker's own (Unix only).
    pub allowed_uids: Vec<u32>,
    /// The auth file (users, secrets, permissions; see `docs/security.md`);
    /// without one, every client the socket admits may do everything but
    /// cancel other clients' messages.
    pub auth_file: Option<PathBuf>,
    /// What one client may hold in the broker.
    pub quotas: QuotaConfig,
    /// The broker's memory ceiling.
    pub memory: MemoryConfig,
    /// Where durable queues keep their journal; unset: `$XDG_STATE_HOME/eventbus`,
    /// else `~/.local/state/eventbus`. Used only when a queue is durable.
    pub data_dir: Option<PathBuf>,
    /// The journal's bounds and the replies it keeps.
    pub durability: DurabilityConfig,
    /// Each subscriber's outbound buffer.
    pub subscriber: SubscriberConfig,
    /// Queue groups.
    pub queue: QueueConfig,
    /// What a monitor keeps, and `_sys.stats`.
    pub monitor: MonitorConfig,
}

/// What one client may hold in the broker; an auth file can set them per
/// user. A client at a quota gets typed refusals; nobody else notices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct QuotaConfig {
    /// Most requests one client may have awaiting replies.
    pub max_pending_requests: usize,
    /// Most direct messages one client may have sent that their receivers
    /// have not settled.
    pub max_direct_unsettled: usize,
    /// Most of one client's messages waiting or in flight in queue groups.
    pub max_queued_messages: usize,
    /// Most bytes of those.
    pub max_queued_bytes: usize,
    /// Most gathers one client may have going at once.
    pub max_concurrent_gathers: usize,
}

/// The broker's memory ceiling: above it, publishes into queue groups are
/// refused with `MemoryPressure` while acks, replies and consumers keep
/// flowing (as RabbitMQ's memory alarm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Most bytes of messages held in all queue groups together.
    pub max_queued_bytes: usize,
    /// Resident memory above which the alarm is raised, in bytes; 0 picks
    /// 40 % of the machine's memory where the platform tells it (Linux),
    /// else no RSS alarm.
    pub high_watermark_bytes: u64,
}

/// The journal of durable queues: its bounds, and the replies it keeps for
/// `Client::result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DurabilityConfig {
    /// Most bytes of unsettled messages and kept replies on disk, in total;
    /// at the bound a durable queue's overflow policy applies (`reject` and
    /// `block` refuse with `Storage`). Each queue may also have its own
    /// bound, [`QueueConfig::max_disk_bytes`].
    pub max_disk_bytes: u64,
    /// A journal segment file is closed at this size.
    pub segment_bytes: u64,
    /// Most durable queues (distinct filter and group): a durable queue
    /// outlives its members, so joining a new one past this is refused.
    pub max_queues: usize,
    /// Most replies to durable requests kept for `Client::result`.
    pub max_results: usize,
    /// Most bytes of those.
    pub max_result_bytes: usize,
    /// How long a reply is kept, in milliseconds.
    pub result_ttl_ms: u64,
}

/// Bounds of each connection's outbound buffer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SubscriberConfig {
    /// Most fan-out messages buffered for one slow subscriber.
    pub max_len: usize,
    /// Most bytes of fan-out messages buffered for one slow subscriber.
    pub max_bytes: usize,
    /// What happens to fan-out messages beyond `max_len` or `max_bytes`.
    pub overflow: OverflowPolicy,
    /// Most frames of any kind buffered before the client is disconnected as too slow.
    pub hard_cap: usize,
    /// Most bytes of frames of any kind buffered before the client is disconnected.
    pub hard_cap_bytes: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            socket: crate::transport::default_socket_path(),
            max_connections: 1024,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_subscriptions_per_client: 1024,
            heartbeat_interval_ms: 1000,
            heartbeat_misses: 3,
            max_heartbeat_interval_ms: 10_000,
            max_heartbeat_misses: 10,
            handshake_timeout_ms: 5000,
            drain_timeout_ms: 5000,
            max_pending_requests: 65_536,
            max_direct_in_flight: 1024,
            max_gather_recipients: 1024,
            allowed_uids: Vec::new(),
            auth_file: None,
            quotas: QuotaConfig::default(),
            memory: MemoryConfig::default(),
            data_dir: None,
            durability: DurabilityConfig::default(),
            subscriber: SubscriberConfig::default(),
            queue: QueueConfig::default(),
            monitor: MonitorConfig::default(),
        }
    }
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            max_pending_requests: 16_384,
            max_direct_unsettled: 1024,
            max_queued_messages: 50_000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_concurrent_gathers: 16,
        }
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_queued_bytes: 1024 * 1024 * 1024,
            high_watermark_bytes: 0,
        }
    }
}

impl Default for DurabilityConfig {
    fn default() -> Self {
        Self {
            max_disk_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            max_queues: 1024,
            max_results: 100_000,
            max_result_bytes: 64 * 1024 * 1024,
            result_ttl_ms: 24 * 3600 * 1000,
        }
    }
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        Self {
            max_len: 65_536,
            max_bytes: 64 * 1024 * 1024,
            overflow: OverflowPolicy::DropOldest,
            hard_cap: 262_144,
            hard_cap_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML text did not parse or named an unknown setting.
    #[error("invalid broker configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value is out of range.
    #[error("invalid broker configuration: {field} = {value}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl BrokerConfig {
    /// A default configuration listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            ..Self::default()
        }
    }

    /// Parses a TOML document; missing settings keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that every bound is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_connections", self.max_connections as u64),
            (
                "max_subscriptions_per_client",
                self.max_subscriptions_per_client as u64,
            ),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("heartbeat_misses", u64::from(self.heartbeat_misses)),
            ("max_heartbeat_misses", u64::from(self.max_heartbeat_misses)),
            ("max_pending_requests", self.max_pending_requests as u64),
            ("max_direct_in_flight", self.max_direct_in_flight as u64),
            ("max_gather_recipients", self.max_gather_recipients as u64),
            ("subscriber.max_len", self.subscriber.max_len as u64),
            ("queue.max_len", self.queue.max_len as u64),
            ("queue.max_prefetch", u64::from(self.queue.max_prefetch)),
            ("queue.max_bytes", self.queue.max_bytes as u64),
            (
                "quotas.max_pending_requests",
                self.quotas.max_pending_requests as u64,
            ),
            (
                "quotas.max_direct_unsettled",
                self.quotas.max_direct_unsettled as u64,
            ),
            (
                "quotas.max_queued_messages",
                self.quotas.max_queued_messages as u64,
            ),
            (
                "quotas.max_queued_bytes",
                self.quotas.max_queued_bytes as u64,
            ),
            (
                "memory.max_queued_bytes",
                self.memory.max_queued_bytes as u64,
            ),
            ("durability.max_results", self.durability.max_results as u64),
            ("durability.max_queues", self.durability.max_queues as u64),
            (
                "durability.max_result_bytes",
                self.durability.max_result_bytes as u64,
            ),
            ("durability.result_ttl_ms", self.durability.result_ttl_ms),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    field,
                    value: value.to_string(),
                    reason: "must be at least 1",
                });
            }
        }
        if !(MIN_MAX_FRAME_BYTES..=u32::MAX as usize).contains(&self.max_frame_bytes) {
            return Err(ConfigError::Invalid {
                field: "max_frame_bytes",
                value: self.max_frame_bytes.to_string(),
                reason: "must be between 1024 and 4294967295",
            });
        }
        if self.max_heartbeat_interval_ms < self.heartbeat_interval_ms {
            return Err(ConfigError::Invalid {
                field: "max_heartbeat_interval_ms",
                value: self.max_heartbeat_interval_ms.to_string(),
                reason: "must be at least heartbeat_interval_ms",
            });
        }
        if self.max_heartbeat_misses < self.heartbeat_misses {
            return Err(ConfigError::Invalid {
                field: "max_heartbeat_misses",
                value: self.max_heartbeat_misses.to_string(),
                reason: "must be at least heartbeat_misses",
            });
        }
        if self.subscriber.overflow == OverflowPolicy::Block {
            return Err(ConfigError::Invalid {
                field: "subscriber.overflow",
                value: "block".to_owned(),
                reason: "a slow subscriber may not block publishers; use drop-oldest, drop-incoming or reject",
            });
        }
        for o in &self.queue.overrides {
            if let Err(e) = TopicFilter::new(&o.filter) {
                return Err(ConfigError::Invalid {
                    field: "queue.overrides.filter",
                    value: o.filter.clone(),
                    reason: if matches!(e, crate::topic::TopicFilterError::Empty) {
                        "must not be empty"
                    } else {
                        "is not a valid topic filter"
                    },
                });
            }
            if o.max_bytes == Some(0) {
                return Err(ConfigError::Invalid {
                    field: "queue.overrides.max_bytes",
                    value: "0".to_owned(),
                    reason: "must be at least 1",
                });
            }
            if o.max_len == Some(0) {
                return Err(ConfigError::Invalid {
                    field: "queue.overrides.max_len",
                    value: "0".to_owned(),
                    reason: "must be at least 1",
                });
            }
        }
        if self.subscriber.hard_cap_bytes < self.subscriber.max_bytes {
            return Err(ConfigError::Invalid {
                field: "subscriber.hard_cap_bytes",
                value: self.subscriber.hard_cap_bytes.to_string(),
                reason: "must be at least subscriber.max_bytes",
            });
        }
        if !(1..=MAX_TASKS).contains(&self.monitor.tasks) {
            return Err(ConfigError::Invalid {
                field: "monitor.tasks",
                value: self.monitor.tasks.to_string(),
                reason: "must be between 1 and 1000000",
            });
        }
        if !(1..=MAX_HISTORY_SECONDS).contains(&self.monitor.history_seconds) {
            return Err(ConfigError::Invalid {
                field: "monitor.history_seconds",
                value: self.monitor.history_seconds.to_string(),
                reason: "must be between 1 and 86400",
            });
        }
        if self.subscriber.hard_cap < self.subscriber.max_len {
            return Err(ConfigError::Invalid {
                field: "subscriber.hard_cap",
                value: self.subscriber.hard_cap.to_string(),
                reason: "must be at least subscriber.max_len",
            });
        }
        self.queue
            .validate_disk_bounds(self.durability.max_disk_bytes)?;
        if let Err(crate::broker::journal::OpenError::Config { field, value, .. }) =
            self.journal_config().validate()
        {
            return Err(ConfigError::Invalid {
                field: match field {
                    "segment_bytes" => "durability.segment_bytes",
                    "max_disk_bytes" => "durability.max_disk_bytes",
                    _ => "max_frame_bytes",
                },
                value: value.to_string(),
                reason: "too small for the largest message (max_frame_bytes + 4 KiB, plus 32 for a segment's header)",
            });
        }
        Ok(())
    }

    /// The journal's settings: in [`journal_dir`](Self::journal_dir), its
    /// bounds from `durability`, a record as large as the largest frame
    /// with the broker's stamps.
    pub fn journal_config(&self) -> JournalConfig {
        let mut config = JournalConfig::new(self.journal_dir());
        config.max_record_bytes =
            (self.max_frame_bytes as u64 + RECORD_ALLOWANCE).min(u64::from(u32::MAX));
        config.segment_bytes = self.durability.segment_bytes;
        config.max_disk_bytes = self.durability.max_disk_bytes;
        config.max_pending_bytes = config.max_pending_bytes.max(config.max_record_bytes);
        config
    }

    /// Whether any queue group may be durable (then the broker opens its
    /// journal).
    pub fn uses_journal(&self) -> bool {
        self.queue.durable || self.queue.overrides.iter().any(|o| o.durable == Some(true))
    }

    /// Where the journal lives: `data_dir`, else `$XDG_STATE_HOME/eventbus`,
    /// else `~/.local/state/eventbus` (a `eventbus-state` directory beside
    /// the socket when there is no home).
    pub fn journal_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(state).join("eventbus");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join(".local/state/eventbus");
        }
        self.socket.parent().map_or_else(
            || PathBuf::from("eventbus-state"),
            |d| d.join("eventbus-state"),
        )
    }

    /// The heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    pub(crate) fn outbound_limits(&self) -> OutboundLimits {
        OutboundLimits {
            max_len: self.subscriber.max_len,
            max_bytes: self.subscriber.max_bytes,
            policy: self.subscriber.overflow,
            hard_cap: self.subscriber.hard_cap,
            hard_cap_bytes: self.subscriber.hard_cap_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let config = BrokerConfig::new("/tmp/x.sock");
        let text = toml::to_string(&config).unwrap();
        assert_eq!(BrokerConfig::from_toml(&text).unwrap(), config);
    }

    #[test]
    fn partial_toml_keeps_defaults_and_unknown_keys_are_refused() {
        let config =
            BrokerConfig::from_toml("max_connections = 7\n[queue]\noverflow = \"drop-oldest\"\n")
                .unwrap();
        assert_eq!(config.max_connections, 7);
        assert_eq!(config.queue.overflow, OverflowPolicy::DropOldest);
        assert_eq!(config.queue.max_len, QueueConfig::default().max_len);
        assert!(matches!(
            BrokerConfig::from_toml("nope = 1"),
            Err(ConfigError::Parse(_))
        ));
        assert!(matches!(
            BrokerConfig::from_toml("heartbeat_misses = 0"),
            Err(ConfigError::Invalid {
                field: "heartbeat_misses",
                ..
            })
        ));
    }

    #[test]
    fn a_queue_disk_bound_parses_per_pattern_and_nonsense_is_refused() {
        let config = BrokerConfig::from_toml(
            "[queue]\ndurable = true\nmax_disk_bytes = 1048576\n\
             [[queue.overrides]]\nfilter = \"audit.#\"\nmax_disk_bytes = 0\n\
             [[queue.overrides]]\nfilter = \"task.#\"\nmax_disk_bytes = 8388608\n",
        )
        .unwrap();
        let policy = |f: &str| {
            config
                .queue
                .policy_for(&TopicFilter::new(f).unwrap())
                .max_disk_bytes
        };
        assert_eq!(policy("other.x"), 1 << 20);
        assert_eq!(policy("audit.x"), 0, "0: only the total bounds it");
        assert_eq!(policy("task.scan"), 8 << 20);
        // Not even one small message would fit.
        assert!(matches!(
            BrokerConfig::from_toml("[queue]\nmax_disk_bytes = 100\n"),
            Err(ConfigError::Invalid {
                field: "queue.max_disk_bytes",
                ..
            })
        ));
        // Larger than the total, which would always bind first.
        assert!(matches!(
            BrokerConfig::from_toml(
                "[durability]\nmax_disk_bytes = 16777216\n\
                 [[queue.overrides]]\nfilter = \"t.#\"\nmax_disk_bytes = 33554432\n"
            ),
            Err(ConfigError::Invalid {
                field: "queue.overrides.max_disk_bytes",
                ..
            })
        ));
        assert!(matches!(
            BrokerConfig::from_toml("[queue]\nmax_disk_bytes = -1\n"),
            Err(ConfigError::Parse(_))
        ));
    }
}
