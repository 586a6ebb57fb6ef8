//! `cargo xtask demo`: runs the broker and collectors of all three types as
//! real processes, pushes a stream of collector tasks through them as
//! requests, and reports throughput, latency and who did the work, live and at
//! the end.
//!
//! The run, in order:
//! 1. [`crate::build`]: `cargo build --release` of the broker and the collector;
//! 2. [`crate::fleet`]: a temporary directory with a short socket path, the broker,
//!    then N process collectors, one network and one filesystem collector,
//!    each awaited through its ready line, each logging to a file there;
//! 3. [`load`]: tasks at the target rate with a bound on those in flight,
//!    counted in a [`tally`] window that is printed and reset every second;
//!    every 3 s one gather asks every collector for its status
//!    (`control.collector.status`) and prints who answered, how fast, their
//!    tasks done and memory, and who did not answer;
//! 4. on Ctrl-C or after `--duration`: no new tasks, the ones in flight drain,
//!    the final summary, then SIGTERM to the collectors and then the broker.
//!
//! The demo succeeds when tasks completed and errors stayed rare (see
//! [`tally::Tally::verdict`]) and every process exited cleanly.

mod load;
mod tally;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::task::Poll;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use eventbus::{Client, ClientOptions};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::build::{self, Binaries};
use crate::fleet::{self, Proc, Stopped};
use load::{Load, Mix, Pace};
use tally::Tally;

/// Run time when none is given and stdin is not a terminal (CI, scripts), so
/// the demo never waits for a Ctrl-C that cannot come.
const UNATTENDED_DURATION: Duration = Duration::from_secs(10);

/// How long each process may take to print its ready line.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// How long one task may wait for its reply.
const TASK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long collectors get to stop after SIGTERM: they let running tasks
/// reply for up to 5 s, then leave.
const COLLECTOR_GRACE: Duration = Duration::from_secs(8);

/// How often the demo asks every collector for its status with one gather.
const FLEET_GATHER_EVERY: Duration = Duration::from_secs(3);

/// How long collectors have to answer that gather.
const FLEET_GATHER_TIMEOUT: Duration = Duration::from_secs(1);

/// The topic every mock collector answers status requests on.
const STATUS_TOPIC: &str = "control.collector.status";

/// How long the broker gets to stop after SIGTERM.
const BROKER_GRACE: Duration = Duration::from_secs(5);

/// Longest socket path accepted in the system's temporary directory; Unix
/// socket paths must fit in about 104 bytes, so a longer one moves to `/tmp`.
const MAX_SOCKET_PATH: usize = 100;

/// Options of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to run [default: until Ctrl-C; 10 when stdin is not a terminal].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    duration: Option<u64>,
    /// Process collectors to start (one network and one filesystem collector
    /// are always started too).
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    process_collectors: u32,
    /// Tasks started per second.
    #[arg(long, value_name = "TASKS_PER_S", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    rate: u32,
    /// Most tasks waiting for a reply at once.
    #[arg(long, value_name = "C", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
    /// Keep the temporary directory with the logs even when the demo succeeds
    /// (it is always kept when the demo fails).
    #[arg(long)]
    keep_logs: bool,
    /// Where the broker serves its live dashboard (open the printed URL in a
    /// browser); on by default, `--http` alone or without it: 127.0.0.1 on a
    /// free port.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:0",
        num_args = 0..=1,
        default_missing_value = "127.0.0.1:0"
    )]
    http: std::net::SocketAddr,
    /// No dashboard.
    #[arg(long, conflicts_with = "http")]
    no_http: bool,
}

/// Cancellations driven by Ctrl-C.
#[derive(Debug, Clone, Default)]
struct CtrlC {
    /// First press: stop sending, drain, shut down in order.
    interrupt: CancellationToken,
    /// Second press: stop waiting for anything, kill what still runs.
    hurry: CancellationToken,
}

