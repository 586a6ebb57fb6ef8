//! The benchmark suite: starts every process, measures, and prints each bus
//! figure next to the floor measured in the same run, pinned to one CPU and not.
#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Arguments of `busbench suite`.
#[derive(Debug, clap::Args)]
pub struct SuiteArgs {
    /// The `broker` binary to measure.
    #[arg(long)]
    pub broker: PathBuf,
    /// Measured round trips per latency run.
    #[arg(long, default_value_t = 20_000)]
    pub count: u64,
    /// Warm-up round trips per latency run.
    #[arg(long, default_value_t = 1_000)]
    pub warmup: u64,
    /// Messages in the pub/sub throughput run.
    #[arg(long, default_value_t = 2_000_000)]
    pub messages: u64,
    /// Sections to run: latency, throughput, work, memory, queue, scale, gather.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "latency,throughput,work,memory,queue,scale,gather"
    )]
    sections: Vec<String>,
    /// Where to write `report.json`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The `peerbench` binary, to run the same roles against the peers
    /// whose servers are given below (each one is left out without it).
    #[arg(long)]
    pub peerbench: Option<PathBuf>,
    /// A `nats-server` binary to measure side by side.
    #[arg(long)]
    pub nats_server: Option<PathBuf>,
    /// A `redis-server` binary to measure side by side.
    #[arg(long)]
    pub redis_server: Option<PathBuf>,
    /// A `mosquitto` binary to measure side by side.
    #[arg(long)]
    pub mosquitto: Option<PathBuf>,
}

/// A child process killed and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn command<S: AsRef<OsStr>>(pinned: bool, program: &Path, args: &[S]) -> Command {
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).stdin(Stdio::null()).stderr(Stdio::inherit());
    cmd
}

/// Starts a role and waits for its JSON ready line.
pub fn start<S: AsRef<OsStr> + std::fmt::Debug>(
    pinned: bool,
    program: &Path,
    args: &[S],
) -> anyhow::Result<(Proc, Value)> {
    let mut child = command(pinned, program, args)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let ready: Value = serde_json::from_str(&line)
        .with_context(|| format!("ready line from {args:?}: {line:?}"))?;
    if ready["event"] != "ready" {
        bail!("{program:?} {args:?} did not get ready: {line}");
    }
    Ok((proc, ready))
}

/// Runs a role to completion and parses the JSON it prints last.
pub fn finish<S: AsRef<OsStr> + std::fmt::Debug>(
    pinned: bool,
    program: &Path,
    args: &[S],
) -> anyhow::Result<Value> {
    let out = command(pinned, program, args).output()?;
    if !out.status.success() {
        bail!("{program:?} {args:?} failed: {}", out.status);
    }
    let text = String::from_utf8(out.stdout)?;
    let last = text.lines().last().context("no output")?;
    Ok(serde_json::from_str(last)?)
}

pub fn rss_kib(pid: u64) -> anyhow::Result<u64> {
    let pid = u32::try_from(pid).context("pid")?;
    let bytes = e2e::chaos::metrics::rss_bytes(pid).context("VmRSS")?;
    Ok(bytes / 1024)
}

/// Round trips through `broker` (its plain responder, or a peer's
/// queue-group responder, must be connected), in two blocks alternating
/// with the relay floor, unpinned.
pub fn rtt_next_to_floor(
    args: &SuiteArgs,
    dir: &Path,
    broker: &crate::peers::Started,
) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let (echo_sock, relay_sock) = (dir.join("se.sock"), dir.join("sr.sock"));
    for f in [&echo_sock, &relay_sock] {
        let _ = std::fs::remove_file(f);
    }
    let (echo_sock, relay_sock) = (echo_sock.to_string_lossy(), relay_sock.to_string_lossy());
    let _echo = start(false, &me, &["echo", "--listen", &echo_sock])?;
    let _relay = start(
        false,
        &me,
        &["relay", "--listen", &relay_sock, "--upstream", &echo_sock],
    )?;
    let count = (args.count.min(10_000) / 2).max(1).to_string();
    let warmup = args.warmup.min(1_000).to_string();
    let (mut floor, mut bus) = (crate::roles::histogram(), crate::roles::histogram());
    let measured = ["--count", &count, "--warmup", &warmup, "--samples"];
    let mut raw = vec!["raw-rtt", "--socket", &relay_sock];
    raw.extend(measured);
    let raw: Vec<String> = raw.iter().map(|a| (*a).to_owned()).collect();
    let (program, bus_args) = broker.role("rtt", &measured);
    for _ in 0..2 {
        for (hist, program, role_args) in [
            (&mut floor, me.as_path(), &raw),
            (&mut bus, program.as_path(), &bus_args),
        ] {
            let out = finish(false, program, role_args)?;
            let samples: Vec<u64> =
                serde_json::from_value(out["samples_ns"].clone()).context("samples_ns")?;
            for ns in samples {
                hist.record(ns)?;
            }
        }
    }
    let (floor, bus) = (crate::roles::summary(&floor), crate::roles::summary(&bus));
    let ratio = |k: &str| bus[k].as_f64().unwrap_or(0.0) / floor[k].as_f64().unwrap_or(f64::NAN);
    Ok(
        json!({"floor": floor, "bus": bus, "ratio_p50": ratio("p50_us"), "ratio_p99": ratio("p99_us")}),
    )
}

