//! The roles and the floor of the durable probe: confirmed publishes with
//! several in flight from several connections, a queue's depth read from
//! the broker's stats, and the fsync floor (a small append + `fdatasync`
//! loop on the same filesystem as the broker's journal).
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use eventbus::Topic;
use serde_json::json;

use crate::roles::{connect, histogram, summary};

/// Arguments of `busbench confirm-pub`.
#[derive(Debug, clap::Args)]
pub struct ConfirmPubArgs {
    #[arg(long)]
    pub socket: PathBuf,
    /// Topic to publish on (a queue group on it holds what arrives).
    #[arg(long)]
    pub topic: String,
    /// Measured confirmed publishes, from all publishers together.
    #[arg(long)]
    pub count: u64,
    /// Unmeasured publishes first.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Publisher connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: u64,
    /// Confirmed publishes in flight at once on each connection.
    #[arg(long, default_value_t = 1)]
    pub in_flight: u64,
    /// Payload bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Also print every measured confirm time (`samples_ns`).
    #[arg(long)]
    pub samples: bool,
}

/// Publishes with `publish_confirmed`, `publishers × in_flight` waiting
/// for their confirmation at once; prints the rate and the
/// publish-to-confirm latency as one JSON line.
pub async fn confirm_pub(args: &ConfirmPubArgs) -> anyhow::Result<()> {
    let topic = Topic::new(&args.topic)?;
    let payload = bytes::Bytes::from(vec![7u8; args.size]);
    let mut clients = Vec::new();
    for _ in 0..args.publishers {
        clients.push(connect(&args.socket).await?);
    }
    let tickets = Arc::new(AtomicU64::new(0));
    let (total, warmup) = (args.warmup + args.count, args.warmup);
    let start = Instant::now();
    let mut loops = Vec::new();
    for client in &clients {
        for _ in 0..args.in_flight {
            let (client, topic, payload) = (client.clone(), topic.clone(), payload.clone());
            let tickets = tickets.clone();
            loops.push(tokio::spawn(async move {
                // Raw samples, one histogram at the end: a histogram per
                // task would cost each of thousands of tasks its own
                // zeroed pages.
                let mut kept = Vec::new();
                loop {
                    let t = tickets.fetch_add(1, Ordering::Relaxed);
                    if t >= total {
                        break;
                    }
                    let sent = Instant::now();
                    client.publish_confirmed(&topic, payload.clone()).await?;
                    let ns = sent.elapsed().as_nanos() as u64;
                    if t >= warmup {
                        kept.push(ns);
                    }
                }
                anyhow::Ok(kept)
            }));
        }
    }
    let mut kept = Vec::new();
    for l in loops {
        kept.extend(l.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    let mut hist = histogram();
    for &ns in &kept {
        hist.record(ns)?;
    }
    let mut out = summary(&hist);
    out["published"] = json!(total);
    out["publishers"] = json!(args.publishers);
    out["in_flight"] = json!(args.in_flight);
    out["seconds"] = json!(secs);
    out["per_s"] = json!(total as f64 / secs);
    if args.samples {
        out["samples_ns"] = json!(kept);
    }
    println!("{out}");
    Ok(())
}

/// Arguments of `busbench queue-depth`.
#[derive(Debug, clap::Args)]
pub struct QueueDepthArgs {
    #[arg(long)]
    pub socket: PathBuf,
    #[arg(long)]
    pub topic: String,
}

/// Prints the depth and in-flight count of every queue group on `topic`
/// (what a restarted broker recovered), from its stats.
pub async fn queue_depth(args: &QueueDepthArgs) -> anyhow::Result<()> {
    let client = connect(&args.socket).await?;
    let stats = client.stats().await?;
    let q = stats
        .queues
        .iter()
        .find(|q| q.topic == args.topic)
        .with_context(|| format!("no queue group on {}", args.topic))?;
    println!(
        "{}",
        json!({"depth": q.depth, "in_flight": q.in_flight, "durable": q.durable})
    );
    Ok(())
}

/// Bytes of each floor record: the message size of the measured loads
/// (the journal's record of one adds its framing and the broker's stamps;
/// one sector either way).
pub const FLOOR_RECORD_BYTES: usize = 64;

/// The fsync floor: `count` appends of a [`FLOOR_RECORD_BYTES`] record to
/// a file in `dir`, each followed by `fdatasync` (`File::sync_data`), one
/// at a time; returns every append + sync time in nanoseconds.
pub fn fsync_floor(dir: &Path, count: u64) -> anyhow::Result<Vec<u64>> {
    let mut file = open_appending(&dir.join("fsync-floor.dat"))?;
    let record = [7u8; FLOOR_RECORD_BYTES];
    let mut samples = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let start = Instant::now();
        append_and_sync(&mut file, &record)?;
        samples.push(start.elapsed().as_nanos() as u64);
    }
    Ok(samples)
}

/// What the fsync floor does with each record: append it, then
/// `fdatasync`.
fn append_and_sync(file: &mut std::fs::File, record: &[u8]) -> std::io::Result<()> {
    file.write_all(record)?;
    file.sync_data()
}

fn open_appending(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Arguments of `busbench fsync-echo`.
#[derive(Debug, clap::Args)]
pub struct FsyncEchoArgs {
    /// The Unix socket to listen on.
    #[arg(long)]
    pub listen: PathBuf,
    /// The file each received chunk is appended to (and synced).
    #[arg(long)]
    pub file: PathBuf,
}

/// The fsync floor across two processes: each chunk a client sends is
/// appended to `file` and synced as [`fsync_floor`] does, then written
/// back. With `raw-rtt` as the client, one at a time, this is the least a
/// confirmation after `fdatasync` can cost between two processes: a
/// socket hop each way around the floor's sync, and nothing else (no
/// framing, routing or hand-off between threads; the sync runs on the
/// thread that read the chunk).
pub async fn fsync_echo(args: &FsyncEchoArgs) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::UnixListener::bind(&args.listen)?;
    let mut file = open_appending(&args.file)?;
    crate::roles::ready();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // One client at a time: the floor is a single sequential stream.
        let (mut conn, _) = listener.accept().await?;
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                break;
            }
            // Synchronously, on purpose: this process does nothing else,
            // and the sync on the reading thread is the floor's path.
            append_and_sync(&mut file, &buf[..n])?;
            if conn.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    }
}
