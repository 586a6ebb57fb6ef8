//! The `ebctl` command line, and validation of what it carries.
//!
//! Topics, filters, group names and headers arrive as plain strings and are
//! validated (and a payload file read) before anything connects, so an
//! invalid one is a usage error (exit 2) with a one-line message.
#![forbid(unsafe_code)]

use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use eventbus::{Body, ClientId, GroupName, Headers, Topic, TopicFilter};

use crate::failure::Failure;

/// The largest payload `--file` reads; the broker's frame limit (1 MiB by
/// default) refuses anything larger than it allows anyway.
pub const MAX_PAYLOAD_FILE_BYTES: u64 = 64 << 20;

/// Talk to a running eventbus broker.
#[derive(Debug, Parser)]
#[command(name = "ebctl", version)]
pub struct Cli {
    /// Broker socket [default: $EVENTBUS_SOCKET, else
    /// $XDG_RUNTIME_DIR/eventbus/broker.sock, else /tmp/eventbus-$UID/broker.sock].
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Connect as this client id (default `ebctl-<pid>`); e.g. to fetch the
    /// `result` of a request sent earlier as the same id. A live client's id
    /// can be taken only with its identity's credentials.
    #[arg(long, global = true, value_name = "ID")]
    pub client_id: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The client id to connect as: `--client-id`, else `ebctl-<pid>`.
    pub fn client_id(&self) -> Result<ClientId, Failure> {
        match &self.client_id {
            Some(id) => ClientId::new(id.as_str())
                .map_err(|e| Failure::Usage(format!("invalid --client-id {id:?}: {e}"))),
            None => Ok(ClientId::new(format!("ebctl-{}", std::process::id()))
                .expect("ebctl-<pid> is a valid client id")),
        }
    }

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
    /// Ask every subscriber of a topic at once and print each reply as it
    /// comes, then who answered (exit 1 if anyone did not).
    Gather(GatherArgs),
    /// Answer requests: echo them, or run a command per request and reply
    /// with its output.
    Reply(ReplyArgs),
    /// Print the reply to a durable request, by the request's message id
    /// (waiting for it while the request is still queued or in flight).
    Result(ResultArgs),
    /// Print the broker's counters.
    Stats(StatsArgs),
    /// Live per-queue and per-client rates, depths and in-flight counts in
    /// the terminal, like `top` (q or Esc quits).
    Top(TopArgs),
    /// Send many requests, some at once, and summarise replies and latency.
    Tasks(TasksArgs),
    /// Print a shell completion script, e.g. `ebctl completions bash > /etc/bash_completion.d/ebctl`.
    Completions(CompletionsArgs),
    /// Write the man pages (`cargo xtask cli-assets` uses it).
    #[command(hide = true)]
    Man(ManArgs),
}

/// Where a message's payload comes from, and its headers.
#[derive(Debug, Args)]
pub struct BodyArgs {
    /// Message payload [default: empty].
    #[arg(long, conflicts_with = "file")]
    pub payload: Option<String>,
    /// Read the payload from a file; `-` reads standard input.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// A header, `NAME=VALUE` (repeatable). Names are `[a-z0-9._-]`; `x-`
    /// names are the broker's.
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE", value_parser = header)]
    pub headers: Vec<(String, String)>,
}

/// Arguments of `ebctl publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Topic to publish on, e.g. `events.process.start`.
    pub topic: String,
    /// Payload and headers.
    #[command(flatten)]
    pub body: BodyArgs,
    /// How many messages to publish.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Print `{"topic", "published", "ids"}` as one JSON object.
    #[arg(long)]
    pub json: bool,
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
    /// Payload and headers.
    #[command(flatten)]
    pub body: BodyArgs,
    /// How long to wait for the reply, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Print the reply as JSON: source, payload, latency_us, headers.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ebctl gather`.
