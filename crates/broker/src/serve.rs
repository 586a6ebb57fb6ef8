//! Running the broker: the runtime, the socket, the ready line and shutdown.
//!
//! Order matters: signal handlers are installed before the socket is bound, and
//! the ready line is printed only once the socket accepts connections, so a
//! supervisor that reads it may connect — or send SIGTERM — at once.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use eventbus::Broker;
use serde::Serialize;

use crate::cli::Settings;
use crate::http::HttpServer;

/// The one line printed on stdout once the broker accepts connections.
#[derive(Debug, Serialize)]
struct Ready<'a> {
    event: &'static str,
    socket: &'a Path,
    pid: u32,
    version: &'static str,
    /// The monitor's address, when `--http` serves one.
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<SocketAddr>,
}

/// Binds the socket, announces readiness and serves until SIGTERM or SIGINT
/// (on Windows: Ctrl-C, Ctrl-Break or the console closing).
///
/// A current-thread runtime: the broker's work is short, lock-protected routing
/// steps, and one thread avoids cross-thread wake-ups on every message. The
/// monitor listener, when asked for, runs on a thread of its own; it keeps
/// serving (`/healthz` says `draining`) until the broker has stopped.
pub fn serve(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        survive_file_size_limit()?;
        let broker = Broker::bind(settings.broker)?;
        let http = match settings.http.listen {
            Some(_) => Some(HttpServer::start(&settings.http, broker.monitor())?),
            None => None,
        };
        announce(broker.socket(), http.as_ref().map(HttpServer::addr))?;
        tracing::info!(socket = %broker.socket().display(), "broker ready");
        let result = broker.run(shutdown).await;
        if let Some(http) = http {
            http.stop();
        }
        result?;
        tracing::info!("broker stopped");
        Ok(())
    })
}

/// A write past `RLIMIT_FSIZE` raises SIGXFSZ, whose default action kills
/// the process. With a handler installed (tokio's, which only records it),
/// the write fails with `EFBIG` instead, which the journal turns into
/// refusals of durable publishes, as it does a full disk. The handler stays
/// installed for the life of the process.
#[cfg(unix)]
fn survive_file_size_limit() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    /// SIGXFSZ on Linux, macOS and the BSDs.
    const SIGXFSZ: i32 = 25;
    // Dropping the stream leaves the handler installed (tokio never
    // uninstalls one); only its notifications stop.
    let _ = signal(SignalKind::from_raw(SIGXFSZ)).context("cannot handle SIGXFSZ")?;
    Ok(())
}

#[cfg(not(unix))]
fn survive_file_size_limit() -> anyhow::Result<()> {
    Ok(())
}

/// Prints the ready line and flushes it, so a reader sees it immediately.
fn announce(socket: &Path, http: Option<SocketAddr>) -> anyhow::Result<()> {
    let ready = Ready {
        event: "ready",
        socket,
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION"),
        http,
    };
    let line = serde_json::to_string(&ready)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("cannot write the ready line")
}

/// Completes on the first SIGTERM or SIGINT. The handlers are installed when
/// this is called, not when the future is first polled.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    })
}

/// Completes on the first Ctrl-C, Ctrl-Break or console close: what a terminal,
/// a supervisor (`GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT)` to the broker's
/// process group, the usual graceful stop of a console program; there is no
/// SIGTERM) or a closed console window sends. As on Unix, the handlers are
/// installed when this is called, not when the future is first polled: until
/// then a Ctrl-C would end the process at once, without a drain.
#[cfg(windows)]
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close};
    let mut c = ctrl_c().context("cannot handle Ctrl-C")?;
    let mut brk = ctrl_break().context("cannot handle Ctrl-Break")?;
    let mut close = ctrl_close().context("cannot handle the console closing")?;
    Ok(async move {
        let name = tokio::select! {
            _ = c.recv() => "Ctrl-C",
            _ = brk.recv() => "Ctrl-Break",
            _ = close.recv() => "console closed",
        };
        tracing::info!(signal = name, "shutdown requested");
    })
}
