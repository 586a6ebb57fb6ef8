//! NATS → local: one task per `[[import]]` rule.
//!
//! At most once: a core NATS subscription; each message is published on the
//! local bus (waiting for room in the local client's outbound buffer).
//! At least once: a durable JetStream pull consumer per bridge and rule;
//! each message is published on the local bus with the broker's
//! confirmation, and only then acknowledged to JetStream. Up to
//! [`IMPORT_WINDOW`] of them are on their way at once (published, their
//! confirmations awaited in order), so the rate is not one local round trip
//! per message. Refused for good locally (too large, not allowed) a message
//! is terminated in JetStream (counted); failed for now (the broker is
//! away) it is nacked and comes again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use eventbus::client::PublishError;
use eventbus::{Body, Topic};
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt as _, StreamExt as _};

use crate::config::ImportRule;
use crate::link::backoff;
use crate::origin::{import_origin, local_headers};
use crate::shared::Shared;
use crate::status::Counters;

/// The most at-least-once imports of one rule on their way into the local
/// broker at once: published with confirmation, not yet confirmed, so not
/// yet acked to JetStream. One local round trip per message would cap an
/// import at a few thousand a second; a window of this size keeps the
/// local connection busy. Each holds one message (its payload and headers).
pub const IMPORT_WINDOW: usize = 256;
/// The most JetStream messages a bridge's consumer holds unacknowledged:
/// the window, so JetStream sends no more than the bridge can have on
/// their way and never holds back one the window has room for.
pub const MAX_ACK_PENDING: i64 = IMPORT_WINDOW as i64;
/// How long a stopping JetStream import waits for the confirmations of
/// what is in its window, to ack them rather than have them come again.
pub const WINDOW_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
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

/// A JetStream message on its way into the local broker, once the broker
/// answered.
struct Confirmed {
    message: async_nats::jetstream::Message,
    topic: Topic,
    confirmed: Result<u64, PublishError>,
}

/// The imports of one rule on their way: at most [`IMPORT_WINDOW`],
/// answered in the order they were published.
type Window<'a> = FuturesOrdered<Pin<Box<dyn Future<Output = Confirmed> + Send + 'a>>>;

/// Publishes `message` locally with confirmation and adds it to `window`.
///
/// The publish frame is queued on the local client before this returns
/// (the future is polled once here, which is when the client queues it;
/// waiting for the answer comes later), so the frames go out in the order
/// the messages came from JetStream. The local client writes one
/// connection's frames in the order they were queued and the broker applies
/// them in that order (a publish parked by a full `block` queue holds back
/// the ones behind it), so per-publisher order is kept as it was with one
/// message at a time. A message that fails and is nacked comes again later,
/// after the ones behind it (as before).
fn start<'a>(
    shared: &'a Shared,
    window: &mut Window<'a>,
    message: async_nats::jetstream::Message,
    topic: Topic,
    body: Body,
) {
    let mut confirm: Pin<Box<dyn Future<Output = Confirmed> + Send + 'a>> = Box::pin(async move {
        let confirmed = shared.local.publish_confirmed(&topic, body).await;
        Confirmed {
            message,
            topic,
            confirmed,
        }
    });
    // Answered at once (the client is closed, say): it still takes its
    // turn in the window.
    if let Some(done) = (&mut confirm).now_or_never() {
        confirm = Box::pin(std::future::ready(done));
    }
    window.push_back(confirm);
}

/// Acks, terminates or nacks a message once the local broker answered:
/// acked only when the broker confirmed it.
///
/// # Cancel safety
///
/// Cancelled, the ack or nack may not be sent: the message comes again
/// from JetStream after [`ACK_WAIT`] (a duplicate at worst).
async fn settle(shared: &Shared, done: Confirmed) {
    let Confirmed {
        message,
        topic,
        confirmed,
    } = done;
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

/// Settles what is in `window` as its answers come, for at most
/// [`WINDOW_DRAIN_TIMEOUT`]; what is left is not acked and comes again.
///
/// # Cancel safety
///
/// Like [`settle`]: what is not acked comes again.
async fn drain(shared: &Shared, window: &mut Window<'_>) {
    let all = async {
        while let Some(done) = window.next().await {
            settle(shared, done).await;
        }
    };
    let _ = tokio::time::timeout(WINDOW_DRAIN_TIMEOUT, all).await;
}

/// One consumer's life: `Ok` when the bridge stops. Messages are taken
/// from JetStream while the window has room, each published locally at
/// once ([`start`]), and settled ([`settle`]) in order as the broker
/// answers.
///
/// # Cancel safety
///
/// Cancel safe for the data: a message is acked only after the broker
/// confirmed it, so one in the window when this is cancelled comes again
/// from JetStream after [`ACK_WAIT`] (a duplicate at worst). Stopped by the
/// bridge's token instead, it settles its window first ([`drain`]).
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
    let mut window: Window<'_> = FuturesOrdered::new();
    loop {
        let room = window.len() < IMPORT_WINDOW;
        let next = tokio::select! {
            // Answers first: they free room in the window.
            biased;
            () = shared.cancel.cancelled() => {
                drain(shared, &mut window).await;
                return Ok(());
            }
            Some(done) = window.next(), if !window.is_empty() => {
                settle(shared, done).await;
                continue;
            }
            next = messages.next(), if room => next,
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                // Heartbeats missed while the link is down: the stream goes
                // on once it is back.
                tracing::debug!(error = %e, "JetStream consumer");
                continue;
            }
            None => {
                drain(shared, &mut window).await;
                return Err(ConsumeError::Ended);
            }
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
        start(shared, &mut window, message, topic, body);
    }
}
