//! Local → NATS: one reader per `[[export]]` rule fills the export buffer,
//! one sender drains it in order while NATS is connected.
//!
//! At most once, the reader is a plain subscription and the sender hands
//! each message to core NATS. At least once, the reader is a member of the
//! queue group `bridge-<name>-<rule>` (so the local broker keeps the
//! messages while no bridge takes them), and the sender acknowledges the
//! local delivery only after JetStream's `PubAck`: a bridge that dies
//! before that leaves the delivery unacknowledged, and the broker delivers
//! it again.

use std::sync::Arc;

use async_nats::jetstream;
use eventbus::{Delivery, Message, QueueSubscription, Subscription};
use futures_util::FutureExt as _;

use crate::buffer::{Export, Pushed};
use crate::config::ExportRule;
use crate::link::backoff;
use crate::origin::{export_origin, nats_headers};
use crate::shared::Shared;
use crate::status::{Counters, NatsState};

/// The most at-least-once deliveries the bridge holds unacknowledged per
/// rule (the queue subscription's prefetch); the buffer bound applies too.
pub const MAX_EXPORT_PREFETCH: u32 = 1024;
/// The most JetStream publishes the sender has waiting for their `PubAck`
/// at once: one round trip per batch instead of per message.
pub const MAX_PUBACKS_IN_FLIGHT: usize = 256;
/// The most local messages a reader takes from its subscription (what is
/// already there) before it looks at the stop signal again.
pub const READ_BATCH: usize = 256;
/// The most at-most-once exports the sender hands to NATS before it looks
/// at the link and the stop signal again.
pub const SEND_BATCH: usize = 256;

/// The export for a local message, or `None` when it is not exported
/// (loop prevention, a name that cannot be mapped: counted).
fn prepare(
    shared: &Shared,
    rule: &ExportRule,
    message: &Message,
) -> Option<(String, async_nats::HeaderMap)> {
    let c = &shared.counters;
    let config = &shared.config;
    let origin = match export_origin(
        message,
        config.client_id.as_str(),
        &config.name,
        config.nats.max_hops,
    ) {
        Ok(origin) => origin,
        Err(skip) => {
            tracing::debug!(topic = message.topic(), ?skip, "not exported");
            Counters::bump(&c.loops_stopped);
            return None;
        }
    };
    let topic = match eventbus::Topic::new(message.topic()) {
        Ok(topic) => topic,
        Err(e) => {
            tracing::warn!(error = %e, "a delivery with an invalid topic");
            Counters::bump(&c.refused);
            return None;
        }
    };
    match rule.map.subject_for(&topic) {
        Ok(subject) => Some((subject, nats_headers(message.headers(), &origin))),
        Err(e) => {
            tracing::debug!(error = %e, "not exported");
            Counters::bump(&c.refused);
            None
        }
    }
}

/// Reads an at-most-once rule's subscription into the buffer until it
/// closes or the bridge stops, taking what is already there without a wait
/// per message (at most [`READ_BATCH`] between two looks at the stop
/// signal).
///
/// # Cancel safety
///
/// Meant to run as a task until the bridge's token stops it; cancelled,
/// the message in hand is lost (at most once).
pub async fn read_fanout(shared: Arc<Shared>, rule: ExportRule, mut sub: Subscription) {
    let mut dropped = 0;
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
            if let Some((subject, headers)) = prepare(&shared, &rule, &m) {
                let export = Export {
                    subject,
                    headers,
                    payload: m.payload().clone(),
                    confirm: None,
                };
                match queue(&shared, export).await {
                    Some(pushed) if pushed.dropped() => Counters::bump(&shared.counters.dropped),
                    Some(_) => {}
                    None => return,
                }
            }
            taken += 1;
            if taken < READ_BATCH {
                // `next` is cancel safe: not ready, nothing is taken.
                message = sub.next().now_or_never().flatten();
            }
        }
        let now_dropped = sub.dropped();
        if now_dropped > dropped {
            shared
                .counters
                .local_dropped
                .fetch_add(now_dropped - dropped, std::sync::atomic::Ordering::Relaxed);
            dropped = now_dropped;
        }
    }
}

