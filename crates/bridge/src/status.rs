//! What the bridge counts, and the JSON status it publishes every second
//! (and at each change of the NATS link) on `_sys.bridge.<name>`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The prefix of the status topics. The broker lets a client that
/// registered with kind [`BRIDGE_KIND`](eventbus::topic::BRIDGE_KIND)
/// publish below it (and, under an auth file, only if its identity may).
pub const STATUS_PREFIX: &str = "_sys.bridge";

/// The state of the NATS link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NatsState {
    /// Connected to a server.
    Connected,
    /// Not connected: trying, with backoff.
    Connecting,
}

/// The bridge's counters, shared by its tasks.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages handed to NATS (at-least-once: stored by JetStream).
    pub exported: AtomicU64,
    /// Messages published on the local bus from NATS.
    pub imported: AtomicU64,
    /// Exports dropped by the buffer's overflow policy.
    pub dropped: AtomicU64,
    /// Local requests sent over NATS.
    pub requests_out: AtomicU64,
    /// NATS requests forwarded to the local bus.
    pub requests_in: AtomicU64,
    /// Times the NATS link came back after it was lost.
    pub reconnects: AtomicU64,
    /// Times the NATS link was made (the first time included).
    pub connections: AtomicU64,
    /// Messages not forwarded by loop prevention (imported, own origin,
    /// too many hops, bad bridge headers).
    pub loops_stopped: AtomicU64,
    /// Messages whose name could not be mapped, or that the other side
    /// refused (too large, invalid topic).
    pub refused: AtomicU64,
    /// Failed sends to NATS or the local broker that were retried (or, at
    /// most once, given up).
    pub failures: AtomicU64,
    /// Times async-nats dropped messages for a full subscription of the
    /// bridge (imports or requests arriving faster than the local broker
    /// takes them); each time is one or more messages.
    pub slow_consumer: AtomicU64,
    /// Local messages the bridge's own fan-out subscriptions evicted because
    /// it fell behind the local publishers (at most once; the broker's own
    /// slow-consumer drops are in its stats and on `_sys.slow-consumer`).
    pub local_dropped: AtomicU64,
}

impl Counters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The NATS link was made: a reconnect unless it is the first time.
    pub fn note_connected(&self) {
        if self.connections.fetch_add(1, Ordering::Relaxed) > 0 {
            Self::bump(&self.reconnects);
        }
    }
}

/// The JSON the bridge publishes on its status topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Status {
    /// The node name.
    pub name: String,
    /// `connected` or `connecting`.
    pub nats: String,
    /// See [`Counters::exported`].
    pub exported: u64,
    /// See [`Counters::imported`].
    pub imported: u64,
    /// Exports waiting in the buffer now.
    pub buffered: u64,
    /// See [`Counters::dropped`].
    pub dropped: u64,
    /// See [`Counters::requests_out`].
    pub requests_out: u64,
    /// See [`Counters::requests_in`].
    pub requests_in: u64,
    /// See [`Counters::reconnects`].
    pub reconnects: u64,
    /// See [`Counters::loops_stopped`].
    pub loops_stopped: u64,
    /// See [`Counters::refused`].
    pub refused: u64,
    /// See [`Counters::failures`].
    pub failures: u64,
    /// See [`Counters::slow_consumer`].
    pub slow_consumer: u64,
    /// See [`Counters::local_dropped`].
    pub local_dropped: u64,
}

impl Status {
    /// A snapshot of the counters.
    pub fn snapshot(name: &str, nats: NatsState, buffered: usize, c: &Counters) -> Self {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Self {
            name: name.to_owned(),
            nats: match nats {
                NatsState::Connected => "connected",
                NatsState::Connecting => "connecting",
            }
            .to_owned(),
            exported: get(&c.exported),
            imported: get(&c.imported),
            buffered: buffered as u64,
            dropped: get(&c.dropped),
            requests_out: get(&c.requests_out),
            requests_in: get(&c.requests_in),
            reconnects: get(&c.reconnects),
            loops_stopped: get(&c.loops_stopped),
            refused: get(&c.refused),
            failures: get(&c.failures),
            slow_consumer: get(&c.slow_consumer),
            local_dropped: get(&c.local_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_has_every_contract_field() {
        let c = Counters::default();
        Counters::bump(&c.exported);
        let json =
            serde_json::to_value(Status::snapshot("n1", NatsState::Connecting, 3, &c)).unwrap();
        for key in [
            "name",
            "nats",
            "exported",
            "imported",
            "buffered",
            "dropped",
            "requests_out",
            "requests_in",
            "reconnects",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        assert_eq!(json["nats"], "connecting");
        assert_eq!(json["exported"], 1);
        assert_eq!(json["buffered"], 3);
    }
}
