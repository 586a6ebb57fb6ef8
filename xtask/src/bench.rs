//! `cargo xtask bench [--quick]`: every benchmark in one run, and one report.
//!
//! 1. The criterion micro-benchmarks of `crates/eventbus/benches/` (codec,
//!    topic index, outbound queue); their medians are read back from
//!    criterion's `target/criterion/**/new/{benchmark,estimates}.json`.
//! 2. `busbench suite` against a release build of the broker: every process
//!    figure next to the raw-socket floor measured in the same run (see
//!    `docs/performance.md`).
//! 3. The peers, side by side in the same `busbench suite` run: nats-server,
//!    redis-server and mosquitto, found on `PATH` (or in `/usr/sbin`),
//!    installed with apt-get when missing and possible (`--no-install` turns
//!    that off), driven through their own clients by `peerbench`; a peer
//!    that cannot be had is left out with a note in the output and the
//!    report.
//!
//! 4. With `--durable`, instead of all that: `busbench durable`, durable
//!    queues through the broker next to the fsync floor, in-memory queues
//!    and JetStream, and recovery after a SIGKILL (`docs/durability.md`).
//!
//! The report directory, `target/bench-report/`, holds `report.md` (the
//! summary tables, also printed), `report.json` (micro-benchmarks and process
//! figures together), `latency.svg` (round-trip latency by percentile, floor
//! and bus, pinned and unpinned) and `busbench.json` (busbench's own output).

mod peers;
mod report;
mod side_by_side;
mod svg;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::process::{cargo, output, run as run_cmd};

/// The criterion benchmark targets of the `eventbus` crate, which are also
/// the group names they report under.
const BENCHES: [&str; 4] = ["codec", "topics", "outbound", "dispatch"];

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Shorter runs: criterion measures 0.5 s per benchmark, and busbench
    /// makes 5,000 round trips per latency run and streams 500,000 messages.
    #[arg(long)]
    quick: bool,
    /// Do not install missing peer brokers with apt-get (they are left out).
    #[arg(long)]
    no_install: bool,
    /// Run only the durable-queue probe (`busbench durable`): confirmed
    /// publish into durable and in-memory queues next to the fsync floor
    /// and JetStream, and recovery of 1,000,000 queued messages after a
    /// SIGKILL (100,000 with `--quick`). Slow and disk-bound, so not part of
    /// the default run; its report is `durable.json` in the report directory.
    #[arg(long)]
    durable: bool,
}

/// Runs every benchmark and writes the report directory.
pub fn run(root: &Path, args: &Args) -> Result<()> {
    let started_at = Instant::now();
    let started = SystemTime::now();
    let target = target_dir(root);
    let out_dir = target.join("bench-report");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    if args.durable {
        return durable(&target, &out_dir, args);
    }

    let mut bench = cargo();
    bench.args(["bench", "-p", "eventbus"]);
    for name in BENCHES {
        bench.args(["--bench", name]);
    }
    if args.quick {
        bench.args(["--", "--warm-up-time", "0.2", "--measurement-time", "0.5"]);
    }
    run_cmd(&mut bench)?;
    let micro = report::read_criterion(&target.join("criterion"), &BENCHES, Some(started))?;

    let found = peers::find(!args.no_install);
    for note in &found.notes {
        eprintln!("WARNING: {note}");
    }
    release_builds(!found.servers.is_empty())?;
    let release = target.join("release");
    let exe = |name: &str| release.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let busbench_json = out_dir.join("busbench.json");
    let mut suite = std::process::Command::new(exe("busbench"));
    suite
        .arg("suite")
        .arg("--broker")
        .arg(exe("broker"))
        .arg("--out")
        .arg(&busbench_json);
    if !found.servers.is_empty() {
        suite.arg("--peerbench").arg(exe("peerbench"));
        for (peer, path) in &found.servers {
            suite.arg(peer.option).arg(path);
        }
    }
    if args.quick {
        suite.args(["--count", "5000", "--messages", "500000"]);
    }
    // The report is read from the file; busbench's copy on stdout is not needed.
    eprintln!(
        "$ busbench suite{}",
        if args.quick { " (quick)" } else { "" }
    );
    output(&mut suite)?;
    let text = std::fs::read_to_string(&busbench_json)
        .with_context(|| format!("reading {}", busbench_json.display()))?;
    let process: Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", busbench_json.display()))?;
    let peer_names: Vec<&str> = found.servers.iter().map(|(p, _)| p.name).collect();
    let nats = if peer_names.is_empty() {
        "no peer broker measured".to_owned()
    } else {
        format!("peers measured side by side: {}", peer_names.join(", "))
    };

    let report = json!({
        "mode": if args.quick { "quick" } else { "full" },
        "nats": nats,
        "layout": crate::hot_functions::layout(root, crate::hot_functions::Binary::Broker, &exe("broker")),
        "peer_notes": found.notes,
        "micro": micro,
        "process": process,
    });
    let markdown = report::markdown(&report);
    write(&out_dir.join("report.md"), &markdown)?;
    write(
        &out_dir.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )?;
    match svg::latency(&report["process"]) {
        Some(plot) => write(&out_dir.join("latency.svg"), &plot)?,
        None => eprintln!("no latency section: latency.svg not written"),
    }
    println!("{markdown}");
    println!(
        "report: {} (in {:.0} s)",
        out_dir.display(),
        started_at.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Release builds of the broker, then of busbench (and peerbench). The
/// broker is built on its own: built together with the bench tools, cargo
/// unifies the features the tools turn on in shared dependencies into the
/// broker too, and the binary measured would be larger than the one
/// `cargo build --release -p broker` ships (5.85 against 5.36 MB of text
/// here, and 0.35 MiB more RSS idle).
fn release_builds(peerbench: bool) -> Result<()> {
    let mut broker = cargo();
    broker.args(["build", "--release", "-p", "broker"]);
    run_cmd(&mut broker)?;
    let mut tools = cargo();
    tools.args(["build", "--release", "-p", "e2e"]);
    if peerbench {
        tools.args(["-p", "peerbench"]);
    }
    run_cmd(&mut tools)
}

/// `cargo xtask bench --durable`: release builds of the broker, busbench
/// and (when nats-server is there) peerbench, then `busbench durable`,
/// whose JSON report is written to `durable.json` and printed.
fn durable(target: &Path, out_dir: &Path, args: &Args) -> Result<()> {
    let found = peers::find(!args.no_install);
    let nats = found
        .servers
        .iter()
        .find(|(p, _)| p.binary == "nats-server")
        .map(|(_, path)| path.clone());
    if nats.is_none() {
        eprintln!("WARNING: nats-server not found: JetStream is left out");
    }
    release_builds(nats.is_some())?;
    let release = target.join("release");
    let exe = |name: &str| release.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let out = out_dir.join("durable.json");
    let mut probe = std::process::Command::new(exe("busbench"));
    probe
        .arg("durable")
        .arg("--broker")
        .arg(exe("broker"))
        .arg("--out")
        .arg(&out);
    if let Some(nats) = &nats {
        probe
            .arg("--peerbench")
            .arg(exe("peerbench"))
            .arg("--nats-server")
            .arg(nats);
    }
    if args.quick {
        probe.args([
            "--messages",
            "50000",
            "--count",
            "2000",
            "--recovery-messages",
            "100000",
        ]);
    }
    eprintln!(
        "$ busbench durable{}",
        if args.quick { " (quick)" } else { "" }
    );
    output(&mut probe)?;
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    println!("{text}\nreport: {}", out.display());
    Ok(())
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `<root>/target`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
