//! The collectors' task protocol as the harness sees it from outside: which
//! kinds exist, the topic each takes tasks on, a cheap payload for each, and
//! the JSON reply (see `crates/mock-collector/README.md`).
//!
//! Defined here rather than imported from `mock-collector`, so the scenarios
//! check the documented format and not the collector's own types.

use std::fmt;

use eventbus::{Message, Topic};
use eventbus_harness::Event;
use serde::Deserialize;

/// A collector type, as passed to `mock-collector --type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CollectorKind {
    /// Samples processes from `/proc` (`procmond`).
    Process,
    /// Summarises sockets from `/proc/net` (`netmond`).
    Network,
    /// Walks a directory (`fsmond`).
    Filesystem,
}

impl CollectorKind {
    /// Every kind.
    pub const ALL: [CollectorKind; 3] = [Self::Process, Self::Network, Self::Filesystem];

    /// The capability, which is also the queue group name: `process`, ...
    pub fn capability(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Network => "network",
            Self::Filesystem => "filesystem",
        }
    }

    /// The alias that prefixes default client ids: `procmond`, ...
    pub fn alias(self) -> &'static str {
        match self {
            Self::Process => "procmond",
            Self::Network => "netmond",
            Self::Filesystem => "fsmond",
        }
    }

    /// The default client id of instance `n`: `procmond-1`, ...
    pub fn default_id(self, instance: u32) -> String {
        format!("{}-{instance}", self.alias())
    }

    /// The topic tasks of this kind are sent on: `control.collector.task.<capability>`.
    pub fn task_topic(self) -> Topic {
        Topic::new(format!("control.collector.task.{}", self.capability()))
            .expect("task topics are valid")
    }

    /// A cheap task payload: the test process itself for `process`, the socket
    /// tables for `network`, one level of the collector's working directory (the
    /// cluster directory) for `filesystem`.
    pub fn payload(self, task_id: &str) -> String {
        self.payload_value(task_id).to_string()
    }

    /// [`payload`](Self::payload) asking for `scratch_bytes` of working memory,
    /// which the collector reserves (or sheds the task when it cannot) and
    /// holds while the task runs.
    pub fn payload_with_scratch(self, task_id: &str, scratch_bytes: u64) -> String {
        let mut value = self.payload_value(task_id);
        value["scratch_bytes"] = scratch_bytes.into();
        value.to_string()
    }

    fn payload_value(self, task_id: &str) -> serde_json::Value {
        match self {
            Self::Process => serde_json::json!({"task_id": task_id, "pid": std::process::id()}),
            Self::Network => serde_json::json!({"task_id": task_id}),
            Self::Filesystem => serde_json::json!({
                "task_id": task_id, "path": ".", "max_depth": 1, "max_entries": 100
            }),
        }
    }
}

impl fmt::Display for CollectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.capability())
    }
}

/// When a task was queued, started and finished, in microseconds since the
/// Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Timings {
    /// When the broker accepted the task.
    pub queued_us: u64,
    /// When the collector started on it.
    pub started_us: u64,
    /// When the collector finished it.
    pub finished_us: u64,
}

/// A collector's reply to a task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskReply {
    /// The task id echoed by the collector (`None` if it could not read one).
    pub task_id: Option<String>,
    /// The collector's own id, from the payload.
    pub collector_id: String,
    /// The collector's pid, from the payload.
    pub collector_pid: u32,
    /// `ok` or `error`.
    pub status: String,
    /// Why the task failed, when `status` is `error`.
    pub error: Option<String>,
    /// The task's timings.
    pub timings: Timings,
    /// The responder's client id, stamped by the broker on the reply.
    pub source: String,
}

