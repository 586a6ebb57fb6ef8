//! `ebctl request`: one request, one reply.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eventbus::{Body, Client, Topic};
use serde::Serialize;

use crate::cli::RequestArgs;
use crate::failure::Failure;
use crate::output;

/// The reply as `ebctl request --json` prints it.
#[derive(Debug, Serialize)]
struct ReplyJson<'a> {
    /// The request's message id (`ebctl result` fetches a durable one's
    /// reply again by it).
    message_id: u64,
    /// Client id of the responder.
    source: &'a str,
    /// The reply payload, as UTF-8 (invalid bytes replaced).
    payload: String,
    /// Time from sending the request to receiving the reply.
    latency_us: u64,
    /// Headers the responder set, in name order.
    headers: BTreeMap<&'a str, &'a str>,
}

/// Sends one request on `topic` and prints the reply.
pub async fn run(
    client: &Client,
    topic: &Topic,
    body: Body,
    args: &RequestArgs,
) -> Result<(), Failure> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let start = Instant::now();
    // Submitted, so the broker's acceptance names the request's id.
    let pending = client.submit(topic, body, timeout).await?;
    let message_id = pending.message_id();
    let reply = pending.reply().await?;
    let latency_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let payload = String::from_utf8_lossy(reply.payload()).into_owned();
    if args.json {
        let json = ReplyJson {
            message_id,
            source: reply.source(),
            payload,
            latency_us,
            headers: reply.headers().iter().collect(),
        };
        output::line(&serde_json::to_string(&json)?)?;
    } else {
        output::line(&payload)?;
    }
    Ok(())
}
