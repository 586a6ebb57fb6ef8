//! `mock-collector`: a collector process that does real, light collection work.
//!
//! ```text
//! mock-collector --type process|network|filesystem --instance N [--socket PATH]
//!     [--id ID] [--prefetch N] [--delay-ms N] [--fail-every N] [--crash-after N]
//!     [--hang-after N] [--heartbeat-interval-ms N] [--emit-interval-ms N]
//!     [--watch-path PATH]
//! ```
//!
//! Prints `{"event":"ready","id":..,"pid":..}` on stdout once it takes tasks on
//! `control.collector.task.<capability>`; logs go to stderr (`RUST_LOG`).
//!
//! Exit codes: 0 after SIGTERM/SIGINT and a graceful drain; 1 when it cannot
//! start; 2 for usage errors; 3 when the connection to the broker is lost with
//! `--no-reconnect` (by default it reconnects and re-registers);
//! SIGABRT with `--crash-after`. With `--hang-after` it never exits by itself.
#![forbid(unsafe_code)]

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use mock_collector::{Cli, Outcome, service, signals};

/// Exit code when the broker connection is lost and reconnecting is disabled.
const EXIT_CONNECTION_LOST: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(Outcome::Stopped) => ExitCode::SUCCESS,
        Ok(Outcome::ConnectionLost) => {
            eprintln!("mock-collector: connection to the broker lost");
            ExitCode::from(EXIT_CONNECTION_LOST)
        }
        Err(e) => {
            // `{:#}` joins the error chain on one line: one error, one line.
            eprintln!("mock-collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A current-thread runtime: the collector's async work is small, and one
/// runtime thread is what lets `--hang-after` freeze heartbeats along with
/// everything else. Blocking collection runs on the blocking pool.
fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let config = cli.into_config()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async move {
        let shutdown = signals::shutdown_signal()?;
        Ok(service::run(config, shutdown).await?)
    });
    // Don't wait for blocking work abandoned on connection loss (a long walk).
    runtime.shutdown_background();
    outcome
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`); stdout carries
/// only the ready line.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
