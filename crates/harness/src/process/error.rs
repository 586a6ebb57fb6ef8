//! [`StartError`]: why a process could not be started.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use super::{LogPaths, Ready};

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The program could not be run at all.
    #[error("cannot spawn {name} ({program}): {source}")]
    Spawn {
        /// The process's name.
        name: String,
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A log file could not be opened.
    #[error("cannot open the log {}: {source}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It exited before it was ready.
    #[error("{name} exited ({status}) before it was ready{}", tail(.stderr_tail, .logs))]
    Exited {
        /// The process's name.
        name: String,
        /// How it ended.
        status: ExitStatus,
        /// The end of its stderr.
        stderr_tail: String,
        /// Its logs.
        logs: Box<LogPaths>,
    },
    /// It was not ready within the deadline (it has been killed).
    #[error("{name} was not ready ({ready:?}) within {after:?}{}", tail(.stderr_tail, .logs))]
    NotReady {
        /// The process's name.
        name: String,
        /// What it was waited for.
        ready: Ready,
        /// The deadline.
        after: Duration,
        /// The end of its stderr.
        stderr_tail: String,
        /// Its logs.
        logs: Box<LogPaths>,
    },
    /// Its ready line is not what [`Ready::JsonLine`] expects (it has been killed).
    #[error("{name} printed a bad ready line {line:?}: {why}")]
    BadReadyLine {
        /// The process's name.
        name: String,
        /// The line.
        line: String,
        /// What is wrong with it.
        why: String,
    },
    /// The caller gave up waiting (see [`ProcessBuilder::start_blocking_unless`](super::ProcessBuilder::start_blocking_unless)).
    #[error("gave up waiting for {name} to be ready")]
    GaveUp {
        /// The process's name.
        name: String,
    },
}

fn tail(stderr_tail: &str, logs: &LogPaths) -> String {
    let log = logs.stderr.display();
    if stderr_tail.is_empty() {
        format!(" (stderr, empty: {log})")
    } else {
        format!(
            "; its stderr ({log}) ends with:\n  {}",
            stderr_tail.replace('\n', "\n  ")
        )
    }
}
