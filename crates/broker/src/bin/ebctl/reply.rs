//! `ebctl reply`: a responder. Each message on the filter is answered with its
//! own payload (`--echo`) or with the output of a command run for it
//! (`--command`), one at a time.
//!
//! As a queue member (`--queue`) it holds one delivery at a time and settles
//! each: a request is replied to (which acks it), anything else is acked
//! once handled, and a failed command rejects the message (nack without
//! requeue: dead-lettered, its requester fails at once). On a plain
//! subscription a failed command only leaves the request unanswered.
//!
//! Like `subscribe`, it writes `subscribed to <filter>` to stderr once the
//! broker has registered it.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use eventbus::{Body, Client, Delivery, GroupName, Headers, Message, TopicFilter};
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::cli::{MAX_PAYLOAD_FILE_BYTES, ReplyArgs};
use crate::failure::Failure;
use crate::output;

/// How a message was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Outcome {
    /// A request, answered.
    Replied,
    /// A queue message that asked for no reply, handled and acked.
    Acked,
    /// A message on a plain subscription that asked for no reply, handled.
    Handled,
    /// The command failed: a queue message was dead-lettered.
    Rejected,
    /// The command failed on a plain subscription: no reply was sent.
    Failed,
}

/// One handled message as `ebctl reply --json` prints it.
#[derive(Debug, Serialize)]
struct HandledJson<'a> {
    topic: &'a str,
    id: u64,
    source: &'a str,
    attempt: u32,
    outcome: Outcome,
    /// From receiving the message to settling it.
    latency_us: u64,
}

/// How each message is answered.
enum Answer<'a> {
    Echo,
    Command { script: &'a str, timeout: Duration },
}

impl Answer<'_> {
    /// The reply payload for `message`, or why there is none.
    async fn run(&self, message: &Message) -> Result<Vec<u8>, String> {
        match self {
            Answer::Echo => Ok(message.payload().to_vec()),
            Answer::Command { script, timeout } => run_command(script, *timeout, message).await,
        }
    }
}

/// Answers messages on `filter` until `--count` is reached or the
/// connection closes for good.
pub async fn run(
    client: &Client,
    filter: &TopicFilter,
    group: Option<GroupName>,
    headers: Headers,
    args: &ReplyArgs,
) -> Result<(), Failure> {
    let answer = match &args.command {
        Some(script) => Answer::Command {
            script,
            timeout: Duration::from_millis(args.command_timeout_ms),
        },
        None => Answer::Echo,
    };
    let responder = Responder {
        client,
        answer,
        headers,
        json: args.json,
    };
    let mut handled = 0;
    let done = |handled: u64| args.count.is_some_and(|count| handled >= count);
    match group {
        Some(group) => {
            let mut deliveries = client.queue_subscribe(filter, group, 1).await?;
            subscribed(filter);
            while !done(handled) {
                let Some(delivery) = deliveries.next().await else {
                    return Err(closed(handled));
                };
                responder.settle(delivery).await?;
                handled += 1;
            }
        }
        None => {
            let mut messages = client.subscribe(filter).await?;
            subscribed(filter);
            while !done(handled) {
                let Some(message) = messages.next().await else {
                    return Err(closed(handled));
                };
                responder.answer(&message).await?;
                handled += 1;
            }
        }
    }
    Ok(())
}

struct Responder<'a> {
    client: &'a Client,
    answer: Answer<'a>,
    headers: Headers,
    json: bool,
}

