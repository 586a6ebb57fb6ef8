//! Throughput roles: the raw-socket stream floor, and a work queue with
//! several workers answering tasks.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eventbus::Topic;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::roles::{connect, ready};

/// Bytes written per `write` by the raw publisher, like the bus's batching writer.
const RAW_CHUNK: usize = 64 * 1024;

/// Counts `count` messages of `size` bytes arriving on `listen`; prints JSON.
pub async fn raw_sink(listen: &Path, count: u64, size: usize) -> anyhow::Result<()> {
    let listener = UnixListener::bind(listen)?;
    ready();
    let (mut conn, _) = listener.accept().await?;
    let total = count * size as u64;
    let mut buf = vec![0u8; RAW_CHUNK];
    let mut got = 0u64;
    let mut start = None;
    while got < total {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        start.get_or_insert_with(Instant::now);
        got += n as u64;
    }
    let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let messages = got / size as u64;
    println!(
        "{}",
        json!({"received": messages, "seconds": secs, "per_s": messages as f64 / secs})
    );
    Ok(())
}

/// Writes `count` messages of `size` bytes to `socket` as fast as it can.
pub async fn raw_pub(socket: &Path, count: u64, size: usize) -> anyhow::Result<()> {
    let mut conn = UnixStream::connect(socket).await?;
    let per_chunk = (RAW_CHUNK / size).max(1);
    let chunk = vec![7u8; per_chunk * size];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < count {
        let n = per_chunk.min((count - sent) as usize);
        conn.write_all(&chunk[..n * size]).await?;
        sent += n as u64;
    }
    conn.shutdown().await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"sent": sent, "seconds": secs, "per_s": sent as f64 / secs})
    );
    Ok(())
}

/// Arguments of `busbench worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[arg(long)]
    socket: PathBuf,
    /// Deliveries this worker holds unsettled at once.
    #[arg(long, default_value_t = 16)]
    prefetch: u32,
}

/// Joins group `workers` on `bench.work` and answers every task with a
/// reply that is also its ack.
pub async fn worker(args: &WorkerArgs) -> anyhow::Result<()> {
    let client = connect(&args.socket).await?;
    let mut tasks = client
        .queue_subscribe("bench.work", "workers", args.prefetch)
        .await?;
    ready();
    while let Some(task) = tasks.next().await {
        task.reply(task.message().payload().clone())?;
    }
    Ok(())
}

/// Arguments of `busbench tasks`.
#[derive(Debug, clap::Args)]
pub struct TasksArgs {
    #[arg(long)]
    socket: PathBuf,
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Requests in flight at once, from this one client.
    #[arg(long, default_value_t = 64)]
    concurrency: u64,
}

/// Sends `count` tasks on `bench.work`, `concurrency` in flight at once from
/// one client; prints JSON with the rate and how many each worker answered.
pub async fn tasks(args: &TasksArgs) -> anyhow::Result<()> {
    let client = connect(&args.socket).await?;
    let topic = Topic::new("bench.work")?;
    let payload = bytes::Bytes::from(vec![7u8; 64]);
    let start = Instant::now();
    let mut loops = Vec::new();
    for i in 0..args.concurrency {
        let share = args.count / args.concurrency + u64::from(i < args.count % args.concurrency);
        let (client, topic, payload) = (client.clone(), topic.clone(), payload.clone());
        loops.push(tokio::spawn(async move {
            // Who answered, counted per loop and merged at the end: no
            // shared map on the measured path.
            let mut answered: HashMap<String, u64> = HashMap::new();
            for _ in 0..share {
                let reply = client
                    .request(&topic, payload.clone(), Duration::from_secs(30))
                    .await?;
                match answered.get_mut(reply.source()) {
                    Some(n) => *n += 1,
                    None => {
                        answered.insert(reply.source().to_owned(), 1);
                    }
                }
            }
            anyhow::Ok(answered)
        }));
    }
    let mut shares: HashMap<String, u64> = HashMap::new();
    for l in loops {
        for (worker, n) in l.await?? {
            *shares.entry(worker).or_default() += n;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "completed": args.count, "in_flight": args.concurrency, "seconds": secs,
            "per_s": args.count as f64 / secs, "shares": sorted_shares(shares),
        })
    );
    Ok(())
}

/// Tasks answered per worker, largest first (worker names are not kept:
/// they differ from run to run).
pub fn sorted_shares(shares: HashMap<String, u64>) -> Vec<u64> {
    let mut counts: Vec<u64> = shares.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts
}
