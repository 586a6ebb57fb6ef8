//! The NATS link: one `async_nats::Client` that connects in the background
//! and reconnects with capped exponential backoff, and the state of the link
//! as a `watch` the other tasks wait on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::{ConnectOptions, Event, ServerAddr};
use tokio::sync::watch;

use crate::status::{Counters, NatsState};

/// The first reconnect delay; it doubles up to `nats.reconnect_max_ms`.
pub const RECONNECT_MIN: Duration = Duration::from_millis(50);
/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The async-nats client's own command channel (publishes queued for the
/// connection task): bounded, and a publish waits when it is full.
pub const CLIENT_CAPACITY: usize = 4096;

/// Why the NATS side could not be set up (the servers being down is not
/// an error: the bridge keeps trying).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A server address is not a NATS URL.
    #[error("invalid NATS server address {addr:?}: {source}")]
    Address {
        /// The address as written.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The client refused its options.
    #[error("NATS client: {0}")]
    Connect(#[from] async_nats::ConnectError),
}

/// Parses the configured servers.
pub fn parse_servers(servers: &[String]) -> Result<Vec<ServerAddr>, LinkError> {
    servers
        .iter()
        .map(|s| {
            s.parse::<ServerAddr>()
                .map_err(|source| LinkError::Address {
                    addr: s.clone(),
                    source,
                })
        })
        .collect()
}

/// The reconnect delay after `attempts` failed attempts.
pub fn backoff(attempts: usize, max: Duration) -> Duration {
    let shift = attempts.min(16) as u32;
    RECONNECT_MIN.saturating_mul(1 << shift).min(max)
}

/// A NATS client and its link state.
pub struct Link {
    /// The client (cheap to clone).
    pub client: async_nats::Client,
    /// Connected or connecting, updated by the client's events.
    pub state: watch::Receiver<NatsState>,
}

/// Starts the NATS client: returns at once, connected or not. Each of its
/// subscriptions holds at most `subscription_capacity` messages.
///
/// # Cancel safety
///
/// Cancel safe: cancelled, the client is dropped and closes.
pub async fn connect(
    servers: &[String],
    name: &str,
    reconnect_max: Duration,
    subscription_capacity: usize,
    counters: Arc<Counters>,
) -> Result<Link, LinkError> {
    let addrs = parse_servers(servers)?;
    let (tx, state) = watch::channel(NatsState::Connecting);
    let tx = Arc::new(tx);
    let events = tx.clone();
    let options = ConnectOptions::new()
        .name(format!("eventbus-bridge-{name}"))
        .retry_on_initial_connect()
        // Never deliver the bridge its own messages: its own requests must
        // not be picked by its own serve subscription (one NATS queue group
        // for the whole fleet), nor its exports come back to its imports.
        .no_echo()
        .max_reconnects(None)
        .connection_timeout(CONNECT_TIMEOUT)
        .client_capacity(CLIENT_CAPACITY)
        // Messages each NATS subscription (imports, served requests) holds
        // before async-nats drops them (a slow consumer, counted).
        .subscription_capacity(subscription_capacity)
        .reconnect_delay_callback(move |attempts| backoff(attempts, reconnect_max))
        .event_callback(move |event| {
            let events = events.clone();
            let counters = counters.clone();
            async move {
                match event {
                    Event::Connected => {
                        events.send_replace(NatsState::Connected);
                        counters.note_connected();
                        tracing::info!("NATS connected");
                    }
                    Event::Disconnected | Event::Closed => {
                        events.send_replace(NatsState::Connecting);
                        tracing::warn!("NATS disconnected: reconnecting");
                    }
                    Event::SlowConsumer(sid) => {
                        // Counted each time, logged at 1, 2, 4, 8, ... times:
                        // a flood of drops must not turn into a flood of
                        // log lines that slows the bridge down further.
                        let times = counters.slow_consumer.fetch_add(1, Ordering::Relaxed) + 1;
                        if times.is_power_of_two() {
                            tracing::warn!(
                                sid,
                                times,
                                "NATS subscription too slow: messages dropped"
                            );
                        }
                    }
                    other => tracing::info!(event = %other, "NATS event"),
                }
            }
        });
    let client = options.connect(addrs).await?;
    Ok(Link { client, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_millis(2000);
        assert_eq!(backoff(0, max), Duration::from_millis(50));
        assert_eq!(backoff(1, max), Duration::from_millis(100));
        assert_eq!(backoff(5, max), Duration::from_millis(1600));
        assert_eq!(backoff(6, max), max);
        assert_eq!(backoff(usize::MAX, max), max);
    }

    #[test]
    fn server_addresses_are_checked() {
        assert!(parse_servers(&["nats://127.0.0.1:4222".into()]).is_ok());
        assert!(matches!(
            parse_servers(&["http://[::1".into()]),
            Err(LinkError::Address { .. })
        ));
    }
}
