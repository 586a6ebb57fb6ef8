//! Statistics snapshots: what `busctl stats` and `Client::stats` report.
//!
//! Counters live where the work happens (router, queue groups, connections); this
//! module only gathers them into one `StatsResponse`.

use super::router::Router;
use crate::proto;

impl Router {
    /// A snapshot of every counter, answering request `seq`.
    pub(crate) fn stats(&mut self, seq: u64) -> proto::StatsResponse {
        self.settle_fanout_counts();
        let mut connections = self.connection_stats();
        connections.sort_by(|a, b| a.id.cmp(&b.id));
        let mut topics: Vec<proto::TopicStats> = self
            .topics
            .iter()
            .map(|(topic, &(published, delivered))| proto::TopicStats {
                topic: topic.as_str().to_owned(),
                published,
                delivered,
            })
            .collect();
        topics.sort_by(|a, b| a.topic.cmp(&b.topic));
        let mut queues: Vec<proto::QueueStats> = self.groups.values().map(|g| g.stats()).collect();
        queues.sort_by(|a, b| (&a.topic, &a.group).cmp(&(&b.topic, &b.group)));
        proto::StatsResponse {
            seq,
            uptime_ms: self.started.elapsed().as_millis() as u64,
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

/// Resident set size of this process, where the platform tells it cheaply.
pub fn rss_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}
