//! What the router records for the monitor (`broker/monitor/`), when one is
//! attached: the task ring, per-worker settlements, one-second samples, and
//! events for live subscribers.
//!
//! Off (no [`Observer`]), every hook below is one branch on `None`: the
//! routing paths pay nothing else. On, each hook is a bounded amount of
//! work on bounded state: [`TaskRing`] (`monitor.tasks` records),
//! [`Workers`] ([`LATENCY_SAMPLES`](workers::LATENCY_SAMPLES) per connected
//! worker), [`History`] (`monitor.history_seconds` samples) and a broadcast
//! channel of [`MONITOR_EVENTS`] events, whose slow receivers lose the
//! oldest (tokio's `broadcast` policy; they are told how many).
//!
//! The hooks are called from the router's transitions, one call each:
//! registration and disconnect (`lifecycle.rs`), a slow consumer, enqueue
//! and dispatch (`publish.rs`), settle, cancel, dead letter and ack timeout
//! (`settle.rs`), and a member leaving with deliveries (`subscribe.rs`).

mod history;
mod snapshot;
mod tasks;
mod workers;

use std::time::Instant;

use tokio::sync::broadcast;

use super::Map;
use super::Router;
use super::in_flight::InFlight;
use crate::broker::ids::{ConnId, DeliveryId, GroupId, MessageId};
use crate::broker::monitor::{AttemptEnd, MonitorConfig, MonitorEvent, TaskOutcome};
use crate::broker::queue::Queued;
use crate::broker::refusal::DisconnectReason;
use crate::codec::raw::Stamped;
use crate::names::ClientId;
use crate::topic::Topic;

pub(crate) use history::History;
use tasks::{NewTask, TaskRing};
use workers::Workers;

/// Events a live subscriber may fall behind by before it loses the oldest.
pub(crate) const MONITOR_EVENTS: usize = 1024;

/// The monitor's state inside the router.
#[derive(Debug)]
pub(crate) struct Observer {
    tasks: TaskRing,
    workers: Workers,
    history: History,
    events: broadcast::Sender<MonitorEvent>,
    /// When each connection registered (wall clock, ms).
    connected_at: Map<ConnId, u64>,
    /// Acknowledged deliveries, and dead letters, since the monitor started.
    acked: u64,
    dead_lettered: u64,
}

impl Observer {
    pub fn new(config: &MonitorConfig, events: broadcast::Sender<MonitorEvent>) -> Self {
        Self {
            tasks: TaskRing::new(config.tasks),
            workers: Workers::default(),
            history: History::new(config.history_seconds as usize),
            events,
            connected_at: Map::default(),
            acked: 0,
            dead_lettered: 0,
        }
    }

    fn emit(&self, event: MonitorEvent) {
        // No subscriber is fine: nobody is watching.
        let _ = self.events.send(event);
    }

    /// Ends the open delivery of task `key` with `end`, feeding the worker
    /// statistics.
    fn end_delivery(&mut self, key: tasks::TaskKey, end: AttemptEnd, now: Instant) {
        if let Some(delivery) = self.tasks.open_delivery(key) {
            self.end_delivery_id(delivery, end, now);
        }
    }

    fn end_delivery_id(&mut self, delivery: DeliveryId, end: AttemptEnd, now: Instant) {
        if let Some(ended) = self.tasks.delivery_ended(delivery, end, now) {
            self.workers.record(now, &ended);
        }
    }
}

fn wall_ms(wall_us: u64) -> u64 {
    wall_us / 1000
}

/// The hooks. Each is one call at its transition, and does nothing without
/// an observer.
impl Router {
    /// Attaches an observer (the first [`Monitor`](crate::broker::monitor::Monitor)).
    pub(crate) fn attach_observer(&mut self, observer: Observer) {
        let now = self.clock.wall_us;
        let mut observer = observer;
        let t = self.totals;
        observer
            .history
            .start(self.clock.now, t.published, t.delivered, t.dropped);
        for (id, _) in self.conns.iter() {
            observer.connected_at.insert(id, wall_ms(now));
        }
        self.observer = Some(Box::new(observer));
    }

    /// The attached monitor's event channel, if one is attached.
    pub(crate) fn observer_events(&self) -> Option<broadcast::Sender<MonitorEvent>> {
        self.observer.as_deref().map(|o| o.events.clone())
    }

    /// Whether a monitor is attached.
    pub(crate) fn observed(&self) -> bool {
        self.observer.is_some()
    }

    #[inline]
    pub(super) fn observe_connected(&mut self, conn: ConnId) {
        let Some(o) = self.observer.as_deref_mut() else {
            return;
        };
        let at_ms = wall_ms(self.clock.wall_us);
        o.connected_at.insert(conn, at_ms);
        if let Some(client) = snapshot::client_info(self, conn) {
            self.observer
                .as_deref()
                .expect("attached")
                .emit(MonitorEvent::Connected { at_ms, client });
        }
    }

