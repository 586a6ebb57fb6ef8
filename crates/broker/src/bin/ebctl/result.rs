//! `ebctl result`: the reply to a durable request, fetched by its message id
//! (`Client::result`), e.g. after the requester or the broker restarted.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use eventbus::Client;
use serde::Serialize;

use crate::cli::ResultArgs;
use crate::failure::Failure;
use crate::output;

/// The reply as `ebctl result --json` prints it.
#[derive(Debug, Serialize)]
struct ResultJson<'a> {
    /// The request's message id.
    message_id: u64,
    /// Client id of the responder.
    source: &'a str,
    /// The reply payload, as UTF-8 (invalid bytes replaced).
    payload: String,
    /// Headers the responder set, in name order.
    headers: BTreeMap<&'a str, &'a str>,
}

/// Fetches the reply to request `args.message_id` and prints it.
pub async fn run(client: &Client, args: &ResultArgs) -> Result<(), Failure> {
    let wait = Duration::from_millis(args.timeout_ms);
    let reply = client.result(args.message_id, wait).await?;
    let payload = String::from_utf8_lossy(reply.payload()).into_owned();
    if args.json {
        let json = ResultJson {
            message_id: args.message_id,
            source: reply.source(),
            payload,
            headers: reply.headers().iter().collect(),
        };
        output::line(&serde_json::to_string(&json)?)?;
    } else {
        output::line(&payload)?;
    }
    Ok(())
}
