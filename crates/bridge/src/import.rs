//! NATS → local: one task per `[[import]]` rule.
//!
//! At most once: a core NATS subscription; each message is published on the
//! local bus (waiting for room in the local client's outbound buffer).
//! At least once: a durable JetStream pull consumer per bridge and rule;
//! each message is published on the local bus with the broker's
//! confirmation, and only then acknowledged to JetStream. Refused for good
//! locally (too large, not allowed) it is terminated in JetStream (counted);
//! failed for now (the broker is away) it is nacked and comes again.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use eventbus::client::PublishError;
use eventbus::{Body, Topic};
use futures_util::{FutureExt as _, StreamExt as _};

use crate::config::ImportRule;
use crate::link::backoff;
use crate::origin::{import_origin, local_headers};
use crate::shared::Shared;
use crate::status::Counters;

/// The most JetStream messages a bridge's consumer holds unacknowledged.
pub const MAX_ACK_PENDING: i64 = 256;
/// The most core NATS messages an import takes from its subscription
/// (what is already there) before it looks at the stop signal again.
pub const IMPORT_BATCH: usize = 256;
/// How long JetStream waits for the bridge's ack before it redelivers.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// How long a nacked message waits before JetStream delivers it again.
pub const NAK_DELAY: Duration = Duration::from_secs(1);

/// The local topic and body for a NATS message, or `None` when it is not
/// imported (loop prevention, unmappable: counted).
fn prepare(
    shared: &Shared,
    rule: &ImportRule,
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &bytes::Bytes,
) -> Option<(Topic, Body)> {
    let c = &shared.counters;
    let config = &shared.config;
    let origin = match import_origin(headers, &config.name, config.nats.max_hops) {
        Ok(origin) => origin,
        Err(skip) => {
            tracing::debug!(subject, ?skip, "not imported");
            Counters::bump(&c.loops_stopped);
            return None;
        }
    };
    match rule.map.topic_for(subject) {
        Ok(topic) => {
            let body = Body::new(payload.clone()).with_headers(local_headers(headers, &origin));
            Some((topic, body))
        }
        Err(e) => {
            tracing::debug!(subject, error = %e, "not imported");
            Counters::bump(&c.refused);
            None
        }
    }
}

