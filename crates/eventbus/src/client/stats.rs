//! [`BrokerStats`]: a snapshot of the broker's counters, as
//! [`Client::stats`](super::Client::stats) returns it.
//!
//! These structs, not the wire types, define the names: with the `serde`
//! feature they serialize to the stable document `ebctl stats --json` prints
//! (`docs/stats.md`), so renaming a field in `proto/eventbus.proto` changes
//! nothing a user reads. Fields may be added (the structs are
//! `#[non_exhaustive]`), none renamed or removed.
//!
//! Names (client ids, topics, filters, groups) are the strings the broker
//! reported: a snapshot describes, it is not fed back into calls.

use crate::proto;

/// The whole snapshot. Arrays are sorted: connections by `id`, queues by
/// `topic` then `group`, topics by `topic`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct BrokerStats {
    /// Milliseconds since the broker started.
    pub uptime_ms: u64,
    /// Messages accepted from publishers (all modes, requests included).
    pub published: u64,
    /// Deliveries made to subscribers, queue members and direct receivers.
    pub delivered: u64,
    /// Messages dropped by an overflow policy (`drop-oldest`, `drop-incoming`).
    pub dropped: u64,
    /// Resident set size of the broker process; 0 where the platform does not
    /// report it cheaply.
    pub rss_bytes: u64,
    /// One entry per connected client.
    pub connections: Vec<ConnectionStats>,
    /// One entry per queue group.
    pub queues: Vec<QueueStats>,
    /// One entry per topic published on (at most 4096 topics are tracked).
    pub topics: Vec<TopicStats>,
    /// The last status of each bridge that announced one on
    /// `_sys.bridge.<name>` (at most 32), by name.
    pub bridges: Vec<BridgeStats>,
    /// The journal of the durable queues, when the broker has one open.
    pub journal: Option<JournalStats>,
}

/// The journal that keeps the durable queues: its space, its work since the
/// broker started, and what recovery at that start could not read
/// (`docs/durability.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct JournalStats {
    /// Bytes in its segment files.
    pub file_bytes: u64,
    /// Bytes of records still needed (live messages, kept replies); the
    /// rest of `file_bytes` is garbage compaction reclaims.
    pub live_bytes: u64,
    /// The bound on `live_bytes` (`durability.max_disk_bytes`).
    pub max_disk_bytes: u64,
    /// Whether the last write failed for lack of space: durable publishes
    /// are refused (`Storage`) until there is space again.
    pub disk_full: bool,
    /// `fdatasync` calls since the broker started.
    pub syncs: u64,
    /// Records written and synced since the broker started.
    pub records: u64,
    /// Records that could not be written since the broker started (each a
    /// publish refused, never confirmed).
    pub failed_records: u64,
    /// Compactions completed since the broker started.
    pub compactions: u64,
    /// At this start: bytes recovery cut off or set aside (a torn or
    /// damaged tail, a bad segment header).
    pub recovery_lost_bytes: u64,
    /// At this start: places recovery found damaged.
    pub recovery_damaged: u64,
    /// At this start: records with a good checksum recovery could not use.
    pub recovery_skipped_records: u64,
}

impl From<proto::JournalStats> for JournalStats {
    fn from(j: proto::JournalStats) -> Self {
        Self {
            file_bytes: j.file_bytes,
            live_bytes: j.live_bytes,
            max_disk_bytes: j.max_disk_bytes,
            disk_full: j.disk_full,
            syncs: j.syncs,
            records: j.records,
            failed_records: j.failed_records,
            compactions: j.compactions,
            recovery_lost_bytes: j.recovery_lost_bytes,
            recovery_damaged: j.recovery_damaged,
            recovery_skipped_records: j.recovery_skipped_records,
        }
    }
}