/// Queues an at-most-once export; `None` when the bridge stops first.
///
/// The buffer is for outages: while NATS is connected the sender empties
/// it as fast as NATS takes the exports, so a backlog there only means a
/// burst came faster than that, and past
/// [`CONNECTED_MAX`](crate::buffer::CONNECTED_MAX) the reader waits for
/// room instead of applying the overflow policy. The backlog then waits in the bridge's
/// local subscription, whose own bound evicts the oldest (counted in
/// `local_dropped`); the local bus never waits for the bridge. While NATS
/// is away (or once it goes away during the wait) the buffer's policy
/// applies, counted in `dropped`.
///
/// # Cancel safety
///
/// Cancel safe: cancelled, the export was not queued (it is lost: at most
/// once).
async fn queue(shared: &Shared, mut export: Export) -> Option<Pushed> {
    let mut state = shared.state.clone();
    loop {
        if !shared.is_connected() {
            break;
        }
        let room = shared.buffer.room_made();
        match shared.buffer.try_push(export) {
            None => return Some(Pushed::Queued),
            Some(back) => export = back,
        }
        tokio::select! {
            () = shared.cancel.cancelled() => return None,
            () = room => {}
            // Lost (or the link's watch is gone): the policy applies.
            _ = state.wait_for(|s| *s != NatsState::Connected) => break,
        }
    }
    tokio::select! {
        () = shared.cancel.cancelled() => None,
        pushed = shared.buffer.push(export) => Some(pushed),
    }
}

/// Reads an at-least-once rule's queue subscription into the buffer.
///
/// # Cancel safety
///
/// Cancel safe for the data: the delivery in hand is dropped
/// unacknowledged, and the local broker delivers it again.
pub async fn read_queue(shared: Arc<Shared>, rule: ExportRule, mut sub: QueueSubscription) {
    loop {
        let delivery = tokio::select! {
            () = shared.cancel.cancelled() => return,
            delivery = sub.next() => match delivery {
                Some(delivery) => delivery,
                None => return,
            },
        };
        let Some((subject, headers)) = prepare(&shared, &rule, delivery.message()) else {
            // Settled: not for NATS, and never will be.
            let _ = delivery.ack();
            continue;
        };
        let export = Export {
            subject,
            headers,
            payload: delivery.message().payload().clone(),
            confirm: Some(delivery),
        };
        // Never dropped (it waits for room); cancelled, the delivery goes
        // back to the broker unacknowledged.
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            _ = shared.buffer.push(export) => {}
        }
    }
}

/// Drains the buffer to NATS, in order, while the link is up; returns when
/// the bridge stops (see [`drain`] for what is left).
///
/// At most once, each export is handed to the NATS client's command
/// channel, which waits only when that channel is full: no flush and no
/// round trip per message (the client writes what it has and flushes when
/// it runs out), up to [`SEND_BATCH`] exports between two looks at the
/// link.
///
/// # Cancel safety
///
/// Exports wait in the buffer until the link is up, so a cancelled wait
/// loses nothing; cancelled while sending, an at-most-once export in hand
/// is lost and at-least-once ones go back to the local broker unacked.
pub async fn send(shared: Arc<Shared>) {
    let mut streams_ready = false;
    loop {
        if !shared.wait_connected().await {
            return;
        }
        tokio::select! {
            () = shared.cancel.cancelled() => return,
            () = shared.buffer.ready() => {}
        }
        // Taken only while the link is up: during an outage the exports
        // stay in the buffer, under its bound and policy.
        if !shared.is_connected() {
            continue;
        }
        if let Some(first) = shared.buffer.try_pop_if(|e| e.confirm.is_some()) {
            if !send_confirmed_batch(&shared, first, &mut streams_ready).await {
                return;
            }
            continue;
        }
        let run = async {
            for _ in 0..SEND_BATCH {
                let Some(export) = shared.buffer.try_pop_if(|e| e.confirm.is_none()) else {
                    break;
                };
                send_core(&shared, export).await;
            }
        };
        // The run first: the stop signal is only looked at (and its waiter
        // registered) when the NATS client's channel is full.
        tokio::select! {
            biased;
            () = run => {}
            () = shared.cancel.cancelled() => return,
        }
    }
}

