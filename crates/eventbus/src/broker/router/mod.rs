//! The router: owner of all routing state.
//!
//! Connections, subscriptions, queue groups, in-flight deliveries and pending
//! requests live here, behind one mutex that connection readers take for a whole
//! batch of frames. The router never awaits: it only pushes frames into the
//! bounded [`Outbound`] queues that each connection's writer drains.

mod fanout;
mod lifecycle;
mod publish;
mod settle;
mod subscribe;
#[cfg(test)]
mod tests;

use settle::Settle;

use std::collections::HashMap;

/// The router's maps: keyed by small ids and topics it hashes several times
/// per message, so a fast (per-map randomly seeded) hasher instead of SipHash.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::ConnId;
use super::config::BrokerConfig;
use super::queue::{Enqueued, Member, QueueGroup};
use crate::framed::{Outbound, Outgoing, OverflowPolicy, PushError, Pushed};
use crate::names::{ClientId, GroupName};
use crate::proto::{self, ErrorCode, Frame, PublishMode, frame::Kind};
use crate::topic::{SubscriptionIndex, Topic, TopicFilter};

/// Where a matching subscription sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// A plain subscription: every match gets a copy.
    Plain { conn: ConnId, sid: u64 },
    /// A queue group: one member gets it.
    Group(u64),
}

/// A subscription held by a connection.
#[derive(Debug)]
struct Sub {
    filter: TopicFilter,
    group: Option<u64>,
}

/// Per-connection counters.
#[derive(Debug, Default, Clone, Copy)]
struct ConnCounters {
    published: u64,
    delivered: u64,
    acked: u64,
    dropped: u64,
    slow_consumer_events: u64,
}

/// A registered connection.
#[derive(Debug)]
struct Conn {
    client_id: ClientId,
    kind: String,
    pid: u32,
    /// Capabilities from `Hello`: a direct message its holder leaves unsettled goes
    /// to the queue group named after one of them.
    capabilities: Vec<String>,
    out: Arc<Outbound>,
    cancel: CancellationToken,
    subs: Map<u64, Sub>,
    last_seen: Instant,
    next_heartbeat: Instant,
    heartbeat: Duration,
    misses: u32,
    counters: ConnCounters,
    /// When this client was last announced as a slow consumer.
    last_slow_announce: Option<Instant>,
    /// Listed in `Router::touched` since the last flush.
    touched: bool,
    in_flight: u64,
    /// Direct deliveries not yet settled; bounded by `max_direct_in_flight`.
    direct_in_flight: usize,
}

/// A delivery awaiting its ack.
#[derive(Debug)]
struct InFlight {
    conn: ConnId,
    sid: u64,
    group: Option<u64>,
    message: Box<proto::Envelope>,
    /// When the ack timeout takes it back, if the group has one.
    deadline: Option<Instant>,
}

/// A request awaiting its reply.
#[derive(Debug)]
struct PendingRequest {
    conn: ConnId,
    seq: u64,
    deadline: Instant,
}

/// Counters over the broker's lifetime.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    pub published: u64,
    pub delivered: u64,
    pub dropped: u64,
}

/// A typed refusal, sent to the client as an `Error` frame.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<(&'static str, String)>,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    fn detail(mut self, key: &'static str, value: impl ToString) -> Self {
        self.details.push((key, value.to_string()));
        self
    }

    pub fn into_frame(self, seq: u64) -> Frame {
        Frame {
            kind: Some(Kind::Error(proto::Error {
                seq,
                code: self.code as i32,
                message: self.message,
                details: self
                    .details
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            })),
        }
    }
}

