//! `cargo xtask windows`: the Windows build, run for real under Wine.
//!
//! 1. [`wine::ensure_tools`]: Wine and mingw-w64, installed with apt-get when
//!    missing; when they cannot be, the task fails (never a silent pass);
//! 2. `cargo build --target x86_64-pc-windows-gnu` of the broker, the CLI and
//!    the collector;
//! 3. a fresh `WINEPREFIX` in a temporary directory, booted once, with its own
//!    persistent wineserver that every step reuses ([`wine::Prefix`]);
//! 4. the `ProcessPrng` shim next to the executables when this Wine has no
//!    `bcryptprimitives.dll` (Wine 8 has none; Rust's std imports it);
//! 5. the [`suite`]'s steps, each timed; then `wineserver -k` and a check that
//!    no process of the prefix is left.
//!
//! `--native` runs the same steps on Linux with Linux binaries; `--compare`
//! runs both and prints their timings side by side. On failure the temporary
//! directory (every process's stdout and stderr) is kept and named.

mod host;
mod suite;
mod wine;

pub use wine::BootFailed;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::build;
use host::{Bins, Host};
use suite::{Step, Suite};

/// The command-line client's binary name, the one place it is spelled.
pub const CLI: &str = "ebctl";

/// The Windows target the suite builds for (linked by mingw-w64).
pub const TARGET: &str = "x86_64-pc-windows-gnu";

/// Longest socket path accepted in the system's temporary directory (Unix
/// socket paths must fit in about 104 bytes); a longer one moves to `/tmp`.
const MAX_SOCKET_PATH: usize = 100;

/// Options of `cargo xtask windows`; the default is what the gate runs.
#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Run the suite natively on Linux only, without Wine.
    #[arg(long, conflicts_with = "compare")]
    native: bool,
    /// Run the suite natively, then under Wine, and print both timings.
    #[arg(long)]
    compare: bool,
    /// Build with the release profile (default: dev, which builds faster).
    #[arg(long)]
    release: bool,
    /// Keep the temporary directory (logs, prefix) even when the suite passes.
    #[arg(long)]
    keep_logs: bool,
    /// Also cross-compile eventbus's unit tests and run the transport's (the
    /// pipe's security descriptor) and the memory figures' in the same prefix
    /// (about a minute more of building, so not in the gate).
    #[arg(long, conflicts_with = "native")]
    unit_tests: bool,
}

/// The unit tests `--unit-tests` runs under Wine: the transport's and the
/// broker's memory figures.
const UNIT_TEST_FILTERS: [&str; 2] = ["transport::", "broker::stats::"];

/// Unit tests Wine cannot pass, with the reason: they run on native Windows.
const UNIT_TESTS_NOT_UNDER_WINE: [(&str, &str); 2] = [
    (
        "a_client_the_descriptor_does_not_name_is_refused",
        "Wine does not check named pipes' DACLs (one user, every pipe open to it)",
    ),
    (
        "a_pipe_name_already_held_is_name_taken",
        "Wine ignores FILE_FLAG_FIRST_PIPE_INSTANCE: a second server gets the name",
    ),
];

/// How long each part of one run took.
#[derive(Debug, Default)]
struct Timings {
    /// `linux` or `wine`.
    host: &'static str,
    /// Preparation: build, prefix boot, shim, prefix shutdown.
    phases: Vec<(&'static str, Duration)>,
    /// The suite's steps.
    steps: Vec<(Step, Duration)>,
}

/// Runs `cargo xtask windows` from the workspace `root`.
pub fn run(root: &Path, args: &Args) -> Result<()> {
    let mut runs = Vec::new();
    if args.native || args.compare {
        runs.push(run_native(root, args)?);
    }
    if !args.native {
        runs.push(run_wine(root, args)?);
    }
    println!("{}", table(&runs, args.release));
    Ok(())
}

fn profile_args(args: &Args) -> Vec<&'static str> {
    if args.release {
        vec!["--release"]
    } else {
        Vec::new()
    }
}

