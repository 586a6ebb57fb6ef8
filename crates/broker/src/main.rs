//! `broker`: the eventbus broker daemon.
//!
//! Map of the binary:
//!
//! - [`cli`]: the command line, and how it layers over the configuration file
//!   (defaults < `--config` file < flags).
//! - [`template`]: `broker generate-config`, the default configuration as
//!   commented TOML.
//! - [`serve`]: the runtime, binding the socket, the ready line, signals and the
//!   graceful shutdown.
//! - [`http`]: the monitor listener (`--http`): dashboard, JSON API,
//!   `/metrics`, live updates.
//!
//! Errors end the process with one line on stderr and exit code 1; usage errors
//! exit 2 (clap's convention).
#![forbid(unsafe_code)]

mod cli;
mod http;
mod serve;
mod template;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::GenerateConfig) => {
            print!("{}", template::generate());
            Ok(())
        }
        Some(Command::HashSecret) => hash_secret(),
        None => cli.options.settings().and_then(|settings| {
            init_logging();
            serve::serve(settings)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `broker hash-secret`: the secret on stdin (one line), its hash on stdout.
fn hash_secret() -> anyhow::Result<()> {
    let mut secret = String::new();
    std::io::stdin().read_line(&mut secret)?;
    let secret = secret.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!secret.is_empty(), "no secret on stdin");
    println!(
        "secret_sha256 = \"{}\"",
        eventbus::broker::hash_secret(secret.as_bytes())
    );
    Ok(())
}

/// One error, one line: the chain joined with `: `, skipping a cause whose
/// text the message already carries (some errors both print their source and
/// return it from `source()`).
fn one_line(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text.replace('\n', " ")
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
