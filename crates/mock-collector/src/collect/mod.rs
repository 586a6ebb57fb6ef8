//! The real work: what each collector type reads from the system.
//!
//! Every function here blocks (it reads `/proc` or walks a directory); async
//! callers go through [`run_task`] and [`run_snapshot`], which move the work to
//! tokio's blocking pool so the runtime keeps serving heartbeats and deliveries.
//! The `/proc` readers exist on Linux only; elsewhere process and network work
//! fails with [`CollectError::Unsupported`]. The filesystem walk is portable.
//!
//! tokio panics when the OS refuses it a new blocking thread and none is idle
//! (under memory pressure a thread's stack may not fit): that panic is caught
//! here and becomes [`CollectError::NoWorker`], so the caller can shed the task.
//! The default panic hook still prints the panic on stderr; the process goes on.

pub mod filesystem;
pub mod fnv;
#[cfg(target_os = "linux")]
pub mod network;
#[cfg(target_os = "linux")]
pub mod process;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::registry::CollectorType;
use crate::scratch::Scratch;
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
    /// No blocking thread could be started for the work (the OS refused one,
    /// typically for lack of memory); the work never began.
    #[error("no worker thread for the task: {0}")]
    NoWorker(String),
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

/// [`collect`] on the blocking pool, holding `scratch` (made resident first)
/// until the work is done.
pub async fn run_task(task: Task, scratch: Scratch) -> Result<serde_json::Value, CollectError> {
    on_blocking_pool((task, scratch), |(task, mut scratch)| {
        scratch.touch();
        let data = collect(&task);
        drop(scratch);
        data
    })
    .await
}

/// [`snapshot`] on the blocking pool.
pub async fn run_snapshot(
    kind: CollectorType,
    watch_path: PathBuf,
) -> Result<serde_json::Value, CollectError> {
    on_blocking_pool((kind, watch_path), |(kind, path)| snapshot(kind, &path)).await
}

/// Runs `work(input)` on the blocking pool.
async fn on_blocking_pool<T: Send + 'static>(
    input: T,
    work: impl FnOnce(T) -> Result<serde_json::Value, CollectError> + Send + 'static,
) -> Result<serde_json::Value, CollectError> {
    // When no thread can be started, tokio has queued the work already before
    // it panics, and would run it whenever a thread next starts. So the input
    // goes through `held`, which only this caller owns: when it gives up, the
    // input (a task's scratch memory) is freed at once, and the late work finds
    // nothing to do.
    let held = Arc::new(Mutex::new(Some(input)));
    let handed = Arc::downgrade(&held);
    let spawned = std::panic::catch_unwind(AssertUnwindSafe(|| {
        tokio::task::spawn_blocking(move || {
            let input = handed
                .upgrade()
                .and_then(|held| held.lock().ok().and_then(|mut input| input.take()));
            match input {
                Some(input) => work(input),
                None => Err(CollectError::NoWorker("abandoned".to_owned())),
            }
        })
    }));
    let result = match spawned {
        Ok(worker) => worker
            .await
            .unwrap_or_else(|e| Err(CollectError::Worker(e.to_string()))),
        Err(panic) => Err(CollectError::NoWorker(panic_message(panic.as_ref()))),
    };
    drop(held);
    result
}

/// The text of a caught panic, when it has one.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panicked".to_owned()
    }
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
