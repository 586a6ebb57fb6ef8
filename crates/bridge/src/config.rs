//! The bridge's configuration file (TOML, unknown keys refused): where the
//! local broker and the NATS servers are, and the export, import and serve
//! rules. [`BridgeConfig::from_toml`] parses and validates it once; what it
//! returns is trusted everywhere else (the rules hold ready-made mappings).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::mapping::{ExportMap, ImportMap, MappingError, ServeMap};

/// The commented template `eventbus-bridge generate-config` prints.
pub const TEMPLATE: &str = include_str!("template.toml");

/// The most exports a bridge holds while NATS is unreachable, by default.
pub const DEFAULT_BUFFER_MAX_MESSAGES: usize = 10_000;
/// The most messages a burst may hold per rule, by default (see
/// [`NatsConfig::backlog_max_messages`]): about 1.5 MiB of small messages,
/// which keeps a bridge near 10 MiB through an unpaced burst (16,384 took
/// the importing bridge to 17–21 MiB, `docs/performance.md`); raise it to
/// lose less of a burst.
pub const DEFAULT_BACKLOG_MAX_MESSAGES: usize = 4_096;

/// The largest `buffer_max_messages` and `backlog_max_messages` taken: a
/// bound meant to bound (16 M messages of a few hundred bytes is already
/// gigabytes), and far below what a channel of that capacity can be made
/// with (above `usize::MAX >> 3` tokio panics on the first subscribe).
pub const MAX_MESSAGES_BOUND: usize = 1 << 24;
/// The longest wait between two NATS connection attempts, by default.
pub const DEFAULT_RECONNECT_MAX_MS: u64 = 2_000;
/// The longest a forwarded request waits for its reply, by default.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// The most bridges a message may cross (each adds one to `bridge-hops`):
/// a message that arrives with this many hops is not forwarded again, so a
/// ring of bridges over several NATS systems cannot circulate it forever.
pub const DEFAULT_MAX_HOPS: u32 = 4;

/// What happens to an export when the buffer of exports waiting for NATS
/// is full ([`NatsConfig::buffer_max_messages`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BufferOverflow {
    /// Drop the oldest waiting export to make room (counted in `dropped`).
    #[default]
    DropOldest,
    /// Drop the export that does not fit (counted in `dropped`).
    DropIncoming,
    /// Stop reading the local subscription until there is room: the local
    /// broker then applies the bridge's subscriber overflow policy (for
    /// fan-out) or keeps the messages in the queue (at-least-once).
    Block,
}

/// How a rule's messages cross NATS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryMode {
    /// Core NATS: nothing stored, a message in flight when a link breaks is
    /// lost; never duplicated by the bridge.
    #[default]
    AtMostOnce,
    /// JetStream: stored in a stream, acknowledged end to end; a message may
    /// be delivered twice after a failure, never lost once accepted.
    AtLeastOnce,
}

/// `[local]`: the broker the bridge is a client of.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct LocalSection {
    /// The broker's socket; the per-user default path when absent.
    pub socket: Option<PathBuf>,
    /// The bridge's client id on the local broker; `bridge-<name>` when absent.
    pub client_id: Option<String>,
}

/// `[nats]`: the NATS servers and how the bridge behaves towards them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URLs (`nats://host:port`); the client picks one and moves to
    /// another on failure.
    pub servers: Vec<String>,
    /// This node's name: the origin stamped on what it exports, the
    /// `<name>` of its status topic. The host name when absent.
    pub name: Option<String>,
    /// The cap of the reconnect backoff, in milliseconds.
    pub reconnect_max_ms: u64,
    /// The most exports held while NATS is unreachable.
    pub buffer_max_messages: usize,
    /// What happens to an export when that buffer is full.
    pub buffer_overflow: BufferOverflow,
    /// The most messages a burst may hold per rule on its way across:
    /// each at-most-once export rule's local subscription while NATS is
    /// connected but slower than the local publishers (beyond it the
    /// oldest are evicted, counted in `local_dropped`), and each NATS
    /// subscription (imports, served requests) while the local side is
    /// slower (beyond it async-nats drops, counted in `slow_consumer`).
    /// Memory against burst loss: with small payloads, about 400 bytes a
    /// held export and 700 a held import (async-nats' message, its header
    /// map and the read buffer it points into; `docs/fleet.md`).
    pub backlog_max_messages: usize,
    /// How long a request forwarded across NATS (either way) waits for its
    /// reply, in milliseconds.
    pub request_timeout_ms: u64,
    /// The most bridges a message may cross; see [`DEFAULT_MAX_HOPS`].
    pub max_hops: u32,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            servers: vec!["nats://127.0.0.1:4222".to_owned()],
            name: None,
            reconnect_max_ms: DEFAULT_RECONNECT_MAX_MS,
            buffer_max_messages: DEFAULT_BUFFER_MAX_MESSAGES,
            buffer_overflow: BufferOverflow::default(),
            backlog_max_messages: DEFAULT_BACKLOG_MAX_MESSAGES,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_hops: DEFAULT_MAX_HOPS,
        }
    }
}