/// Imports a core NATS subscription until the bridge stops: what the
/// subscription already holds is taken without a wait per message (at most
/// [`IMPORT_BATCH`] between two looks at the stop signal), each published
/// on the local bus without waiting for the broker (a wait only while the
/// local client's outbound buffer is full), so the subscription is drained
/// as fast as it fills and async-nats has no reason to drop for a slow
/// consumer.
///
/// # Cancel safety
///
/// Meant to run as a task until the bridge's token stops it. Cancelled, a
/// message being published locally may or may not be published (at most
/// once).
pub async fn run_core(shared: Arc<Shared>, rule: ImportRule, mut sub: async_nats::Subscriber) {
    loop {
        let first = tokio::select! {
            () = shared.cancel.cancelled() => return,
            message = sub.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let mut message = Some(first);
        let mut taken = 0;
        while let Some(m) = message.take() {
            if !import_core(&shared, &rule, m).await {
                return;
            }
            taken += 1;
            if taken < IMPORT_BATCH {
                // `next` is cancel safe: not ready, nothing is taken.
                message = sub.next().now_or_never().flatten();
            }
        }
    }
}

/// Publishes one core NATS message locally; `false` when the bridge stops
/// or the local client is closed.
async fn import_core(shared: &Shared, rule: &ImportRule, message: async_nats::Message) -> bool {
    let Some((topic, body)) = prepare(
        shared,
        rule,
        message.subject.as_str(),
        message.headers.as_ref(),
        &message.payload,
    ) else {
        return true;
    };
    // The publish first: it is ready at once unless the outbound buffer
    // is full, and only then is the stop signal looked at.
    let published = tokio::select! {
        biased;
        published = shared.local.publish_wait(&topic, body) => published,
        () = shared.cancel.cancelled() => return false,
    };
    match published {
        Ok(()) => Counters::bump(&shared.counters.imported),
        Err(PublishError::Closed) => return false,
        Err(e) => {
            tracing::warn!(error = %e, topic = topic.as_str(), "import refused locally");
            Counters::bump(&shared.counters.refused);
        }
    }
    true
}

/// Whether a local refusal will never change (the message is terminated in
/// JetStream) rather than pass (it is nacked and comes again).
fn is_final(e: &PublishError) -> bool {
    !matches!(
        e,
        PublishError::Closed
            | PublishError::Timeout(_)
            | PublishError::BufferFull { .. }
            | PublishError::QueueFull { .. }
            | PublishError::BlockTimeout { .. }
            | PublishError::MemoryPressure { .. }
            | PublishError::Storage { .. }
            | PublishError::QuotaExceeded { .. }
    )
}

/// Imports through a durable JetStream consumer until the bridge stops,
/// setting it up again whenever it fails.
///
/// # Cancel safety
///
/// Cancel safe for the data: a message is acked to JetStream only after
/// the local broker confirmed it, so one cancelled in between is delivered
/// again (a duplicate at worst).
pub async fn run_jetstream(shared: Arc<Shared>, rule: ImportRule) {
    let mut attempts = 0;
    loop {
        if !shared.wait_connected().await {
            return;
        }
        match consume(&shared, &rule).await {
            Ok(()) => return,
            Err(e) => {
                Counters::bump(&shared.counters.failures);
                tracing::warn!(error = %e, stream = rule.stream, "JetStream import: setting up again");
                attempts += 1;
                tokio::select! {
                    () = shared.cancel.cancelled() => return,
                    () = tokio::time::sleep(backoff(attempts, shared.config.reconnect_max())) => {}
                }
            }
        }
    }
}

/// Why a JetStream import set itself up again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// The stream could not be found or created.
    #[error("stream {0} unavailable")]
    Stream(String),
    /// Looking the stream up failed.
    #[error("cannot get the stream: {0}")]
    GetStream(#[from] async_nats::jetstream::context::GetStreamError),
    /// The durable consumer could not be found or created.
    #[error("cannot get or create the consumer: {0}")]
    Consumer(#[from] async_nats::jetstream::stream::ConsumerError),
    /// Its message stream could not be opened.
    #[error("cannot open the consumer's messages: {0}")]
    Messages(#[from] async_nats::jetstream::consumer::StreamError),
    /// Its message stream ended.
    #[error("the consumer's message stream ended")]
    Ended,
}

/// One consumer's life: `Ok` when the bridge stops.
async fn consume(shared: &Shared, rule: &ImportRule) -> Result<(), ConsumeError> {
    if !shared
        .ensure_stream(&rule.stream, vec![rule.map.subject().to_owned()])
        .await
    {
        return Err(ConsumeError::Stream(rule.stream.clone()));
    }
    let stream = shared.jetstream.get_stream(&rule.stream).await?;
    let consumer: async_nats::jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            &rule.durable,
            pull::Config {
                durable_name: Some(rule.durable.clone()),
                filter_subject: rule.map.subject().to_owned(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    loop {
        let next = tokio::select! {
            () = shared.cancel.cancelled() => return Ok(()),
            next = messages.next() => next,
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                // Heartbeats missed while the link is down: the stream goes
                // on once it is back.
                tracing::debug!(error = %e, "JetStream consumer");
                continue;
            }
            None => return Err(ConsumeError::Ended),
        };
        let prepared = prepare(
            shared,
            rule,
            message.subject.as_str(),
            message.headers.as_ref(),
            &message.payload,
        );
        let Some((topic, body)) = prepared else {
            // Never importable: stop JetStream redelivering it.
            let _ = message.ack_with(AckKind::Term).await;
            continue;
        };
        // Not cancel safe: once sent, the broker may accept it. Cancelled,
        // the message is not acked and JetStream delivers it again.
        let confirmed = tokio::select! {
            () = shared.cancel.cancelled() => return Ok(()),
            confirmed = shared.local.publish_confirmed(&topic, body) => confirmed,
        };
        match confirmed {
            Ok(_) => {
                Counters::bump(&shared.counters.imported);
                if let Err(e) = message.ack().await {
                    // Delivered locally; JetStream will redeliver: a duplicate.
                    tracing::warn!(error = %e, "JetStream ack failed");
                    Counters::bump(&shared.counters.failures);
                }
            }
            Err(e) if is_final(&e) => {
                tracing::warn!(error = %e, topic = topic.as_str(), "import refused locally: terminated");
                Counters::bump(&shared.counters.refused);
                let _ = message.ack_with(AckKind::Term).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, topic = topic.as_str(), "import failed locally: redelivered later");
                Counters::bump(&shared.counters.failures);
                let _ = message.ack_with(AckKind::Nak(Some(NAK_DELAY))).await;
            }
        }
    }
}