/// Runs the demo from the workspace at `root`.
pub fn run(root: &Path, args: &Args) -> Result<()> {
    let duration = args
        .duration
        .map(Duration::from_secs)
        .or_else(|| (!std::io::stdin().is_terminal()).then_some(UNATTENDED_DURATION));
    let binaries = build::build(root)?;

    let dir = tempfile::Builder::new()
        .prefix("eventbus-demo-")
        .tempdir_in(temp_base())
        .context("creating a temporary directory")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let ctrl_c = CtrlC::default();
    runtime.block_on(watch_ctrl_c(ctrl_c.clone()));

    eprintln!("logs: {}", dir.path().join("*.log").display());
    let result = demo(
        root,
        args,
        &binaries,
        dir.path(),
        duration,
        &runtime,
        &ctrl_c,
    );
    if result.is_err() || args.keep_logs {
        eprintln!("logs kept in {}", dir.keep().display());
    } else {
        eprintln!("logs removed (--keep-logs keeps them)");
    }
    result
}

/// The system's temporary directory, unless a socket path in it would be too
/// long; then `/tmp`.
fn temp_base() -> PathBuf {
    let base = std::env::temp_dir();
    let socket = base.join("eventbus-demo-XXXXXX").join("bus.sock");
    if cfg!(unix) && socket.as_os_str().len() > MAX_SOCKET_PATH {
        PathBuf::from("/tmp")
    } else {
        base
    }
}

/// Starts the processes in `dir`, runs the load, shuts down; every process is
/// reaped when this returns, whichever way.
fn demo(
    root: &Path,
    args: &Args,
    binaries: &Binaries,
    dir: &Path,
    duration: Option<Duration>,
    runtime: &tokio::runtime::Runtime,
    ctrl_c: &CtrlC,
) -> Result<()> {
    let socket = dir.join("bus.sock");
    let interrupted = || ctrl_c.interrupt.is_cancelled();

    // The broker first (index 0), then the collectors.
    let mut cmd = Command::new(&binaries.broker);
    cmd.arg("--socket").arg(&socket);
    if !args.no_http {
        cmd.arg(format!("--http={}", args.http));
    }
    let broker = Proc::start("broker", cmd, dir, START_DEADLINE, &interrupted)?;
    let ready = broker.ready();
    eprintln!(
        "broker ready: pid {}, version {}, socket {}",
        broker.pid(),
        ready["version"].as_str().unwrap_or("?"),
        ready["socket"].as_str().unwrap_or("?"),
    );
    if let Some(http) = ready["http"].as_str() {
        eprintln!(
            "dashboard:   http://{http}/  (live; JSON under /api/v1/, Prometheus at /metrics)"
        );
    }
    let mut procs = vec![broker];
    let collectors = (1..=args.process_collectors)
        .map(|i| ("process", "procmond", i))
        .chain([("network", "netmond", 1), ("filesystem", "fsmond", 1)]);
    for (kind, alias, instance) in collectors {
        let mut cmd = Command::new(&binaries.collector);
        cmd.args(["--type", kind, "--instance", &instance.to_string()])
            .arg("--socket")
            .arg(&socket);
        let proc = Proc::start(
            &format!("{alias}-{instance}"),
            cmd,
            dir,
            START_DEADLINE,
            &interrupted,
        )?;
        eprintln!(
            "{} ready: pid {}",
            proc.ready()["id"].as_str().unwrap_or(proc.name()),
            proc.pid()
        );
        procs.push(proc);
    }

    let mix = Mix::new(
        procs[1..].iter().map(Proc::pid).collect(),
        &root.join("crates"),
    )?;
    let pace = Pace {
        rate: f64::from(args.rate),
        concurrency: args.concurrency as usize,
        timeout: TASK_TIMEOUT,
    };
    match duration {
        Some(d) => eprintln!(
            "running for {} s: {} tasks/s, {} in flight at most (Ctrl-C stops early)",
            d.as_secs(),
            args.rate,
            args.concurrency
        ),
        None => eprintln!(
            "running until Ctrl-C: {} tasks/s, {} in flight at most",
            args.rate, args.concurrency
        ),
    }
    let totals = runtime.block_on(drive(&socket, mix, pace, duration, &mut procs, ctrl_c))?;

    // Collectors first, so they drain and leave while the broker still runs.
    let hurry = || ctrl_c.hurry.is_cancelled();
    let stopping = std::time::Instant::now();
    let (broker, collectors) = procs.split_at_mut(1);
    let mut stopped = fleet::stop_all(collectors, COLLECTOR_GRACE, &hurry);
    stopped.extend(fleet::stop_all(broker, BROKER_GRACE, &hurry));
    let order = procs[1..].iter().chain(&procs[..1]);
    let unclean = report_stops(order.zip(&stopped), stopping.elapsed());

    totals.verdict().map_err(anyhow::Error::msg)?;
    if !unclean.is_empty() {
        bail!("unclean shutdown: {}", unclean.join(", "));
    }
    Ok(())
}

