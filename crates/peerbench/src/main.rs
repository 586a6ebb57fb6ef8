//! `peerbench`: the roles of `busbench` run against peer brokers, through
//! each peer's own client, so `cargo xtask bench` shows eventbus next to
//! them in the same run:
//!
//! - `nats`: nats-server, over TCP loopback (it has no Unix socket
//!   listener), with async-nats; a queue group (`queue_subscribe`) answers
//!   requests with `request`'s reply subject, without acks.
//! - `redis`: redis-server over its Unix socket, with the redis crate; the
//!   work-queue analogue is a list: the requester `LPUSH`es, one worker
//!   `BLMPOP`s each task (up to 16 at a time) and `LPUSH`es the reply to
//!   the requester's list; no acks. The scale role uses pub/sub (`PSUBSCRIBE`
//!   patterns and a `SUBSCRIBE`d fan-out channel).
//! - `mqtt`: mosquitto over its Unix socket listener, with rumqttc (MQTT
//!   3.1.1, QoS 0): workers share a subscription (`$share/workers/...`), the
//!   requester subscribes to its reply topic; no acks.
//! - `js-pub`: nats-server with JetStream, a file-store stream, publishes
//!   awaiting their `PubAck` (for busbench's durable probe).
//!
//! Every role prints what busbench's do (a JSON ready line, then a JSON
//! result), and a reply's first 8 bytes say which worker answered (its pid),
//! so shares per worker are counted as for the bus.
#![forbid(unsafe_code)]

#[cfg(unix)]
mod fanout;
#[cfg(unix)]
mod jetstream;
#[cfg(unix)]
mod mqtt;
#[cfg(unix)]
mod nats;
#[cfg(unix)]
mod redis;

#[cfg(unix)]
use std::time::Duration;

#[cfg(unix)]
use clap::{Parser, Subcommand, ValueEnum};

/// Payload bytes of every request and reply, as in busbench.
#[cfg(unix)]
pub const PAYLOAD_BYTES: usize = 64;
/// How long a requester waits for a reply before it gives up on the run.
#[cfg(unix)]
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(unix)]
#[derive(Debug, Parser)]
#[command(about = "benchmark roles against nats-server, redis and mosquitto")]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

/// Which peer, and where it listens.
#[cfg(unix)]
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The peer broker.
    #[arg(long, value_enum)]
    pub peer: Peer,
    /// nats: `host:port`; redis and mqtt: the Unix socket's path.
    #[arg(long)]
    pub addr: String,
}

/// The peer brokers.
#[cfg(unix)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// nats-server.
    Nats,
    /// redis-server.
    Redis,
    /// mosquitto.
    Mqtt,
}

#[cfg(unix)]
#[derive(Debug, Subcommand)]
enum Role {
    /// Answer every request, as a queue-group member (nats, mqtt) or a list
    /// consumer (redis), with the request's own payload.
    Responder(Target),
    /// Sequential round trips; prints JSON percentiles.
    Rtt(RttArgs),
    /// Answer every task of the work queue.
    Worker(Target),
    /// Send COUNT tasks, CONCURRENCY in flight at once; prints JSON.
    Tasks(TasksArgs),
    /// Hold CLIENTS idle clients with 11 subscriptions each; count the
    /// fan-out; prints JSON.
    Idle(IdleArgs),
    /// Publish COUNT messages on the fan-out topic.
    Pub(PubArgs),
    /// nats-server with JetStream (`-js`): publish COUNT messages into a
    /// file-store stream, IN_FLIGHT awaiting their PubAck; prints JSON.
    JsPub(JsPubArgs),
}

/// Arguments of `peerbench js-pub`.
#[cfg(unix)]
#[derive(Debug, clap::Args)]
pub struct JsPubArgs {
    /// nats-server's `host:port` (started with `-js`).
    #[arg(long)]
    pub addr: String,
    /// Measured publishes.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Publishes before measuring.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Publishes awaiting their PubAck at once.
    #[arg(long, default_value_t = 1_000)]
    pub in_flight: u64,
    /// Also print every measured publish-to-ack time (`samples_ns`).
    #[arg(long)]
    pub samples: bool,
}

/// Arguments of `peerbench rtt`.
#[cfg(unix)]
#[derive(Debug, clap::Args)]
pub struct RttArgs {
    /// The peer.
    #[command(flatten)]
    pub target: Target,
    /// Measured round trips.
    #[arg(long, default_value_t = 20_000)]
    pub count: u64,
    /// Round trips before measuring.
    #[arg(long, default_value_t = 1_000)]
    pub warmup: u64,
    /// Also print every measured round trip (`samples_ns`).
    #[arg(long)]
    pub samples: bool,
}