/// `[[export]]` as written: local filter → NATS subject.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSection {
    /// The local topic filter (`+`, `#`).
    pub filter: String,
    /// Leading segments removed from the local topic.
    #[serde(default)]
    pub remove_prefix: String,
    /// Tokens prepended to the NATS subject.
    #[serde(default)]
    pub add_prefix: String,
    /// Core NATS or JetStream.
    #[serde(default)]
    pub mode: DeliveryMode,
    /// At-least-once: the JetStream stream (created if missing).
    #[serde(default)]
    pub stream: String,
}

/// `[[import]]` as written: NATS subject → local topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSection {
    /// The NATS subject (`*`, `>`).
    pub subject: String,
    /// Leading tokens removed from the NATS subject.
    #[serde(default)]
    pub remove_prefix: String,
    /// Segments prepended to the local topic.
    #[serde(default)]
    pub add_prefix: String,
    /// Core NATS or JetStream.
    #[serde(default)]
    pub mode: DeliveryMode,
    /// At-least-once: the JetStream stream to consume (created if missing).
    #[serde(default)]
    pub stream: String,
    /// At-least-once: the durable consumer's name; the client id when empty.
    #[serde(default)]
    pub durable: String,
}

/// `[[serve]]` as written: requests across hosts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    /// The local topics whose requests cross NATS.
    pub topic_filter: String,
    /// NATS requests on `<subject_prefix>.<topic>` are local requests on `<topic>`.
    pub subject_prefix: String,
    /// The local queue group the bridge joins on `topic_filter` as a
    /// fallback member: what no local member of it serves goes out as a
    /// NATS request. Empty: only NATS → local.
    #[serde(default)]
    pub group: String,
}

/// The file as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    local: LocalSection,
    nats: NatsConfig,
    export: Vec<ExportSection>,
    import: Vec<ImportSection>,
    serve: Vec<ServeSection>,
}

/// A validated export rule.
#[derive(Debug, Clone)]
pub struct ExportRule {
    /// The mapping local topic → NATS subject.
    pub map: ExportMap,
    /// Core NATS or JetStream.
    pub mode: DeliveryMode,
    /// At-least-once: the stream.
    pub stream: String,
}

/// A validated import rule.
#[derive(Debug, Clone)]
pub struct ImportRule {
    /// The mapping NATS subject → local topic.
    pub map: ImportMap,
    /// Core NATS or JetStream.
    pub mode: DeliveryMode,
    /// At-least-once: the stream.
    pub stream: String,
    /// At-least-once: the durable consumer.
    pub durable: String,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The local broker's socket.
    pub socket: PathBuf,
    /// The bridge's local client id.
    pub client_id: eventbus::ClientId,
    /// The origin name of this node.
    pub name: String,
    /// The NATS side.
    pub nats: NatsConfig,
    /// Local → NATS.
    pub exports: Vec<ExportRule>,
    /// NATS → local.
    pub imports: Vec<ImportRule>,
    /// Requests from NATS served locally.
    pub serves: Vec<ServeMap>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or a key that does not exist, or a value of the wrong type.
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A rule's mapping cannot work.
    #[error("{section} rule {index}: {source}")]
    Mapping {
        /// `export`, `import` or `serve`.
        section: &'static str,
        /// Its position in the file, from 0.
        index: usize,
        /// What is wrong with it.
        source: MappingError,
    },
    /// An at-least-once rule without a stream, or a stream name NATS refuses.
    #[error("{section} rule {index}: invalid stream name {stream:?}: {why}")]
    Stream {
        /// `export` or `import`.
        section: &'static str,
        /// Its position.
        index: usize,
        /// The name given.
        stream: String,
        /// Why.
        why: &'static str,
    },
    /// The node name or durable name is not a valid token.
    #[error("invalid {what} {value:?}: use 1 to 64 of a-z, 0-9, '-' and '_'")]
    Name {
        /// Which name.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The local client id is not a valid eventbus client id.
    #[error("invalid local.client_id {0:?}")]
    ClientId(String),
    /// A number out of range.
    #[error("{key} must be {why}")]
    Range {
        /// The key.
        key: &'static str,
        /// The rule it breaks.
        why: &'static str,
    },
    /// No NATS server to connect to.
    #[error("nats.servers is empty")]
    NoServers,
    /// A server address that is not a NATS URL.
    #[error("{0}")]
    Server(crate::link::LinkError),
}

/// Whether `s` may name a node, a durable consumer or a stream: 1 to 64
/// of `a-z0-9_-` (a NATS token, a topic segment and part of a client id).
pub fn is_plain_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// The host name as a plain name: lower case, anything else `-`.
pub fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .unwrap_or_default();
    let mut name: String = raw
        .trim()
        .chars()
        .take(64)
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .collect();
    if name.is_empty() {
        name = "node".to_owned();
    }
    name
}