fn run_native(root: &Path, args: &Args) -> Result<Timings> {
    let mut timings = Timings {
        host: "linux",
        ..Timings::default()
    };
    let start = Instant::now();
    let built = build::build_packages(root, &["broker", "mock-collector"], &profile_args(args))?;
    timings.phases.push(("build", start.elapsed()));
    let bins = Bins {
        broker: build::find(&built, "broker")?,
        cli: build::find(&built, CLI)?,
        collector: build::find(&built, "mock-collector")?,
    };
    let dir = temp_dir(root, "eventbus-smoke-linux-")?;
    let socket = dir.path().join("bus.sock");
    let host = Host::Native;
    let result = run_steps(&host, &bins, dir.path(), socket, &mut timings);
    keep_or_remove(dir, result.is_err() || args.keep_logs);
    result.map(|()| timings)
}

fn run_wine(root: &Path, args: &Args) -> Result<Timings> {
    let mut timings = Timings {
        host: "wine",
        ..Timings::default()
    };
    wine::ensure_tools()?;
    crate::ci::ensure_target(TARGET)
        .with_context(|| format!("the Rust standard library for {TARGET} is needed"))?;
    eprintln!("{}", wine::version());

    let start = Instant::now();
    let mut build_args = vec!["--target", TARGET];
    build_args.extend(profile_args(args));
    let built = build::build_packages(root, &["broker", "mock-collector"], &build_args)?;
    timings.phases.push(("build", start.elapsed()));

    let unit_tests = if args.unit_tests {
        let start = Instant::now();
        let exe = build_unit_tests(root, &profile_args(args))?;
        timings.phases.push(("build-unit-tests", start.elapsed()));
        Some(exe)
    } else {
        None
    };

    let dir = temp_dir(root, "eventbus-smoke-wine-")?;
    let result = wine_in(dir.path(), &built, unit_tests.as_deref(), &mut timings);
    keep_or_remove(dir, result.is_err() || args.keep_logs);
    result.map(|()| timings)
}

/// Boots the prefix in `dir`, runs the steps, shuts the prefix down.
fn wine_in(
    dir: &Path,
    built: &std::collections::BTreeMap<String, PathBuf>,
    unit_tests: Option<&Path>,
    timings: &mut Timings,
) -> Result<()> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let start = Instant::now();
    let prefix = wine::Prefix::boot(&dir.join("prefix"), &logs)?;
    timings.phases.push(("wine-boot", start.elapsed()));

    // The executables run from a directory of their own, next to the shim
    // if one is needed: nothing is added to cargo's target directory.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let copy = |name: &str| -> Result<PathBuf> {
        let from = build::find(built, name)?;
        let to = bin.join(from.file_name().context("an executable has no file name")?);
        std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        Ok(to)
    };
    let bins = Bins {
        broker: copy("broker")?,
        cli: copy(CLI)?,
        collector: copy("mock-collector")?,
    };
    if prefix.has_dll(wine::PRNG_DLL) {
        eprintln!("this Wine has {}: no shim needed", wine::PRNG_DLL);
    } else {
        let start = Instant::now();
        let dll = wine::build_prng_shim(&bin)?;
        timings.phases.push(("prng-shim", start.elapsed()));
        eprintln!(
            "this Wine has no {}: built the ProcessPrng shim {}",
            wine::PRNG_DLL,
            dll.display()
        );
    }

    let prefix_dir = dir.join("prefix");
    let socket = PathBuf::from(format!(
        "{}.sock",
        dir.file_name().unwrap_or_default().to_string_lossy()
    ));
    let host = Host::Wine(prefix);
    run_steps(&host, &bins, dir, socket, timings)?;
    if let Some(exe) = unit_tests {
        let start = Instant::now();
        run_unit_tests(&host, exe, &bin, &logs)?;
        timings.phases.push(("unit-tests", start.elapsed()));
    }

    let start = Instant::now();
    if let Host::Wine(prefix) = host {
        prefix.shut_down()?;
    }
    timings.phases.push(("wine-shutdown", start.elapsed()));
    let left = wine::processes_with_prefix(&prefix_dir);
    if !left.is_empty() {
        bail!("processes of the prefix still run after `wineserver -k`: {left:?}");
    }
    Ok(())
}

/// `cargo test --no-run` of eventbus's unit tests for Windows; the test executable.
fn build_unit_tests(root: &Path, profile: &[&str]) -> Result<PathBuf> {
    let mut cmd = crate::process::cargo();
    cmd.current_dir(root)
        .args([
            "test", "--no-run", "--lib", "-p", "eventbus", "--target", TARGET,
        ])
        .args(["--message-format=json-render-diagnostics"])
        .args(profile);
    eprintln!("$ cargo test --no-run --lib -p eventbus --target {TARGET}");
    let messages = crate::process::output(&mut cmd)?;
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built no eventbus test executable")
}

