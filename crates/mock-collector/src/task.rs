//! Task payloads as they arrive, and the reply sent back.
//!
//! Payloads are strict JSON: unknown fields are refused, so a typo in a field name
//! becomes an error reply instead of a silently ignored option.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::registry::CollectorType;

/// Processes listed by an all-processes task when `top` is not given.
pub const DEFAULT_TOP: usize = 5;
/// Largest `top` a process task may ask for.
pub const MAX_TOP: usize = 1000;
/// Walk depth of a filesystem task when `max_depth` is not given.
pub const DEFAULT_MAX_DEPTH: u32 = 4;
/// Largest `max_depth` a filesystem task may ask for.
pub const MAX_DEPTH: u32 = 64;
/// Entries a filesystem task visits when `max_entries` is not given.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
/// Largest `max_entries` a filesystem task may ask for.
pub const MAX_ENTRIES: u64 = 1_000_000;
/// Largest `scratch_bytes` any task may ask for: 256 MiB.
pub const MAX_SCRATCH_BYTES: u64 = 256 << 20;

/// A process task: one pid, or (without `pid`) an overview of all processes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessTask {
    /// The caller's id for the task, echoed in the reply.
    pub task_id: String,
    /// The process to sample; `None` for all processes.
    #[serde(default)]
    pub pid: Option<u32>,
    /// How many processes the overview lists, largest RSS first.
    #[serde(default = "default_top")]
    pub top: usize,
    /// Working memory the task holds while it runs (see [`crate::scratch`]).
    #[serde(default)]
    pub scratch_bytes: u64,
}

/// A network task: sockets of the collector's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkTask {
    /// The caller's id for the task, echoed in the reply.
    pub task_id: String,
    /// Working memory the task holds while it runs (see [`crate::scratch`]).
    #[serde(default)]
    pub scratch_bytes: u64,
}

/// A filesystem task: a bounded walk of `path`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemTask {
    /// The caller's id for the task, echoed in the reply.
    pub task_id: String,
    /// The directory to walk (relative paths are taken from the collector's cwd).
    pub path: PathBuf,
    /// Deepest level descended into; entries of `path` itself are level 1.
    #[serde(default = "default_max_depth")]
    pub max_depth: u32,
    /// Most entries visited before the walk stops.
    #[serde(default = "default_max_entries")]
    pub max_entries: u64,
    /// Whether to hash the content of files of at most 64 KiB.
    #[serde(default)]
    pub hash_small_files: bool,
    /// Working memory the task holds while it runs (see [`crate::scratch`]).
    #[serde(default)]
    pub scratch_bytes: u64,
}

fn default_top() -> usize {
    DEFAULT_TOP
}

fn default_max_depth() -> u32 {
    DEFAULT_MAX_DEPTH
}

fn default_max_entries() -> u64 {
    DEFAULT_MAX_ENTRIES
}

/// A parsed task for one collector type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// See [`ProcessTask`].
    Process(ProcessTask),
    /// See [`NetworkTask`].
    Network(NetworkTask),
    /// See [`FilesystemTask`].
    Filesystem(FilesystemTask),
}

/// Why a task payload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// Not JSON, or JSON of the wrong shape for this collector type.
    #[error("bad {kind} task payload: {source}")]
    Payload {
        /// The collector type the payload was meant for.
        kind: CollectorType,
        /// What serde found wrong.
        source: serde_json::Error,
    },
    /// A field is outside its allowed range.
    #[error("bad {kind} task payload: {field} is {value}; the limit is {max}")]
    OutOfRange {
        /// The collector type the payload was meant for.
        kind: CollectorType,
        /// The field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The largest value allowed.
        max: u64,
    },
}

impl Task {
    /// Parses and checks a task payload meant for a collector of type `kind`.
    pub fn parse(kind: CollectorType, payload: &[u8]) -> Result<Self, TaskError> {
        let bad = |source| TaskError::Payload { kind, source };
        let range = |field, value: u64, max: u64| {
            if value > max {
                Err(TaskError::OutOfRange {
                    kind,
                    field,
                    value,
                    max,
                })
            } else {
                Ok(())
            }
        };
        let task = match kind {
            CollectorType::Process => {
                let t: ProcessTask = serde_json::from_slice(payload).map_err(bad)?;
                range("top", t.top as u64, MAX_TOP as u64)?;
                Self::Process(t)
            }
            CollectorType::Network => Self::Network(serde_json::from_slice(payload).map_err(bad)?),
            CollectorType::Filesystem => {
                let t: FilesystemTask = serde_json::from_slice(payload).map_err(bad)?;
                range("max_depth", u64::from(t.max_depth), u64::from(MAX_DEPTH))?;
                range("max_entries", t.max_entries, MAX_ENTRIES)?;
                Self::Filesystem(t)
            }
        };
        range("scratch_bytes", task.scratch_bytes(), MAX_SCRATCH_BYTES)?;
        Ok(task)
    }

    /// The caller's id for the task.
    pub fn task_id(&self) -> &str {
        match self {
            Self::Process(t) => &t.task_id,
            Self::Network(t) => &t.task_id,
            Self::Filesystem(t) => &t.task_id,
        }
    }

