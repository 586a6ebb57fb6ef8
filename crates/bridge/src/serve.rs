//! Requests from NATS served on the local bus: for each `[[serve]]` rule the
//! bridge joins the NATS queue group [`SERVE_QUEUE`] on
//! `<subject_prefix>.>`, so each NATS request goes to one bridge of the
//! fleet; that bridge sends it as a local request on `<topic>` and answers
//! the NATS request with the local reply. A request that fails locally is
//! answered with an empty payload and the header [`ERROR_HEADER`] naming
//! why (`no-responders`, `timeout`, `refused`, `unmappable`, `loop`).
//!
//! The other way, a rule with a `group` joins that local queue group as a
//! *fallback* member ([`eventbus::Client::queue_subscribe_fallback`]): the
//! broker hands it a task or request only while no local member is there,
//! and the bridge sends it as a NATS request on
//! `<subject_prefix>.<topic>`, where another host's bridge serves it. The
//! NATS reply is the local reply (a task without a reply-to is acked once
//! the remote reply came); a failure (no responders, timeout, a remote
//! `x-bridge-error`) dead-letters the delivery, so the requester gets
//! `DeadLettered` rather than waiting. The bridge's NATS connection does not
//! echo, so its own requests never come back to its own serve subscription;
//! a request it forwarded in from NATS is never sent out again.
//!
//! At most [`MAX_REQUESTS_IN_FLIGHT`] requests are served at once each way;
//! further requests wait in the NATS subscription (bounded by async-nats)
//! or in the local queue (bounded by [`OUT_PREFETCH`] and the group's
//! bound).

use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;
use eventbus::client::RequestError;
use eventbus::{Body, Delivery, QueueSubscription};
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::mapping::ServeMap;
use crate::origin::{
    NATS_HOPS, NATS_ORIGIN, export_origin, import_origin, local_headers, nats_headers,
};
use crate::shared::Shared;
use crate::status::Counters;

/// The NATS queue group every bridge serves requests in.
pub const SERVE_QUEUE: &str = "eventbus-bridge";
/// The header of a NATS reply that says why the request failed locally.
pub const ERROR_HEADER: &str = "x-bridge-error";
/// The most requests one bridge serves at once.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 256;
/// The most local deliveries the fallback member holds unsettled.
pub const OUT_PREFETCH: u32 = 64;

/// Serves one rule's NATS requests until the bridge stops.
///
/// # Cancel safety
///
/// Meant to run as a task until the bridge's token stops it; requests in
/// progress are answered `shutting-down`.
pub async fn run(shared: Arc<Shared>, rule: ServeMap, mut sub: async_nats::Subscriber) {
    let permits = Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT));
    let rule = Arc::new(rule);
    loop {
        let message = tokio::select! {
            () = shared.cancel.cancelled() => return,
            message = sub.next() => match message {
                Some(message) => message,
                None => return,
            },
        };
        let Some(reply_to) = message.reply.clone() else {
            // Not a request: nothing to answer.
            Counters::bump(&shared.counters.refused);
            continue;
        };
        let permit = tokio::select! {
            () = shared.cancel.cancelled() => return,
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
        };
        let shared = shared.clone();
        let rule = rule.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (headers, payload) = serve_one(&shared, &rule, &message).await;
            if let Err(e) = shared
                .nats
                .publish_with_headers(reply_to, headers, payload)
                .await
            {
                tracing::warn!(error = %e, "NATS reply lost");
                Counters::bump(&shared.counters.failures);
            }
        });
    }
}

fn failed(why: &str) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert(ERROR_HEADER, why);
    (headers, Bytes::new())
}