    #[inline]
    pub(super) fn observe_disconnected(&mut self, conn: ConnId, reason: DisconnectReason) {
        let Some(o) = self.observer.as_deref_mut() else {
            return;
        };
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let now = self.clock.now;
        // Direct deliveries it still held: their tasks end here (a capability
        // group that takes one over records it as a new task).
        for key in o.tasks.open_of(&c.client_id) {
            o.end_delivery(key, AttemptEnd::HolderLeft, now);
            if key.1.is_none() {
                let why = format!("holder left: {reason}");
                o.tasks.finished(key, TaskOutcome::Failed, Some(&why), now);
            }
        }
        o.workers.remove(&c.client_id);
        o.connected_at.remove(&conn);
        o.history.forget_client(conn);
        o.emit(MonitorEvent::Disconnected {
            at_ms: wall_ms(self.clock.wall_us),
            client_id: c.client_id.to_string(),
            reason: reason.to_string(),
        });
    }

    #[inline]
    pub(super) fn observe_slow_consumer(&mut self, conn: ConnId) {
        let (Some(o), Some(c)) = (self.observer.as_deref(), self.conns.get(conn)) else {
            return;
        };
        o.emit(MonitorEvent::SlowConsumer {
            at_ms: wall_ms(self.clock.wall_us),
            client_id: c.client_id.to_string(),
            dropped: c.counters.dropped,
            outbound_depth: c.out.depth() as u64,
        });
    }

    /// Message `id` entered group `gid`, evicting `evicted` to make room.
    #[inline]
    pub(super) fn observe_queued(
        &mut self,
        gid: GroupId,
        topic: &Topic,
        id: MessageId,
        source: &ClientId,
        evicted: &[Queued],
    ) {
        let Some(o) = self.observer.as_deref_mut() else {
            return;
        };
        let (now, wall) = (self.clock.now, wall_ms(self.clock.wall_us));
        let group = self.queues.get(gid).map(|g| &g.name);
        let task = NewTask {
            key: (id, Some(gid)),
            topic,
            group,
            publisher: source.as_str(),
        };
        o.tasks.queued(task, now, wall);
        for m in evicted {
            let key = (MessageId::new(m.message.id), Some(gid));
            o.tasks
                .finished(key, TaskOutcome::Evicted, Some("queue full"), now);
        }
    }

    #[inline]
    pub(super) fn observe_dispatched(
        &mut self,
        conn: ConnId,
        delivery: DeliveryId,
        group: Option<GroupId>,
        message: &Stamped,
    ) {
        let Some(o) = self.observer.as_deref_mut() else {
            return;
        };
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        let (now, wall) = (self.clock.now, wall_ms(self.clock.wall_us));
        let task = NewTask {
            key: (MessageId::new(message.id), group),
            topic: &message.topic,
            group: group.and_then(|g| self.queues.get(g)).map(|g| &g.name),
            publisher: message.source.as_str(),
        };
        o.tasks.dispatched(task, delivery, &c.client_id, now, wall);
    }

    /// `f` was settled by its holder: acked, nacked or rejected.
    #[inline]
    pub(super) fn observe_settled(&mut self, f: &InFlight, acked: bool, requeue: bool) {
        let Some(o) = self.observer.as_deref_mut() else {
            return;
        };
        let now = self.clock.now;
        let key = (f.message_id(), f.group);
        let end = match (acked, requeue) {
            (true, _) => AttemptEnd::Acked,
            (false, true) => AttemptEnd::Nacked,
            (false, false) => AttemptEnd::Rejected,
        };
        o.end_delivery(key, end, now);
        if acked {
            o.acked += 1;
            o.tasks.finished(key, TaskOutcome::Acked, None, now);
        } else if f.group.is_none() {
            o.tasks
                .finished(key, TaskOutcome::Failed, Some("handed back"), now);
        }
    }

    /// `f` was taken back from its holder without a settlement.
    #[inline]
    pub(super) fn observe_taken_back(&mut self, f: &InFlight, end: AttemptEnd) {
        if let Some(o) = self.observer.as_deref_mut() {
            o.end_delivery((f.message_id(), f.group), end, self.clock.now);
        }
    }

    /// Message `id` was cancelled wherever it was.
    #[inline]
    pub(super) fn observe_cancelled(&mut self, id: MessageId) {
        let Some(o) = self.observer.as_deref_mut() else {
            return;
        };
        let now = self.clock.now;
        for key in o.tasks.keys_of(id) {
            o.end_delivery(key, AttemptEnd::Cancelled, now);
            o.tasks
                .finished(key, TaskOutcome::Cancelled, Some("cancelled"), now);
        }
    }

    #[inline]
    pub(super) fn observe_dead_letter(
        &mut self,
        gid: GroupId,
        message: &Stamped,
        group: &str,
        reason: &str,
    ) {
        let Some(o) = self.observer.as_deref_mut() else {
            return;
        };
        let now = self.clock.now;
        let key = (MessageId::new(message.id), Some(gid));
        o.end_delivery(key, AttemptEnd::Rejected, now);
        o.tasks
            .finished(key, TaskOutcome::DeadLettered, Some(reason), now);
        o.dead_lettered += 1;
        o.emit(MonitorEvent::DeadLetter {
            at_ms: wall_ms(self.clock.wall_us),
            message_id: message.id,
            topic: message.topic.to_string(),
            group: group.to_owned(),
            reason: reason.to_owned(),
            attempts: message.attempt,
        });
    }
}

#[cfg(any(test, fuzzing))]
impl Router {
    /// Checks the observer's bounds.
    pub(super) fn check_observer(&self) {
        if let Some(o) = &self.observer {
            o.tasks.check();
            assert!(o.workers.len() <= self.conns.iter().count());
            assert!(o.connected_at.len() <= self.conns.iter().count());
        }
    }
}
