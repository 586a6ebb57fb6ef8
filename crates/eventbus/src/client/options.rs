//! Client options: a builder, in the style of `async_nats::ConnectOptions`.

use std::path::PathBuf;
use std::time::Duration;

use crate::names::ClientId;

/// How a [`Client`](super::Client) connects and what it bounds.
///
/// ```
/// use std::time::Duration;
/// use eventbus::{ClientId, ClientOptions};
/// let options = ClientOptions::new("/tmp/eventbus/broker.sock")
///     .client_id(ClientId::new("procmond-1").unwrap())
///     .kind("collector")
///     .capability("process")
///     .request_timeout(Duration::from_secs(2));
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub(crate) socket: PathBuf,
    pub(crate) client_id: Option<ClientId>,
    pub(crate) kind: String,
    pub(crate) capabilities: Vec<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) heartbeat_misses: Option<u32>,
    pub(crate) subscription_capacity: usize,
    pub(crate) outbound_capacity: usize,
    pub(crate) outbound_bytes: usize,
    pub(crate) subscription_bytes: usize,
    pub(crate) reconnect: ReconnectPolicy,
    pub(crate) credentials: Option<super::Credentials>,
    pub(crate) broker_uid: Option<u32>,
}

/// How a client reconnects after losing its broker.
///
/// Delays grow exponentially from `initial` to `max`, each scaled by a random
/// factor in [0.5, 1.0] so that many clients do not reconnect in lock step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Whether to reconnect at all; without it a lost connection closes the client.
    pub enabled: bool,
    /// First delay (default 10 ms).
    pub initial: Duration,
    /// Largest delay (default 1 s).
    pub max: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            initial: Duration::from_millis(10),
            max: Duration::from_secs(1),
        }
    }
}

impl ReconnectPolicy {
    /// Never reconnect: a lost connection closes the client.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

impl Default for ClientOptions {
    /// Options for the default socket path (see [`default_socket_path`](crate::transport::default_socket_path)).
    fn default() -> Self {
        Self::new(crate::transport::default_socket_path())
    }
}

impl ClientOptions {
    /// Options for the broker at `socket`, with defaults for everything else.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            client_id: None,
            kind: "client".to_owned(),
            capabilities: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            heartbeat_interval: None,
            heartbeat_misses: None,
            subscription_capacity: 65_536,
            outbound_capacity: 262_144,
            outbound_bytes: 64 * 1024 * 1024,
            subscription_bytes: 64 * 1024 * 1024,
            reconnect: ReconnectPolicy::default(),
            credentials: None,
            broker_uid: None,
        }
    }

    /// Credentials for a broker with an auth file (see
    /// [`Credentials::from_env`](super::Credentials::from_env)); without
    /// them the broker knows the client by its user id.
    pub fn credentials(mut self, credentials: super::Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The user id the broker runs as, when it is neither this process's
    /// nor root's: the client refuses any other broker (Unix), before it
    /// sends anything.
    pub fn broker_uid(mut self, uid: u32) -> Self {
        self.broker_uid = Some(uid);
        self
    }

    /// The client's unique id; without one a random `client-<pid>-<n>` id is used.
    pub fn client_id(mut self, id: ClientId) -> Self {
        self.client_id = Some(id);
        self
    }

    /// Free-form kind reported in stats, e.g. `collector` (default `client`).
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Adds a capability the client offers, e.g. `process`.
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.push(capability.into());
        self
    }

    /// How long connecting and the handshake may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long confirmed operations (subscribe, confirmed publish, stats) wait for
    /// the broker's answer, and the default request timeout (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Asks for this heartbeat interval and miss count (the broker's defaults otherwise).
    pub fn heartbeat(mut self, interval: Duration, misses: u32) -> Self {
        self.heartbeat_interval = Some(interval);
        self.heartbeat_misses = Some(misses);
        self
    }

    /// Most messages buffered per plain subscription before the oldest is dropped
    /// (default 65,536), besides the batch the stream has taken and is
    /// handing out.
    pub fn subscription_capacity(mut self, capacity: usize) -> Self {
        self.subscription_capacity = capacity.max(1);
        self
    }

    /// Most payload bytes buffered toward the broker (default 64 MiB); past it,
    /// publishes fail with `BufferFull` like past `outbound_capacity`.
    pub fn outbound_bytes(mut self, bytes: usize) -> Self {
        self.outbound_bytes = bytes.max(1024 * 1024);
        self
    }

    /// Most payload bytes buffered per plain subscription before the oldest
    /// messages are dropped (default 64 MiB).
    pub fn subscription_bytes(mut self, bytes: usize) -> Self {
        self.subscription_bytes = bytes.max(1024 * 1024);
        self
    }

    /// How to reconnect after losing the broker (default: 10 ms doubling to 1 s).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// Most frames buffered toward the broker, including during an outage, before
    /// `publish` fails with `BufferFull` (`publish_wait` waits instead).
    /// Default 262,144.
    pub fn outbound_capacity(mut self, capacity: usize) -> Self {
        self.outbound_capacity = capacity.max(16);
        self
    }
}
