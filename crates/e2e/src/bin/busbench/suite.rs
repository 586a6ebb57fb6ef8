//! The benchmark suite: starts every process, measures, and prints each bus
//! figure next to the floor measured in the same run, pinned to one CPU and not.
#![forbid(unsafe_code)]

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
    count: u64,
    /// Warm-up round trips per latency run.
    #[arg(long, default_value_t = 1_000)]
    warmup: u64,
    /// Messages in the pub/sub throughput run.
    #[arg(long, default_value_t = 2_000_000)]
    messages: u64,
    /// Sections to run: latency, throughput, work, memory, queue.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "latency,throughput,work,memory,queue"
    )]
    sections: Vec<String>,
    /// Where to write `report.json`.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A child process killed and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn command(pinned: bool, program: &Path, args: &[&str]) -> Command {
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
pub fn start(pinned: bool, program: &Path, args: &[&str]) -> anyhow::Result<(Proc, Value)> {
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
pub fn finish(pinned: bool, program: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let out = command(pinned, program, args).output()?;
    if !out.status.success() {
        bail!("{program:?} {args:?} failed: {}", out.status);
    }
    let text = String::from_utf8(out.stdout)?;
    let last = text.lines().last().context("no output")?;
    Ok(serde_json::from_str(last)?)
}

pub fn rss_kib(pid: u64) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

fn latency(args: &SuiteArgs, pinned: bool, dir: &Path) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let s = |p: &str| dir.join(p).to_string_lossy().into_owned();
    let (count, warmup) = (args.count.to_string(), args.warmup.to_string());
    let rtt_args = |sock: &str| -> Vec<String> {
        ["--socket", sock, "--count", &count, "--warmup", &warmup]
            .map(String::from)
            .to_vec()
    };

    let (echo_sock, relay_sock, bus_sock) = (s("e.sock"), s("r.sock"), s("b.sock"));
    let _echo = start(pinned, &me, &["echo", "--listen", &echo_sock])?;
    let _relay = start(
        pinned,
        &me,
        &["relay", "--listen", &relay_sock, "--upstream", &echo_sock],
    )?;
    let mut raw = vec!["raw-rtt".to_owned()];
    raw.extend(rtt_args(&relay_sock));
    let floor = finish(
        pinned,
        &me,
        &raw.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;

    let (_broker, _) = start(pinned, &args.broker, &["--socket", &bus_sock])?;
    let _responder = start(pinned, &me, &["responder", "--socket", &bus_sock])?;
    let mut bus = vec!["rtt".to_owned()];
    bus.extend(rtt_args(&bus_sock));
    let bus = finish(
        pinned,
        &me,
        &bus.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    for f in [&relay_sock, &echo_sock] {
        let _ = std::fs::remove_file(f);
    }
    let ratio = |k: &str| bus[k].as_f64().unwrap_or(0.0) / floor[k].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "pinned": pinned, "floor": floor, "bus": bus,
        "ratio_p50": ratio("p50_us"), "ratio_p99": ratio("p99_us"),
    }))
}

/// How the pub/sub throughput run treats a subscriber that falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Buffers {
    /// The broker's and the client's default bounds: a publisher that runs
    /// ahead makes the broker drop (and count) the oldest messages.
    Default,
    /// Bounds sized to hold the whole run: nothing is dropped, so the
    /// subscriber's rate is the rate delivered without loss.
    WholeRun,
}

fn throughput(
    args: &SuiteArgs,
    dir: &Path,
    pinned: bool,
    buffers: Buffers,
) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let sock = dir.join("t.sock").to_string_lossy().into_owned();
    let n = args.messages.to_string();
    let config = dir.join("whole-run.toml");
    let mut broker_args = vec!["--socket", &sock];
    let mut sub_args = vec!["sub", "--socket", &sock, "--count", &n];
    let config_path = config.to_string_lossy().into_owned();
    if buffers == Buffers::WholeRun {
        let m = args.messages + 1;
        std::fs::write(
            &config,
            format!(
                "[subscriber]\nmax_len = {m}\nmax_bytes = {}\nhard_cap = {}\nhard_cap_bytes = {}\n",
                m * 256,
                m * 2,
                m * 512
            ),
        )?;
        broker_args.extend(["--config", &config_path]);
        sub_args.extend(["--buffer", &n]);
    }
    let (broker, ready) = start(pinned, &args.broker, &broker_args)?;
    let broker_pid = ready["pid"].as_u64().context("pid")?;
    let mut sub_cmd = command(pinned, &me, &sub_args);
    let mut sub = sub_cmd.stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(sub.stdout.take().context("stdout")?).lines();
    lines.next().context("sub ready")??;
    let publisher = finish(pinned, &me, &["pub", "--socket", &sock, "--count", &n])?;
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

/// Tasks per second through a queue group of 5 worker processes, with replies.
fn work_queue(args: &SuiteArgs, dir: &Path) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let sock = dir.join("w.sock").to_string_lossy().into_owned();
    let (_broker, _) = start(false, &args.broker, &["--socket", &sock])?;
    let _workers: Vec<_> = (0..5)
        .map(|_| start(false, &me, &["worker", "--socket", &sock]))
        .collect::<Result<_, _>>()?;
    let count = (args.messages / 20).max(1_000).to_string();
    finish(
        false,
        &me,
        &[
            "tasks",
            "--socket",
            &sock,
            "--count",
            &count,
            "--concurrency",
            "64",
        ],
    )
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
            json!([latency(args, true, &dir)?, latency(args, false, &dir)?]),
        );
    }
    if wants("throughput") {
        report.insert(
            "throughput".into(),
            throughput(args, &dir, false, Buffers::Default)?,
        );
        report.insert(
            "throughput_pinned".into(),
            throughput(args, &dir, true, Buffers::Default)?,
        );
        report.insert(
            "throughput_lossless".into(),
            throughput(args, &dir, false, Buffers::WholeRun)?,
        );
    }
    if wants("memory") {
        report.insert("memory".into(), memory(args, &dir)?);
    }
    if wants("work") {
        report.insert("work_queue_5_workers".into(), work_queue(args, &dir)?);
    }
    if wants("queue") {
        report.insert("queue".into(), crate::queue::measure(args, &dir)?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(out) = &args.out {
        std::fs::write(out, &text)?;
    }
    println!("{text}");
    Ok(())
}