/// Stores `first` and the at-least-once exports right behind it (up to
/// [`MAX_PUBACKS_IN_FLIGHT`]) in JetStream: all published, then the
/// `PubAck`s awaited in order, each local delivery acked after its own.
/// What failed is retried one by one ([`send_confirmed`]), so after a
/// failure a message may be stored after later ones. `false` when the
/// bridge stops (the unacked deliveries go back to the local broker).
async fn send_confirmed_batch(shared: &Shared, first: Export, streams_ready: &mut bool) -> bool {
    use jetstream::context::PublishErrorKind as K;
    let c = &shared.counters;
    if !*streams_ready {
        *streams_ready = shared.ensure_export_streams().await;
    }
    let mut batch = vec![first];
    while batch.len() < MAX_PUBACKS_IN_FLIGHT {
        match shared.buffer.try_pop_if(|e| e.confirm.is_some()) {
            Some(export) => batch.push(export),
            None => break,
        }
    }
    let mut pending = Vec::with_capacity(batch.len());
    for export in batch {
        let sent = shared.jetstream.publish_with_headers(
            export.subject.clone(),
            export.headers.clone(),
            export.payload.clone(),
        );
        let sent = tokio::select! {
            () = shared.cancel.cancelled() => return false,
            sent = sent => sent,
        };
        pending.push((export, sent));
    }
    let mut retry = Vec::new();
    for (export, sent) in pending {
        let stored = match sent {
            Ok(ack) => tokio::select! {
                () = shared.cancel.cancelled() => return false,
                stored = ack => stored.map(drop),
            },
            Err(e) => Err(e),
        };
        let delivery = export.confirm.as_ref().expect("an at-least-once export");
        match stored {
            Ok(()) => {
                Counters::bump(&c.exported);
                if let Err(e) = delivery.ack() {
                    tracing::warn!(error = %e, "local ack after PubAck failed");
                }
            }
            Err(e) if matches!(e.kind(), K::MaxPayloadExceeded) => {
                Counters::bump(&c.refused);
                tracing::warn!(error = %e, subject = export.subject, "JetStream refused the export: dead-lettered locally");
                let _ = delivery.nack(false);
            }
            Err(e) => {
                if matches!(e.kind(), K::StreamNotFound) {
                    *streams_ready = false;
                }
                Counters::bump(&c.failures);
                tracing::debug!(error = %e, subject = export.subject, "JetStream publish failed: retrying");
                retry.push(export);
            }
        }
    }
    for export in retry {
        if !send_confirmed(shared, export, streams_ready).await {
            return false;
        }
    }
    true
}

/// Sends the at-most-once exports still buffered while NATS is connected,
/// until the buffer is empty or the time is up (shutdown).
///
/// # Cancel safety
///
/// Not cancel safe: cancelled (the shutdown's drain timeout), what was not
/// sent is lost.
pub async fn drain(shared: &Shared) {
    if !shared.is_connected() {
        return;
    }
    while let Some(export) = shared.buffer.try_pop() {
        // An at-least-once export is dropped here unacknowledged: the local
        // broker delivers it again to the next bridge, nothing is lost.
        if export.confirm.is_none() {
            send_core(shared, export).await;
        }
    }
    let _ = shared.nats.flush().await;
}

async fn send_core(shared: &Shared, export: Export) {
    let c = &shared.counters;
    match shared
        .nats
        .publish_with_headers(export.subject, export.headers, export.payload)
        .await
    {
        Ok(()) => Counters::bump(&c.exported),
        Err(e) => {
            use async_nats::client::PublishErrorKind as K;
            match e.kind() {
                K::MaxPayloadExceeded | K::InvalidSubject => Counters::bump(&c.refused),
                _ => Counters::bump(&c.failures),
            }
            tracing::warn!(error = %e, "export to NATS lost (at most once)");
        }
    }
}

/// Stores one export in JetStream, retrying until it is stored, refused
/// for good, or the bridge stops (`false`: the delivery goes back to the
/// local broker unacknowledged).
async fn send_confirmed(shared: &Shared, export: Export, streams_ready: &mut bool) -> bool {
    use jetstream::context::PublishErrorKind as K;
    let c = &shared.counters;
    let delivery: Delivery = export.confirm.expect("an at-least-once export");
    let mut attempts = 0;
    loop {
        if !*streams_ready {
            *streams_ready = shared.ensure_export_streams().await;
        }
        let stored = async {
            shared
                .jetstream
                .publish_with_headers(
                    export.subject.clone(),
                    export.headers.clone(),
                    export.payload.clone(),
                )
                .await?
                .await
        };
        let result = tokio::select! {
            () = shared.cancel.cancelled() => return false,
            result = stored => result,
        };
        match result {
            Ok(_ack) => {
                Counters::bump(&c.exported);
                if let Err(e) = delivery.ack() {
                    // JetStream has it; the broker will deliver it again
                    // (a duplicate, which at least once allows).
                    tracing::warn!(error = %e, "local ack after PubAck failed");
                }
                return true;
            }
            Err(e) if matches!(e.kind(), K::MaxPayloadExceeded) => {
                Counters::bump(&c.refused);
                tracing::warn!(error = %e, subject = export.subject, "JetStream refused the export: dead-lettered locally");
                let _ = delivery.nack(false);
                return true;
            }
            Err(e) => {
                if matches!(e.kind(), K::StreamNotFound) {
                    *streams_ready = false;
                }
                Counters::bump(&c.failures);
                tracing::warn!(error = %e, subject = export.subject, "JetStream publish failed: retrying");
                attempts += 1;
                let pause = backoff(attempts, shared.config.reconnect_max());
                tokio::select! {
                    () = shared.cancel.cancelled() => return false,
                    () = tokio::time::sleep(pause) => {}
                }
                if !shared.wait_connected().await {
                    return false;
                }
            }
        }
    }
}
