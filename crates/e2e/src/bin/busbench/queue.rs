//! Work-queue measurements: memory per queued task, failover after a crash or
//! a freeze, reconnection after a broker restart, and cancel latency.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use eventbus::{ClientOptions, Topic};
use serde_json::{Value, json};

use crate::roles::{connect, histogram, ready};
use crate::suite::{Proc, SuiteArgs, command, finish, rss_kib, start};

/// Arguments of `busbench hold`.
#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    #[arg(long)]
    socket: PathBuf,
    #[arg(long, default_value = "bench.q")]
    topic: String,
    /// Acknowledge each delivery instead of holding it.
    #[arg(long)]
    ack: bool,
    /// Heartbeat interval to ask for, in milliseconds (3 misses).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub async fn hold(args: &HoldArgs) -> anyhow::Result<()> {
    let mut options = ClientOptions::new(&args.socket).kind("bench");
    if let Some(ms) = args.heartbeat_ms {
        options = options.heartbeat(Duration::from_millis(ms), 3);
    }
    let client = eventbus::Client::connect(options).await?;
    let mut q = client
        .queue_subscribe(args.topic.as_str(), "bench", 1)
        .await?;
    ready();
    let mut held = Vec::new();
    while let Some(d) = q.next().await {
        println!(
            "{}",
            json!({"event": "delivered", "id": d.message().id(), "attempt": d.message().attempt(), "t_us": now_us()})
        );
        if args.ack {
            d.ack()?;
        } else {
            held.push(d);
        }
    }
    Ok(())
}

pub async fn cancel_rtt(socket: &Path, count: u64) -> anyhow::Result<()> {
    let worker = connect(socket).await?;
    let mut q = worker.queue_subscribe("bench.cancel", "bench", 1).await?;
    let client = connect(socket).await?;
    let topic = Topic::new("bench.cancel")?;
    let _busy = client
        .submit(&topic, "occupy", Duration::from_secs(600))
        .await?;
    let _held = q.next().await.context("the worker holds the first task")?;
    let mut hist = histogram();
    for _ in 0..count {
        let queued = client
            .submit(&topic, "queued", Duration::from_secs(60))
            .await?;
        let start = Instant::now();
        client.cancel(queued.message_id()).await?;
        hist.record(start.elapsed().as_nanos() as u64)?;
    }
    crate::roles::report_histogram(&hist);
    Ok(())
}

/// The next `delivered` line a `hold` process prints.
fn delivered(lines: &mut Lines<BufReader<ChildStdout>>) -> anyhow::Result<Value> {
    for line in lines.by_ref() {
        let v: Value = serde_json::from_str(&line?)?;
        if v["event"] == "delivered" {
            return Ok(v);
        }
    }
    bail!("hold process ended without a delivery")
}

pub fn start_hold(
    me: &Path,
    sock: &str,
    extra: &[&str],
) -> anyhow::Result<(Proc, Lines<BufReader<ChildStdout>>)> {
    let mut args = vec!["hold", "--socket", sock];
    args.extend_from_slice(extra);
    let mut child = command(false, me, &args).stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let proc = Proc(child);
    lines.next().context("hold ready")??;
    Ok((proc, lines))
}

/// Memory per queued 64-byte task: broker RSS growth over 100,000 queued tasks.
fn memory_per_task(args: &SuiteArgs, dir: &Path) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let sock = dir.join("q.sock").to_string_lossy().into_owned();
    let n: u64 = 100_000;
    // One publisher queues them all: its quota (50,000 queued messages by
    // default, refused with `QuotaExceeded`) is raised to hold every one.
    let config = dir.join("q.toml");
    std::fs::write(
        &config,
        format!("[quotas]\nmax_queued_messages = {}\n", 2 * n),
    )?;
    let config = config.to_string_lossy().into_owned();
    let (_broker, ready) = start(
        false,
        &args.broker,
        &["--socket", &sock, "--config", &config],
    )?;
    let pid = ready["pid"].as_u64().context("pid")?;
    let (_holder, mut lines) = start_hold(&me, &sock, &[])?;
    let before = rss_kib(pid)?;
    finish(
        false,
        &me,
        &[
            "pub",
            "--socket",
            &sock,
            "--count",
            &n.to_string(),
            "--topic",
            "bench.q",
        ],
    )?;
    delivered(&mut lines)?;
    let after = rss_kib(pid)?;
    let per_task = (after.saturating_sub(before) * 1024) as f64 / (n - 1) as f64;
    Ok(
        json!({"tasks": n - 1, "rss_kib_before": before, "rss_kib_after": after, "bytes_per_queued_task": per_task}),
    )
}