impl TaskReply {
    /// What this reply to the request for `task_id` says happened, for
    /// [`History::record_all`](eventbus_harness::History::record_all):
    /// accepted, delivered to its collector, acked; a reply for another task,
    /// or one whose payload and broker-stamped source disagree, is unexpected;
    /// an error reply is an error.
    pub fn events(&self, task_id: &str) -> Vec<Event> {
        let mut events = vec![Event::Accepted];
        if self.task_id.as_deref() != Some(task_id) {
            let why = format!("reply for task {:?}", self.task_id);
            events.push(Event::Unexpected(why));
        }
        if self.source != self.collector_id {
            let why = format!(
                "reply from {} claims to be from {}",
                self.source, self.collector_id
            );
            events.push(Event::Unexpected(why));
        }
        events.push(Event::Delivered {
            collector: self.collector_id.clone(),
            started_us: self.timings.started_us,
        });
        if let Some(error) = &self.error {
            events.push(Event::Error(format!("error reply: {error}")));
        }
        events.push(Event::Acked);
        events
    }
}

/// The reply payload, as documented.
#[derive(Debug, Deserialize)]
struct Payload {
    task_id: Option<String>,
    collector_id: String,
    collector_pid: u32,
    status: String,
    #[serde(default)]
    error: Option<String>,
    timings: Timings,
}

/// A reply whose payload is not the documented JSON.
#[derive(Debug, thiserror::Error)]
#[error("malformed task reply from {source_id}: {error}")]
pub struct MalformedReply {
    /// The responder.
    pub source_id: String,
    /// What serde found wrong.
    pub error: serde_json::Error,
}

impl TaskReply {
    /// Reads a reply message.
    pub fn parse(message: &Message) -> Result<Self, MalformedReply> {
        let p: Payload =
            serde_json::from_slice(message.payload()).map_err(|error| MalformedReply {
                source_id: message.source().to_owned(),
                error,
            })?;
        Ok(Self {
            task_id: p.task_id,
            collector_id: p.collector_id,
            collector_pid: p.collector_pid,
            status: p.status,
            error: p.error,
            timings: p.timings,
            source: message.source().to_owned(),
        })
    }

    /// Whether the task succeeded.
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// Task ids `<prefix>-0`, `<prefix>-1`, ... `<prefix>-<n-1>`.
pub fn task_ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventbus_harness::{History, Order};

    fn reply(task_id: &str, collector: &str, source: &str) -> TaskReply {
        TaskReply {
            task_id: Some(task_id.to_owned()),
            collector_id: collector.to_owned(),
            collector_pid: 1,
            status: "ok".to_owned(),
            error: None,
            timings: Timings {
                queued_us: 1,
                started_us: 2,
                finished_us: 3,
            },
            source: source.to_owned(),
        }
    }

    #[test]
    fn a_reply_is_recorded_as_accepted_delivered_and_acked_and_checked() {
        let h = History::new();
        h.published("t1");
        h.record_all("t1", reply("t1", "procmond-1", "procmond-1").events("t1"));
        assert!(h.check(Order::Any).is_clean());

        h.published("t2");
        h.record_all("t2", reply("t9", "procmond-1", "netmond-1").events("t2"));
        let v = h.check(Order::Any);
        assert_eq!(v.unexpected.len(), 2, "{v}");
        assert!(v.lost.is_empty());
    }

    #[test]
    fn kinds_name_their_topics_and_ids() {
        assert_eq!(
            CollectorKind::Network.task_topic().as_str(),
            "control.collector.task.network"
        );
        assert_eq!(CollectorKind::Filesystem.default_id(2), "fsmond-2");
        for kind in CollectorKind::ALL {
            let payload: serde_json::Value = serde_json::from_str(&kind.payload("t-1")).unwrap();
            assert_eq!(payload["task_id"], "t-1");
            assert!(payload.get("scratch_bytes").is_none());
            let scratch = kind.payload_with_scratch("t-2", 1 << 20);
            let scratch: serde_json::Value = serde_json::from_str(&scratch).unwrap();
            assert_eq!(
                (
                    scratch["task_id"].as_str(),
                    scratch["scratch_bytes"].as_u64()
                ),
                (Some("t-2"), Some(1 << 20))
            );
        }
    }
}
