//! `ebctl subscribe`: print matching messages as they arrive.
//!
//! Once the broker has registered the subscription, `subscribed to <filter>` is
//! written to stderr: from then on no matching message is missed, which is what
//! scripts (and the tests) wait for before publishing.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io::Write as _;
use std::pin::Pin;
use std::time::Duration;

use eventbus::{Client, Message, TopicFilter};
use futures_core::Stream as _;
use serde::Serialize;
use tokio::time::Instant;

use crate::cli::SubscribeArgs;
use crate::failure::Failure;
use crate::output;

/// One message as `ebctl subscribe --json` prints it.
#[derive(Debug, Serialize)]
struct MessageJson<'a> {
    /// The topic it was published on.
    topic: &'a str,
    /// The payload, as UTF-8 (invalid bytes replaced).
    payload: String,
    /// Client id of the publisher.
    source: &'a str,
    /// Broker-assigned message id.
    id: u64,
    /// Delivery attempt, 1 for the first.
    attempt: u32,
    /// When the broker accepted it, microseconds since the Unix epoch.
    timestamp_us: u64,
    /// Headers set by the publisher or the broker, in name order.
    headers: BTreeMap<&'a str, &'a str>,
}

/// Subscribes to `filter` and prints messages until `--count` is reached, the
/// `--timeout-ms` deadline passes, or the connection closes.
pub async fn run(
    client: &Client,
    filter: &TopicFilter,
    args: &SubscribeArgs,
) -> Result<(), Failure> {
    let mut subscription = client.subscribe(filter).await?;
    // A closed stderr only loses the notice; the messages still go to stdout.
    let _ = writeln!(std::io::stderr(), "subscribed to {filter}");
    let deadline = args
        .timeout_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let mut received = 0;
    while args.count.is_none_or(|count| received < count) {
        let next = poll_fn(|cx| Pin::new(&mut subscription).poll_next(cx));
        let message = match deadline {
            None => next.await,
            Some(deadline) => match tokio::time::timeout_at(deadline, next).await {
                Ok(message) => message,
                Err(_) => return timed_out(received, args),
            },
        };
        let Some(message) = message else {
            return Err(Failure::operational(format!(
                "connection to the broker closed after {received} messages"
            )));
        };
        print(&message, args.json)?;
        received += 1;
    }
    Ok(())
}

/// The deadline passed: a failure only if `--count` messages were expected.
fn timed_out(received: u64, args: &SubscribeArgs) -> Result<(), Failure> {
    match args.count {
        Some(count) => Err(Failure::operational(format!(
            "timed out after {} ms: received {received} of {count} messages",
            args.timeout_ms.unwrap_or_default()
        ))),
        None => Ok(()),
    }
}

/// Prints one message on its own line and flushes, so pipes see it at once.
fn print(message: &Message, json: bool) -> Result<(), Failure> {
    let payload = String::from_utf8_lossy(message.payload()).into_owned();
    let line = if json {
        serde_json::to_string(&MessageJson {
            topic: message.topic(),
            payload,
            source: message.source(),
            id: message.id(),
            attempt: message.attempt(),
            timestamp_us: message.timestamp_us(),
            headers: message.headers().iter().collect(),
        })?
    } else {
        format!("{} {payload}", message.topic())
    };
    output::line(&line)
}