/// One pub/sub run of `args.messages` 64-byte messages, the publisher as
/// fast as the broker takes them or paced at `rate` messages a second, next
/// to the raw-socket floor.
fn throughput(
    args: &SuiteArgs,
    dir: &Path,
    pinned: bool,
    rate: Option<u64>,
) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let sock = dir.join("t.sock").to_string_lossy().into_owned();
    let n = args.messages.to_string();
    let broker_args = vec!["--socket", &sock];
    let sub_args = vec!["sub", "--socket", &sock, "--count", &n];
    let rate_arg = rate.map(|r| r.to_string());
    let mut pub_args = vec!["pub", "--socket", &sock, "--count", &n];
    if let Some(r) = &rate_arg {
        pub_args.extend(["--rate", r]);
    }
    let (broker, ready) = start(pinned, &args.broker, &broker_args)?;
    let broker_pid = ready["pid"].as_u64().context("pid")?;
    let mut sub_cmd = command(pinned, &me, &sub_args);
    let mut sub = sub_cmd.stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(sub.stdout.take().context("stdout")?).lines();
    lines.next().context("sub ready")??;
    let publisher = finish(pinned, &me, &pub_args)?;
    let received: Value = serde_json::from_str(&lines.next().context("sub result")??)?;
    let _ = sub.wait();
    let rss_after_stream = rss_kib(broker_pid)?;
    drop(broker);
    let floor = stream_floor(args, dir, pinned)?;
    let ratio =
        received["per_s"].as_f64().unwrap_or(0.0) / floor["per_s"].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "publisher": publisher, "subscriber": received, "broker_rss_kib_after": rss_after_stream,
        "floor": floor, "ratio_to_floor": ratio,
    }))
}

/// Publish rates tried for the lossless figure, in messages a second.
const PACED_RATES: [u64; 11] = [
    1_000_000, 1_200_000, 1_400_000, 1_600_000, 1_800_000, 2_000_000, 2_200_000, 2_400_000,
    2_600_000, 2_800_000, 3_000_000,
];

/// The highest publish rate (of [`PACED_RATES`], unpinned) at which the
/// subscriber receives every message with the broker's default bounds, and
/// every run tried up to the first that lost any.
async fn lossless(args: &SuiteArgs, dir: &Path) -> anyhow::Result<Value> {
    let search = crate::rate::highest_rate(&PACED_RATES, 1.0, 0, |rate| async move {
        let run = throughput(args, dir, false, Some(rate))?;
        Ok(crate::rate::Delivered {
            sent: args.messages,
            received: run["subscriber"]["received"].as_u64().unwrap_or(0),
            run,
        })
    })
    .await?;
    Ok(json!({"max_lossless_per_s": search.best, "tries": search.tries}))
}

/// The same stream of 64-byte messages as raw bytes through the relay process.
fn stream_floor(args: &SuiteArgs, dir: &Path, pinned: bool) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let (sink_sock, relay_sock) = (dir.join("ts.sock"), dir.join("tr.sock"));
    // A previous run's (killed) relay and sink leave their socket files behind.
    for f in [&sink_sock, &relay_sock] {
        let _ = std::fs::remove_file(f);
    }
    let (sink_sock, relay_sock) = (sink_sock.to_string_lossy(), relay_sock.to_string_lossy());
    let n = args.messages.to_string();
    let mut sink_cmd = command(
        pinned,
        &me,
        &["raw-sink", "--listen", &sink_sock, "--count", &n],
    );
    let mut sink = sink_cmd.stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(sink.stdout.take().context("stdout")?).lines();
    lines.next().context("sink ready")??;
    let _relay = start(
        pinned,
        &me,
        &["relay", "--listen", &relay_sock, "--upstream", &sink_sock],
    )?;
    finish(
        pinned,
        &me,
        &["raw-pub", "--socket", &relay_sock, "--count", &n],
    )?;
    let received: Value = serde_json::from_str(&lines.next().context("sink result")??)?;
    let _ = sink.wait();
    Ok(received)
}

