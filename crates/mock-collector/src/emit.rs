//! Periodic events (`--emit-interval-ms`): a snapshot published on
//! `events.<capability>.<kind>` every interval.
//!
//! One snapshot at a time: the next tick waits until the previous snapshot was
//! collected and published, so a slow walk delays events instead of piling up
//! blocking work.

use std::path::PathBuf;
use std::time::Duration;

use eventbus::{Client, Topic};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::collect;
use crate::registry::CollectorType;
use crate::task::now_us;

/// The payload of one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event<'a> {
    /// The emitting collector's client id.
    pub collector_id: &'a str,
    /// Its process id.
    pub collector_pid: u32,
    /// The event kind, the last topic segment.
    pub kind: &'a str,
    /// When the snapshot was taken, in microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The snapshot.
    pub data: serde_json::Value,
}

/// What the emitter needs to know.
#[derive(Debug, Clone)]
pub struct Emitter {
    /// The connection to publish on.
    pub client: Client,
    /// The collector's type, which decides the snapshot and the topic.
    pub kind: CollectorType,
    /// Time between snapshots.
    pub interval: Duration,
    /// The directory a filesystem collector reports on.
    pub watch_path: PathBuf,
}

impl Emitter {
    /// Publishes a snapshot every interval until `stop` is cancelled or the
    /// connection closes.
    pub async fn run(self, stop: CancellationToken) {
        let kind = self.kind.event_kinds()[0];
        let topic = match Topic::new(self.kind.event_topic(kind)) {
            Ok(topic) => topic,
            Err(e) => {
                tracing::error!(error = %e, "invalid event topic; not emitting");
                return;
            }
        };
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.client.closed() => return,
                _ = tick.tick() => {}
            }
            let data = match collect::run_snapshot(self.kind, self.watch_path.clone()).await {
                Ok(data) => data,
                Err(e) => {
                    tracing::warn!(error = %e, topic = topic.as_str(), "snapshot failed");
                    continue;
                }
            };
            let event = Event {
                collector_id: self.client.client_id().as_str(),
                collector_pid: std::process::id(),
                kind,
                timestamp_us: now_us(),
                data,
            };
            let payload = serde_json::to_vec(&event).expect("an event always serializes");
            if let Err(e) = self.client.publish(&topic, payload) {
                tracing::warn!(error = %e, topic = topic.as_str(), "cannot publish event");
            }
        }
    }
}