async fn serve_one(
    shared: &Shared,
    rule: &ServeMap,
    message: &async_nats::Message,
) -> (HeaderMap, Bytes) {
    let c = &shared.counters;
    let config = &shared.config;
    let origin = match import_origin(message.headers.as_ref(), &config.name, config.nats.max_hops) {
        Ok(origin) => origin,
        Err(_) => {
            Counters::bump(&c.loops_stopped);
            return failed("loop");
        }
    };
    let topic = match rule.topic_for(message.subject.as_str()) {
        Ok(topic) => topic,
        Err(_) => {
            Counters::bump(&c.refused);
            return failed("unmappable");
        }
    };
    Counters::bump(&c.requests_in);
    let body = Body::new(message.payload.clone())
        .with_headers(local_headers(message.headers.as_ref(), &origin));
    let request = shared.local.request(&topic, body, config.request_timeout());
    let reply = tokio::select! {
        () = shared.cancel.cancelled() => return failed("shutting-down"),
        reply = request => reply,
    };
    match reply {
        Ok(reply) => {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_ORIGIN, config.name.as_str());
            headers.insert(NATS_HOPS, origin.hops.to_string());
            (headers, reply.payload().clone())
        }
        Err(e) => {
            tracing::debug!(error = %e, topic = topic.as_str(), "served request failed locally");
            let why = match e {
                RequestError::NoResponders { .. } => "no-responders",
                RequestError::Timeout(_) => "timeout",
                RequestError::DeadLettered { .. } => "dead-lettered",
                _ => "refused",
            };
            Counters::bump(&c.failures);
            failed(why)
        }
    }
}

/// Sends what no local member serves out as NATS requests, until the
/// bridge stops.
///
/// # Cancel safety
///
/// Cancel safe for the data: a delivery in progress is dropped unsettled
/// and the local broker delivers it again.
pub async fn run_out(shared: Arc<Shared>, rule: ServeMap, mut unserved: QueueSubscription) {
    let permits = Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT));
    let rule = Arc::new(rule);
    loop {
        let delivery = tokio::select! {
            () = shared.cancel.cancelled() => return,
            delivery = unserved.next() => match delivery {
                Some(delivery) => delivery,
                None => return,
            },
        };
        let permit = tokio::select! {
            () = shared.cancel.cancelled() => return,
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
        };
        let shared = shared.clone();
        let rule = rule.clone();
        tokio::spawn(async move {
            let _permit = permit;
            forward_out(&shared, &rule, delivery).await;
        });
    }
}

/// Why a forwarded request failed: the delivery is dead-lettered.
fn give_up(shared: &Shared, delivery: &Delivery, why: &str) {
    tracing::debug!(
        topic = delivery.message().topic(),
        why,
        "request not served across NATS"
    );
    Counters::bump(&shared.counters.failures);
    let _ = delivery.nack(false);
}

async fn forward_out(shared: &Shared, rule: &ServeMap, delivery: Delivery) {
    let c = &shared.counters;
    let config = &shared.config;
    let message = delivery.message();
    let origin = match export_origin(
        message,
        config.client_id.as_str(),
        &config.name,
        config.nats.max_hops,
    ) {
        Ok(origin) => origin,
        Err(skip) => {
            // Forwarded in from NATS and unserved here: not sent out again.
            tracing::debug!(?skip, topic = message.topic(), "request not forwarded");
            Counters::bump(&c.loops_stopped);
            let _ = delivery.nack(false);
            return;
        }
    };
    let Ok(topic) = eventbus::Topic::new(message.topic()) else {
        Counters::bump(&c.refused);
        let _ = delivery.nack(false);
        return;
    };
    Counters::bump(&c.requests_out);
    let subject = rule.subject_for(&topic);
    let headers = nats_headers(message.headers(), &origin);
    let request = async_nats::Request::new()
        .payload(message.payload().clone())
        .headers(headers)
        .timeout(Some(config.request_timeout()));
    let reply = tokio::select! {
        () = shared.cancel.cancelled() => return,
        reply = shared.nats.send_request(subject, request) => reply,
    };
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => return give_up(shared, &delivery, &e.to_string()),
    };
    if let Some(why) = reply.headers.as_ref().and_then(|h| h.get(ERROR_HEADER)) {
        return give_up(shared, &delivery, why.as_str());
    }
    let settled = if message.is_request() {
        delivery.reply(reply.payload.clone())
    } else {
        delivery.ack()
    };
    if let Err(e) = settled {
        // Too large for the local requester, or the broker went away.
        tracing::warn!(error = %e, "reply from NATS not delivered locally");
        Counters::bump(&c.refused);
        let _ = delivery.nack(false);
    }
}
