//! The `ebctl` command line, and validation of the names it carries.
//!
//! Topics and filters arrive as plain strings and are validated with
//! [`Topic::new`] / [`TopicFilter::new`] before anything connects, so an
//! invalid one is a usage error (exit 2) with a one-line message.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use eventbus::{Topic, TopicFilter};

use crate::failure::Failure;

/// Talk to a running eventbus broker.
#[derive(Debug, Parser)]
#[command(name = "ebctl", version)]
pub struct Cli {
    /// Broker socket [default: $EVENTBUS_SOCKET, else
    /// $XDG_RUNTIME_DIR/eventbus/broker.sock, else /tmp/eventbus-$UID/broker.sock].
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The socket to connect to.
    pub fn socket(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(eventbus::transport::default_socket_path)
    }
}

/// The `ebctl` commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish messages, each confirmed by the broker; prints how many were published.
    Publish(PublishArgs),
    /// Print messages matching a filter, one line each.
    Subscribe(SubscribeArgs),
    /// Send one request and print the reply.
    Request(RequestArgs),
    /// Print the broker's counters.
    Stats(StatsArgs),
    /// Send many requests, some at once, and summarise replies and latency.
    Tasks(TasksArgs),
}

/// Arguments of `ebctl publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Topic to publish on, e.g. `events.process.start`.
    pub topic: String,
    /// Message payload.
    #[arg(long, default_value = "")]
    pub payload: String,
    /// How many messages to publish.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
}

/// Arguments of `ebctl subscribe`.
#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// Topic filter, e.g. `events.#` or `events.+.start`.
    pub filter: String,
    /// Exit 0 after this many messages [default: run until interrupted].
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many milliseconds; with --count, fewer messages by then
    /// is a failure (exit 1).
    #[arg(long, value_name = "N")]
    pub timeout_ms: Option<u64>,
    /// Print each message as one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ebctl request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Topic to send the request on.
    pub topic: String,
    /// Request payload.
    #[arg(long, default_value = "")]
    pub payload: String,
    /// How long to wait for the reply, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Print the reply as JSON: source, payload, latency_us.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ebctl stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print the stable JSON document (see docs/stats.md) instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ebctl tasks`.
#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Topic to send the requests on.
    pub topic: String,
    /// How many requests to send.
    #[arg(long)]
    pub count: u64,
    /// How many requests to keep outstanding at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Payload of every request.
    #[arg(long, default_value = "")]
    pub payload: String,
    /// How long to wait for each reply, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Validates a topic given on the command line.
pub fn topic(text: &str) -> Result<Topic, Failure> {
    Topic::new(text).map_err(|e| Failure::Usage(e.to_string()))
}

/// Validates a topic filter given on the command line.
pub fn filter(text: &str) -> Result<TopicFilter, Failure> {
    TopicFilter::new(text).map_err(|e| Failure::Usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_are_usage_errors() {
        assert!(topic("events.process").is_ok());
        assert!(matches!(topic("Events..x"), Err(Failure::Usage(_))));
        assert!(matches!(topic("events.#"), Err(Failure::Usage(_))));
        assert!(filter("events.#").is_ok());
        assert!(matches!(filter("#.events"), Err(Failure::Usage(_))));
    }

    #[test]
    fn concurrency_must_be_positive() {
        let parsed =
            Cli::try_parse_from(["ebctl", "tasks", "t", "--count", "1", "--concurrency", "0"]);
        assert!(parsed.is_err());
    }
}
