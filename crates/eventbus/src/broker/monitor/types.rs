//! What a [`Monitor`](super::Monitor) hands out: plain, owned snapshots,
//! taken under the router's lock and read after it is released.
//!
//! Field names are the JSON names of the broker's HTTP API
//! (`docs/monitoring.md`): these types derive `Serialize` and are the API's
//! schema. Times are milliseconds since the Unix epoch (`*_ms` that name an
//! instant) or durations in microseconds (`*_us`); rates are per second,
//! over the last one-second sample.
//!
//! Nothing here carries a secret: no payload, no resume or correlation token,
//! no credential. Identities are names (`uid:1000`, an auth-file user).

use serde::Serialize;

/// Whether the broker is ready to serve, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// `ready`, `degraded` or `draining`.
    pub status: HealthStatus,
    /// Why it is degraded or draining; empty when ready.
    pub reasons: Vec<String>,
}

/// The broker's state as a health check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthStatus {
    /// Serving, nothing near a bound.
    Ready,
    /// Serving, but a bound is reached or near (the reasons say which).
    Degraded,
    /// Shutting down: refusing new connections and publishes.
    Draining,
}

/// The headline numbers of the whole broker.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Overview {
    /// Milliseconds since the broker started.
    pub uptime_ms: u64,
    /// The broker's version.
    pub version: &'static str,
    /// Connected clients.
    pub connections: usize,
    /// Queue groups.
    pub queues: usize,
    /// Messages waiting in all queue groups.
    pub depth: u64,
    /// Deliveries in flight (queue groups and direct sends).
    pub in_flight: u64,
    /// Requests awaiting replies.
    pub pending_requests: usize,
    /// Bytes held in queue groups (waiting and in flight), and the ceiling.
    pub queued_bytes: u64,
    /// `memory.max_queued_bytes`.
    pub max_queued_bytes: u64,
    /// The latest one-second sample, if one was taken yet.
    pub last: Option<Sample>,
    /// The durable queues' journal, when the broker has one open.
    pub journal: Option<JournalInfo>,
}

/// The journal that keeps the durable queues: its space, its work since the
/// broker started, and what recovery at that start could not read
/// (`docs/stats.md` defines each, as `ebctl stats` shows them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct JournalInfo {
    /// Bytes in its segment files.
    pub file_bytes: u64,
    /// Bytes of records still needed.
    pub live_bytes: u64,
    /// `durability.max_disk_bytes`.
    pub max_disk_bytes: u64,
    /// The last write failed for lack of space.
    pub disk_full: bool,
    /// `fdatasync` calls since the broker started.
    pub syncs: u64,
    /// Records written and synced since the broker started.
    pub records: u64,
    /// Records that could not be written since the broker started.
    pub failed_records: u64,
    /// Compactions completed since the broker started.
    pub compactions: u64,
    /// At this start: bytes recovery cut off or set aside.
    pub recovery_lost_bytes: u64,
    /// At this start: places recovery found damaged.
    pub recovery_damaged: u64,
    /// At this start: records with a good checksum recovery could not use.
    pub recovery_skipped_records: u64,
}

impl From<crate::proto::JournalStats> for JournalInfo {
    fn from(j: crate::proto::JournalStats) -> Self {
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

/// A bridge's last status, as it announced it on `_sys.bridge.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BridgeInfo {
    /// `<name>` of its status topic.
    pub name: String,
    /// The client that announced it.
    pub client_id: String,
    /// Whether that client is still connected (a gone bridge's last status
    /// is kept).
    pub connected: bool,
    /// Milliseconds since the status came.
    pub age_ms: u64,
    /// The status as published (JSON from `eventbus-bridge`); empty if it
    /// was over 2 KiB.
    pub status_json: String,
}

/// One connected client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ClientInfo {
    /// Its client id.
    pub id: String,
    /// The identity it authenticated as (`uid:<n>`, or an auth-file user).
    pub identity: String,
    /// Its self-declared kind (`collector`, `ebctl`, ...).
    pub kind: String,
    /// The capabilities it declared.
    pub capabilities: Vec<String>,
    /// Its process id (0 when unknown).
    pub pid: u32,
    /// When it connected.
    pub connected_at_ms: u64,
    /// Messages it published.
    pub published: u64,
    /// Deliveries made to it.
    pub delivered: u64,
    /// Deliveries it acknowledged (a reply counts).
    pub acked: u64,
    /// Messages it published per second.
    pub in_rate: f64,
    /// Deliveries made to it per second.
    pub out_rate: f64,
    /// Deliveries it holds unsettled.
    pub unsettled: u64,
    /// Frames waiting in its outbound buffer.
    pub outbound_depth: u64,
    /// Messages for it dropped by its buffer's overflow policy (slow consumer).
    pub dropped: u64,
    /// Times it was announced as a slow consumer.
    pub slow_consumer_events: u64,
    /// Subscriptions it holds (plain and queue groups).
    pub subscriptions: usize,
}