impl Responder<'_> {
    fn body(&self, payload: Vec<u8>) -> Body {
        Body::new(payload).with_headers(self.headers.clone())
    }

    /// Handles one queue delivery and settles it.
    async fn settle(&self, delivery: Delivery) -> Result<(), Failure> {
        let start = Instant::now();
        let message = delivery.message();
        let outcome = match self.answer.run(message).await {
            Ok(payload) if message.is_request() => match delivery.reply(self.body(payload)) {
                Ok(()) => Outcome::Replied,
                Err(eventbus::client::AckError::Closed) => return Err(closed_mid(message)),
                Err(e) => {
                    warn(message, &e.to_string());
                    delivery.nack_confirmed(false).await?;
                    Outcome::Rejected
                }
            },
            Ok(_) => {
                delivery.ack()?;
                Outcome::Acked
            }
            Err(why) => {
                warn(message, &why);
                delivery.nack_confirmed(false).await?;
                Outcome::Rejected
            }
        };
        self.print(message, outcome, start)
    }

    /// Handles one message of a plain subscription.
    async fn answer(&self, message: &Message) -> Result<(), Failure> {
        let start = Instant::now();
        let outcome = match self.answer.run(message).await {
            Ok(payload) if message.is_request() => {
                match self.client.reply(message, self.body(payload)) {
                    Ok(()) => Outcome::Replied,
                    Err(eventbus::client::AckError::Closed) => return Err(closed_mid(message)),
                    Err(e) => {
                        warn(message, &e.to_string());
                        Outcome::Failed
                    }
                }
            }
            Ok(_) => Outcome::Handled,
            Err(why) => {
                warn(message, &why);
                Outcome::Failed
            }
        };
        self.print(message, outcome, start)
    }

    fn print(&self, message: &Message, outcome: Outcome, start: Instant) -> Result<(), Failure> {
        let line = if self.json {
            serde_json::to_string(&HandledJson {
                topic: message.topic(),
                id: message.id(),
                source: message.source(),
                attempt: message.attempt(),
                outcome,
                latency_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
            })?
        } else {
            let outcome = serde_json::to_value(outcome)?;
            format!(
                "{} {} {}",
                outcome.as_str().unwrap_or_default(),
                message.topic(),
                message.id()
            )
        };
        output::line(&line)
    }
}

/// Runs `sh -c script` (`cmd /C` on Windows) with the payload on stdin and
/// the message's facts in `EBCTL_*` variables; its stdout is the reply.
async fn run_command(
    script: &str,
    timeout: Duration,
    message: &Message,
) -> Result<Vec<u8>, String> {
    let mut command = if cfg!(windows) {
        let mut c = tokio::process::Command::new("cmd");
        c.arg("/C").arg(script);
        c
    } else {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(script);
        c
    };
    command
        .env("EBCTL_TOPIC", message.topic())
        .env("EBCTL_SOURCE", message.source())
        .env("EBCTL_MESSAGE_ID", message.id().to_string())
        .env("EBCTL_ATTEMPT", message.attempt().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // A timed-out (or abandoned) command does not outlive its wait.
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {script:?}: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let payload = message.payload().clone();
    let work = async {
        // Written while stdout is read, so a command that answers before it
        // has read everything cannot block on a full pipe. A command that
        // never reads its input is fine too: the write just fails.
        let write = async move {
            let _ = stdin.write_all(&payload).await;
        };
        let mut output = Vec::new();
        let mut limited = (&mut stdout).take(MAX_PAYLOAD_FILE_BYTES + 1);
        let read = limited.read_to_end(&mut output);
        let ((), read) = tokio::join!(write, read);
        read.map_err(|e| format!("cannot read the output of {script:?}: {e}"))?;
        if output.len() as u64 > MAX_PAYLOAD_FILE_BYTES {
            return Err(format!(
                "{script:?} printed more than {MAX_PAYLOAD_FILE_BYTES} bytes"
            ));
        }
        let status = child
            .wait()
            .await
            .map_err(|e| format!("cannot wait for {script:?}: {e}"))?;
        if status.success() {
            Ok(output)
        } else {
            Err(format!("{script:?} failed ({status})"))
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(format!("{script:?} ran longer than {timeout:?}")))
}

fn subscribed(filter: &TopicFilter) {
    // A closed stderr only loses the notice.
    let _ = writeln!(std::io::stderr(), "subscribed to {filter}");
}

fn warn(message: &Message, why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "ebctl: message {} on {}: {why}",
        message.id(),
        message.topic()
    );
}

fn closed(handled: u64) -> Failure {
    Failure::operational(format!(
        "connection to the broker closed after {handled} messages"
    ))
}

fn closed_mid(message: &Message) -> Failure {
    Failure::operational(format!(
        "connection to the broker closed while answering message {}",
        message.id()
    ))
}