/// Requests in flight from the one requester of the pipelined work-queue run.
pub const PIPELINED_IN_FLIGHT: u64 = 10_000;
/// Worker processes in the work-queue runs.
pub const WORKERS: usize = 5;

/// Tasks per second through a queue group of [`WORKERS`] worker processes
/// (for eventbus, each answering with a reply that is also its ack; for a
/// peer, its analogue), `in_flight` requests at once from one requester;
/// with the broker's RSS once they are done.
pub fn work_queue(
    args: &SuiteArgs,
    dir: &Path,
    pinned: bool,
    in_flight: u64,
    broker: &crate::peers::Broker,
) -> anyhow::Result<Value> {
    let started = broker.start(&dir.join(format!("w-{}", broker.name())), pinned)?;
    let _workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (program, role) = started.role("worker", &[]);
            start(pinned, &program, &role)
        })
        .collect::<Result<_, _>>()?;
    let count = (args.messages / 20)
        .max(1_000)
        .max(5 * in_flight)
        .to_string();
    let in_flight_arg = in_flight.to_string();
    let (program, role) = started.role(
        "tasks",
        &["--count", &count, "--concurrency", &in_flight_arg],
    );
    let mut out = finish(pinned, &program, &role)?;
    out["broker"] = json!(broker.name());
    out["pinned"] = json!(pinned);
    out["broker_rss_kib_after"] = json!(rss_kib(started.pid)?);
    Ok(out)
}

fn memory(args: &SuiteArgs, dir: &Path) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let sock = dir.join("m.sock").to_string_lossy().into_owned();
    let (_broker, ready) = start(false, &args.broker, &["--socket", &sock])?;
    let pid = ready["pid"].as_u64().context("pid")?;
    let idle = rss_kib(pid)?;
    let clients: Vec<_> = (0..10)
        .map(|_| start(false, &me, &["responder", "--socket", &sock]))
        .collect::<Result<_, _>>()?;
    let with_ten = rss_kib(pid)?;
    drop(clients);
    Ok(json!({"broker_rss_kib_idle": idle, "broker_rss_kib_10_clients": with_ten}))
}

pub async fn run(args: &SuiteArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("busbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let wants = |s: &str| args.sections.iter().any(|x| x == s);
    let mut report = serde_json::Map::new();
    if wants("latency") {
        report.insert(
            "latency".into(),
            json!([
                crate::latency::measure(args, true, &dir)?,
                crate::latency::measure(args, false, &dir)?
            ]),
        );
    }
    if wants("throughput") {
        report.insert("throughput".into(), throughput(args, &dir, false, None)?);
        report.insert(
            "throughput_pinned".into(),
            throughput(args, &dir, true, None)?,
        );
        report.insert("throughput_lossless".into(), lossless(args, &dir).await?);
    }
    if wants("memory") {
        report.insert("memory".into(), memory(args, &dir)?);
    }
    if wants("work") {
        let bus = crate::peers::Broker::Bus(args.broker.clone());
        report.insert(
            "work_queue_5_workers".into(),
            work_queue(args, &dir, false, 64, &bus)?,
        );
        let mut pipelined = Vec::new();
        for broker in crate::peers::brokers(args) {
            for pinned in [false, true] {
                pipelined.push(work_queue(
                    args,
                    &dir,
                    pinned,
                    PIPELINED_IN_FLIGHT,
                    &broker,
                )?);
            }
        }
        report.insert("work_queue_pipelined".into(), json!(pipelined));
    }
    if wants("scale") {
        report.insert(
            "scale".into(),
            crate::scale::measure(args, &dir, args.messages / 4)?,
        );
    }
    if wants("queue") {
        report.insert("queue".into(), crate::queue::measure(args, &dir)?);
    }
    if wants("gather") {
        report.insert("gather".into(), crate::gather::measure(args, &dir)?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(out) = &args.out {
        std::fs::write(out, &text)?;
    }
    println!("{text}");
    Ok(())
}
