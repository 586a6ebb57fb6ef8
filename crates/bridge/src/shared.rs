//! What the bridge's tasks share: the config, both clients, the counters,
//! the export buffer, the NATS link state and the stop signal.

use std::sync::Arc;

use async_nats::jetstream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::buffer::ExportBuffer;
use crate::config::{BridgeConfig, DeliveryMode};
use crate::status::{Counters, NatsState};

/// Shared by every task of one bridge.
pub struct Shared {
    /// The validated config.
    pub config: Arc<BridgeConfig>,
    /// The local broker's client.
    pub local: eventbus::Client,
    /// The NATS client.
    pub nats: async_nats::Client,
    /// JetStream over that client.
    pub jetstream: jetstream::Context,
    /// The counters of the status.
    pub counters: Arc<Counters>,
    /// Exports waiting for NATS.
    pub buffer: Arc<ExportBuffer>,
    /// The NATS link's state.
    pub state: watch::Receiver<NatsState>,
    /// Cancelled when the bridge stops.
    pub cancel: CancellationToken,
}

impl Shared {
    /// Whether NATS is connected now.
    pub fn is_connected(&self) -> bool {
        *self.state.borrow() == NatsState::Connected
    }

    /// Waits until NATS is connected; `false` when the bridge stops first.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    pub async fn wait_connected(&self) -> bool {
        let mut state = self.state.clone();
        tokio::select! {
            () = self.cancel.cancelled() => false,
            ok = state.wait_for(|s| *s == NatsState::Connected) => ok.is_ok(),
        }
    }

    /// Creates the stream `name` over `subjects` unless it exists; `true`
    /// when it exists now.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled creation either happened or not, and the
    /// next call checks again.
    pub async fn ensure_stream(&self, name: &str, subjects: Vec<String>) -> bool {
        let config = jetstream::stream::Config {
            name: name.to_owned(),
            subjects,
            ..Default::default()
        };
        match self.jetstream.get_or_create_stream(config).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, stream = name, "cannot get or create the JetStream stream");
                false
            }
        }
    }

    /// Makes sure the stream of every at-least-once export rule exists.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`ensure_stream`](Self::ensure_stream).
    pub async fn ensure_export_streams(&self) -> bool {
        // A stream several rules share covers all their subjects.
        let mut streams: Vec<(&str, Vec<String>)> = Vec::new();
        for rule in &self.config.exports {
            if rule.mode != DeliveryMode::AtLeastOnce {
                continue;
            }
            let subject = rule.map.subject_filter().to_owned();
            match streams.iter_mut().find(|(name, _)| *name == rule.stream) {
                Some((_, subjects)) => subjects.push(subject),
                None => streams.push((&rule.stream, vec![subject])),
            }
        }
        let mut all = true;
        for (name, subjects) in streams {
            all &= self.ensure_stream(name, subjects).await;
        }
        all
    }
}