/// Runs the [`UNIT_TEST_FILTERS`] unit tests under Wine, next to the shim, skipping
/// those Wine cannot pass (said loudly: they are not checked here).
fn run_unit_tests(host: &Host, exe: &Path, bin: &Path, logs: &Path) -> Result<()> {
    let copy = bin.join("eventbus-unit-tests.exe");
    std::fs::copy(exe, &copy).with_context(|| format!("copying {}", exe.display()))?;
    let mut cmd = host.command(&copy);
    cmd.args(UNIT_TEST_FILTERS);
    for (test, why) in UNIT_TESTS_NOT_UNDER_WINE {
        eprintln!("NOT checked under Wine: {test} ({why}); it runs on native Windows");
        cmd.args(["--skip", test]);
    }
    let finished =
        host::Background::start("unit-tests", cmd, logs)?.finish(Duration::from_secs(300))?;
    eprint!("{}", finished.stdout);
    finished.success("the eventbus unit tests under Wine")?;
    Ok(())
}

/// Runs every step in order, timing each; stops at the first failure.
fn run_steps(
    host: &Host,
    bins: &Bins,
    dir: &Path,
    socket: PathBuf,
    timings: &mut Timings,
) -> Result<()> {
    let mut suite = Suite::new(host, bins, dir, socket)?;
    for step in Step::ALL {
        eprintln!("--> [{}] {}", host.name(), step.name());
        let start = Instant::now();
        let result = suite.run(step);
        let took = start.elapsed();
        match result {
            Ok(()) => {
                eprintln!("<-- {} passed in {:.2}s", step.name(), took.as_secs_f64());
                timings.steps.push((step, took));
            }
            Err(error) => {
                return Err(error.context(format!(
                    "smoke step `{}` failed on {} after {:.2}s",
                    step.name(),
                    host.name(),
                    took.as_secs_f64()
                )));
            }
        }
    }
    Ok(())
}

/// A temporary directory whose socket paths stay short enough.
/// A directory of its own under `target/` (so a `/tmp` mounted `noexec`
/// cannot stop Wine from mapping the executables), or under `/tmp` when that
/// would make the socket path too long.
fn temp_dir(root: &Path, prefix: &str) -> Result<tempfile::TempDir> {
    let base = root.join("target").join("tmp");
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let probe = base.join(format!("{prefix}XXXXXX")).join("bus.sock");
    let base = if probe.as_os_str().len() > MAX_SOCKET_PATH {
        PathBuf::from("/tmp")
    } else {
        base
    };
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .context("creating a temporary directory")
}

fn keep_or_remove(dir: tempfile::TempDir, keep: bool) {
    if keep {
        eprintln!("logs kept in {}", dir.keep().join("logs").display());
    }
}

/// The timings of every run, one column per host.
fn table(runs: &[Timings], release: bool) -> String {
    let profile = if release { "release" } else { "dev" };
    let mut out = format!("smoke suite timings ({profile} build)\n  {:<18}", "step");
    for run in runs {
        let _ = write!(out, " {:>10}", run.host);
    }
    out.push('\n');
    let mut phases: Vec<&str> = Vec::new();
    for run in runs {
        for (name, _) in &run.phases {
            if !phases.contains(name) {
                phases.push(name);
            }
        }
    }
    let cell =
        |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()));
    for phase in phases {
        let _ = write!(out, "  {phase:<18}");
        for run in runs {
            let d = run
                .phases
                .iter()
                .find(|(n, _)| *n == phase)
                .map(|(_, d)| *d);
            let _ = write!(out, " {:>10}", cell(d));
        }
        out.push('\n');
    }
    for step in Step::ALL {
        let _ = write!(out, "  {:<18}", step.name());
        for run in runs {
            let d = run.steps.iter().find(|(s, _)| *s == step).map(|(_, d)| *d);
            let _ = write!(out, " {:>10}", cell(d));
        }
        out.push('\n');
    }
    let _ = write!(out, "  {:<18}", "steps total");
    for run in runs {
        let total: Duration = run.steps.iter().map(|(_, d)| *d).sum();
        let _ = write!(out, " {:>10}", cell(Some(total)));
    }
    out
}
