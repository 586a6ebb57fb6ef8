//! The stable JSON document printed by `ebctl stats --json`.
//!
//! These structs, not the wire types, define the field names: renaming a field
//! in `proto/eventbus.proto` must not change what scripts read. Every field is
//! documented in `docs/stats.md`; keep the two in sync.
#![forbid(unsafe_code)]

use eventbus::proto;
use serde::Serialize;

/// The whole snapshot.
#[derive(Debug, Serialize)]
pub struct StatsDocument {
    /// Milliseconds since the broker started.
    pub uptime_ms: u64,
    /// Messages accepted from publishers.
    pub published: u64,
    /// Deliveries made to subscribers and queue members.
    pub delivered: u64,
    /// Messages dropped by an overflow policy.
    pub dropped: u64,
    /// Resident set size of the broker process (0 where unknown).
    pub rss_bytes: u64,
    /// One entry per connected client, by id.
    pub connections: Vec<ConnectionDocument>,
    /// One entry per queue group, by topic then group.
    pub queues: Vec<QueueDocument>,
    /// One entry per topic published on, by topic.
    pub topics: Vec<TopicDocument>,
}

/// Counters of one client connection.
#[derive(Debug, Serialize)]
pub struct ConnectionDocument {
    /// The client id.
    pub id: String,
    /// The client's process id (0 where unknown).
    pub pid: u32,
    /// The client's self-declared kind, e.g. `collector` or `ebctl`.
    pub kind: String,
    /// Messages this client published.
    pub published: u64,
    /// Deliveries made to this client.
    pub delivered: u64,
    /// Deliveries this client acknowledged (a reply counts).
    pub acked: u64,
    /// Deliveries held by this client, not yet settled.
    pub in_flight: u64,
    /// Messages for this client dropped by its buffer's overflow policy.
    pub dropped: u64,
    /// Frames waiting in the broker's outbound buffer toward this client.
    pub outbound_depth: u64,
}

/// Counters of one queue group.
#[derive(Debug, Serialize)]
pub struct QueueDocument {
    /// The filter the group subscribes with.
    pub topic: String,
    /// The group name.
    pub group: String,
    /// Messages waiting for a member.
    pub depth: u64,
    /// Messages delivered and not yet settled.
    pub in_flight: u64,
    /// Deliveries made, redeliveries included.
    pub delivered: u64,
    /// Deliveries acknowledged.
    pub acked: u64,
    /// Deliveries handed back.
    pub nacked: u64,
    /// Deliveries made again after a nack or a member's loss.
    pub redelivered: u64,
    /// Messages dropped by the overflow policy.
    pub dropped: u64,
    /// Publishes refused because the queue was full.
    pub rejected: u64,
    /// Messages moved to the dead-letter topic.
    pub dead_lettered: u64,
    /// Messages cancelled before completion.
    pub cancelled: u64,
    /// One entry per member.
    pub members: Vec<MemberDocument>,
}

/// Counters of one queue-group member.
#[derive(Debug, Serialize)]
pub struct MemberDocument {
    /// The member's client id.
    pub client_id: String,
    /// Deliveries made to it.
    pub delivered: u64,
    /// Deliveries it acknowledged.
    pub acked: u64,
    /// Deliveries it holds unsettled.
    pub in_flight: u64,
    /// Most deliveries it may hold unsettled.
    pub prefetch: u32,
}

/// Counters of one topic.
#[derive(Debug, Serialize)]
pub struct TopicDocument {
    /// The topic.
    pub topic: String,
    /// Messages published on it.
    pub published: u64,
    /// Deliveries of its messages.
    pub delivered: u64,
}

impl From<proto::StatsResponse> for StatsDocument {
    fn from(s: proto::StatsResponse) -> Self {
        Self {
            uptime_ms: s.uptime_ms,
            published: s.published,
            delivered: s.delivered,
            dropped: s.dropped,
            rss_bytes: s.rss_bytes,
            connections: s.connections.into_iter().map(Into::into).collect(),
            queues: s.queues.into_iter().map(Into::into).collect(),
            topics: s.topics.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<proto::ConnectionStats> for ConnectionDocument {
    fn from(c: proto::ConnectionStats) -> Self {
        Self {
            id: c.id,
            pid: c.pid,
            kind: c.kind,
            published: c.published,
            delivered: c.delivered,
            acked: c.acked,
            in_flight: c.in_flight,
            dropped: c.dropped,
            outbound_depth: c.outbound_depth,
        }
    }
}

impl From<proto::QueueStats> for QueueDocument {
    fn from(q: proto::QueueStats) -> Self {
        Self {
            topic: q.topic,
            group: q.group,
            depth: q.depth,
            in_flight: q.in_flight,
            delivered: q.delivered,
            acked: q.acked,
            nacked: q.nacked,
            redelivered: q.redelivered,
            dropped: q.dropped,
            rejected: q.rejected,
            dead_lettered: q.dead_lettered,
            cancelled: q.cancelled,
            members: q.members.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<proto::MemberStats> for MemberDocument {
    fn from(m: proto::MemberStats) -> Self {
        Self {
            client_id: m.client_id,
            delivered: m.delivered,
            acked: m.acked,
            in_flight: m.in_flight,
            prefetch: m.prefetch,
        }
    }
}

impl From<proto::TopicStats> for TopicDocument {
    fn from(t: proto::TopicStats) -> Self {
        Self {
            topic: t.topic,
            published: t.published,
            delivered: t.delivered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_the_documented_ones() {
        let response = proto::StatsResponse {
            connections: vec![proto::ConnectionStats::default()],
            queues: vec![proto::QueueStats {
                members: vec![proto::MemberStats::default()],
                ..Default::default()
            }],
            topics: vec![proto::TopicStats::default()],
            ..Default::default()
        };
        let json = serde_json::to_value(StatsDocument::from(response)).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let mut top = keys(&json);
        top.sort();
        assert_eq!(
            top,
            [
                "connections",
                "delivered",
                "dropped",
                "published",
                "queues",
                "rss_bytes",
                "topics",
                "uptime_ms"
            ]
        );
        assert_eq!(keys(&json["connections"][0]).len(), 9);
        assert_eq!(keys(&json["queues"][0]).len(), 13);
        assert_eq!(keys(&json["queues"][0]["members"][0]).len(), 5);
        assert_eq!(keys(&json["topics"][0]).len(), 3);
    }
}
