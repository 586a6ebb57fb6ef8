//! `cargo xtask`: project automation, run from anywhere in the repository
//! (the alias lives in `.cargo/config.toml`).
//!
//! One module per task:
//! - [`ci`]: the gate, `cargo xtask ci`: fmt, clippy, the unsafe audit, tests,
//!   docs, dependency policy and a check for the other platforms;
//! - [`coverage`]: `cargo xtask coverage`: line coverage of the nextest suite,
//!   child processes included, per crate, with a floor for `eventbus`;
//! - [`mod@bench`]: `cargo xtask bench`: criterion micro-benchmarks and the
//!   busbench process suite, with a report directory (tables, JSON, plot);
//! - [`audit`]: the unsafe audit, a pure function over a workspace directory;
//! - [`cli_assets`]: `cargo xtask cli-assets`: `ebctl`'s shell completions and
//!   man pages, for packaging;
//! - [`demo`]: `cargo xtask demo`: the broker and collectors as processes under
//!   a stream of tasks, with live throughput and latency;
//! - [`e2e`]: `cargo xtask e2e`: a type of process scenarios under nextest,
//!   with a report directory (JUnit, log, summary with durations and figures);
//! - [`mutants`]: `cargo xtask mutants`: mutation testing of the broker's
//!   router against its unit tests, with a floor for the caught share;
//! - [`windows`]: `cargo xtask windows`: the Windows build run under Wine
//!   (a smoke suite of real processes), or the same suite natively;
//! - [`fuzz`]: `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/`
//!   (nightly), one after another, from their checked-in seeds;
//! - [`hot_functions`]: `cargo xtask hot-functions`: the list of functions
//!   release builds of the broker lay out first, from a profiled run;
//! - [`build`]: building binaries and finding them; [`fleet`]: children with a
//!   ready line, always reaped; [`process`]: running external tools.
#![forbid(unsafe_code)]

mod audit;
mod bench;
mod build;
mod ci;
mod cli_assets;
mod coverage;
mod demo;
#[cfg(test)]
mod docs_tests;
mod e2e;
mod fleet;
mod fuzz;
mod hot_functions;
mod mutants;
mod process;
mod windows;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Project automation for eventbus.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run the micro-benchmarks and the process suite, and write a report.
    Bench(bench::Args),
    /// Run the gate: fmt, clippy, unsafe audit, nextest, doc, deny, cross-check.
    Ci(ci::Args),
    /// Write ebctl's shell completions and man pages (default: target/cli-assets).
    CliAssets(cli_assets::Args),
    /// Measure line coverage (child processes included) and check the eventbus floor.
    Coverage(coverage::Args),
    /// Run the broker and collectors as processes and push tasks through them.
    Demo(demo::Args),
    /// Run a type of e2e scenarios and write a report (JUnit, log, summary).
    E2e(e2e::Args),
    /// Run the fuzz targets in fuzz/ (nightly, cargo-fuzz; not part of the gate).
    Fuzz(fuzz::Args),
    /// Write the broker's and the bridge's hot-function lists from profiled runs (valgrind), or check them.
    HotFunctions(hot_functions::Args),
    /// Mutation-test the broker's router against its unit tests.
    Mutants(mutants::Args),
    /// Build for Windows and run the smoke suite under Wine (or natively).
    Windows(windows::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The whole cause chain on one line; no backtrace, whatever RUST_BACKTRACE says.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<()> {
    let root = project_root()?;
    // Every tool runs from the root, wherever `cargo xtask` was started.
    std::env::set_current_dir(&root)
        .with_context(|| format!("entering the workspace root {}", root.display()))?;
    match task {
        Task::Bench(args) => bench::run(&root, &args),
        Task::Ci(args) => ci::run_gate(&root, &args),
        Task::CliAssets(args) => cli_assets::run_task(&root, &args),
        Task::Coverage(args) => coverage::run(&root, &args),
        Task::Demo(args) => demo::run(&root, &args),
        Task::E2e(args) => e2e::run(&root, &args),
        Task::Fuzz(args) => fuzz::run(&root, &args),
        Task::HotFunctions(args) => hot_functions::run(&root, &args),
        Task::Mutants(args) => mutants::run(&root, &args),
        Task::Windows(args) => windows::run(&root, &args),
    }
}

/// The workspace root: the parent of this crate's directory.
fn project_root() -> Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}
