//! `busbench probe`: what one round trip costs each process, for the relay
//! floor, a plain request/reply and a queue-group request/reply (reply =
//! ack): system calls (`strace -c -f`), context switches and CPU
//! migrations (`perf stat`, where perf's software events work), and frames
//! on the wire each way (counted by a frame-aware proxy in front of the
//! broker). Step 1 of issue 16; `docs/performance.md` has the table.
//!
//! Every figure is the difference between a run of 2 N round trips and a
//! run of N, divided by N, so start-up, handshakes and shutdown cancel out.
//! The tools slow the processes down a lot: counts are what this measures,
//! never times.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::latency::{PLAIN_TOPIC, QUEUE_TOPIC};
use crate::suite::{Proc, command, finish};

/// Arguments of `busbench probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The `broker` binary.
    #[arg(long)]
    broker: PathBuf,
    /// Round trips of the shorter run (the longer makes twice as many).
    #[arg(long, default_value_t = 2_000)]
    count: u64,
    /// Where to write the JSON (it is printed too).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What is measured, and with which tool.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tool {
    Strace,
    Perf,
}

/// The three round trips compared.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Series {
    Floor,
    Plain,
    Queue,
}

impl Series {
    fn name(self) -> &'static str {
        match self {
            Self::Floor => "relay floor",
            Self::Plain => "plain request/reply",
            Self::Queue => "queue group, reply = ack",
        }
    }
}

