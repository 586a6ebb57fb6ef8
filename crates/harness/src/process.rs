//! [`Process`]: any program as a supervised child: its output in log files,
//! started once it is ready (a JSON ready line, a line of your choice, a
//! socket that accepts, or any probe), faults on demand, always reaped.
//!
//! **Invariant:** every child spawned here is reaped: by an explicit `kill`,
//! `terminate` or `wait_exit`, else by `Drop` (SIGKILL, then wait), which runs
//! during a panic too and then prints where the logs are.
//!
//! Every wait polls a condition with a deadline ([`POLL_INTERVAL`](crate::wait::POLL_INTERVAL)); each has
//! an async form for tests on a runtime and a `_blocking` form for plain
//! threads (a CLI test, a demo).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Lines of stderr a failure message shows.
pub(crate) const STDERR_TAIL_LINES: usize = 40;

/// How long a drop waits for the stdout copier to see the pipe close.
pub(crate) const COPIER_GRACE: Duration = Duration::from_secs(1);

/// Where a child's output goes. Files are appended to, so a restarted process
/// keeps the log of its earlier runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPaths {
    /// Everything printed on stdout, the ready line included.
    pub stdout: PathBuf,
    /// Everything printed on stderr.
    pub stderr: PathBuf,
}

impl LogPaths {
    /// `<dir>/<name>.stdout.log` and `<dir>/<name>.stderr.log`.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            stdout: dir.join(format!("{name}.stdout.log")),
            stderr: dir.join(format!("{name}.stderr.log")),
        }
    }

    /// The last `n` lines of the stderr log, for failure messages.
    pub fn stderr_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// One of a child's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// When a started process counts as ready.
#[derive(Clone)]
#[non_exhaustive]
pub enum Ready {
    /// At once: spawned is ready.
    Spawned,
    /// A JSON object with `"event": "ready"` on stdout (the convention of
    /// `broker` and `mock-collector`); lines before it are only logged. If
    /// it carries a `"pid"`, that must be the child's own (a wrapper script
    /// would otherwise be mistaken for the process). The parsed line is
    /// [`Process::ready`].
    JsonLine,
    /// The first stdout line for which this returns `true`.
    Line(Arc<dyn Fn(&str) -> bool + Send + Sync>),
    /// A connection to this local socket succeeds.
    SocketAccepts(PathBuf),
    /// This returns `true` (polled every [`POLL_INTERVAL`](crate::wait::POLL_INTERVAL)).
    Probe(Arc<dyn Fn() -> bool + Send + Sync>),
}

impl Ready {
    /// [`Ready::Line`] from a closure.
    pub fn line(matches: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self::Line(Arc::new(matches))
    }

    /// [`Ready::Probe`] from a closure.
    pub fn probe(ready: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self::Probe(Arc::new(ready))
    }

    /// Whether this readiness is decided by a stdout line.
    fn by_line(&self) -> bool {
        matches!(self, Ready::JsonLine | Ready::Line(_))
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ready::Spawned => f.write_str("Spawned"),
            Ready::JsonLine => f.write_str("JsonLine"),
            Ready::Line(_) => f.write_str("Line(..)"),
            Ready::SocketAccepts(path) => f.debug_tuple("SocketAccepts").field(path).finish(),
            Ready::Probe(_) => f.write_str("Probe(..)"),
        }
    }
}

mod builder;
mod child;
mod error;
mod running;

pub use builder::ProcessBuilder;
pub use error::StartError;
pub use running::Process;

#[cfg(all(test, unix))]
mod tests;
