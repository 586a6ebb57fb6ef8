//! Statistics snapshots: what `busctl stats` and `Client::stats` report.
//!
//! Counters live where the work happens (the router's parts, queue groups,
//! connections); this only gathers them into one `StatsResponse`.

use super::Router;
use crate::broker::rss_bytes;
use crate::proto;

impl Router {
    /// A snapshot of every counter, answering request `seq`.
    pub(crate) fn stats(&mut self, seq: u64) -> proto::StatsResponse {
        self.settle_fanout_counts();
        let mut connections: Vec<proto::ConnectionStats> = self
            .conns
            .iter()
            .map(|(_, c)| proto::ConnectionStats {
                id: c.client_id.as_str().to_owned(),
                pid: c.pid,
                kind: c.kind.clone(),
                published: c.counters.published,
                delivered: c.counters.delivered,
                acked: c.counters.acked,
                in_flight: c.in_flight,
                dropped: c.counters.dropped,
                outbound_depth: c.out.depth() as u64,
                slow_consumer_events: c.counters.slow_consumer_events,
            })
            .collect();
        connections.sort_by(|a, b| a.id.cmp(&b.id));
        let mut topics: Vec<proto::TopicStats> = self
            .topics
            .iter()
            .map(|(topic, count)| proto::TopicStats {
                topic: topic.as_str().to_owned(),
                published: count.published,
                delivered: count.delivered,
            })
            .collect();
        topics.sort_by(|a, b| a.topic.cmp(&b.topic));
        let mut queues: Vec<proto::QueueStats> =
            self.queues.iter().map(|(_, g)| g.stats()).collect();
        queues.sort_by(|a, b| (&a.topic, &a.group).cmp(&(&b.topic, &b.group)));
        proto::StatsResponse {
            seq,
            uptime_ms: self
                .clock
                .now
                .saturating_duration_since(self.started)
                .as_millis() as u64,
            published: self.totals.published,
            delivered: self.totals.delivered,
            rss_bytes: rss_bytes().unwrap_or(0),
            connections,
            topics,
            queues,
            dropped: self.totals.dropped,
        }
    }
}