/// Time from killing (or freezing) a holder to its task reaching another member.
fn failover(args: &SuiteArgs, dir: &Path, freeze: bool) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let sock = dir
        .join(if freeze { "z.sock" } else { "k.sock" })
        .to_string_lossy()
        .into_owned();
    let (_broker, _) = start(false, &args.broker, &["--socket", &sock])?;
    let publisher = finish_later(&sock);
    let mut samples = Vec::new();
    for _ in 0..10 {
        let hb: &[&str] = if freeze {
            &["--heartbeat-ms", "50"]
        } else {
            &[]
        };
        let (holder, mut held) = start_hold(&me, &sock, hb)?;
        publisher(&me)?;
        delivered(&mut held)?;
        let (_survivor, mut lines) = start_hold(&me, &sock, &["--ack"])?;
        let pid = rustix::process::Pid::from_raw(holder.0.id() as i32).context("pid")?;
        let t0 = now_us();
        let signal = if freeze {
            rustix::process::Signal::STOP
        } else {
            rustix::process::Signal::KILL
        };
        rustix::process::kill_process(pid, signal)?;
        let got = delivered(&mut lines)?;
        samples.push((got["t_us"].as_u64().unwrap_or(t0).saturating_sub(t0)) as f64 / 1000.0);
        if freeze {
            rustix::process::kill_process(pid, rustix::process::Signal::CONT)?;
        }
        drop(holder);
    }
    samples.sort_by(f64::total_cmp);
    Ok(
        json!({"runs": samples.len(), "p50_ms": samples[samples.len() / 2], "max_ms": samples[samples.len() - 1]}),
    )
}

/// Publishes one task on `bench.q`.
fn finish_later(sock: &str) -> impl Fn(&Path) -> anyhow::Result<()> + '_ {
    move |me| {
        finish(
            false,
            me,
            &[
                "pub", "--socket", sock, "--count", "1", "--topic", "bench.q",
            ],
        )
        .map(|_| ())
    }
}

/// Time from a restarted broker's ready line to a reconnected responder answering.
fn restart(args: &SuiteArgs, dir: &Path) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let sock = dir.join("r.sock").to_string_lossy().into_owned();
    let (mut broker, _) = start(false, &args.broker, &["--socket", &sock])?;
    let _responder = start(false, &me, &["responder", "--socket", &sock])?;
    let pid = rustix::process::Pid::from_raw(broker.0.id() as i32).context("pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    broker.0.wait()?;
    let (_broker, _) = start(false, &args.broker, &["--socket", &sock])?;
    let ready_at = Instant::now();
    let out = finish(
        false,
        &me,
        &[
            "rtt", "--socket", &sock, "--count", "1", "--warmup", "0", "--retry",
        ],
    )?;
    Ok(
        json!({"serving_after_ready_ms": ready_at.elapsed().as_secs_f64() * 1000.0, "first_request": out}),
    )
}

/// Every work-queue measurement.
pub fn measure(args: &SuiteArgs, dir: &Path) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let sock = dir.join("c.sock").to_string_lossy().into_owned();
    let cancel = {
        let (_broker, _) = start(false, &args.broker, &["--socket", &sock])?;
        finish(
            false,
            &me,
            &["cancel-rtt", "--socket", &sock, "--count", "1000"],
        )?
    };
    Ok(json!({
        "memory_per_queued_task": memory_per_task(args, dir)?,
        "failover_crash": failover(args, dir, false)?,
        "failover_frozen_50ms_x3": failover(args, dir, true)?,
        "reconnect_after_restart": restart(args, dir)?,
        "cancel_queued_task": cancel,
    }))
}
