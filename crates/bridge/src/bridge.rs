//! A running bridge: [`Bridge::start`] connects both sides, subscribes the
//! rules and starts the tasks; [`Bridge::stop`] stops them and sends what
//! it can.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use eventbus::client::{ConnectError, SubscribeError};
use eventbus::{ClientOptions, GroupName};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::buffer::ExportBuffer;
use crate::config::{BridgeConfig, DeliveryMode};
use crate::export::{self, MAX_EXPORT_PREFETCH};
use crate::link::{self, LinkError};
use crate::shared::Shared;
use crate::status::{Counters, NatsState, Status};
use crate::{import, serve};

/// How often the status is published (and at each change of the link).
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);
/// How long [`Bridge::stop`] spends sending buffered exports.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes (payload, topic and 64 per message) one of the bridge's local
/// subscriptions holds before the oldest message is evicted (counted in
/// `local_dropped`), next to `nats.backlog_max_messages`: while NATS is
/// connected a burst the sender has not caught up with waits there, ahead
/// of the export buffer. (The client's default is 64 MiB.)
pub const LOCAL_SUBSCRIPTION_BYTES: usize = 16 * 1024 * 1024;
/// Frames the bridge's local client queues toward the broker (imports,
/// replies, acks) before a publish waits for room: as many as one NATS
/// subscription's default backlog, so an import burst the broker is slower
/// than waits in one bounded place (the NATS subscription, counted in
/// `slow_consumer` beyond it) rather than in two. Measured with
/// `busbench fleet`: 16,384 frames and 4 MiB here (with a backlog of
/// 16,384) took the importing bridge to 17–21 MiB; 4,096 and 1 MiB, to
/// 10–11 MiB, at a paced rate within the runs' spread (`performance.md`).
pub const LOCAL_OUTBOUND_CAPACITY: usize = 4_096;
/// Payload bytes queued toward the broker, likewise (4,096 small imports
/// take a quarter of it).
pub const LOCAL_OUTBOUND_BYTES: usize = 1024 * 1024;

/// Why a bridge could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The local broker is unreachable or refused the bridge.
    #[error("cannot connect to the local broker at {socket}: {source}")]
    Local {
        /// Its socket.
        socket: std::path::PathBuf,
        /// Why.
        source: ConnectError,
    },
    /// The local broker refused an export rule's subscription.
    #[error("cannot subscribe export filter {filter:?}: {source}")]
    Subscribe {
        /// The filter.
        filter: String,
        /// Why.
        source: SubscribeError,
    },
    /// The NATS client could not be set up.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A NATS subscription could not be made.
    #[error("cannot subscribe NATS subject {subject:?}: {source}")]
    NatsSubscribe {
        /// The subject.
        subject: String,
        /// Why.
        source: async_nats::SubscribeError,
    },
}

/// A running bridge.
pub struct Bridge {
    shared: Arc<Shared>,
    tracker: TaskTracker,
}

