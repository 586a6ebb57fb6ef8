//! What each connected client costs: N idle clients, each holding
//! [`WILDCARD_SUBS`] subscriptions with a `+` wildcard and one on the shared
//! fan-out topic, in one process (`busbench idle`); the suite measures the
//! broker's RSS per client, a fan-out to all of them, and the round trip
//! while they are connected.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::peers::Broker;
use crate::roles::{connect, ready};
use crate::suite::{Proc, SuiteArgs, command, rss_kib, start};

/// Subscriptions with a `+` wildcard each idle client holds (never matched).
pub const WILDCARD_SUBS: usize = 10;
/// The topic every idle client subscribes to, for the fan-out.
pub const FAN_TOPIC: &str = "bench.fan";
/// How long the clients stay quiet after the fan-out before the broker's
/// RSS is read again.
const QUIET: Duration = Duration::from_millis(2_500);
/// Clients connecting (and subscribing) at once.
const CONNECT_AT_ONCE: usize = 16;
/// The fan-out's end: this long without a delivery once it has started.
const SILENCE: Duration = Duration::from_secs(2);

/// Arguments of `busbench idle`.
#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    #[arg(long)]
    socket: PathBuf,
    /// Clients to connect, each its own connection.
    #[arg(long)]
    clients: usize,
    /// Messages each client expects on the fan-out topic; once all have
    /// arrived (or after 2 s of silence), the role prints what it counted
    /// and exits.
    #[arg(long)]
    expect: u64,
}

/// Connects `clients` clients with their subscriptions, prints the ready
/// line, then counts the fan-out deliveries to all of them.
pub async fn idle(args: &IdleArgs) -> anyhow::Result<()> {
    let received = Arc::new(AtomicU64::new(0));
    let total = args.clients as u64 * args.expect;
    let mut clients = Vec::with_capacity(args.clients);
    let mut fan = Vec::with_capacity(args.clients);
    let ids: Vec<usize> = (0..args.clients).collect();
    for chunk in ids.chunks(CONNECT_AT_ONCE) {
        let mut joining = Vec::new();
        for &i in chunk {
            let socket = args.socket.clone();
            joining.push(tokio::spawn(async move {
                let client = connect(&socket).await?;
                let mut held = Vec::with_capacity(WILDCARD_SUBS);
                for j in 0..WILDCARD_SUBS {
                    held.push(client.subscribe(format!("scale.c{i}.s{j}.+")).await?);
                }
                let fan = client.subscribe(FAN_TOPIC).await?;
                anyhow::Ok((client, held, fan))
            }));
        }
        for j in joining {
            let (client, held, stream) = j.await??;
            clients.push((client, held));
            fan.push(stream);
        }
    }
    let first = Arc::new(std::sync::OnceLock::new());
    let last = Arc::new(std::sync::Mutex::new(Instant::now()));
    let done = Arc::new(tokio::sync::Notify::new());
    for mut stream in fan {
        let (received, first, last, done) =
            (received.clone(), first.clone(), last.clone(), done.clone());
        tokio::spawn(async move {
            while stream.next().await.is_some() {
                first.get_or_init(Instant::now);
                let n = received.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(1024) || n == total {
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                }
                if n == total {
                    done.notify_one();
                }
            }
        });
    }
    ready();
    // Wait for everything, or for the stream to go quiet once it started
    // (messages dropped for a slow subscriber never arrive).
    loop {
        tokio::select! {
            () = done.notified() => break,
            () = tokio::time::sleep(SILENCE) => {
                let quiet = last.lock().unwrap_or_else(|p| p.into_inner()).elapsed() >= SILENCE;
                if first.get().is_some() && quiet {
                    break;
                }
            }
        }
    }
    let got = received.load(Ordering::Relaxed);
    let end = *last.lock().unwrap_or_else(|p| p.into_inner());
    let secs = first
        .get()
        .map_or(0.0, |f: &Instant| end.duration_since(*f).as_secs_f64());
    println!(
        "{}",
        json!({
            "clients": args.clients, "expected": total, "received": got, "seconds": secs,
            "per_s": if secs > 0.0 { got as f64 / secs } else { 0.0 },
        })
    );
    drop(clients);
    Ok(())
}

/// Clients of each scale run.
pub const SCALES: [usize; 3] = [10, 100, 1_000];

/// One scale run: a fresh broker, `n` idle clients, and what they cost.
fn one(
    args: &SuiteArgs,
    dir: &Path,
    broker: &Broker,
    n: usize,
    fan_messages: u64,
) -> anyhow::Result<Value> {
    let started = broker.start(&dir.join(format!("s-{}", broker.name())), false)?;
    let run = |role: &str, extra: &[&str]| {
        let (program, args) = started.role(role, extra);
        command(false, &program, &args)
    };
    let (program, responder) = started.role("responder", &[]);
    let _responder = start(false, &program, &responder)?;
    let before = rss_kib(started.pid)?;
    let (n_arg, expect) = (n.to_string(), fan_messages.to_string());
    let mut idle = run("idle", &["--clients", &n_arg, "--expect", &expect])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = idle.stdout.take().context("stdout")?;
    let idle = Proc(idle);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    lines.next().context("idle clients ready")??;
    let with = rss_kib(started.pid)?;
    let rtt = crate::suite::rtt_next_to_floor(args, dir, &started)?;
    let mut publish = vec!["--count", &expect];
    if started.is_bus() {
        publish.extend(["--topic", FAN_TOPIC]);
    }
    let out = run("pub", &publish).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{} publisher failed: {}",
        broker.name(),
        out.status
    );
    let publisher: Value = serde_json::from_str(
        String::from_utf8(out.stdout)?
            .lines()
            .last()
            .context("publisher output")?,
    )?;
    let fanout: Value = serde_json::from_str(&lines.next().context("fan-out result")??)?;
    let after_fanout = rss_kib(started.pid)?;
    // The broker lets a burst's buffers go once a connection has been quiet
    // for a second.
    std::thread::sleep(QUIET);
    let after_quiet = rss_kib(started.pid)?;
    drop(idle);
    Ok(json!({
        "broker": broker.name(), "clients": n, "subscriptions_per_client": WILDCARD_SUBS + 1,
        "broker_rss_kib_before": before, "broker_rss_kib_with_clients": with,
        "broker_kib_per_client": with.saturating_sub(before) as f64 / n as f64,
        "broker_rss_kib_after_fanout": after_fanout,
        "broker_rss_kib_after_quiet": after_quiet, "quiet_s": QUIET.as_secs_f64(),
        "fanout": fanout, "publisher": publisher, "round_trip": rtt,
    }))
}

/// Every scale run, for every broker, [`SCALES`] clients in turn, each with
/// a fan-out of about `deliveries` deliveries in all (at least 100 messages).
///
/// The fan-out is kept to that total because the broker routes a whole
/// read of publishes in one go: 1,000 messages to 1,000 subscribers
/// (1,000,000 deliveries) held it long enough on a loaded machine for the
/// publisher's heartbeat to give up on the link.
pub fn measure(args: &SuiteArgs, dir: &Path, deliveries: u64) -> anyhow::Result<Value> {
    let mut runs = Vec::new();
    for broker in crate::peers::brokers(args) {
        for n in SCALES {
            runs.push(one(
                args,
                dir,
                &broker,
                n,
                (deliveries / n as u64).max(100),
            )?);
        }
    }
    Ok(Value::from(runs))
}
