//! `cargo xtask fuzz`: runs the cargo-fuzz targets in `fuzz/` (not part of
//! the gate; see `fuzz/README.md` for what each checks).
//!
//! Needs the nightly toolchain (cargo-fuzz builds with `-Z` flags): without
//! it the task says how to install it and fails. cargo-fuzz is installed on
//! demand. Each target runs for `--seconds` from its checked-in seeds
//! (`fuzz/seeds/<target>/`, read only) and its working corpus
//! (`target/fuzz/corpus/<target>/`, kept between runs, never in git); a crash is
//! written to `fuzz/artifacts/<target>/` and fails the task, with the
//! command that replays it. libFuzzer's output goes to
//! `target/fuzz/<target>.log`; the console gets its status lines and a
//! summary (time and runs per target).
//!
//! Without a sanitizer by default: every crate of ours forbids `unsafe`, so
//! AddressSanitizer would only watch our dependencies, at half the speed.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::process::{ensure_cargo_tool, probe, run as run_command};

/// The targets, each with the largest input libFuzzer makes for it.
pub const TARGETS: [(&str, usize); 5] = [
    // Streams of several frames, up to the 64 KiB limit the input picks.
    ("frame_decoder", 16 * 1024),
    ("broker_scan", 4096),
    ("deliver_scan", 4096),
    // Scripts: a step is a few bytes, a flood or a huge header too.
    ("router", 4096),
    // Up to four segment files of frames up to 255 bytes.
    ("journal", 8192),
];

/// A single input that runs longer than this is a failure (a hang, or
/// work that grows faster than its input).
const INPUT_TIMEOUT_SECS: u32 = 10;

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds of fuzzing per target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Only this target (repeatable); all of them by default.
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
    /// The sanitizer to build with (`none`, `address`, ...).
    #[arg(long, default_value = "none")]
    sanitizer: String,
    /// Write the seed corpus (`fuzz/seeds/`) from `fuzz/examples/seeds.rs`
    /// instead of fuzzing.
    #[arg(long)]
    write_seeds: bool,
}

/// How one target's run ended.
struct Outcome {
    target: &'static str,
    elapsed: Duration,
    runs: Option<u64>,
    crash: Option<PathBuf>,
}

/// Runs the selected targets one after another (the machine's cores are
/// shared: one libFuzzer process at a time).
pub fn run(root: &Path, args: &Args) -> Result<()> {
    if !probe(nightly_cargo().arg("--version")) {
        bail!(
            "cargo xtask fuzz needs the nightly toolchain (cargo-fuzz builds with -Z flags); \
             install it with `rustup toolchain install nightly`"
        );
    }
    if args.write_seeds {
        return run_command(
            nightly_cargo()
                .args([
                    "run",
                    "--manifest-path",
                    "fuzz/Cargo.toml",
                    "--example",
                    "seeds",
                ])
                .env("RUSTFLAGS", "--cfg fuzzing"),
        );
    }
    let targets = selected(&args.targets)?;
    ensure_cargo_tool("fuzz", "cargo-fuzz")?;
    let logs = root.join("target/fuzz");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut outcomes = Vec::new();
    for (target, max_len) in targets {
        eprintln!("\n==> fuzz {target} for {} s", args.seconds);
        run_command(nightly_cargo().args(["fuzz", "build", "-s", &args.sanitizer, target]))?;
        outcomes.push(fuzz_target(root, args, target, max_len, &logs)?);
    }
    summarize(&outcomes, &args.sanitizer)
}

