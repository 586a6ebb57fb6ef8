//! `eventbus-bridge`: run a bridge, print a template config, or check one.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eventbus_bridge::config::TEMPLATE;
use eventbus_bridge::status::NatsState;
use eventbus_bridge::{Bridge, BridgeConfig};

/// A bridge between the local eventbus broker and a NATS server or cluster.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The config file to run with.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print a commented template config.
    GenerateConfig,
    /// Validate a config file: exit 0, or a one-line error and exit 2.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
}

/// Usage and config errors.
const EXIT_USAGE: u8 = 2;
/// The bridge could not start (the local broker is unreachable).
const EXIT_START: u8 = 1;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match (cli.command, cli.config) {
        (Some(Command::GenerateConfig), None) => {
            print!("{TEMPLATE}");
            ExitCode::SUCCESS
        }
        (Some(Command::CheckConfig { file }), None) => match BridgeConfig::load(&file) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(EXIT_USAGE, &e.to_string()),
        },
        (None, Some(file)) => match BridgeConfig::load(&file) {
            Ok(config) => run(config),
            Err(e) => fail(EXIT_USAGE, &e.to_string()),
        },
        _ => fail(
            EXIT_USAGE,
            "usage: eventbus-bridge --config FILE | generate-config | check-config FILE",
        ),
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("eventbus-bridge: {}", message.replace('\n', " "));
    ExitCode::from(code)
}

fn run(config: BridgeConfig) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // One thread: the bridge's work is a chain of hand-offs (local socket,
    // buffer, NATS socket) that runs fastest without cross-thread wake-ups,
    // and each thread would cost its own stack and allocator arena.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(EXIT_START, &format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let bridge = match Bridge::start(config).await {
            Ok(bridge) => bridge,
            Err(e) => return fail(EXIT_START, &e.to_string()),
        };
        let nats = match bridge.nats_state() {
            NatsState::Connected => "connected",
            NatsState::Connecting => "connecting",
        };
        let ready = serde_json::json!({"event": "ready", "pid": std::process::id(), "nats": nats});
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{ready}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // Nobody reads the ready line: keep running, logs go to stderr.
            tracing::warn!("cannot write the ready line");
        }
        drop(stdout);
        stopped().await;
        tracing::info!("stopping");
        bridge.stop().await;
        ExitCode::SUCCESS
    })
}

/// Waits for SIGTERM or SIGINT (Ctrl-C elsewhere).
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
