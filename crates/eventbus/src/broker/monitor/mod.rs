//! A read-only window into a running broker, for dashboards and exporters.
//!
//! [`Broker::monitor`](super::Broker::monitor) returns a [`Monitor`]: a cheap
//! `Clone` handle whose methods take a snapshot under the router's lock
//! (briefly, never across an await) and return plain owned values
//! (the types below). Calling it turns the recording on: the task ring, per-worker
//! settlement windows and the one-second samples (`router/observe/`), each
//! bounded by [`MonitorConfig`]. A broker nobody asked for a monitor records
//! nothing and pays one branch per hook.
//!
//! The `broker` binary serves these snapshots over HTTP (`--http`); an
//! embedding agent can use them directly:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use eventbus::broker::{Broker, BrokerConfig};
//! let broker = Broker::bind(BrokerConfig::new("/tmp/eventbus-demo/broker.sock"))?;
//! let monitor = broker.monitor();
//! tokio::spawn(broker.run(std::future::pending()));
//! for client in monitor.clients() {
//!     println!("{} ({}): {:.1} msg/s in", client.id, client.kind, client.in_rate);
//! }
//! # Ok(()) }
//! ```

mod types;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub use types::*;

use super::Shared;
use super::router::observe::{MONITOR_EVENTS, Observer};
use crate::proto;

/// How often the monitor samples the broker.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// The most tasks `monitor.tasks` may keep.
pub const MAX_TASKS: usize = 1_000_000;
/// The most seconds `monitor.history_seconds` may keep (a day).
pub const MAX_HISTORY_SECONDS: u32 = 86_400;

/// What the monitor keeps, and the `_sys.stats` announcements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MonitorConfig {
    /// Most tasks the task ring keeps (1 to [`MAX_TASKS`]); the oldest is
    /// forgotten to make room.
    pub tasks: usize,
    /// Seconds of one-second samples kept (1 to [`MAX_HISTORY_SECONDS`]).
    pub history_seconds: u32,
    /// Publish a JSON summary on `_sys.stats` this often, in milliseconds;
    /// 0 (the default) publishes nothing.
    pub stats_interval_ms: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            tasks: 1024,
            history_seconds: 900,
            stats_interval_ms: 0,
        }
    }
}

/// A read-only view of a running broker. Cheap to clone; every method is
/// synchronous and holds the router's lock only while it copies.
#[derive(Debug, Clone)]
pub struct Monitor {
    shared: Arc<Shared>,
    events: broadcast::Sender<MonitorEvent>,
}

impl Monitor {
    /// Attaches the recording to the broker's router (once) and returns a handle.
    pub(super) fn attach(shared: Arc<Shared>) -> Self {
        let config = shared.config.monitor.clone();
        let events = shared.router.with(|router| {
            if let Some(events) = router.observer_events() {
                return events;
            }
            let (events, _) = broadcast::channel(MONITOR_EVENTS);
            router.attach_observer(Observer::new(&config, events.clone()));
            events
        });
        Self { shared, events }
    }

    /// Ready, degraded (with reasons) or draining.
    pub fn health(&self) -> Health {
        let sockets = self.shared.sockets.load(Ordering::Relaxed);
        self.shared.router.with(|r| r.monitor_health(sockets))
    }

    /// What `Client::stats` returns: every counter, untrimmed.
    pub fn stats(&self) -> proto::StatsResponse {
        self.shared.router.with(|r| r.stats(0, usize::MAX))
    }

    /// The headline numbers.
    pub fn overview(&self) -> Overview {
        self.shared
            .router
            .with(|r| r.monitor_overview(Instant::now()))
    }

    /// Every connected client, by id.
    pub fn clients(&self) -> Vec<ClientInfo> {
        self.shared.router.with(|r| r.monitor_clients())
    }

    /// The last status of each bridge (`_sys.bridge.<name>`, at most 32),
    /// by name.
    pub fn bridges(&self) -> Vec<BridgeInfo> {
        self.shared.router.with(|r| r.monitor_bridges())
    }

    /// Every queue group, by filter then name.
    pub fn queues(&self) -> Vec<QueueInfo> {
        self.shared.router.with(|r| r.monitor_queues())
    }

    /// Every subscription, by client id then subscription id.
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        self.shared.router.with(|r| r.monitor_subscriptions())
    }

    /// Every topic published on (at most 4096 are tracked), by name.
    pub fn topics(&self) -> Vec<TopicInfo> {
        self.shared.router.with(|r| r.monitor_topics())
    }

    /// Every client that takes deliveries, with its recent performance.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.shared
            .router
            .with(|r| r.monitor_workers(Instant::now()))
    }

    /// Recent tasks, newest first, as `query` filters them.
    pub fn tasks(&self, query: &TaskQuery) -> TaskPage {
        self.shared.router.with(|r| r.monitor_tasks(query))
    }

    /// The one-second samples of the last `window`, oldest first.
    pub fn history(&self, window: Duration) -> Vec<Sample> {
        self.shared.router.with(|r| r.monitor_history(window))
    }

    /// The longest window [`history`](Self::history) can return.
    pub fn history_capacity(&self) -> Duration {
        Duration::from_secs(u64::from(self.shared.config.monitor.history_seconds))
    }

    /// Events as they happen: connects, disconnects, slow consumers, dead
    /// letters, and each second's sample. A receiver that falls more than
    /// [`EVENT_CAPACITY`](Self::EVENT_CAPACITY) behind loses the oldest and
    /// is told how many (`RecvError::Lagged`).
    pub fn events(&self) -> broadcast::Receiver<MonitorEvent> {
        self.events.subscribe()
    }

    /// How many events a receiver may fall behind by.
    pub const EVENT_CAPACITY: usize = MONITOR_EVENTS;
}

/// Samples the broker every [`SAMPLE_INTERVAL`] while a monitor is
/// attached, and publishes `_sys.stats` every `monitor.stats_interval_ms`
/// when that is set; runs until the broker stops it.
pub(super) async fn sample(shared: Arc<Shared>) {
    let observed = shared.router.with(|r| r.observed());
    let stats_every = match shared.config.monitor.stats_interval_ms {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    if !observed && stats_every.is_none() {
        return;
    }
    let start = tokio::time::Instant::now();
    let mut samples = tokio::time::interval_at(start + SAMPLE_INTERVAL, SAMPLE_INTERVAL);
    samples.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let period = stats_every.unwrap_or(Duration::MAX / 4);
    let mut announce = tokio::time::interval_at(start + period, period);
    announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = samples.tick(), if observed => {
                // Read outside the lock: procfs, no disk.
                let rss = super::rss_bytes();
                let now = Instant::now();
                shared.router.with(|r| r.monitor_sample(now, rss));
            }
            _ = announce.tick(), if stats_every.is_some() => {
                let rss = super::rss_bytes();
                shared
                    .router
                    .with(|r| r.publish_sys_stats(Instant::now(), rss));
            }
        }
    }
}