/// The targets asked for, all of them by default.
fn selected(names: &[String]) -> Result<Vec<(&'static str, usize)>> {
    if names.is_empty() {
        return Ok(TARGETS.to_vec());
    }
    names
        .iter()
        .map(|name| {
            TARGETS
                .iter()
                .find(|(t, _)| t == name)
                .copied()
                .with_context(|| {
                    let known: Vec<_> = TARGETS.iter().map(|(t, _)| *t).collect();
                    format!(
                        "no fuzz target {name:?}; the targets are {}",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

/// `cargo` of the nightly toolchain, through rustup.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"])
        // The stable toolchain running xtask says which rustc to use.
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

/// Fuzzes one target for `args.seconds`, its output in `logs/<target>.log`.
fn fuzz_target(
    root: &Path,
    args: &Args,
    target: &'static str,
    max_len: usize,
    logs: &Path,
) -> Result<Outcome> {
    let corpus = logs.join("corpus").join(target);
    let seeds = root.join("fuzz/seeds").join(target);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let log_path = logs.join(format!("{target}.log"));
    let mut log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = nightly_cargo();
    // New inputs go to the first directory: the working corpus, never the seeds.
    cmd.args(["fuzz", "run", "-s", &args.sanitizer, target])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={}", args.seconds))
        .arg(format!("-max_len={max_len}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg("-print_final_stats=1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().context("could not start `cargo fuzz run`")?;
    // libFuzzer writes to stderr; cargo's own lines go there too.
    let stdout = child.stdout.take().expect("piped");
    let forward = std::thread::spawn(move || {
        std::io::copy(&mut BufReader::new(stdout), &mut std::io::sink())
    });
    let mut runs = None;
    let mut crash = None;
    let stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut crashing = false;
    for line in stderr.lines() {
        let line = line.context("reading libFuzzer's output")?;
        writeln!(log, "{line}").context("writing the fuzz log")?;
        crashing |=
            line.contains("panicked at") || line.starts_with("==") && line.contains("ERROR");
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            runs = n.trim().parse().ok();
        }
        if let Some((_, path)) = line.split_once("Test unit written to ") {
            crash = Some(PathBuf::from(path.trim()));
        }
        if crashing || is_status(&line) {
            eprintln!("{line}");
        }
    }
    let status = child.wait().context("waiting for `cargo fuzz run`")?;
    let _ = forward.join();
    let elapsed = started.elapsed();
    if !status.success() && crash.is_none() {
        bail!(
            "`cargo fuzz run {target}` failed ({status}) without a crash input: see {}",
            log_path.display()
        );
    }
    Ok(Outcome {
        target,
        elapsed,
        runs,
        crash,
    })
}

/// libFuzzer's status lines: start, the doubling pulses, the end.
fn is_status(line: &str) -> bool {
    ["INITED", "pulse", "DONE", "Done "]
        .iter()
        .any(|mark| line.contains(mark))
}

fn summarize(outcomes: &[Outcome], sanitizer: &str) -> Result<()> {
    eprintln!("\nfuzz summary (sanitizer: {sanitizer}):");
    let mut total = Duration::ZERO;
    for o in outcomes {
        total += o.elapsed;
        let runs = o.runs.map_or_else(|| "?".to_owned(), |n| n.to_string());
        let result = match &o.crash {
            None => "no crash".to_owned(),
            Some(path) => format!("CRASH {}", path.display()),
        };
        eprintln!(
            "  {:<14} {:>6.0} s  {runs:>10} runs  {result}",
            o.target,
            o.elapsed.as_secs_f64()
        );
    }
    eprintln!("  {:<14} {:>6.0} s", "total", total.as_secs_f64());
    let crashed: Vec<_> = outcomes.iter().filter(|o| o.crash.is_some()).collect();
    if crashed.is_empty() {
        return Ok(());
    }
    for o in &crashed {
        let path = o.crash.as_ref().expect("filtered");
        eprintln!(
            "replay: cargo +nightly fuzz run -s {sanitizer} {} {}",
            o.target,
            path.display()
        );
    }
    bail!("{} fuzz target(s) crashed", crashed.len())
}

#[cfg(test)]
mod tests {
    use super::TARGETS;

    /// The table names exactly the targets `fuzz/Cargo.toml` declares, and
    /// each has checked-in seeds.
    #[test]
    fn every_fuzz_target_is_run_and_seeded() {
        let root = crate::project_root().expect("root");
        let text = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).expect("fuzz/Cargo.toml");
        let manifest: toml::Table = text.parse().expect("valid TOML");
        let mut declared: Vec<&str> = manifest["bin"]
            .as_array()
            .expect("[[bin]]s")
            .iter()
            .map(|bin| bin["name"].as_str().expect("a name"))
            .collect();
        let mut ours: Vec<&str> = TARGETS.iter().map(|(t, _)| *t).collect();
        declared.sort_unstable();
        ours.sort_unstable();
        assert_eq!(declared, ours);
        for target in ours {
            let seeds = root.join("fuzz/seeds").join(target);
            let count = std::fs::read_dir(&seeds).map_or(0, Iterator::count);
            assert!(count > 0, "{} holds no seeds", seeds.display());
        }
    }
}
