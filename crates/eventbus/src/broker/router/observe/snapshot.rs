//! Snapshots for the monitor, built under the router's lock from the
//! router's parts and the observer's rates; each is a plain owned value,
//! read after the lock is released.

use std::time::Instant;

use super::super::{Router, wall_us};
use super::workers::score;
use crate::broker::ids::ConnId;
use crate::broker::monitor::{
    ClientInfo, Health, HealthStatus, MemberInfo, Overview, QueueInfo, SubscriptionInfo, TaskPage,
    TaskQuery, TopicInfo, WorkerInfo,
};

/// The share of a bound at which the broker reports itself degraded.
const DEGRADED_SHARE: f64 = 0.9;

/// One client, with its rates if a sample has been taken since it connected.
pub(super) fn client_info(router: &Router, conn: ConnId) -> Option<ClientInfo> {
    let c = router.conns.get(conn)?;
    let o = router.observer.as_deref();
    let rates = o
        .and_then(|o| o.history.clients.get(&conn))
        .map(|r| r.per_s)
        .unwrap_or_default();
    Some(ClientInfo {
        id: c.client_id.to_string(),
        identity: c.principal.name.clone(),
        kind: c.kind.clone(),
        capabilities: c.capabilities.iter().map(ToString::to_string).collect(),
        pid: c.pid,
        connected_at_ms: o
            .and_then(|o| o.connected_at.get(&conn).copied())
            .unwrap_or(0),
        published: c.counters.published,
        delivered: c.counters.delivered,
        acked: c.counters.acked,
        in_rate: rates[0],
        out_rate: rates[1],
        unsettled: c.in_flight,
        outbound_depth: c.out.depth() as u64,
        dropped: c.counters.dropped,
        slow_consumer_events: c.counters.slow_consumer_events,
        subscriptions: c.subs.len(),
    })
}

impl Router {
    /// Every connected client, by id.
    pub(crate) fn monitor_clients(&self) -> Vec<ClientInfo> {
        let mut clients: Vec<_> = self
            .conns
            .iter()
            .filter_map(|(id, _)| client_info(self, id))
            .collect();
        clients.sort_by(|a, b| a.id.cmp(&b.id));
        clients
    }

    /// Every queue group, by filter then name.
    pub(crate) fn monitor_queues(&self) -> Vec<QueueInfo> {
        let now_us = self.clock.wall_us.max(wall_us());
        let mut queues: Vec<_> = self
            .queues
            .iter()
            .map(|(gid, g)| {
                let s = g.stats();
                let rates = self
                    .observer
                    .as_deref()
                    .and_then(|o| o.history.queues.get(&gid))
                    .map(|r| r.per_s)
                    .unwrap_or_default();
                QueueInfo {
                    filter: s.topic,
                    group: s.group,
                    depth: s.depth,
                    bytes: s.bytes,
                    in_flight: s.in_flight,
                    max_len: g.policy().max_len as u64,
                    oldest_age_ms: g
                        .oldest_waiting_us()
                        .map(|at| now_us.saturating_sub(at) / 1000),
                    enqueue_rate: rates[0],
                    deliver_rate: rates[1],
                    ack_rate: rates[2],
                    accepted: g.counters.accepted,
                    delivered: s.delivered,
                    acked: s.acked,
                    nacked: s.nacked,
                    redelivered: s.redelivered,
                    dropped: s.dropped,
                    rejected: s.rejected,
                    dead_lettered: s.dead_lettered,
                    cancelled: s.cancelled,
                    members: s
                        .members
                        .into_iter()
                        .map(|m| MemberInfo {
                            client_id: m.client_id,
                            delivered: m.delivered,
                            acked: m.acked,
                            in_flight: m.in_flight,
                            prefetch: m.prefetch,
                        })
                        .collect(),
                }
            })
            .collect();
        queues.sort_by(|a, b| (&a.filter, &a.group).cmp(&(&b.filter, &b.group)));
        queues
    }

    /// Every subscription, by client id then subscription id.
    pub(crate) fn monitor_subscriptions(&self) -> Vec<SubscriptionInfo> {
        let mut subs: Vec<_> = self
            .conns
            .iter()
            .flat_map(|(_, c)| {
                c.subs.iter().map(|(sid, sub)| SubscriptionInfo {
                    client_id: c.client_id.to_string(),
                    sid: sid.get(),
                    filter: sub.filter.to_string(),
                    group: sub
                        .group
                        .and_then(|g| self.queues.get(g))
                        .map(|g| g.name.to_string()),
                })
            })
            .collect();
        subs.sort_by(|a, b| (&a.client_id, a.sid).cmp(&(&b.client_id, b.sid)));
        subs
    }