/// All routing state of one broker.
#[derive(Debug)]
pub(crate) struct Router {
    pub(super) config: Arc<BrokerConfig>,
    conns: Map<ConnId, Conn>,
    by_client: Map<ClientId, ConnId>,
    index: SubscriptionIndex<Target>,
    pub(super) groups: Map<u64, QueueGroup>,
    group_ids: Map<(TopicFilter, GroupName), u64>,
    in_flight: Map<u64, InFlight>,
    requests: Map<u64, PendingRequest>,
    pub(super) totals: Totals,
    pub(super) topics: Map<Topic, (u64, u64)>,
    next_conn: ConnId,
    next_id: u64,
    /// Wall clock read once per batch of frames (µs since the Unix epoch):
    /// what publishes in the batch are stamped with.
    clock_us: u64,
    /// Where the last publish kept encoded went, reused while its topic
    /// repeats and the subscription index is unchanged.
    fanout_route: Option<fanout::Route>,
    draining: bool,
    scratch: Vec<Target>,
    doomed: Vec<(ConnId, &'static str)>,
    /// Queue groups with the `block` policy; publishes check for a full one only
    /// when there is any.
    blocking_groups: usize,
    /// Woken when a blocking group's queue makes room.
    pub(super) space: Arc<tokio::sync::Notify>,
    /// The earliest ack deadline in flight, so the ticker scans only when due.
    next_ack_deadline: Option<Instant>,
    /// When the ticker runs next (see `tick` and `due_by`).
    next_tick: Instant,
    /// Wakes the ticker when something falls due before `next_tick`.
    pub(super) ticker: Arc<tokio::sync::Notify>,
    /// Connections with frames pushed since the last `take_touched`.
    touched: Vec<ConnId>,
    /// Slow-consumer events waiting to be published, as JSON payloads.
    slow_announcements: Vec<String>,
    pub(super) started: Instant,
}

/// Most distinct topics tracked in stats; later topics are counted only in totals.
const MAX_TRACKED_TOPICS: usize = 4096;

/// Slow consumers are announced on this topic, at most once a second each, with
/// a JSON payload: `client_id`, `dropped`, `outbound_depth`, `max_len`.
pub const SLOW_CONSUMER_TOPIC: &str = "_sys.slow-consumer";

/// Dead-lettered messages go to `<prefix>.<group>`.
pub const DEAD_LETTER_PREFIX: &str = "_sys.dead-letter";

/// What became of a frame.
#[derive(Debug)]
pub(crate) enum Handled {
    /// Processed.
    Done,
    /// A publish waits for room in a full queue with the `block` policy; retry it
    /// when room is made, or refuse it with `refuse_blocked` after `timeout`.
    Blocked {
        /// The publish, untouched.
        publish: proto::Publish,
        /// How long it may wait in all.
        timeout: Duration,
    },
}

fn ok(seq: u64, message_id: u64) -> Frame {
    Frame {
        kind: Some(Kind::Ok(proto::Ok { seq, message_id })),
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Router {
    pub fn new(config: Arc<BrokerConfig>) -> Self {
        Self {
            config,
            conns: Map::default(),
            by_client: Map::default(),
            index: SubscriptionIndex::new(),
            groups: Map::default(),
            group_ids: Map::default(),
            in_flight: Map::default(),
            requests: Map::default(),
            totals: Totals::default(),
            topics: Map::default(),
            next_conn: 1,
            next_id: 1,
            clock_us: now_us(),
            fanout_route: None,
            draining: false,
            scratch: Vec::new(),
            doomed: Vec::new(),
            blocking_groups: 0,
            space: Arc::new(tokio::sync::Notify::new()),
            next_ack_deadline: None,
            next_tick: Instant::now(),
            ticker: Arc::new(tokio::sync::Notify::new()),
            slow_announcements: Vec::new(),
            touched: Vec::new(),
            started: Instant::now(),
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Registers a connection after a valid `Hello`; returns its id and the `Welcome`.
    ///
    /// A client id that is already connected is taken over: the older connection
    /// is closed, so a client that reconnects before its old link timed out wins.
    pub fn register(
        &mut self,
        hello: proto::Hello,
        out: Arc<Outbound>,
        cancel: CancellationToken,
        peer_pid: Option<u32>,
    ) -> Result<(ConnId, proto::Welcome), Refusal> {
        if hello.protocol_version != proto::PROTOCOL_VERSION {
            return Err(Refusal::new(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {} is not supported (broker speaks {})",
                    hello.protocol_version,
                    proto::PROTOCOL_VERSION
                ),
            ));
        }
        let client_id = ClientId::new(&hello.client_id)
            .map_err(|e| Refusal::new(ErrorCode::InvalidClientId, e.to_string()))?;
        if self.draining {
            return Err(Refusal::new(
                ErrorCode::ShuttingDown,
                "broker is shutting down",
            ));
        }
        if let Some(&old) = self.by_client.get(&client_id) {
            self.disconnect(
                old,
                "replaced by a newer connection with the same client id",
            );
        }
        let config = &self.config;
        let heartbeat = match hello.heartbeat_interval_ms {
            0 => config.heartbeat_interval(),
            ms => Duration::from_millis(u64::from(ms).clamp(10, 60_000)),
        };
        let misses = match hello.heartbeat_misses {
            0 => config.heartbeat_misses,
            n => n.min(100),
        };
        let max_frame = match hello.max_frame_bytes {
            0 => config.max_frame_bytes,
            n => (n as usize).min(config.max_frame_bytes),
        };
        let id = self.next_conn;
        self.next_conn += 1;
        let now = Instant::now();
        self.by_client.insert(client_id.clone(), id);
        self.conns.insert(
            id,
            Conn {
                client_id,
                kind: hello.kind,
                pid: peer_pid.unwrap_or(hello.pid),
                capabilities: hello.capabilities,
                out,
                cancel,
                subs: Map::default(),
                last_seen: now,
                next_heartbeat: now + heartbeat,
                heartbeat,
                misses,
                counters: ConnCounters::default(),
                last_slow_announce: None,
                touched: false,
                in_flight: 0,
                direct_in_flight: 0,
            },
        );
        let welcome = proto::Welcome {
            protocol_version: proto::PROTOCOL_VERSION,
            broker_version: env!("CARGO_PKG_VERSION").to_owned(),
            max_frame_bytes: max_frame as u32,
            heartbeat_interval_ms: heartbeat.as_millis() as u32,
            heartbeat_misses: misses,
            max_subscriptions: config.max_subscriptions_per_client as u32,
            broker_pid: std::process::id(),
        };
        // Its first heartbeat comes before its first limit (misses ≥ 1).
        self.due_by(now + heartbeat);
        Ok((id, welcome))
    }

    /// Records that `conn` was heard from, at the start of a batch of its
    /// frames, and reads the wall clock the batch's publishes are stamped with.
    pub fn touch(&mut self, conn: ConnId, now: Instant) {
        self.clock_us = now_us();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_seen = now;
        }
    }

    /// Handles one frame from `conn`.
    pub fn handle(&mut self, conn: ConnId, frame: Frame) -> Handled {
        if !self.conns.contains_key(&conn) {
            return Handled::Done;
        }
        let result = match frame.kind {
            Some(Kind::Publish(p)) => match self.publish(conn, p) {
                Ok(Some((publish, timeout))) => return Handled::Blocked { publish, timeout },
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            Some(Kind::Subscribe(s)) => self.subscribe(conn, s),
            Some(Kind::Unsubscribe(u)) => self.unsubscribe(conn, u),
            Some(Kind::Ack(a)) => self.settle(conn, a.delivery_id, a.seq, Settle::Ack),
            Some(Kind::Nack(n)) => self.settle(
                conn,
                n.delivery_id,
                n.seq,
                if n.requeue {
                    Settle::Requeue
                } else {
                    Settle::Drop
                },
            ),
            Some(Kind::Reply(r)) => self.reply(conn, r),
            Some(Kind::Cancel(c)) => self.cancel(conn, c),
            Some(Kind::StatsRequest(s)) => {
                let stats = self.stats(s.seq);
                self.send(
                    conn,
                    Frame {
                        kind: Some(Kind::StatsResponse(stats)),
                    },
                );
                Ok(())
            }
            Some(Kind::Heartbeat(_)) => Ok(()),
            Some(Kind::Goodbye(_)) => {
                self.disconnect(conn, "client said goodbye");
                Ok(())
            }
            Some(Kind::Hello(_)) => Err((0, Refusal::new(ErrorCode::Protocol, "hello sent twice"))),
            Some(other) => Err((
                0,
                Refusal::new(
                    ErrorCode::Protocol,
                    format!("frame {} is not sent by clients", kind_name(&other)),
                ),
            )),
            None => Ok(()),
        };
        if let Err((seq, refusal)) = result {
            self.send(conn, refusal.into_frame(seq));
        }
        Handled::Done
    }

    /// Queues a frame for `conn`, dooming the connection if it is too slow.
    fn send(&mut self, conn: ConnId, frame: Frame) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match c.out.push_quiet(frame) {
            Ok(()) => {
                if !c.touched {
                    c.touched = true;
                    self.touched.push(conn);
                }
            }
            Err(PushError::TooSlow { .. }) => {
                self.doomed
                    .push((conn, "too slow: outbound buffer at its hard cap"));
            }
            Err(_) => {}
        }
    }

    /// The outbound queues frames were pushed into since the last call, for the
    /// caller to flush (`Outbound::try_flush`) once it has released the router.
    /// Every caller of `handle`, `tick` or `refuse_blocked` must do so: those
    /// pushes do not wake the writers.
    pub fn take_touched(&mut self, into: &mut Vec<Arc<Outbound>>) {
        for conn in self.touched.drain(..) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.touched = false;
                into.push(c.out.clone());
            }
        }
    }

    /// Starts a graceful shutdown: new publishes and connections are refused.
    pub fn begin_drain(&mut self) {
        self.draining = true;
    }

    /// Deliveries not yet acknowledged.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Closes every connection, telling each why.
    pub fn close_all(&mut self, reason: &str) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.disconnect(id, reason);
        }
    }

    /// Per-connection stats rows.
    pub(super) fn connection_stats(&self) -> Vec<proto::ConnectionStats> {
        self.conns
            .values()
            .map(|c| proto::ConnectionStats {
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
            .collect()
    }
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Hello(_) => "hello",
        Kind::Welcome(_) => "welcome",
        Kind::Publish(_) => "publish",
        Kind::Subscribe(_) => "subscribe",
        Kind::Unsubscribe(_) => "unsubscribe",
        Kind::Deliver(_) => "deliver",
        Kind::Ack(_) => "ack",
        Kind::Nack(_) => "nack",
        Kind::Reply(_) => "reply",
        Kind::Heartbeat(_) => "heartbeat",
        Kind::Cancel(_) => "cancel",
        Kind::StatsRequest(_) => "stats request",
        Kind::StatsResponse(_) => "stats response",
        Kind::Ok(_) => "ok",
        Kind::Error(_) => "error",
        Kind::Goodbye(_) => "goodbye",
    }
}