/// One queue group.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QueueInfo {
    /// The topic filter its members subscribe with.
    pub filter: String,
    /// The group name.
    pub group: String,
    /// Messages waiting for a member.
    pub depth: u64,
    /// Bytes of the waiting messages.
    pub bytes: u64,
    /// Deliveries in flight to members.
    pub in_flight: u64,
    /// Its bound (`queue.max_len` or an override).
    pub max_len: u64,
    /// Age of the oldest waiting message, in milliseconds.
    pub oldest_age_ms: Option<u64>,
    /// Messages accepted per second.
    pub enqueue_rate: f64,
    /// Deliveries per second.
    pub deliver_rate: f64,
    /// Acknowledgements per second.
    pub ack_rate: f64,
    /// Messages accepted (published into it, or handed over to it).
    pub accepted: u64,
    /// Deliveries made, redeliveries included.
    pub delivered: u64,
    /// Deliveries acknowledged.
    pub acked: u64,
    /// Deliveries handed back with a nack.
    pub nacked: u64,
    /// Messages put back for another attempt.
    pub redelivered: u64,
    /// Messages dropped by the overflow policy.
    pub dropped: u64,
    /// Publishes refused because it was full.
    pub rejected: u64,
    /// Messages moved to its dead-letter topic.
    pub dead_lettered: u64,
    /// Messages cancelled by their publisher.
    pub cancelled: u64,
    /// Its members.
    pub members: Vec<MemberInfo>,
}

/// One member of a queue group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MemberInfo {
    /// The member's client id.
    pub client_id: String,
    /// Deliveries made to it.
    pub delivered: u64,
    /// Deliveries it acknowledged.
    pub acked: u64,
    /// Deliveries it holds unsettled.
    pub in_flight: u64,
    /// Most it may hold unsettled.
    pub prefetch: u32,
}

/// One subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SubscriptionInfo {
    /// The subscriber's client id.
    pub client_id: String,
    /// The subscription id the client chose.
    pub sid: u64,
    /// The filter.
    pub filter: String,
    /// The queue group it is a member of; `None` for a plain subscription.
    pub group: Option<String>,
}

/// One topic that has been published on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TopicInfo {
    /// The topic.
    pub topic: String,
    /// Messages published on it.
    pub published: u64,
    /// Deliveries of its messages.
    pub delivered: u64,
}

/// How one task (a message in a queue group, or a direct send) fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TaskRecord {
    /// The message id.
    pub message_id: u64,
    /// Its topic.
    pub topic: String,
    /// The queue group; `None` for a direct send.
    pub group: Option<String>,
    /// The publisher's client id.
    pub publisher: String,
    /// When it was queued (or, for a direct send, delivered).
    pub queued_at_ms: u64,
    /// Where it is now.
    pub state: TaskState,
    /// How it ended, once it has.
    pub outcome: Option<TaskOutcome>,
    /// Why, in words, when it did not end acknowledged.
    pub reason: Option<String>,
    /// Deliveries so far (may be more than `attempts` keeps).
    pub deliveries: u32,
    /// The latest deliveries, oldest first (at most [`MAX_ATTEMPTS_KEPT`]).
    pub attempts: Vec<TaskAttempt>,
    /// Microseconds from queued to the first delivery.
    pub wait_us: Option<u64>,
    /// Microseconds from queued to its end.
    pub total_us: Option<u64>,
}

/// Deliveries of one task a record keeps; older ones are counted only.
pub const MAX_ATTEMPTS_KEPT: usize = 8;

/// One delivery of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TaskAttempt {
    /// The client it was delivered to.
    pub collector: String,
    /// When.
    pub delivered_at_ms: u64,
    /// How the delivery ended; `None` while it is held.
    pub end: Option<AttemptEnd>,
    /// Microseconds from delivery to its end.
    pub run_us: Option<u64>,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskState {
    /// Waiting in its queue for a member.
    Queued,
    /// Delivered, not settled yet.
    InFlight,
    /// Ended (see the outcome).
    Done,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskOutcome {
    /// Acknowledged (or replied to) by its holder.
    Acked,
    /// Moved to the dead-letter topic.
    DeadLettered,
    /// Cancelled by its publisher.
    Cancelled,
    /// Evicted from a full queue (`drop-oldest`).
    Evicted,
    /// A direct send its holder handed back or left, with nowhere else to go.
    Failed,
}

impl TaskOutcome {
    /// The name used in the API and in filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Acked => "acked",
            Self::DeadLettered => "dead_lettered",
            Self::Cancelled => "cancelled",
            Self::Evicted => "evicted",
            Self::Failed => "failed",
        }
    }

    /// Every outcome.
    pub const ALL: [TaskOutcome; 5] = [
        Self::Acked,
        Self::DeadLettered,
        Self::Cancelled,
        Self::Evicted,
        Self::Failed,
    ];
}

