//! Statistics snapshots: what `ebctl stats` and `Client::stats` report.
//!
//! Counters live where the work happens (the router's parts, queue groups,
//! connections); this only gathers them into one `StatsResponse`.

use prost::Message;

use super::Router;
use crate::broker::rss_bytes;
use crate::proto;

impl Router {
    /// A snapshot of every counter, answering request `seq`, trimmed to fit
    /// frames of `max_frame` bytes.
    pub(crate) fn stats(&mut self, seq: u64, max_frame: usize) -> proto::StatsResponse {
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
        self.durable_stats(&mut queues);
        queues.sort_by(|a, b| (&a.topic, &a.group).cmp(&(&b.topic, &b.group)));
        let mut stats = proto::StatsResponse {
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
            bridges: self.bridges.stats(self.clock.now),
            journal: self.journal_stats(),
            ..Default::default()
        };
        fit(&mut stats, max_frame.saturating_sub(FRAME_OVERHEAD));
        stats
    }
}

/// What a `StatsResponse` frame adds to the message: the frame's field key
/// and length, and slack.
const FRAME_OVERHEAD: usize = 64;

/// Leaves out entries until `stats` encodes in `budget` bytes: the least
/// published topics first, then the queues with the least waiting, then
/// connections with the least traffic, then the stalest bridge statuses;
/// what was left out is counted.
fn fit(stats: &mut proto::StatsResponse, budget: usize) {
    fn trim<T: Message>(list: &mut Vec<T>, over: &mut usize, omitted: &mut u64) {
        while *over > 0 {
            let Some(entry) = list.pop() else { return };
            // The entry, its key and its length prefix.
            let len = entry.encoded_len();
            *over = over.saturating_sub(len + 1 + prost::length_delimiter_len(len));
            *omitted += 1;
        }
    }
    let mut over = stats.encoded_len().saturating_sub(budget);
    if over == 0 {
        return;
    }
    stats.topics.sort_by_key(|t| std::cmp::Reverse(t.published));
    trim(&mut stats.topics, &mut over, &mut stats.omitted_topics);
    stats.queues.sort_by_key(|q| std::cmp::Reverse(q.depth));
    trim(&mut stats.queues, &mut over, &mut stats.omitted_queues);
    stats
        .connections
        .sort_by_key(|c| std::cmp::Reverse(c.published + c.delivered));
    trim(
        &mut stats.connections,
        &mut over,
        &mut stats.omitted_connections,
    );
    stats.bridges.sort_by_key(|b| b.age_ms);
    trim(&mut stats.bridges, &mut over, &mut stats.omitted_bridges);
    stats.bridges.sort_by(|a, b| a.name.cmp(&b.name));
    // Back to the documented order.
    stats.topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    stats
        .queues
        .sort_by(|a, b| (&a.topic, &a.group).cmp(&(&b.topic, &b.group)));
    stats.connections.sort_by(|a, b| a.id.cmp(&b.id));
}
