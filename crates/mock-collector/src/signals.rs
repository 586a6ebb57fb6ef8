//! The shutdown request: the first SIGTERM or SIGINT (on Windows: Ctrl-C,
//! Ctrl-Break or the console closing).

use std::future::Future;

/// Completes on the first SIGTERM or SIGINT. The handlers are installed when this
/// is called, not when the future is first polled, so a signal sent right after
/// the ready line is never lost.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    })
}

/// Completes on the first Ctrl-C, Ctrl-Break or console close (Windows has no
/// SIGTERM: a supervisor stops a console program with Ctrl-Break). Installed
/// when called, as on Unix.
#[cfg(windows)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close};
    let mut c = ctrl_c()?;
    let mut brk = ctrl_break()?;
    let mut close = ctrl_close()?;
    Ok(async move {
        let name = tokio::select! {
            _ = c.recv() => "Ctrl-C",
            _ = brk.recv() => "Ctrl-Break",
            _ = close.recv() => "console closed",
        };
        tracing::info!(signal = name, "shutdown requested");
    })
}