/// Counters of one client connection, for the life of that connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct ConnectionStats {
    /// The client id.
    pub id: String,
    /// The client's process id as it declared it (0 when unknown).
    pub pid: u32,
    /// The client's self-declared kind, e.g. `collector` or `ebctl`.
    pub kind: String,
    /// Messages this client published.
    pub published: u64,
    /// Deliveries made to this client.
    pub delivered: u64,
    /// Deliveries this client acknowledged (a reply counts).
    pub acked: u64,
    /// Deliveries this client holds and has not settled yet.
    pub in_flight: u64,
    /// Messages for this client dropped by its outbound buffer's overflow policy.
    pub dropped: u64,
    /// Frames waiting in the broker's outbound buffer toward this client.
    pub outbound_depth: u64,
    /// Times this client was announced on `_sys.slow-consumer`.
    pub slow_consumer_events: u64,
}

/// Counters of one queue group, for the life of the group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct QueueStats {
    /// The topic filter the group subscribes with.
    pub topic: String,
    /// The group name.
    pub group: String,
    /// Messages waiting for a member.
    pub depth: u64,
    /// Messages delivered to a member and not yet settled.
    pub in_flight: u64,
    /// Deliveries made, redeliveries included.
    pub delivered: u64,
    /// Deliveries acknowledged (replies included).
    pub acked: u64,
    /// Deliveries handed back with a nack.
    pub nacked: u64,
    /// Deliveries made again after a nack, an ack timeout or a member's loss.
    pub redelivered: u64,
    /// Messages dropped by the overflow policy.
    pub dropped: u64,
    /// Publishes refused because the queue was full (`reject`, or `block` timing out).
    pub rejected: u64,
    /// Messages moved to the dead-letter topic.
    pub dead_lettered: u64,
    /// Messages cancelled while queued or in flight.
    pub cancelled: u64,
    /// One entry per member.
    pub members: Vec<MemberStats>,
    /// Whether the queue is durable (journaled; it survives a broker crash).
    pub durable: bool,
    /// A durable queue's counters since its first start, across restarts
    /// (the fields above count since this start); `None` for other queues.
    pub totals: Option<QueueTotals>,
}

/// A durable queue's counters since its first start, persisted in the
/// broker's journal. Every message the queue accepted is in exactly one of
/// `acked`, `dead_lettered`, `evicted`, `cancelled`, or still queued or in
/// flight: `accepted = acked + dead_lettered + evicted + cancelled + depth +
/// in_flight` (`docs/stats.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct QueueTotals {
    /// Messages the queue took in.
    pub accepted: u64,
    /// Deliveries made, redeliveries included.
    pub delivered: u64,
    /// Messages acknowledged (replies included).
    pub acked: u64,
    /// Deliveries handed back with a nack.
    pub nacked: u64,
    /// Deliveries made again after a nack, an ack timeout, a member's loss
    /// or a broker restart.
    pub redelivered: u64,
    /// Messages the overflow policy dropped: accepted ones it evicted
    /// (`evicted` counts those alone) and incoming ones it never accepted.
    pub dropped: u64,
    /// Publishes refused (queue full, or not storable): never accepted.
    pub rejected: u64,
    /// Messages moved to the dead-letter topic.
    pub dead_lettered: u64,
    /// Messages cancelled while queued or in flight.
    pub cancelled: u64,
    /// Accepted messages taken out to make room by `drop-oldest` (for the
    /// queue's length or for the disk budget).
    pub evicted: u64,
}

/// Counters of one queue-group member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct MemberStats {
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

/// Counters of one topic, from the broker's start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct TopicStats {
    /// The topic.
    pub topic: String,
    /// Messages published on it.
    pub published: u64,
    /// Deliveries of its messages.
    pub delivered: u64,
}

/// A bridge's last status, as it announced it on `_sys.bridge.<name>`
/// (`docs/fleet.md` has the fields of `eventbus-bridge`'s JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct BridgeStats {
    /// `<name>` of its status topic.
    pub name: String,
    /// The client that announced it.
    pub client_id: String,
    /// Whether that client is still connected: the broker keeps a gone
    /// bridge's last status, so it shows what the bridge last said.
    pub connected: bool,
    /// Milliseconds since the status came (the bridge announces every
    /// second).
    pub age_ms: u64,
    /// The status as published: JSON from `eventbus-bridge`; empty if it was
    /// over 2 KiB.
    pub status_json: String,
}

impl From<proto::BridgeStats> for BridgeStats {
    fn from(b: proto::BridgeStats) -> Self {
        Self {
            name: b.name,
            client_id: b.client_id,
            connected: b.connected,
            age_ms: b.age_ms,
            status_json: b.status_json,
        }
    }
}

