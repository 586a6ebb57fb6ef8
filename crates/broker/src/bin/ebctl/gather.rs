//! `ebctl gather`: one request to every recipient, each reply as it comes,
//! then who answered.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eventbus::client::{GatherOptions, GatherOutcome, GatherScope};
use eventbus::{Body, Client, GroupName, Message, Topic};
use serde::Serialize;

use crate::cli::GatherArgs;
use crate::failure::Failure;
use crate::output;

/// One reply as `ebctl gather --json` prints it.
#[derive(Debug, Serialize)]
struct ReplyJson<'a> {
    /// Client id of the recipient that answered.
    source: &'a str,
    /// The reply payload, as UTF-8 (invalid bytes replaced).
    payload: String,
    /// Time from sending the request to receiving this reply.
    latency_us: u64,
    /// Headers the recipient set, in name order.
    headers: BTreeMap<&'a str, &'a str>,
}

/// The last line of `ebctl gather --json`.
#[derive(Debug, Serialize)]
struct SummaryJson<'a> {
    /// The request's message id.
    message_id: u64,
    /// Every recipient, in the order the broker named them.
    recipients: Vec<&'a str>,
    /// The recipients that answered, in the order they did.
    answered: Vec<&'a str>,
    /// The recipients that did not, and why.
    missing: Vec<MissingJson<'a>>,
    /// Time from sending the request to the gather's end.
    elapsed_us: u64,
}

#[derive(Debug, Serialize)]
struct MissingJson<'a> {
    client_id: &'a str,
    /// `disconnected`, `timed out`, `refused` or `requester disconnected`.
    reason: String,
}

/// Sends the gather, prints each reply and the summary; fails (exit 1) if
/// any recipient did not answer.
pub async fn run(
    client: &Client,
    topic: &Topic,
    body: Body,
    group: Option<GroupName>,
    args: &GatherArgs,
) -> Result<(), Failure> {
    let scope = match group {
        Some(group) => GatherScope::Group(group),
        None if args.plain => GatherScope::Plain,
        None => GatherScope::All,
    };
    let options = GatherOptions::new(Duration::from_millis(args.timeout_ms)).scope(scope);
    let start = Instant::now();
    let mut gather = client.gather(topic, body, options).await?;
    let message_id = gather.message_id();
    while let Some(reply) = gather.next().await {
        print_reply(&reply, start, args.json)?;
    }
    let elapsed_us = micros(start);
    let outcome = gather
        .outcome()
        .ok_or_else(|| Failure::operational("the gather ended without an outcome"))?;
    if args.json {
        output::line(&serde_json::to_string(&summary_json(
            message_id, outcome, elapsed_us,
        ))?)?;
    } else {
        output::line(&summary_line(outcome, elapsed_us))?;
    }
    if outcome.is_complete() {
        Ok(())
    } else {
        Err(Failure::operational(format!(
            "{} of {} recipients did not answer: {}",
            outcome.missing.len(),
            outcome.recipients.len(),
            missing_list(outcome)
        )))
    }
}

fn micros(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn print_reply(reply: &Message, start: Instant, json: bool) -> Result<(), Failure> {
    let payload = String::from_utf8_lossy(reply.payload()).into_owned();
    if json {
        let line = ReplyJson {
            source: reply.source(),
            payload,
            latency_us: micros(start),
            headers: reply.headers().iter().collect(),
        };
        output::line(&serde_json::to_string(&line)?)
    } else {
        output::line(&format!("{}: {payload}", reply.source()))
    }
}

/// `id (reason), id (reason)`.
fn missing_list(outcome: &GatherOutcome) -> String {
    outcome
        .missing
        .iter()
        .map(|m| format!("{} ({})", m.client_id, m.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `answered 4/5 in 3.2 ms; missing: net-1 (disconnected)`.
fn summary_line(outcome: &GatherOutcome, elapsed_us: u64) -> String {
    let mut line = format!(
        "answered {}/{} in {:.1} ms",
        outcome.answered.len(),
        outcome.recipients.len(),
        elapsed_us as f64 / 1000.0
    );
    if !outcome.is_complete() {
        line.push_str("; missing: ");
        line.push_str(&missing_list(outcome));
    }
    line
}

fn summary_json(message_id: u64, outcome: &GatherOutcome, elapsed_us: u64) -> SummaryJson<'_> {
    SummaryJson {
        message_id,
        recipients: outcome.recipients.iter().map(|c| c.as_str()).collect(),
        answered: outcome.answered.iter().map(|c| c.as_str()).collect(),
        missing: outcome
            .missing
            .iter()
            .map(|m| MissingJson {
                client_id: m.client_id.as_str(),
                reason: m.reason.to_string(),
            })
            .collect(),
        elapsed_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventbus::ClientId;
    use eventbus::client::{MissReason, Missed};

    fn id(s: &str) -> ClientId {
        ClientId::new(s).unwrap()
    }

    #[test]
    fn the_summary_names_who_is_missing_and_why() {
        let outcome = GatherOutcome {
            recipients: vec![id("a"), id("b"), id("c")],
            answered: vec![id("a")],
            missing: vec![
                Missed {
                    client_id: id("b"),
                    reason: MissReason::Disconnected,
                },
                Missed {
                    client_id: id("c"),
                    reason: MissReason::TimedOut,
                },
            ],
        };
        assert_eq!(
            summary_line(&outcome, 2500),
            "answered 1/3 in 2.5 ms; missing: b (disconnected), c (timed out)"
        );
        let json = serde_json::to_value(summary_json(9, &outcome, 2500)).unwrap();
        assert_eq!(json["missing"][1]["reason"], "timed out");
        assert_eq!(json["answered"], serde_json::json!(["a"]));
    }
}