#[derive(Debug, Args)]
pub struct GatherArgs {
    /// Topic to send the request on, e.g. `control.collector.snapshot`.
    pub topic: String,
    /// Payload and headers.
    #[command(flatten)]
    pub body: BodyArgs,
    /// Ask only the members of this queue group [default: every plain
    /// subscriber and every member of every group].
    #[arg(long, value_name = "GROUP", conflicts_with = "plain")]
    pub group: Option<String>,
    /// Ask only plain subscribers, no queue group members.
    #[arg(long)]
    pub plain: bool,
    /// How long recipients have to answer, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Print each reply, then the summary, as one JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ebctl result`.
#[derive(Debug, Args)]
pub struct ResultArgs {
    /// The request's message id (a durable queue's request).
    pub message_id: u64,
    /// How long to wait for a reply that has not come yet, in milliseconds
    /// (0: only a reply already kept).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub timeout_ms: u64,
    /// Print the reply as JSON: message_id, source, payload, headers.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ebctl reply`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("answer").required(true).args(["echo", "command"])))]
pub struct ReplyArgs {
    /// Topic filter to answer on, e.g. `control.collector.task.process`.
    pub filter: String,
    /// Join this queue group: each request goes to one member. Without it,
    /// every request on the filter is answered (by every such responder).
    #[arg(long, value_name = "GROUP")]
    pub queue: Option<String>,
    /// Reply with the request's own payload.
    #[arg(long)]
    pub echo: bool,
    /// Run `sh -c CMD` per request, the payload on its standard input, and
    /// reply with its standard output. A failing command (non-zero exit, or
    /// past `--command-timeout-ms`) rejects the request: a queue member
    /// dead-letters it and its requester fails at once.
    #[arg(long, value_name = "CMD")]
    pub command: Option<String>,
    /// How long a command may run, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 30_000)]
    pub command_timeout_ms: u64,
    /// A header on every reply, `NAME=VALUE` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE", value_parser = header)]
    pub headers: Vec<(String, String)>,
    /// Exit 0 after answering this many messages [default: run until interrupted].
    #[arg(long)]
    pub count: Option<u64>,
    /// Print each message handled as one JSON object per line.
    #[arg(long)]
    pub json: bool,
}
/// Arguments of `ebctl completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

/// Arguments of `ebctl man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `ebctl.1` and one `ebctl-<command>.1` per command here.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Arguments of `ebctl stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print the stable JSON document (see docs/stats.md) instead of tables;
    /// with --watch, one compact document per line.
    #[arg(long)]
    pub json: bool,
    /// Print a snapshot every SECS seconds until interrupted.
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    pub watch: Option<std::time::Duration>,
    /// With --watch: stop after this many snapshots.
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// Arguments of `ebctl top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Seconds between refreshes.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_interval)]
    pub interval: std::time::Duration,
}

/// An interval in seconds (decimals allowed), from 0.1 s to a day.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.1..=86_400.0).contains(&secs) {
        return Err(format!("{text}: must be between 0.1 and 86400 seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
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
    /// Payload and headers of every request.
    #[command(flatten)]
    pub body: BodyArgs,
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

/// Validates a queue group name given on the command line.
pub fn group(text: &str) -> Result<GroupName, Failure> {
    GroupName::new(text).map_err(|e| Failure::Usage(e.to_string()))
}

/// Splits `NAME=VALUE` (the name is validated with the other headers).
fn header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) => Ok((name.to_owned(), value.to_owned())),
        None => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// Validates header names given on the command line.
pub fn headers(pairs: &[(String, String)]) -> Result<Headers, Failure> {
    Headers::from_pairs(pairs.iter().cloned()).map_err(|e| Failure::Usage(e.to_string()))
}

impl BodyArgs {
    /// The payload (read from `--file` if given) and the headers.
    pub fn body(&self) -> Result<Body, Failure> {
        let payload = match &self.file {
            Some(path) => read_payload(path)?,
            None => self.payload.clone().unwrap_or_default().into_bytes(),
        };
        Ok(Body::new(payload).with_headers(headers(&self.headers)?))
    }
}

/// The whole file, or standard input for `-`, up to [`MAX_PAYLOAD_FILE_BYTES`].
fn read_payload(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut payload = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_PAYLOAD_FILE_BYTES + 1)
            .read_to_end(&mut payload)
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_PAYLOAD_FILE_BYTES + 1).read_to_end(&mut payload))
    };
    let name = path.display();
    read.map_err(|e| Failure::Usage(format!("cannot read the payload from {name}: {e}")))?;
    if payload.len() as u64 > MAX_PAYLOAD_FILE_BYTES {
        return Err(Failure::Usage(format!(
            "the payload in {name} is larger than {MAX_PAYLOAD_FILE_BYTES} bytes"
        )));
    }
    Ok(payload)
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
    fn headers_are_name_value_pairs_with_valid_names() {
        let cli = Cli::try_parse_from(["ebctl", "publish", "t", "-H", "a=1", "--header", "b=x=y"])
            .unwrap();
        let Command::Publish(args) = cli.command else {
            panic!("not publish")
        };
        let body = args.body.body().unwrap();
        assert_eq!(body.headers().get("a"), Some("1"));
        assert_eq!(body.headers().get("b"), Some("x=y"));
        assert!(Cli::try_parse_from(["ebctl", "publish", "t", "-H", "novalue"]).is_err());
        let bad = Cli::try_parse_from(["ebctl", "publish", "t", "-H", "Bad=1"]).unwrap();
        let Command::Publish(args) = bad.command else {
            panic!("not publish")
        };
        assert!(matches!(args.body.body(), Err(Failure::Usage(_))));
    }

    #[test]
    fn payload_comes_from_the_flag_or_a_file_but_not_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, b"{\"a\":1}").unwrap();
        let args = BodyArgs {
            payload: None,
            file: Some(path.clone()),
            headers: Vec::new(),
        };
        assert_eq!(args.body().unwrap().payload(), "{\"a\":1}");
        let missing = BodyArgs {
            file: Some(dir.path().join("missing")),
            ..args
        };
        assert!(matches!(missing.body(), Err(Failure::Usage(_))));
        let both = Cli::try_parse_from([
            "ebctl",
            "publish",
            "t",
            "--payload",
            "x",
            "--file",
            path.to_str().unwrap(),
        ]);
        assert!(both.is_err());
    }

    #[test]
    fn reply_needs_exactly_one_way_to_answer() {
        assert!(Cli::try_parse_from(["ebctl", "reply", "t"]).is_err());
        assert!(
            Cli::try_parse_from(["ebctl", "reply", "t", "--echo", "--command", "cat"]).is_err()
        );
        assert!(Cli::try_parse_from(["ebctl", "reply", "t", "--echo"]).is_ok());
    }

    #[test]
    fn intervals_are_seconds_within_bounds() {
        assert_eq!(
            parse_interval("0.5"),
            Ok(std::time::Duration::from_millis(500))
        );
        for bad in ["0", "-1", "abc", "1e9", "NaN"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
        assert!(Cli::try_parse_from(["ebctl", "stats", "--count", "2"]).is_err());
    }

    #[test]
    fn concurrency_must_be_positive() {
        let parsed =
            Cli::try_parse_from(["ebctl", "tasks", "t", "--count", "1", "--concurrency", "0"]);
        assert!(parsed.is_err());
    }
}
