//! NATS JetStream through async-nats's core client: a file-store stream, and
//! publishes each waiting for its `PubAck` (what JetStream's own publish
//! does: a request to the stream's subject, answered once the server has
//! stored the message). JetStream 2.9 does not fsync each message: its file
//! store syncs on an interval (`sync_interval`, 2 min by default), so a
//! `PubAck` means "in the server's page cache", not "on disk".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use e2e::bench::{histogram, summary};

use crate::{JsPubArgs, request_payload};

/// The stream's name, and the subject it stores.
const STREAM: &str = "BENCH";
const SUBJECT: &str = "bench.js";

async fn connect(addr: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .request_timeout(Some(crate::REPLY_TIMEOUT))
        .connect(addr)
        .await
        .with_context(|| format!("connecting to nats-server at {addr}"))
}

/// Creates the file-store stream (once per server; an existing one is
/// kept) through the JetStream API subject.
async fn create_stream(client: &async_nats::Client) -> anyhow::Result<()> {
    let config = serde_json::json!({
        "name": STREAM, "subjects": [SUBJECT], "storage": "file",
        "retention": "limits", "num_replicas": 1,
    });
    let reply = client
        .request(
            format!("$JS.API.STREAM.CREATE.{STREAM}"),
            serde_json::to_vec(&config)?.into(),
        )
        .await
        .context("JetStream stream create (is the server started with -js?)")?;
    let answer: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    // 10058: a stream with this name exists already.
    if let Some(e) = answer.get("error")
        && e["err_code"] != 10058
    {
        bail!("JetStream refused the stream: {e}");
    }
    Ok(())
}

/// Publishes `count` 64-byte messages to the stream (after `warmup`
/// unmeasured ones), `in_flight` waiting for their `PubAck` at once;
/// prints the rate and the publish-to-ack latency.
pub async fn publish(args: &JsPubArgs) -> anyhow::Result<()> {
    let client = connect(&args.addr).await?;
    create_stream(&client).await?;
    let tickets = Arc::new(AtomicU64::new(0));
    let total = args.warmup + args.count;
    let start = Instant::now();
    let mut loops = Vec::new();
    for _ in 0..args.in_flight {
        let (client, tickets) = (client.clone(), tickets.clone());
        let warmup = args.warmup;
        loops.push(tokio::spawn(async move {
            // Raw samples, one histogram at the end (not one per task).
            let mut kept = Vec::new();
            let payload = request_payload();
            loop {
                let t = tickets.fetch_add(1, Ordering::Relaxed);
                if t >= total {
                    break;
                }
                let sent = Instant::now();
                let ack = client.request(SUBJECT, payload.clone()).await?;
                let ns = sent.elapsed().as_nanos() as u64;
                if ack.payload.starts_with(b"{\"error\"") || !ack.payload.starts_with(b"{") {
                    bail!(
                        "JetStream did not ack: {}",
                        String::from_utf8_lossy(&ack.payload)
                    );
                }
                if t >= warmup {
                    kept.push(ns);
                }
            }
            anyhow::Ok(kept)
        }));
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
    out["published"] = serde_json::json!(total);
    out["in_flight"] = serde_json::json!(args.in_flight);
    out["seconds"] = serde_json::json!(secs);
    out["per_s"] = serde_json::json!(total as f64 / secs);
    if args.samples {
        out["samples_ns"] = serde_json::json!(kept);
    }
    println!("{out}");
    Ok(())
}