fn stream_name(section: &'static str, index: usize, stream: &str) -> Result<(), ConfigError> {
    let bad = |why| ConfigError::Stream {
        section,
        index,
        stream: stream.to_owned(),
        why,
    };
    if stream.is_empty() {
        return Err(bad("an at-least-once rule needs a stream"));
    }
    // JetStream names: no whitespace, '.', '*', '>', path separators.
    if stream.len() > 64
        || !stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(bad("use 1 to 64 of A-Z, a-z, 0-9, '-' and '_'"));
    }
    Ok(())
}

impl BridgeConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parses and validates a config.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        let name = match raw.nats.name.clone() {
            Some(name) => name,
            None => host_name(),
        };
        if !is_plain_name(&name) {
            return Err(ConfigError::Name {
                what: "nats.name",
                value: name,
            });
        }
        let client_id = raw
            .local
            .client_id
            .clone()
            .unwrap_or_else(|| format!("bridge-{name}"));
        let client_id =
            eventbus::ClientId::new(&client_id).map_err(|_| ConfigError::ClientId(client_id))?;
        if raw.nats.servers.is_empty() {
            return Err(ConfigError::NoServers);
        }
        crate::link::parse_servers(&raw.nats.servers).map_err(ConfigError::Server)?;
        for (key, value) in [
            ("nats.buffer_max_messages", raw.nats.buffer_max_messages),
            ("nats.backlog_max_messages", raw.nats.backlog_max_messages),
        ] {
            if !(1..=MAX_MESSAGES_BOUND).contains(&value) {
                return Err(ConfigError::Range {
                    key,
                    why: "from 1 to 16777216",
                });
            }
        }
        if raw.nats.reconnect_max_ms == 0 || raw.nats.request_timeout_ms == 0 {
            return Err(ConfigError::Range {
                key: "nats.reconnect_max_ms and nats.request_timeout_ms",
                why: "at least 1",
            });
        }
        if raw.nats.max_hops == 0 {
            return Err(ConfigError::Range {
                key: "nats.max_hops",
                why: "at least 1",
            });
        }
        let mut exports = Vec::new();
        for (index, e) in raw.export.into_iter().enumerate() {
            let map =
                ExportMap::new(&e.filter, &e.remove_prefix, &e.add_prefix).map_err(|source| {
                    ConfigError::Mapping {
                        section: "export",
                        index,
                        source,
                    }
                })?;
            if e.mode == DeliveryMode::AtLeastOnce {
                stream_name("export", index, &e.stream)?;
            }
            exports.push(ExportRule {
                map,
                mode: e.mode,
                stream: e.stream,
            });
        }
        let mut imports = Vec::new();
        for (index, i) in raw.import.into_iter().enumerate() {
            let map =
                ImportMap::new(&i.subject, &i.remove_prefix, &i.add_prefix).map_err(|source| {
                    ConfigError::Mapping {
                        section: "import",
                        index,
                        source,
                    }
                })?;
            let durable = if i.durable.is_empty() {
                client_id.as_str().replace('.', "_")
            } else {
                i.durable
            };
            if i.mode == DeliveryMode::AtLeastOnce {
                stream_name("import", index, &i.stream)?;
                if !is_plain_name(&durable) {
                    return Err(ConfigError::Name {
                        what: "import.durable",
                        value: durable,
                    });
                }
            }
            imports.push(ImportRule {
                map,
                mode: i.mode,
                stream: i.stream,
                durable,
            });
        }
        let serves = raw
            .serve
            .iter()
            .enumerate()
            .map(|(index, s)| {
                ServeMap::new(&s.topic_filter, &s.subject_prefix, &s.group).map_err(|source| {
                    ConfigError::Mapping {
                        section: "serve",
                        index,
                        source,
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            socket: raw
                .local
                .socket
                .unwrap_or_else(eventbus::transport::default_socket_path),
            client_id,
            name,
            nats: raw.nats,
            exports,
            imports,
            serves,
        })
    }

    /// The backoff cap between NATS connection attempts.
    pub fn reconnect_max(&self) -> Duration {
        Duration::from_millis(self.nats.reconnect_max_ms)
    }

    /// How long a forwarded request waits for its reply.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.nats.request_timeout_ms)
    }

    /// The local topic the status is published on: `_sys.bridge.<name>`.
    pub fn status_topic(&self) -> String {
        format!("{}.{}", crate::status::STATUS_PREFIX, self.name)
    }
}

#[cfg(test)]
mod tests;
