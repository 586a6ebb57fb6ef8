//! `[http]`: the monitor listener's settings, in the broker's configuration
//! file beside the library's settings (`cli.rs` takes this table out before
//! the rest becomes a `BrokerConfig`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The monitor listener: off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to serve the dashboard, the JSON API and `/metrics` on;
    /// unset, there is no listener.
    pub listen: Option<SocketAddr>,
    /// Whether `listen` may be an address other than loopback. The monitor
    /// has no authentication: anyone who reaches it reads client ids,
    /// identities, topics and rates.
    pub allow_non_loopback: bool,
    /// Most HTTP connections at once (live pages included); more wait to be
    /// accepted.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes; at least
    /// 8192.
    pub max_request_bytes: usize,
    /// How long a client has to send a whole request head, in milliseconds.
    pub header_timeout_ms: u64,
    /// Host names a request may name in its `Host` header besides IP
    /// literals and `localhost` (a guard against DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            allow_non_loopback: false,
            max_connections: 64,
            max_request_bytes: 16 * 1024,
            header_timeout_ms: 5_000,
            allowed_hosts: Vec::new(),
        }
    }
}

/// The smallest request-head buffer hyper accepts.
pub const MIN_REQUEST_BYTES: usize = 8192;

impl HttpConfig {
    /// Checks the settings: a non-loopback address needs
    /// `allow_non_loopback`, and every bound must be usable.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(addr) = self.listen {
            anyhow::ensure!(
                addr.ip().is_loopback() || self.allow_non_loopback,
                "invalid broker configuration: http.listen = {addr}: not a loopback address; \
                 the monitor has no authentication, so set http.allow_non_loopback = true \
                 (or --http-allow-non-loopback) to serve it there"
            );
        }
        anyhow::ensure!(
            self.max_connections > 0,
            "invalid broker configuration: http.max_connections = 0: must be at least 1"
        );
        anyhow::ensure!(
            self.max_request_bytes >= MIN_REQUEST_BYTES,
            "invalid broker configuration: http.max_request_bytes = {}: must be at least {MIN_REQUEST_BYTES}",
            self.max_request_bytes
        );
        anyhow::ensure!(
            self.header_timeout_ms > 0,
            "invalid broker configuration: http.header_timeout_ms = 0: must be at least 1"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_allowed_explicitly() {
        let mut config = HttpConfig {
            listen: Some("0.0.0.0:9000".parse().unwrap()),
            ..HttpConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("allow_non_loopback"), "{err}");
        config.allow_non_loopback = true;
        config.validate().unwrap();
        config.listen = Some("[::1]:9000".parse().unwrap());
        config.allow_non_loopback = false;
        config.validate().unwrap();
        config.max_request_bytes = 100;
        assert!(config.validate().is_err());
    }
}