/// Per-process counts of one run: `(process, {counter: count})`.
type Counts = Vec<(&'static str, Vec<(String, f64)>)>;

pub async fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("busbench-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let tools = [
        (
            Tool::Strace,
            works("strace", &["-c", "-o", "/dev/null", "true"]),
        ),
        (
            Tool::Perf,
            works(
                "perf",
                &["stat", "-e", "context-switches,cpu-migrations", "true"],
            ),
        ),
    ];
    let mut notes = Vec::new();
    for (tool, ok) in &tools {
        if !ok {
            notes.push(format!(
                "{tool:?} does not work here: its counts are left out"
            ));
        }
    }
    let mut series_out = Vec::new();
    for series in [Series::Floor, Series::Plain, Series::Queue] {
        let mut per_process: serde_json::Map<String, Value> = serde_json::Map::new();
        for (tool, ok) in tools {
            if !ok {
                continue;
            }
            let (a, b) = (args.count, 2 * args.count);
            let short = {
                let (broker, dir) = (args.broker.clone(), dir.clone());
                tokio::task::spawn_blocking(move || counts(&broker, &dir, series, tool, a))
                    .await??
            };
            let long = {
                let (broker, dir) = (args.broker.clone(), dir.clone());
                tokio::task::spawn_blocking(move || counts(&broker, &dir, series, tool, b))
                    .await??
            };
            for ((process, s), (_, l)) in short.iter().zip(&long) {
                let entry = per_process
                    .entry((*process).to_owned())
                    .or_insert_with(|| json!({}));
                for ((name, sv), (_, lv)) in s.iter().zip(l) {
                    entry[name] = json!((lv - sv) / args.count as f64);
                }
            }
        }
        let frames = if series == Series::Floor {
            Value::Null
        } else {
            frames(args, &dir, series).await?
        };
        series_out.push(json!({
            "series": series.name(), "per_round_trip": per_process, "frames_per_round_trip": frames,
        }));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let report = json!({"count": args.count, "notes": notes, "series": series_out});
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(out) = &args.out {
        std::fs::write(out, &text)?;
    }
    println!("{text}");
    Ok(())
}

fn works(tool: &str, args: &[&str]) -> bool {
    std::process::Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `program args` under `tool`, writing its counts to `out`.
fn under(tool: Tool, out: &Path, program: &Path, args: &[&str]) -> std::process::Command {
    let out = out.to_string_lossy().into_owned();
    let mut wrapped: Vec<String> = match tool {
        Tool::Strace => ["-f", "-c", "-q", "-o", &out, "--"]
            .map(String::from)
            .to_vec(),
        Tool::Perf => [
            "stat",
            "-x",
            ",",
            "-e",
            "context-switches,cpu-migrations,task-clock",
            "-o",
            &out,
            "--",
        ]
        .map(String::from)
        .to_vec(),
    };
    wrapped.push(program.to_string_lossy().into_owned());
    wrapped.extend(args.iter().map(|a| (*a).to_owned()));
    let mut cmd = command(
        false,
        Path::new(match tool {
            Tool::Strace => "strace",
            Tool::Perf => "perf",
        }),
        &wrapped,
    );
    cmd.stdout(Stdio::piped());
    cmd
}

/// A server-side process under `tool`: started, its ready line read (for
/// the traced process's own pid, which `stop` signals so the tool writes
/// its counts).
struct Traced {
    tool_proc: Proc,
    pid: i32,
    out: PathBuf,
}

impl Traced {
    fn start(tool: Tool, out: PathBuf, program: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = under(tool, &out, program, args).spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let tool_proc = Proc(child);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        let ready: Value = serde_json::from_str(&line)
            .with_context(|| format!("ready line of {program:?} {args:?}: {line:?}"))?;
        let pid = ready["pid"].as_i64().context("pid")? as i32;
        Ok(Self {
            tool_proc,
            pid,
            out,
        })
    }

    /// Ends the traced process with SIGTERM and waits for the tool's counts.
    fn stop(mut self) -> anyhow::Result<PathBuf> {
        let pid = rustix::process::Pid::from_raw(self.pid).context("pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        self.tool_proc.0.wait()?;
        Ok(self.out)
    }
}

/// One run of `n` round trips with every process under `tool`.
fn counts(broker: &Path, dir: &Path, series: Series, tool: Tool, n: u64) -> anyhow::Result<Counts> {
    let me = std::env::current_exe()?;
    let file = |name: &str| dir.join(format!("{name}-{tool:?}-{n}.txt"));
    let sock = |name: &str| {
        let p = dir.join(name);
        let _ = std::fs::remove_file(&p);
        p.to_string_lossy().into_owned()
    };
    let count = n.to_string();
    let (hub, far, requester_args): (Traced, Traced, Vec<String>) = match series {
        Series::Floor => {
            let (echo, relay) = (sock("pe.sock"), sock("pr.sock"));
            let far = Traced::start(tool, file("echo"), &me, &["echo", "--listen", &echo])?;
            let hub = Traced::start(
                tool,
                file("relay"),
                &me,
                &["relay", "--listen", &relay, "--upstream", &echo],
            )?;
            (hub, far, vec!["raw-rtt".into(), "--socket".into(), relay])
        }
        Series::Plain | Series::Queue => {
            let bus = sock("pb.sock");
            let hub = Traced::start(tool, file("broker"), broker, &["--socket", &bus])?;
            let topic = if series == Series::Plain {
                PLAIN_TOPIC
            } else {
                QUEUE_TOPIC
            };
            let mut responder = vec!["responder", "--socket", &bus, "--topic", topic];
            if series == Series::Queue {
                responder.push("--queue");
            }
            let far = Traced::start(tool, file("responder"), &me, &responder)?;
            let rtt = ["rtt", "--socket", &bus, "--topic", topic].map(String::from);
            (hub, far, rtt.to_vec())
        }
    };
    let requester_file = file("requester");
    let mut args: Vec<&str> = requester_args.iter().map(String::as_str).collect();
    args.extend(["--count", &count, "--warmup", "0"]);
    let status = under(tool, &requester_file, &me, &args)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("requester under {tool:?} failed: {status}");
    }
    let hub_file = hub.stop()?;
    let far_file = far.stop()?;
    let (hub_name, far_name) = if series == Series::Floor {
        ("relay", "echo")
    } else {
        ("broker", "responder")
    };
    let parse = |f: &Path| -> anyhow::Result<Vec<(String, f64)>> {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        Ok(match tool {
            Tool::Strace => parse_strace(&text),
            Tool::Perf => parse_perf(&text),
        })
    };
    Ok(vec![
        ("requester", parse(&requester_file)?),
        (hub_name, parse(&hub_file)?),
        (far_name, parse(&far_file)?),
    ])
}

/// `strace -c`: total calls, and the calls of the few syscalls that matter
/// on this path (the same keys in every run, so runs subtract).
fn parse_strace(text: &str) -> Vec<(String, f64)> {
    const KEYS: [&str; 8] = [
        "total",
        "read",
        "recvfrom",
        "write",
        "sendto",
        "epoll_wait",
        "futex",
        "sched_yield",
    ];
    let mut calls = std::collections::HashMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() >= 5
            && let (Ok(n), Some(name)) = (cols[3].parse::<f64>(), cols.last())
        {
            calls.insert((*name).to_owned(), n);
        }
    }
    KEYS.iter()
        .map(|k| {
            let key = if *k == "total" {
                "syscalls".to_owned()
            } else {
                format!("syscall {k}")
            };
            (key, calls.get(*k).copied().unwrap_or(0.0))
        })
        .collect()
}

/// `perf stat -x,`: context switches and CPU migrations.
fn parse_perf(text: &str) -> Vec<(String, f64)> {
    ["context-switches", "cpu-migrations"]
        .iter()
        .map(|event| {
            let value = text
                .lines()
                .map(|l| l.split(',').collect::<Vec<_>>())
                .find(|cols| cols.len() > 2 && cols[2].starts_with(event))
                .and_then(|cols| cols[0].parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            ((*event).to_owned(), value)
        })
        .collect()
}

/// Frames per round trip each way between the broker and each client,
/// counted by frame-aware proxies in front of the broker (N and 2 N round
/// trips, subtracted).
async fn frames(args: &ProbeArgs, dir: &Path, series: Series) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let bus = dir.join("fb.sock");
    let _ = std::fs::remove_file(&bus);
    let bus_s = bus.to_string_lossy().into_owned();
    let (_broker, _) = crate::suite::start(false, &args.broker, &["--socket", &bus_s])?;
    let (req_sock, resp_sock) = (dir.join("fq.sock"), dir.join("fr.sock"));
    for s in [&req_sock, &resp_sock] {
        let _ = std::fs::remove_file(s);
    }
    let to_requester = e2e::proxy::FaultProxy::start(&req_sock, &bus, 1).await?;
    let to_responder = e2e::proxy::FaultProxy::start(&resp_sock, &bus, 2).await?;
    let topic = if series == Series::Plain {
        PLAIN_TOPIC
    } else {
        QUEUE_TOPIC
    };
    let resp_s = resp_sock.to_string_lossy().into_owned();
    let mut responder = vec!["responder", "--socket", &resp_s, "--topic", topic];
    if series == Series::Queue {
        responder.push("--queue");
    }
    let responder = {
        let (me, responder) = (
            me.clone(),
            responder
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>(),
        );
        tokio::task::spawn_blocking(move || crate::suite::start(false, &me, &responder)).await??
    };
    let mut totals = Vec::new();
    for n in [args.count, 2 * args.count] {
        let before = (to_requester.stats(), to_responder.stats());
        let rtt: Vec<String> = [
            "rtt",
            "--socket",
            &req_sock.to_string_lossy(),
            "--topic",
            topic,
            "--count",
            &n.to_string(),
            "--warmup",
            "0",
        ]
        .map(String::from)
        .to_vec();
        let me = me.clone();
        tokio::task::spawn_blocking(move || finish(false, &me, &rtt)).await??;
        let after = (to_requester.stats(), to_responder.stats());
        totals.push([
            after.0.to_broker.frames - before.0.to_broker.frames,
            after.0.to_client.frames - before.0.to_client.frames,
            after.1.to_broker.frames - before.1.to_broker.frames,
            after.1.to_client.frames - before.1.to_client.frames,
        ]);
    }
    drop(responder);
    let per = |i: usize| (totals[1][i] as f64 - totals[0][i] as f64) / args.count as f64;
    Ok(json!({
        "requester_to_broker": per(0), "broker_to_requester": per(1),
        "responder_to_broker": per(2), "broker_to_responder": per(3),
        "total": per(0) + per(1) + per(2) + per(3),
    }))
}