    /// The working memory the task asks for, in bytes (0 when not given).
    pub fn scratch_bytes(&self) -> u64 {
        match self {
            Self::Process(t) => t.scratch_bytes,
            Self::Network(t) => t.scratch_bytes,
            Self::Filesystem(t) => t.scratch_bytes,
        }
    }
}

/// The `task_id` of a payload that failed to parse, if it has a string one, so
/// that even an error reply can be matched to its task.
pub fn salvage_task_id(payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    value.get("task_id")?.as_str().map(str::to_owned)
}

/// Whether a task succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `data` holds the result.
    Ok,
    /// `error` says what went wrong; `data` is null.
    Error,
}

/// When the task was queued, started and finished, in microseconds since the
/// Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// When the broker accepted the task (the message's timestamp).
    pub queued_us: u64,
    /// When this collector started on it.
    pub started_us: u64,
    /// When this collector finished it, just before replying.
    pub finished_us: u64,
}

/// The reply to a task, sent as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The task's id; null when the payload had none.
    pub task_id: Option<String>,
    /// The client id of the collector that did the work.
    pub collector_id: String,
    /// Its process id.
    pub collector_pid: u32,
    /// Whether the task succeeded.
    pub status: Status,
    /// What went wrong, when `status` is `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The collected data (an object), or null on error.
    pub data: serde_json::Value,
    /// Timestamps of the task's life.
    pub timings: Timings,
}

impl Reply {
    /// The reply as JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a reply always serializes")
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_task_defaults_to_all_processes_top_five() {
        let t = Task::parse(CollectorType::Process, br#"{"task_id":"t1"}"#).unwrap();
        assert_eq!(
            t,
            Task::Process(ProcessTask {
                task_id: "t1".into(),
                pid: None,
                top: DEFAULT_TOP,
                scratch_bytes: 0,
            })
        );
        let t = Task::parse(CollectorType::Process, br#"{"task_id":"t2","pid":123}"#).unwrap();
        assert!(matches!(
            t,
            Task::Process(ProcessTask { pid: Some(123), .. })
        ));
    }

    #[test]
    fn filesystem_task_takes_defaults_and_refuses_out_of_range_bounds() {
        let t = Task::parse(
            CollectorType::Filesystem,
            br#"{"task_id":"f","path":"/tmp"}"#,
        )
        .unwrap();
        let Task::Filesystem(f) = t else {
            panic!("wrong type")
        };
        assert_eq!(
            (f.max_depth, f.max_entries, f.hash_small_files),
            (4, 10_000, false)
        );
        let err = Task::parse(
            CollectorType::Filesystem,
            br#"{"task_id":"f","path":"/","max_depth":1000}"#,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                TaskError::OutOfRange {
                    field: "max_depth",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn every_type_takes_scratch_bytes_up_to_the_limit() {
        let max = MAX_SCRATCH_BYTES;
        for (kind, mut base) in [
            (
                CollectorType::Process,
                serde_json::json!({"task_id": "t", "pid": 1}),
            ),
            (CollectorType::Network, serde_json::json!({"task_id": "t"})),
            (
                CollectorType::Filesystem,
                serde_json::json!({"task_id": "t", "path": "/tmp"}),
            ),
        ] {
            assert_eq!(
                Task::parse(kind, base.to_string().as_bytes())
                    .unwrap()
                    .scratch_bytes(),
                0
            );
            base["scratch_bytes"] = max.into();
            let ok = Task::parse(kind, base.to_string().as_bytes()).unwrap();
            assert_eq!(ok.scratch_bytes(), max, "{kind}");
            base["scratch_bytes"] = (max + 1).into();
            let err = Task::parse(kind, base.to_string().as_bytes()).unwrap_err();
            assert!(
                matches!(
                    err,
                    TaskError::OutOfRange { field: "scratch_bytes", value, max: limit, .. }
                        if value == max + 1 && limit == max
                ),
                "{kind}: {err}"
            );
        }
    }

    #[test]
    fn bad_payloads_are_errors_and_keep_their_task_id_when_possible() {
        for payload in [
            &b"not json"[..],
            br#"{"pid":1}"#,
            br#"{"task_id":7}"#,
            br#"{"task_id":"t","pid":"x"}"#,
            br#"{"task_id":"t","bogus":1}"#,
        ] {
            assert!(Task::parse(CollectorType::Process, payload).is_err());
        }
        assert!(Task::parse(CollectorType::Filesystem, br#"{"task_id":"t"}"#).is_err());
        assert_eq!(
            salvage_task_id(br#"{"task_id":"t","bogus":1}"#).as_deref(),
            Some("t")
        );
        assert_eq!(salvage_task_id(b"not json"), None);
    }

    #[test]
    fn reply_serializes_with_lowercase_status_and_no_error_when_ok() {
        let reply = Reply {
            task_id: Some("t".into()),
            collector_id: "procmond-1".into(),
            collector_pid: 42,
            status: Status::Ok,
            error: None,
            data: serde_json::json!({"count": 1}),
            timings: Timings {
                queued_us: 1,
                started_us: 2,
                finished_us: 3,
            },
        };
        let v: serde_json::Value = serde_json::from_slice(&reply.to_bytes()).unwrap();
        assert_eq!(v["status"], "ok");
        assert!(v.get("error").is_none());
        assert_eq!(v["timings"]["finished_us"], 3);
    }
}