/// How one delivery of a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttemptEnd {
    /// Acknowledged or replied to.
    Acked,
    /// Handed back for another attempt.
    Nacked,
    /// Refused by the consumer (dead-lettered).
    Rejected,
    /// Not settled within the ack timeout.
    TimedOut,
    /// Its holder left (unsubscribed, disconnected, died).
    HolderLeft,
    /// Withdrawn: the task was cancelled.
    Cancelled,
}

/// Which tasks [`Monitor::tasks`](super::Monitor::tasks) returns.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TaskQuery {
    /// Only tasks whose topic this filter matches.
    pub topic: Option<crate::topic::TopicFilter>,
    /// Only tasks delivered at least once to this client.
    pub collector: Option<String>,
    /// Only tasks in this state of completion.
    pub outcome: Option<OutcomeFilter>,
    /// At most this many, newest first (0: all that match).
    pub limit: usize,
}

/// A task's completion, as a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutcomeFilter {
    /// Not ended yet (queued or in flight).
    Pending,
    /// Ended this way.
    Ended(TaskOutcome),
}

impl std::str::FromStr for OutcomeFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "pending" {
            return Ok(Self::Pending);
        }
        TaskOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .map(Self::Ended)
            .ok_or_else(|| {
                let names: Vec<_> = TaskOutcome::ALL.iter().map(|o| o.as_str()).collect();
                format!("expected pending or one of {}", names.join(", "))
            })
    }
}

/// Recent tasks, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TaskPage {
    /// The tasks that matched.
    pub tasks: Vec<TaskRecord>,
    /// How many the ring keeps (`monitor.tasks`).
    pub capacity: usize,
    /// Tasks that left the ring to make room since the broker started.
    pub forgotten: u64,
}

/// One second of the broker's life: totals at its end and rates over it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Sample {
    /// When it was taken.
    pub at_ms: u64,
    /// Publishes accepted per second.
    pub publish_rate: f64,
    /// Deliveries per second.
    pub deliver_rate: f64,
    /// Task acknowledgements per second.
    pub ack_rate: f64,
    /// Drops (overflow policies) per second.
    pub drop_rate: f64,
    /// Dead letters per second.
    pub dead_letter_rate: f64,
    /// Messages waiting in all queue groups.
    pub depth: u64,
    /// Deliveries in flight.
    pub in_flight: u64,
    /// Connected clients.
    pub connections: usize,
    /// The broker's resident memory (0 where unknown).
    pub rss_bytes: u64,
    /// Totals since the start: published, delivered, acked, dropped, dead-lettered.
    pub published: u64,
    /// See `published`.
    pub delivered: u64,
    /// See `published`.
    pub acked: u64,
    /// See `published`.
    pub dropped: u64,
    /// See `published`.
    pub dead_lettered: u64,
}

/// How one client that takes deliveries (a worker, a collector) is doing,
/// over its last settlements (see `docs/monitoring.md` for the score).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Its client id.
    pub client_id: String,
    /// Its kind.
    pub kind: String,
    /// Deliveries acknowledged per second.
    pub tasks_per_s: f64,
    /// Settlements in the window: acknowledged, and not (nack, reject,
    /// timeout, left).
    pub ok: u64,
    /// See `ok`.
    pub failed: u64,
    /// Median microseconds from delivery to acknowledgement in the window.
    pub latency_p50_us: Option<u64>,
    /// 99th percentile of the same.
    pub latency_p99_us: Option<u64>,
    /// Deliveries it holds now.
    pub in_flight: u64,
    /// 0 (failing) to 100 (fast and reliable).
    pub score: u8,
}

/// Something that happened, pushed to [`Monitor::events`](super::Monitor::events)
/// subscribers as it happens.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MonitorEvent {
    /// A client connected.
    Connected {
        /// When.
        at_ms: u64,
        /// The client.
        client: ClientInfo,
    },
    /// A client left.
    Disconnected {
        /// When.
        at_ms: u64,
        /// Its client id.
        client_id: String,
        /// Why.
        reason: String,
    },
    /// A subscriber's buffer overflowed (at most once a second per client).
    SlowConsumer {
        /// When.
        at_ms: u64,
        /// The subscriber.
        client_id: String,
        /// Messages dropped for it so far.
        dropped: u64,
        /// Frames waiting in its buffer.
        outbound_depth: u64,
    },
    /// A message was dead-lettered.
    DeadLetter {
        /// When.
        at_ms: u64,
        /// The message.
        message_id: u64,
        /// The topic it was published on.
        topic: String,
        /// Its queue group.
        group: String,
        /// Why.
        reason: String,
        /// Deliveries made.
        attempts: u32,
    },
    /// A second has passed: its sample.
    Sample(Sample),
}