/// Prints how each process stopped, in the order they were stopped, and how
/// long it took; returns those that did not exit 0.
fn report_stops<'a>(
    stopped: impl Iterator<Item = (&'a Proc, &'a Stopped)>,
    took: Duration,
) -> Vec<String> {
    let mut line = format!("stopped in {:.1} s:", took.as_secs_f64());
    let mut unclean = Vec::new();
    for (proc, how) in stopped {
        let text = match how {
            Stopped::Exited(status) if status.success() => "exit 0".to_owned(),
            Stopped::Exited(status) => format!("{status}"),
            Stopped::Killed => "killed".to_owned(),
        };
        line.push_str(&format!(" {} {text},", proc.name()));
        if !matches!(how, Stopped::Exited(status) if status.success()) {
            unclean.push(format!(
                "{} {text} (see {})",
                proc.name(),
                proc.stderr_log().display()
            ));
        }
    }
    line.pop();
    println!("{line}");
    unclean
}

/// Connects, runs the load with a live line per second until `duration`, a
/// Ctrl-C or the unexpected exit of a process, drains, and prints the final
/// summary. Returns the totals.
async fn drive(
    socket: &Path,
    mix: Mix,
    pace: Pace,
    duration: Option<Duration>,
    procs: &mut [Proc],
    ctrl_c: &CtrlC,
) -> Result<Tally> {
    let client = Client::connect(
        ClientOptions::new(socket)
            .kind("demo")
            .request_timeout(Duration::from_secs(2)),
    )
    .await
    .context("connecting to the broker")?;
    let load = Load::start(client.clone(), mix, pace);
    let started = Instant::now();
    let end = duration.map(|d| started + d);
    let mut ticker =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    let mut last = started;
    let mut totals = Tally::default();
    let mut fleet_ticker =
        tokio::time::interval_at(started + FLEET_GATHER_EVERY, FLEET_GATHER_EVERY);
    let mut fleet_gathers = tokio::task::JoinSet::new();

    let died = loop {
        tokio::select! {
            // Biased, so that the last tick prints before the run ends.
            biased;
            _ = ticker.tick() => {
                let now = Instant::now();
                let window = load.take_window();
                totals.merge(&window);
                println!(
                    "{}",
                    window.window_line(now - started, now - last, totals.finished(), load.in_flight())
                );
                last = now;
                if let Some(dead) = first_exited(procs) {
                    break Some(dead);
                }
            }
            _ = fleet_ticker.tick() => {
                // Off the loop, so a slow collector never delays the tick
                // lines; at most one at a time.
                if fleet_gathers.is_empty() {
                    fleet_gathers.spawn(fleet_status(client.clone()));
                }
            }
            Some(_) = fleet_gathers.join_next() => {}
            () = ctrl_c.interrupt.cancelled() => break None,
            () = sleep_until(end) => break None,
        }
    };
    fleet_gathers.abort_all();
    let elapsed = started.elapsed();

    load.stop();
    tokio::select! {
        () = load.drained() => {}
        () = ctrl_c.hurry.cancelled() => eprintln!("not waiting for {} tasks in flight", load.in_flight()),
    }
    totals.merge(&load.take_window());
    println!("--- summary ---\n{}", totals.summary(elapsed).trim_end());
    if died.is_none()
        && let Ok(stats) = client.stats().await
    {
        println!(
            "broker:     {} published, {} delivered, {} dropped, rss {:.1} MiB",
            stats.published,
            stats.delivered,
            stats.dropped,
            stats.rss_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    client.close().await;
    match died {
        Some(dead) => bail!("{dead}"),
        None => Ok(totals),
    }
}

/// Asks every collector for its status with one gather and prints one
/// line: who answered, how fast, their tasks done and memory, and who did
/// not answer.
async fn fleet_status(client: Client) {
    let started = Instant::now();
    let options = eventbus::client::GatherOptions::new(FLEET_GATHER_TIMEOUT);
    let gathered = match client.gather(STATUS_TOPIC, "", options).await {
        Ok(gather) => gather.collect().await,
        Err(e) => {
            println!("fleet:      gather failed: {e}");
            return;
        }
    };
    let took = started.elapsed();
    let mut parts: Vec<String> = gathered
        .replies
        .iter()
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(m.payload()).ok())
        .map(|s| {
            format!(
                "{} {} done {:.1} MiB",
                s["collector_id"].as_str().unwrap_or("?"),
                s["tasks"]["done"].as_u64().unwrap_or(0),
                s["resources"]["rss_bytes"].as_f64().unwrap_or(0.0) / (1024.0 * 1024.0)
            )
        })
        .collect();
    parts.sort();
    let outcome = &gathered.outcome;
    let mut line = format!(
        "fleet:      {}/{} collectors answered in {:.1} ms: {}",
        outcome.answered.len(),
        outcome.recipients.len(),
        took.as_secs_f64() * 1000.0,
        parts.join(", ")
    );
    for missed in &outcome.missing {
        line.push_str(&format!("; {} {}", missed.client_id, missed.reason));
    }
    println!("{line}");
}

/// Completes at `end`, or never.
async fn sleep_until(end: Option<Instant>) {
    match end {
        Some(end) => tokio::time::sleep_until(end).await,
        None => std::future::pending().await,
    }
}

/// A description of the first process that has exited, if any has.
fn first_exited(procs: &mut [Proc]) -> Option<String> {
    procs.iter_mut().find_map(|proc| {
        let status = proc.exited()?;
        Some(format!(
            "{} (pid {}) exited unexpectedly ({status}); see {}",
            proc.name(),
            proc.pid(),
            proc.stderr_log().display()
        ))
    })
}

/// Turns Ctrl-C presses into cancellations (see [`CtrlC`]).
///
/// The handler is installed when this returns: `ctrl_c` installs it on its
/// first poll, done here, before any child exists. From then on SIGINT no
/// longer ends the demo outright, so the children, which run in their own
/// process groups and do not see the terminal's Ctrl-C, are always reaped.
async fn watch_ctrl_c(ctrl_c: CtrlC) {
    let mut first = Box::pin(tokio::signal::ctrl_c());
    let early = std::future::poll_fn(|cx| Poll::Ready(first.as_mut().poll(cx))).await;
    tokio::spawn(async move {
        let pressed = match early {
            Poll::Ready(pressed) => pressed,
            Poll::Pending => first.await,
        };
        if let Err(e) = pressed {
            eprintln!("warning: cannot handle Ctrl-C: {e}");
            return;
        }
        eprintln!("\nCtrl-C: stopping (press again to stop waiting)");
        ctrl_c.interrupt.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nCtrl-C again: killing what still runs");
            ctrl_c.hurry.cancel();
        }
    });
}
