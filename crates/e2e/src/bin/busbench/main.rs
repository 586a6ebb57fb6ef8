//! `busbench`: process-level benchmarks of eventbus against the raw-socket floor.
//!
//! Every role runs as its own process so a measurement crosses real process
//! boundaries: `relay` and `echo` build the physical floor (a byte-forwarding
//! Unix-socket relay in front of an echo server), `responder`/`rtt` and
//! `sub`/`pub` measure the bus, and `suite` starts them all, broker included,
//! and prints each figure next to the floor measured in the same run;
//! `durable` measures durable queues next to the fsync floor and JetStream;
//! `fleet` measures the NATS bridge across two hosts next to raw async-nats.
#![forbid(unsafe_code)]

#[cfg(unix)]
mod confirm;
#[cfg(unix)]
mod durable;
#[cfg(target_os = "linux")]
mod fleet;
#[cfg(unix)]
mod floor;
#[cfg(unix)]
mod gather;
#[cfg(unix)]
mod latency;
#[cfg(unix)]
mod peers;
#[cfg(unix)]
mod probe;
#[cfg(unix)]
mod queue;
#[cfg(unix)]
mod rate;
#[cfg(unix)]
mod roles;
#[cfg(unix)]
mod scale;
#[cfg(unix)]
mod stream;
#[cfg(unix)]
mod suite;

#[cfg(unix)]
use std::path::PathBuf;

#[cfg(unix)]
use clap::{Parser, Subcommand};

