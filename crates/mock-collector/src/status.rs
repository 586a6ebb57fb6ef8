//! The status request every collector answers: who it is, how long it has
//! run, the tasks it has done and the resources it uses — so an agent can
//! ask the whole fleet at once with a gather (`ebctl gather
//! control.collector.status`), or one type with `--group <capability>`.
//!
//! A collector joins queue group `<capability>` on [`STATUS_TOPIC`] with a
//! prefetch of 1: a gather reaches every member, a plain request reaches one
//! of them. Status requests are answered on the runtime thread, cheaply
//! (two small `/proc/self` reads), outside the task slots, so a collector
//! busy with tasks still answers; one frozen (`--hang-after`, SIGSTOP) does
//! not, which is what its requester must learn.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use eventbus::{Delivery, QueueSubscription};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::registry::CollectorType;

/// The topic collectors answer status requests on.
pub const STATUS_TOPIC: &str = "control.collector.status";

/// Task counters a collector keeps for its status.
#[derive(Debug, Default)]
pub struct TaskCounters {
    /// Tasks answered with `status: ok` (or acked).
    pub done: AtomicU64,
    /// Tasks answered with `status: error`.
    pub failed: AtomicU64,
    /// Tasks handed back to the queue for lack of memory.
    pub shed: AtomicU64,
    /// Tasks running now.
    pub running: AtomicU64,
}

/// A status reply.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Status {
    /// The collector's client id.
    pub collector_id: String,
    /// Its pid.
    pub collector_pid: u32,
    /// Its capability: `process`, `network` or `filesystem`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Milliseconds since it started.
    pub uptime_ms: u64,
    /// Its task counters.
    pub tasks: TaskStatus,
    /// Its own resource use; `null` where `/proc` is not available.
    pub resources: Option<Resources>,
}

/// Task counts in a status reply.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TaskStatus {
    /// Answered `ok` (or acked).
    pub done: u64,
    /// Answered with an error.
    pub failed: u64,
    /// Handed back for lack of memory.
    pub shed: u64,
    /// Running now.
    pub running: u64,
}

/// A collector's own resource use.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Resources {
    /// Resident set size.
    pub rss_bytes: u64,
    /// CPU time in user mode, in clock ticks.
    pub utime_ticks: u64,
    /// CPU time in kernel mode, in clock ticks.
    pub stime_ticks: u64,
    /// Threads.
    pub threads: u64,
}

/// What a status reply is built from.
#[derive(Debug)]
pub struct StatusSource {
    /// The collector's type.
    pub kind: CollectorType,
    /// Its client id.
    pub collector_id: String,
    /// Its pid.
    pub collector_pid: u32,
    /// When it started.
    pub started: Instant,
}

impl StatusSource {
    /// The status now.
    pub fn status(&self, counters: &TaskCounters) -> Status {
        Status {
            collector_id: self.collector_id.clone(),
            collector_pid: self.collector_pid,
            kind: self.kind.capability().to_owned(),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            tasks: TaskStatus {
                done: counters.done.load(Ordering::Relaxed),
                failed: counters.failed.load(Ordering::Relaxed),
                shed: counters.shed.load(Ordering::Relaxed),
                running: counters.running.load(Ordering::Relaxed),
            },
            resources: own_resources(),
        }
    }

    /// Answers status requests until `stop`, or until the subscription ends.
    pub async fn serve(
        self,
        mut requests: QueueSubscription,
        ctx: std::sync::Arc<crate::handler::TaskContext>,
        stop: CancellationToken,
    ) {
        loop {
            let delivery = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                d = requests.next() => match d {
                    Some(d) => d,
                    None => return,
                },
            };
            self.answer(&delivery, &ctx.counters);
        }
    }

    fn answer(&self, delivery: &Delivery, counters: &TaskCounters) {
        let status = self.status(counters);
        let body = serde_json::to_vec(&status).expect("a status always serializes");
        let sent = if delivery.message().is_request() {
            delivery.reply(body)
        } else {
            delivery.ack()
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "cannot answer a status request");
        }
    }
}

#[cfg(target_os = "linux")]
fn own_resources() -> Option<Resources> {
    let s =
        crate::collect::process::sample(std::path::Path::new("/proc"), std::process::id()).ok()?;
    Some(Resources {
        rss_bytes: s.rss_bytes,
        utime_ticks: s.utime_ticks,
        stime_ticks: s.stime_ticks,
        threads: s.threads,
    })
}

#[cfg(not(target_os = "linux"))]
fn own_resources() -> Option<Resources> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_names_the_collector_and_its_counters() {
        let source = StatusSource {
            kind: CollectorType::Process,
            collector_id: "procmond-1".into(),
            collector_pid: 42,
            started: Instant::now(),
        };
        let counters = TaskCounters::default();
        counters.done.store(3, Ordering::Relaxed);
        counters.failed.store(1, Ordering::Relaxed);
        let status = source.status(&counters);
        assert_eq!(status.kind, "process");
        assert_eq!(
            status.tasks,
            TaskStatus {
                done: 3,
                failed: 1,
                shed: 0,
                running: 0
            }
        );
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["type"], "process");
        assert_eq!(json["collector_id"], "procmond-1");
        #[cfg(target_os = "linux")]
        assert!(
            json["resources"]["rss_bytes"].as_u64().unwrap() > 0,
            "{json}"
        );
    }
}