/// Arguments of `peerbench tasks`.
#[cfg(unix)]
#[derive(Debug, clap::Args)]
pub struct TasksArgs {
    /// The peer.
    #[command(flatten)]
    pub target: Target,
    /// Tasks to send.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Tasks in flight at once, from this one client.
    #[arg(long, default_value_t = 10_000)]
    pub concurrency: u64,
}

/// Arguments of `peerbench idle`.
#[cfg(unix)]
#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    /// The peer.
    #[command(flatten)]
    pub target: Target,
    /// Clients to connect, each its own connection.
    #[arg(long)]
    pub clients: usize,
    /// Fan-out messages each client expects.
    #[arg(long)]
    pub expect: u64,
}

/// Arguments of `peerbench pub`.
#[cfg(unix)]
#[derive(Debug, clap::Args)]
pub struct PubArgs {
    /// The peer.
    #[command(flatten)]
    pub target: Target,
    /// Messages to publish.
    #[arg(long)]
    pub count: u64,
}

/// A reply to `request`: its payload with the first 8 bytes replaced by
/// this worker's id (its pid), so the requester can count shares.
#[cfg(unix)]
pub fn reply_payload(request: &[u8]) -> bytes::Bytes {
    let mut reply = request.to_vec();
    reply.resize(reply.len().max(8), 0);
    reply[..8].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
    reply.into()
}

/// Which worker a reply came from.
#[cfg(unix)]
pub fn worker_of(reply: &[u8]) -> u64 {
    reply
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The payload of every request.
#[cfg(unix)]
pub fn request_payload() -> bytes::Bytes {
    bytes::Bytes::from(vec![7u8; PAYLOAD_BYTES])
}

/// Prints the work-queue result as busbench's `tasks` does.
#[cfg(unix)]
pub fn report_tasks(
    count: u64,
    concurrency: u64,
    secs: f64,
    shares: std::collections::HashMap<u64, u64>,
) {
    let mut shares: Vec<u64> = shares.into_values().collect();
    shares.sort_unstable_by(|a, b| b.cmp(a));
    println!(
        "{}",
        serde_json::json!({
            "completed": count, "in_flight": concurrency, "seconds": secs,
            "per_s": count as f64 / secs, "shares": shares,
        })
    );
}

#[cfg(not(unix))]
fn main() -> anyhow::Result<()> {
    anyhow::bail!("peerbench drives the peers over Unix sockets and runs on Unix only")
}

#[cfg(unix)]
fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // As in busbench: every role a spawned task, as application code is.
        tokio::spawn(run(cli.role)).await?
    })
}

#[cfg(unix)]
async fn run(role: Role) -> anyhow::Result<()> {
    let peer = match &role {
        Role::Responder(t) | Role::Worker(t) => t.peer,
        Role::Rtt(a) => a.target.peer,
        Role::Tasks(a) => a.target.peer,
        Role::Idle(a) => a.target.peer,
        Role::Pub(a) => a.target.peer,
        Role::JsPub(_) => Peer::Nats,
    };
    match (peer, role) {
        (_, Role::JsPub(a)) => jetstream::publish(&a).await,
        (Peer::Nats, Role::Responder(t)) => nats::responder(&t, nats::RTT, "responders").await,
        (Peer::Nats, Role::Worker(t)) => nats::responder(&t, nats::WORK, "workers").await,
        (Peer::Nats, Role::Rtt(a)) => nats::rtt(&a).await,
        (Peer::Nats, Role::Tasks(a)) => nats::tasks(&a).await,
        (Peer::Nats, Role::Idle(a)) => nats::idle(&a).await,
        (Peer::Nats, Role::Pub(a)) => nats::publish(&a).await,
        (Peer::Redis, Role::Responder(t)) => redis::worker(&t, redis::RTT_QUEUE, 1).await,
        (Peer::Redis, Role::Worker(t)) => redis::worker(&t, redis::WORK_QUEUE, 16).await,
        (Peer::Redis, Role::Rtt(a)) => redis::rtt(&a).await,
        (Peer::Redis, Role::Tasks(a)) => redis::tasks(&a).await,
        (Peer::Redis, Role::Idle(a)) => redis::idle(&a).await,
        (Peer::Redis, Role::Pub(a)) => redis::publish(&a).await,
        (Peer::Mqtt, Role::Responder(t)) => mqtt::worker(&t, mqtt::RTT).await,
        (Peer::Mqtt, Role::Worker(t)) => mqtt::worker(&t, mqtt::WORK).await,
        (Peer::Mqtt, Role::Rtt(a)) => mqtt::rtt(&a).await,
        (Peer::Mqtt, Role::Tasks(a)) => mqtt::tasks(&a).await,
        (Peer::Mqtt, Role::Idle(a)) => mqtt::idle(&a).await,
        (Peer::Mqtt, Role::Pub(a)) => mqtt::publish(&a).await,
    }
}