#[cfg(unix)]
#[derive(Debug, Parser)]
#[command(about = "eventbus process-level benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[cfg(unix)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Forward bytes between each client on LISTEN and a new connection to UPSTREAM.
    Relay {
        #[arg(long)]
        listen: PathBuf,
        #[arg(long)]
        upstream: PathBuf,
    },
    /// Echo every byte received on LISTEN back to its sender.
    Echo {
        #[arg(long)]
        listen: PathBuf,
    },
    /// Sequential raw round trips of SIZE bytes through SOCKET; prints JSON.
    RawRtt(roles::RttArgs),
    /// Answer every request on TOPIC with its own payload (plain
    /// subscription, or a queue group with `--queue`).
    Responder(roles::ResponderArgs),
    /// Sequential request/reply round trips through the broker; prints JSON.
    Rtt(roles::RttArgs),
    /// Receive COUNT messages on `bench.stream`; prints JSON with the rate.
    Sub {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        count: u64,
    },
    /// Publish COUNT messages of SIZE bytes on `bench.stream`.
    Pub {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Topic to publish on.
        #[arg(long, default_value = "bench.stream")]
        topic: String,
        /// Messages per second, paced every millisecond (default: as fast as
        /// the broker takes them).
        #[arg(long)]
        rate: Option<u64>,
    },
    /// Join queue group `bench` on TOPIC with prefetch 1 and report each delivery
    /// as a JSON line; settle nothing unless `--ack`.
    Hold(queue::HoldArgs),
    /// Time `cancel` of a queued task, COUNT times; prints JSON.
    CancelRtt {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long, default_value_t = 1_000)]
        count: u64,
    },
    /// Count COUNT raw messages of SIZE bytes arriving on LISTEN; prints JSON.
    RawSink {
        #[arg(long)]
        listen: PathBuf,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Write COUNT raw messages of SIZE bytes to SOCKET as fast as possible.
    RawPub {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Answer every task on `bench.work` (queue group `workers`), reply = ack.
    Worker(stream::WorkerArgs),
    /// Send tasks on `bench.work`, several at a time; prints JSON.
    Tasks(stream::TasksArgs),
    /// Connect CLIENTS idle clients with 11 subscriptions each; count what
    /// the fan-out topic brings them; prints JSON.
    Idle(scale::IdleArgs),
    /// Count syscalls, context switches, migrations and frames per round
    /// trip, per process: relay floor, plain and queue-group request/reply.
    Probe(probe::ProbeArgs),
    /// Forward what each client on LISTEN writes to every UPSTREAM, and
    /// everything they write back to the client.
    FanoutRelay {
        #[arg(long)]
        listen: PathBuf,
        #[arg(long = "upstream", required = true)]
        upstreams: Vec<PathBuf>,
    },
    /// Sequential rounds through a fan-out relay: SIZE bytes out, REPLIES ×
    /// SIZE back; prints JSON.
    RawFanout {
        #[command(flatten)]
        rtt: roles::RttArgs,
        #[arg(long)]
        replies: usize,
    },
    /// Answer gathers and requests on `bench.gather.*` (one of the gather
    /// section's workers).
    GatherWorker(gather::GatherWorkerArgs),
    /// Ask every `gather-worker` by gather, one by one, and the NATS way;
    /// prints JSON.
    GatherRtt(gather::GatherRttArgs),
    /// Run every measurement with the given broker binary and print the report.
    Suite(suite::SuiteArgs),
    /// Publish with confirmation, PUBLISHERS connections × IN_FLIGHT
    /// awaiting at once; prints JSON with the rate and confirm latency.
    ConfirmPub(confirm::ConfirmPubArgs),
    /// Print the depth of the queue group on TOPIC from the broker's stats.
    QueueDepth(confirm::QueueDepthArgs),
    /// Append each chunk received on LISTEN to FILE, `fdatasync`, and send
    /// it back: the fsync floor across two processes (with `raw-rtt`).
    FsyncEcho(confirm::FsyncEchoArgs),
    /// Durable queues through the broker binary: confirmed publish next to
    /// the fsync floor and in-memory queues, recovery after SIGKILL, and
    /// JetStream side by side; prints the report.
    Durable(durable::DurableArgs),
    /// The bridge across two hosts (network namespaces, else loopback) next
    /// to raw async-nats over the same links: round trip, throughput, the
    /// bridge's RSS; prints the report.
    #[cfg(target_os = "linux")]
    Fleet(fleet::FleetArgs),
    /// The patterns a bridge serves, small, with one node's bridge run
    /// through a wrapper (a profiler): `cargo xtask hot-functions`.
    #[cfg(target_os = "linux")]
    FleetWorkload(fleet::FleetWorkloadArgs),
}

#[cfg(not(unix))]
fn main() -> anyhow::Result<()> {
    anyhow::bail!("busbench measures Unix-domain sockets and runs on Unix only")
}

#[cfg(unix)]
fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Every role runs as a spawned task, as application code usually does: a
    // task woken by another task of the runtime is just queued, while waking
    // `block_on`'s own future costs an extra wake-up of the I/O driver.
    runtime.block_on(async move {
        let role = tokio::spawn(async move {
            match cli.command {
                Command::Relay { listen, upstream } => floor::relay(&listen, &upstream).await,
                Command::Echo { listen } => floor::echo(&listen).await,
                Command::RawRtt(args) => floor::raw_rtt(&args).await,
                Command::Responder(args) => roles::responder(&args).await,
                Command::Rtt(args) => roles::rtt(&args).await,
                Command::Sub { socket, count } => roles::sub(&socket, count).await,
                Command::Pub {
                    socket,
                    count,
                    size,
                    topic,
                    rate,
                } => roles::publish(&socket, count, size, &topic, rate).await,
                Command::Hold(args) => queue::hold(&args).await,
                Command::CancelRtt { socket, count } => queue::cancel_rtt(&socket, count).await,
                Command::RawSink {
                    listen,
                    count,
                    size,
                } => stream::raw_sink(&listen, count, size).await,
                Command::RawPub {
                    socket,
                    count,
                    size,
                } => stream::raw_pub(&socket, count, size).await,
                Command::Worker(args) => stream::worker(&args).await,
                Command::Tasks(args) => stream::tasks(&args).await,
                Command::Idle(args) => scale::idle(&args).await,
                Command::Probe(args) => probe::run(&args).await,
                Command::FanoutRelay { listen, upstreams } => {
                    floor::fanout_relay(&listen, &upstreams).await
                }
                Command::RawFanout { rtt, replies } => floor::raw_fanout(&rtt, replies).await,
                Command::GatherWorker(args) => gather::worker(&args).await,
                Command::GatherRtt(args) => gather::rtt(&args).await,
                Command::Suite(args) => suite::run(&args).await,
                Command::ConfirmPub(args) => confirm::confirm_pub(&args).await,
                Command::QueueDepth(args) => confirm::queue_depth(&args).await,
                Command::FsyncEcho(args) => confirm::fsync_echo(&args).await,
                Command::Durable(args) => durable::run(&args).await,
                #[cfg(target_os = "linux")]
                Command::Fleet(args) => fleet::run(&args).await,
                #[cfg(target_os = "linux")]
                Command::FleetWorkload(args) => fleet::workload(&args).await,
            }
        });
        role.await?
    })
}
