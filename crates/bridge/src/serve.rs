//! Requests from NATS served on the local bus: for each `[[serve]]` rule the
//! bridge joins the NATS queue group [`SERVE_QUEUE`] on
//! `<subject_prefix>.>`, so each NATS request goes to one bridge of the
//! fleet; that bridge sends it as a local request on `<topic>` and answers
//! the NATS request with the local reply. A request that fails locally is
//! answered with an empty payload and the header [`ERROR_HEADER`] naming
//! why (`no-responders`, `timeout`, `refused`, `unmappable`, `loop`).
//!
//! At most [`MAX_REQUESTS_IN_FLIGHT`] requests are served at once; further
//! requests wait in the NATS subscription (bounded by async-nats).

use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;
use eventbus::Body;
use eventbus::client::RequestError;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

use crate::mapping::ServeMap;
use crate::origin::{NATS_HOPS, NATS_ORIGIN, import_origin, local_headers};
use crate::shared::Shared;
use crate::status::Counters;

/// The NATS queue group every bridge serves requests in.
pub const SERVE_QUEUE: &str = "eventbus-bridge";
/// The header of a NATS reply that says why the request failed locally.
pub const ERROR_HEADER: &str = "x-bridge-error";
/// The most requests one bridge serves at once.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 256;

/// Serves one rule's NATS requests until the bridge stops.
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
                _ => "refused",
            };
            Counters::bump(&c.failures);
            failed(why)
        }
    }
}
