//! `cargo xtask bench [--quick]`: every benchmark in one run, and one report.
//!
//! 1. The criterion micro-benchmarks of `crates/eventbus/benches/` (codec,
//!    topic index, outbound queue); their medians are read back from
//!    criterion's `target/criterion/**/new/{benchmark,estimates}.json`.
//! 2. `busbench suite` against a release build of the broker: every process
//!    figure next to the raw-socket floor measured in the same run (see
//!    `docs/performance.md`).
//! 3. Whether `nats-server` is on `PATH`. A side-by-side comparison with it is
//!    not implemented yet; the run says so either way.
//!
//! The report directory, `target/bench-report/`, holds `report.md` (the
//! summary tables, also printed), `report.json` (micro-benchmarks and process
//! figures together), `latency.svg` (round-trip latency by percentile, floor
//! and bus, pinned and unpinned) and `busbench.json` (busbench's own output).

mod report;
mod svg;

use std::ffi::OsString;
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
}

/// Runs every benchmark and writes the report directory.
pub fn run(root: &Path, args: &Args) -> Result<()> {
    let started_at = Instant::now();
    let started = SystemTime::now();
    let target = target_dir(root);
    let out_dir = target.join("bench-report");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

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

    run_cmd(cargo().args(["build", "--release", "-p", "broker", "-p", "e2e"]))?;
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

    let nats = if on_path("nats-server") {
        "nats-server found on PATH, but a side-by-side NATS comparison is not implemented yet"
    } else {
        "nats-server is not on PATH: the NATS comparison is skipped"
    };
    eprintln!("{nats}");

    let report = json!({
        "mode": if args.quick { "quick" } else { "full" },
        "nats": nats,
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

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `<root>/target`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Whether an executable called `name` is in a directory of `$PATH`.
fn on_path(name: &str) -> bool {
    let file = OsString::from(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(&file).is_file()))
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