impl Bridge {
    /// Connects to the local broker (an error if it is unreachable) and to
    /// NATS (in the background: the bridge runs while NATS is away),
    /// subscribes every rule and starts forwarding.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: cancelled, the clients and subscriptions made so far are
    /// dropped, which closes them.
    pub async fn start(config: BridgeConfig) -> Result<Self, StartError> {
        let config = Arc::new(config);
        let options = ClientOptions::new(&config.socket)
            .client_id(config.client_id.clone())
            .kind(eventbus::topic::BRIDGE_KIND)
            .subscription_capacity(config.nats.backlog_max_messages)
            .subscription_bytes(LOCAL_SUBSCRIPTION_BYTES)
            .outbound_capacity(LOCAL_OUTBOUND_CAPACITY)
            .outbound_bytes(LOCAL_OUTBOUND_BYTES);
        let local =
            eventbus::Client::connect(options)
                .await
                .map_err(|source| StartError::Local {
                    socket: config.socket.clone(),
                    source,
                })?;
        let counters = Arc::new(Counters::default());
        let link = link::connect(
            &config.nats.servers,
            &config.name,
            config.reconnect_max(),
            config.nats.backlog_max_messages,
            counters.clone(),
        )
        .await?;
        let shared = Arc::new(Shared {
            jetstream: jetstream::new(link.client.clone()),
            nats: link.client,
            state: link.state,
            local,
            buffer: Arc::new(ExportBuffer::new(
                config.nats.buffer_max_messages,
                config.nats.buffer_overflow,
            )),
            counters,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            config: config.clone(),
        });
        let tracker = shared.tracker.clone();
        for (index, rule) in config.exports.iter().enumerate() {
            let filter = rule.map.filter().clone();
            let failed = |source| StartError::Subscribe {
                filter: filter.as_str().to_owned(),
                source,
            };
            match rule.mode {
                DeliveryMode::AtMostOnce => {
                    let sub = shared
                        .local
                        .subscribe(filter.clone())
                        .await
                        .map_err(failed)?;
                    tracker.spawn(export::read_fanout(shared.clone(), rule.clone(), sub));
                }
                DeliveryMode::AtLeastOnce => {
                    let group = GroupName::new(format!("bridge-{}-{index}", config.name))
                        .expect("a plain name makes a valid group");
                    let prefetch = MAX_EXPORT_PREFETCH
                        .min(u32::try_from(config.nats.buffer_max_messages).unwrap_or(u32::MAX));
                    let sub = shared
                        .local
                        .queue_subscribe(filter.clone(), group, prefetch)
                        .await
                        .map_err(failed)?;
                    tracker.spawn(export::read_queue(shared.clone(), rule.clone(), sub));
                }
            }
        }
        tracker.spawn(export::send(shared.clone()));
        for rule in &config.imports {
            match rule.mode {
                DeliveryMode::AtMostOnce => {
                    let subject = rule.map.subject().to_owned();
                    let sub = shared
                        .nats
                        .subscribe(subject.clone())
                        .await
                        .map_err(|source| StartError::NatsSubscribe { subject, source })?;
                    tracker.spawn(import::run_core(shared.clone(), rule.clone(), sub));
                }
                DeliveryMode::AtLeastOnce => {
                    tracker.spawn(import::run_jetstream(shared.clone(), rule.clone()));
                }
            }
        }
        for rule in &config.serves {
            let subject = rule.subject_filter();
            let sub = shared
                .nats
                .queue_subscribe(subject.clone(), serve::SERVE_QUEUE.to_owned())
                .await
                .map_err(|source| StartError::NatsSubscribe { subject, source })?;
            tracker.spawn(serve::run(shared.clone(), rule.clone(), sub));
            if let Some(group) = rule.group() {
                let unserved = shared
                    .local
                    .queue_subscribe_fallback(
                        rule.filter().clone(),
                        group.clone(),
                        serve::OUT_PREFETCH,
                    )
                    .await
                    .map_err(|source| StartError::Subscribe {
                        filter: rule.filter().as_str().to_owned(),
                        source,
                    })?;
                tracker.spawn(serve::run_out(shared.clone(), rule.clone(), unserved));
            }
        }
        tracker.spawn(announce(shared.clone()));
        Ok(Self { shared, tracker })
    }

    /// The NATS link's state now.
    pub fn nats_state(&self) -> NatsState {
        *self.shared.state.borrow()
    }

    /// The NATS link's state, as it changes.
    pub fn nats_states(&self) -> watch::Receiver<NatsState> {
        self.shared.state.clone()
    }

    /// Waits until NATS is connected and has registered the bridge's NATS
    /// subscriptions (a round trip to the server after them): from then on
    /// nothing published on an imported subject is missed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn nats_ready(&self) {
        loop {
            if !self.shared.wait_connected().await {
                return;
            }
            if self.shared.nats.flush().await.is_ok() {
                return;
            }
        }
    }

    /// The status as it would be published now.
    pub fn status(&self) -> Status {
        status_now(&self.shared)
    }

    /// Stops forwarding, sends what is buffered while NATS is connected
    /// (for at most [`DRAIN_TIMEOUT`]), and closes both clients. At-least-once
    /// exports not yet stored stay unacknowledged on the local broker, which
    /// delivers them again to the next bridge.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: cancelled while draining, what was not sent yet is
    /// lost (at most once) or left to the broker (at least once).
    pub async fn stop(self) {
        self.shared.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, export::drain(&self.shared)).await;
        publish_status(&self.shared);
        self.shared.local.close().await;
    }
}

fn status_now(shared: &Shared) -> Status {
    Status::snapshot(
        &shared.config.name,
        *shared.state.borrow(),
        shared.buffer.len(),
        &shared.counters,
    )
}

fn publish_status(shared: &Shared) {
    let status = status_now(shared);
    if let Err(e) = shared
        .local
        .publish_json(shared.config.status_topic().as_str(), &status)
    {
        tracing::debug!(error = %e, "status not published");
    }
}

/// Publishes the status every [`STATUS_INTERVAL`] and at each change of
/// the NATS link.
async fn announce(shared: Arc<Shared>) {
    let mut state = shared.state.clone();
    let mut ticks = tokio::time::interval(STATUS_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            _ = ticks.tick() => {}
            changed = state.changed() => if changed.is_err() { return },
        }
        publish_status(&shared);
    }
}
