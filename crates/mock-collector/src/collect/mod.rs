//! The real work: what each collector type reads from the system.
//!
//! Every function here blocks (it reads `/proc` or walks a directory); async
//! callers go through [`run_task`] and [`run_snapshot`], which move the work to
//! tokio's blocking pool so the runtime keeps serving heartbeats and deliveries.
//! The `/proc` readers exist on Linux only; elsewhere process and network work
//! fails with [`CollectError::Unsupported`]. The filesystem walk is portable.

pub mod filesystem;
pub mod fnv;
#[cfg(target_os = "linux")]
pub mod network;
#[cfg(target_os = "linux")]
pub mod process;

use std::path::{Path, PathBuf};

use crate::registry::CollectorType;
use crate::task::{DEFAULT_MAX_DEPTH, DEFAULT_MAX_ENTRIES, DEFAULT_TOP, Task};
use filesystem::WalkLimits;

/// Why collecting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// The requested process does not exist (or exited while being read).
    #[error("no such process: {pid}")]
    NoSuchProcess {
        /// The pid asked for.
        pid: u32,
    },
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// What was being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A kernel file did not have the expected layout.
    #[error("cannot parse {}: {what}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// A filesystem task named something other than a directory.
    #[error("not a directory: {}", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// This collector type needs Linux's `/proc`.
    #[error("unsupported on this platform")]
    Unsupported,
    /// The blocking worker panicked or was cancelled.
    #[error("collector worker failed: {0}")]
    Worker(String),
}

/// Does the work of one task and returns its `data` object.
pub fn collect(task: &Task) -> Result<serde_json::Value, CollectError> {
    match task {
        Task::Process(t) => match t.pid {
            Some(pid) => process_sample(pid),
            None => process_overview(t.top),
        },
        Task::Network(_) => network_snapshot(),
        Task::Filesystem(t) => to_value(filesystem::walk(
            &t.path,
            WalkLimits {
                max_depth: t.max_depth,
                max_entries: t.max_entries,
                hash_small_files: t.hash_small_files,
            },
        )?),
    }
}

/// The periodic snapshot a collector of type `kind` emits: process overview
/// (top 5 by RSS), socket counts, or usage of `watch_path`.
pub fn snapshot(kind: CollectorType, watch_path: &Path) -> Result<serde_json::Value, CollectError> {
    match kind {
        CollectorType::Process => process_overview(DEFAULT_TOP),
        CollectorType::Network => network_snapshot(),
        CollectorType::Filesystem => to_value(filesystem::walk(
            watch_path,
            WalkLimits {
                max_depth: DEFAULT_MAX_DEPTH,
                max_entries: DEFAULT_MAX_ENTRIES,
                hash_small_files: false,
            },
        )?),
    }
}

/// [`collect`] on the blocking pool.
pub async fn run_task(task: Task) -> Result<serde_json::Value, CollectError> {
    on_blocking_pool(move || collect(&task)).await
}

/// [`snapshot`] on the blocking pool.
pub async fn run_snapshot(
    kind: CollectorType,
    watch_path: PathBuf,
) -> Result<serde_json::Value, CollectError> {
    on_blocking_pool(move || snapshot(kind, &watch_path)).await
}

async fn on_blocking_pool(
    work: impl FnOnce() -> Result<serde_json::Value, CollectError> + Send + 'static,
) -> Result<serde_json::Value, CollectError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(CollectError::Worker(e.to_string())))
}

fn to_value(data: impl serde::Serialize) -> Result<serde_json::Value, CollectError> {
    serde_json::to_value(data).map_err(|e| CollectError::Worker(e.to_string()))
}

#[cfg(target_os = "linux")]
fn process_sample(pid: u32) -> Result<serde_json::Value, CollectError> {
    to_value(process::sample(Path::new("/proc"), pid)?)
}

#[cfg(target_os = "linux")]
fn process_overview(top: usize) -> Result<serde_json::Value, CollectError> {
    to_value(process::overview(Path::new("/proc"), top)?)
}

#[cfg(target_os = "linux")]
fn network_snapshot() -> Result<serde_json::Value, CollectError> {
    to_value(network::snapshot(Path::new("/proc/net"))?)
}

#[cfg(not(target_os = "linux"))]
fn process_sample(_pid: u32) -> Result<serde_json::Value, CollectError> {
    Err(CollectError::Unsupported)
}

#[cfg(not(target_os = "linux"))]
fn process_overview(_top: usize) -> Result<serde_json::Value, CollectError> {
    Err(CollectError::Unsupported)
}

#[cfg(not(target_os = "linux"))]
fn network_snapshot() -> Result<serde_json::Value, CollectError> {
    Err(CollectError::Unsupported)
}