impl From<proto::StatsResponse> for BrokerStats {
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
            bridges: s.bridges.into_iter().map(Into::into).collect(),
            journal: s.journal.map(Into::into),
        }
    }
}

impl From<proto::ConnectionStats> for ConnectionStats {
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
            slow_consumer_events: c.slow_consumer_events,
        }
    }
}

impl From<proto::QueueStats> for QueueStats {
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
            durable: q.durable,
            totals: q.totals.map(Into::into),
        }
    }
}

impl From<proto::QueueTotals> for QueueTotals {
    fn from(t: proto::QueueTotals) -> Self {
        Self {
            accepted: t.accepted,
            delivered: t.delivered,
            acked: t.acked,
            nacked: t.nacked,
            redelivered: t.redelivered,
            dropped: t.dropped,
            rejected: t.rejected,
            dead_lettered: t.dead_lettered,
            cancelled: t.cancelled,
            evicted: t.evicted,
        }
    }
}

impl From<proto::MemberStats> for MemberStats {
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

impl From<proto::TopicStats> for TopicStats {
    fn from(t: proto::TopicStats) -> Self {
        Self {
            topic: t.topic,
            published: t.published,
            delivered: t.delivered,
        }
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;

    /// The names `docs/stats.md` documents; keep the two in step.
    #[test]
    fn field_names_are_the_documented_ones() {
        let response = proto::StatsResponse {
            connections: vec![proto::ConnectionStats::default()],
            queues: vec![proto::QueueStats {
                members: vec![proto::MemberStats::default()],
                totals: Some(proto::QueueTotals::default()),
                ..Default::default()
            }],
            topics: vec![proto::TopicStats::default()],
            bridges: vec![proto::BridgeStats::default()],
            journal: Some(proto::JournalStats::default()),
            ..Default::default()
        };
        let json = serde_json::to_value(BrokerStats::from(response)).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(
            keys(&json),
            [
                "bridges",
                "connections",
                "delivered",
                "dropped",
                "journal",
                "published",
                "queues",
                "rss_bytes",
                "topics",
                "uptime_ms"
            ]
        );
        assert_eq!(
            keys(&json["journal"]),
            [
                "compactions",
                "disk_full",
                "failed_records",
                "file_bytes",
                "live_bytes",
                "max_disk_bytes",
                "records",
                "recovery_damaged",
                "recovery_lost_bytes",
                "recovery_skipped_records",
                "syncs"
            ]
        );
        assert_eq!(
            keys(&json["bridges"][0]),
            ["age_ms", "client_id", "connected", "name", "status_json"]
        );
        assert_eq!(
            keys(&json["connections"][0]),
            [
                "acked",
                "delivered",
                "dropped",
                "id",
                "in_flight",
                "kind",
                "outbound_depth",
                "pid",
                "published",
                "slow_consumer_events"
            ]
        );
        assert_eq!(
            keys(&json["queues"][0]),
            [
                "acked",
                "cancelled",
                "dead_lettered",
                "delivered",
                "depth",
                "dropped",
                "durable",
                "group",
                "in_flight",
                "members",
                "nacked",
                "redelivered",
                "rejected",
                "topic",
                "totals"
            ]
        );
        assert_eq!(
            keys(&json["queues"][0]["totals"]),
            [
                "accepted",
                "acked",
                "cancelled",
                "dead_lettered",
                "delivered",
                "dropped",
                "evicted",
                "nacked",
                "redelivered",
                "rejected"
            ]
        );
        assert_eq!(
            keys(&json["queues"][0]["members"][0]),
            ["acked", "client_id", "delivered", "in_flight", "prefetch"]
        );
        assert_eq!(
            keys(&json["topics"][0]),
            ["delivered", "published", "topic"]
        );
    }

    #[test]
    fn a_document_with_fields_missing_or_added_still_reads() {
        let stats: BrokerStats =
            serde_json::from_str(r#"{"published": 3, "future_field": 1}"#).unwrap();
        assert_eq!(stats.published, 3);
        assert!(stats.connections.is_empty());
    }
}