    /// Every tracked topic, by name.
    pub(crate) fn monitor_topics(&mut self) -> Vec<TopicInfo> {
        self.settle_fanout_counts();
        let mut topics: Vec<_> = self
            .topics
            .iter()
            .map(|(t, c)| TopicInfo {
                topic: t.to_string(),
                published: c.published,
                delivered: c.delivered,
            })
            .collect();
        topics.sort_by(|a, b| a.topic.cmp(&b.topic));
        topics
    }

    /// Every client that took deliveries, with its window's statistics.
    pub(crate) fn monitor_workers(&self, now: Instant) -> Vec<WorkerInfo> {
        let Some(o) = self.observer.as_deref() else {
            return Vec::new();
        };
        let stats: Vec<_> = self
            .conns
            .iter()
            .filter(|(_, c)| c.counters.delivered > 0 || o.workers.get(&c.client_id).is_some())
            .map(|(id, c)| {
                let w = o
                    .workers
                    .get(&c.client_id)
                    .map(|w| w.stats(now))
                    .unwrap_or_default();
                (id, c, w)
            })
            .collect();
        let mut medians: Vec<u64> = stats.iter().filter_map(|(_, _, w)| w.p50_us).collect();
        medians.sort_unstable();
        let fleet = medians.get(medians.len() / 2).copied();
        let mut workers: Vec<_> = stats
            .into_iter()
            .map(|(id, c, w)| WorkerInfo {
                client_id: c.client_id.to_string(),
                kind: c.kind.clone(),
                tasks_per_s: o.history.clients.get(&id).map_or(0.0, |r| r.per_s[2]),
                ok: w.ok,
                failed: w.failed,
                latency_p50_us: w.p50_us,
                latency_p99_us: w.p99_us,
                in_flight: c.in_flight,
                score: score(&w, fleet),
            })
            .collect();
        workers.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        workers
    }

    /// The task ring, as `query` asks.
    pub(crate) fn monitor_tasks(&self, query: &TaskQuery) -> TaskPage {
        match self.observer.as_deref() {
            Some(o) => o.tasks.query(query),
            None => TaskPage {
                tasks: Vec::new(),
                capacity: 0,
                forgotten: 0,
            },
        }
    }

    /// The headline numbers.
    pub(crate) fn monitor_overview(&self, now: Instant) -> Overview {
        let depth = self.queues.iter().map(|(_, g)| g.depth() as u64).sum();
        Overview {
            uptime_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            version: env!("CARGO_PKG_VERSION"),
            connections: self.conns.iter().count(),
            queues: self.queues.iter().count(),
            depth,
            in_flight: self.in_flight.len() as u64,
            pending_requests: self.requests.len(),
            queued_bytes: self.usage.total().bytes as u64,
            max_queued_bytes: self.config.memory.max_queued_bytes as u64,
            last: self
                .observer
                .as_deref()
                .and_then(|o| o.history.latest().cloned()),
            journal: self.journal_stats().map(Into::into),
        }
    }

    /// Ready, degraded (a bound reached or near) or draining; `sockets` is
    /// the number of accepted sockets, which the router does not count.
    pub(crate) fn monitor_health(&self, sockets: usize) -> Health {
        if self.draining {
            return Health {
                status: HealthStatus::Draining,
                reasons: vec!["shutting down: refusing new connections and publishes".into()],
            };
        }
        let mut reasons = Vec::new();
        if let Some(rss) = self.memory_alarm {
            reasons.push(format!(
                "memory alarm: resident memory {rss} bytes over the high watermark"
            ));
        }
        let near = |used: usize, max: usize| used as f64 >= max as f64 * DEGRADED_SHARE;
        let queued = self.usage.total().bytes;
        let ceiling = self.config.memory.max_queued_bytes;
        if near(queued, ceiling) {
            reasons.push(format!(
                "queued bytes {queued} near the ceiling {ceiling} (memory.max_queued_bytes)"
            ));
        }
        let max_connections = self.config.max_connections;
        if near(sockets, max_connections) {
            reasons.push(format!(
                "{sockets} connections near max_connections {max_connections}"
            ));
        }
        if self.journal_stats().is_some_and(|j| j.disk_full) {
            reasons.push(
                "journal: the disk is full; durable publishes are refused until there is space"
                    .to_owned(),
            );
        }
        for (_, g) in self.queues.iter() {
            if g.is_full_for(0) {
                reasons.push(format!(
                    "queue {} of {} is full ({} waiting)",
                    g.name,
                    g.filter,
                    g.depth()
                ));
            }
        }
        let status = if reasons.is_empty() {
            HealthStatus::Ready
        } else {
            HealthStatus::Degraded
        };
        Health { status, reasons }
    }
}
