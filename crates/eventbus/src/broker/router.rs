//! The router: owner of all routing state.
//!
//! Connections, subscriptions, queue groups, in-flight deliveries and pending
//! requests live here, behind one mutex that connection readers take for a whole
//! batch of frames. The router never awaits: it only pushes frames into the
//! bounded [`Outbound`] queues that each connection's writer drains.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::ConnId;
use super::config::BrokerConfig;
use super::queue::{Enqueued, Member, QueueGroup};
use crate::framed::{Outbound, PushError, Pushed};
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
}

/// A registered connection.
#[derive(Debug)]
struct Conn {
    client_id: ClientId,
    kind: String,
    pid: u32,
    out: Arc<Outbound>,
    cancel: CancellationToken,
    subs: HashMap<u64, Sub>,
    last_seen: Instant,
    next_heartbeat: Instant,
    heartbeat: Duration,
    misses: u32,
    counters: ConnCounters,
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
    conns: HashMap<ConnId, Conn>,
    by_client: HashMap<ClientId, ConnId>,
    index: SubscriptionIndex<Target>,
    pub(super) groups: HashMap<u64, QueueGroup>,
    group_ids: HashMap<(TopicFilter, GroupName), u64>,
    in_flight: HashMap<u64, InFlight>,
    requests: HashMap<u64, PendingRequest>,
    pub(super) totals: Totals,
    pub(super) topics: HashMap<Topic, (u64, u64)>,
    next_conn: ConnId,
    next_id: u64,
    draining: bool,
    scratch: Vec<Target>,
    doomed: Vec<(ConnId, &'static str)>,
    pub(super) started: Instant,
}

/// Most distinct topics tracked in stats; later topics are counted only in totals.
const MAX_TRACKED_TOPICS: usize = 4096;

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
            conns: HashMap::new(),
            by_client: HashMap::new(),
            index: SubscriptionIndex::new(),
            groups: HashMap::new(),
            group_ids: HashMap::new(),
            in_flight: HashMap::new(),
            requests: HashMap::new(),
            totals: Totals::default(),
            topics: HashMap::new(),
            next_conn: 1,
            next_id: 1,
            draining: false,
            scratch: Vec::new(),
            doomed: Vec::new(),
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
                out,
                cancel,
                subs: HashMap::new(),
                last_seen: now,
                next_heartbeat: now + heartbeat,
                heartbeat,
                misses,
                counters: ConnCounters::default(),
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
        Ok((id, welcome))
    }

    /// Records that `conn` was heard from.
    pub fn touch(&mut self, conn: ConnId, now: Instant) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_seen = now;
        }
    }

    /// Handles one frame from `conn`.
    pub fn handle(&mut self, conn: ConnId, frame: Frame) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let result = match frame.kind {
            Some(Kind::Publish(p)) => self.publish(conn, p),
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
    }

    /// Queues a frame for `conn`, dooming the connection if it is too slow.
    fn send(&mut self, conn: ConnId, frame: Frame) {
        if let Some(c) = self.conns.get(&conn)
            && let Err(PushError::TooSlow { .. }) = c.out.push(frame)
        {
            self.doomed
                .push((conn, "too slow: outbound buffer at its hard cap"));
        }
    }

    /// Closes connections that were found too slow or dead while handling frames.
    pub fn reap(&mut self) {
        while let Some((conn, reason)) = self.doomed.pop() {
            self.disconnect(conn, reason);
        }
    }

    fn publish(&mut self, conn: ConnId, p: proto::Publish) -> Result<(), (u64, Refusal)> {
        let seq = p.seq;
        let mode = PublishMode::try_from(p.mode).unwrap_or(PublishMode::FireAndForget);
        let fail = |r: Refusal| Err((seq, r));
        if self.draining {
            return fail(Refusal::new(
                ErrorCode::ShuttingDown,
                "broker is shutting down",
            ));
        }
        let Some(mut msg) = p.message else {
            return fail(Refusal::new(
                ErrorCode::InvalidArgument,
                "publish without a message",
            ));
        };
        let topic = match Topic::new(&msg.topic) {
            Ok(t) => t,
            Err(e) => return fail(Refusal::new(ErrorCode::InvalidTopic, e.to_string())),
        };
        let c = self.conns.get_mut(&conn).expect("checked by handle");
        c.counters.published += 1;
        msg.id = self.next_id;
        self.next_id += 1;
        msg.source = c.client_id.as_str().to_owned();
        msg.timestamp_us = now_us();
        msg.attempt = 1;
        self.totals.published += 1;
        let tracked = self.topics.len() < MAX_TRACKED_TOPICS || self.topics.contains_key(&topic);
        if tracked {
            self.topics.entry(topic.clone()).or_default().0 += 1;
        }
        let request = mode == PublishMode::Request;
        if request {
            if self.requests.len() >= self.config.max_pending_requests {
                return fail(
                    Refusal::new(ErrorCode::QueueFull, "too many requests awaiting replies")
                        .detail("max_len", self.config.max_pending_requests),
                );
            }
            msg.correlation_id = msg.id;
            msg.reply_to = msg.source.clone();
        }
        let message_id = msg.id;
        if !p.target_client.is_empty() {
            self.direct(&p.target_client, msg).map_err(|r| (seq, r))?;
        } else {
            let delivered = self.route(&topic, msg).map_err(|r| (seq, r))?;
            if delivered == 0 && request {
                return fail(
                    Refusal::new(
                        ErrorCode::NoResponders,
                        format!("no subscriber for topic {topic}"),
                    )
                    .detail("topic", &topic),
                );
            }
            if tracked {
                self.topics.entry(topic).or_default().1 += delivered;
            }
        }
        if request {
            let timeout = match p.timeout_ms {
                0 => Duration::from_secs(30),
                ms => Duration::from_millis(u64::from(ms)),
            };
            self.requests.insert(
                message_id,
                PendingRequest {
                    conn,
                    seq,
                    deadline: Instant::now() + timeout,
                },
            );
        } else if mode == PublishMode::Confirmed {
            self.send(conn, ok(seq, message_id));
        }
        Ok(())
    }

    /// Delivers `msg` to every matching target; returns how many took it.
    fn route(&mut self, topic: &Topic, msg: Box<proto::Envelope>) -> Result<u64, Refusal> {
        let mut targets = std::mem::take(&mut self.scratch);
        self.index.extend_matches(topic, &mut targets);
        let mut delivered = 0;
        let mut refusal = None;
        let mut msg = Some(msg);
        let last = targets.len().saturating_sub(1);
        for (i, target) in targets.drain(..).enumerate() {
            let m = if i == last {
                msg.take().expect("taken once, at the last target")
            } else {
                msg.clone().expect("present until the last target")
            };
            match target {
                Target::Plain { conn, sid } => {
                    if self.deliver_plain(conn, sid, m) {
                        delivered += 1;
                    }
                }
                Target::Group(gid) => match self.enqueue(gid, topic, m) {
                    Ok(()) => delivered += 1,
                    Err(r) => refusal = Some(r),
                },
            }
        }
        self.scratch = targets;
        match refusal {
            Some(r) if delivered == 0 => Err(r),
            _ => Ok(delivered),
        }
    }

    fn deliver_plain(&mut self, conn: ConnId, sid: u64, message: Box<proto::Envelope>) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let frame = Frame {
            kind: Some(Kind::Deliver(proto::Deliver {
                sid,
                delivery_id: 0,
                message: Some(message),
            })),
        };
        match c.out.push_droppable(frame) {
            Ok(Pushed::Queued) => {}
            Ok(Pushed::EvictedOldest) => {
                c.counters.dropped += 1;
                self.totals.dropped += 1;
            }
            Ok(Pushed::DroppedIncoming) | Err(PushError::Full { .. }) => {
                c.counters.dropped += 1;
                self.totals.dropped += 1;
                return false;
            }
            Err(PushError::Closed) => return false,
            Err(PushError::TooSlow { .. }) => {
                self.doomed
                    .push((conn, "too slow: outbound buffer at its hard cap"));
                return false;
            }
        }
        c.counters.delivered += 1;
        self.totals.delivered += 1;
        true
    }

    fn enqueue(
        &mut self,
        gid: u64,
        topic: &Topic,
        message: Box<proto::Envelope>,
    ) -> Result<(), Refusal> {
        let group = self.groups.get_mut(&gid).expect("indexed groups exist");
        match group.enqueue(message) {
            Enqueued::Queued | Enqueued::EvictedOldest => {}
            Enqueued::DroppedIncoming => {
                self.totals.dropped += 1;
                return Ok(());
            }
            Enqueued::Rejected => {
                let max_len = group.max_len();
                return Err(Refusal::new(
                    ErrorCode::QueueFull,
                    format!(
                        "queue {} (group {}) is full: {max_len} messages waiting; topic {topic}",
                        group.filter, group.name
                    ),
                )
                .detail("topic", topic)
                .detail("group", &group.name)
                .detail("max_len", max_len));
            }
        }
        self.pump(gid);
        Ok(())
    }

    /// Hands waiting messages of a group to members with credit.
    fn pump(&mut self, gid: u64) {
        while let Some(group) = self.groups.get_mut(&gid) {
            let Some((conn, sid, message)) = group.next_dispatch() else {
                break;
            };
            let delivery_id = self.next_id();
            self.totals.delivered += 1;
            self.send_delivery(conn, sid, delivery_id, Some(gid), message);
        }
    }

    fn send_delivery(
        &mut self,
        conn: ConnId,
        sid: u64,
        delivery_id: u64,
        group: Option<u64>,
        message: Box<proto::Envelope>,
    ) {
        let frame = Frame {
            kind: Some(Kind::Deliver(proto::Deliver {
                sid,
                delivery_id,
                message: Some(message.clone()),
            })),
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.counters.delivered += 1;
            c.in_flight += 1;
            if group.is_none() {
                c.direct_in_flight += 1;
            }
        }
        self.in_flight.insert(
            delivery_id,
            InFlight {
                conn,
                sid,
                group,
                message,
            },
        );
        self.send(conn, frame);
    }

    fn direct(&mut self, target: &str, msg: Box<proto::Envelope>) -> Result<(), Refusal> {
        let conn = ClientId::new(target)
            .ok()
            .and_then(|id| self.by_client.get(&id).copied())
            .ok_or_else(|| {
                Refusal::new(
                    ErrorCode::NoSuchClient,
                    format!("no connected client {target:?}"),
                )
                .detail("client_id", target)
            })?;
        let max = self.config.max_direct_in_flight;
        if self.conns[&conn].direct_in_flight >= max {
            return Err(Refusal::new(
                ErrorCode::QueueFull,
                format!("direct inbox of {target} is full: {max} messages unsettled"),
            )
            .detail("topic", &msg.topic)
            .detail("group", format!("direct:{target}"))
            .detail("max_len", max));
        }
        let delivery_id = self.next_id();
        self.totals.delivered += 1;
        self.send_delivery(conn, 0, delivery_id, None, msg);
        Ok(())
    }

    /// Returns the credit a settled or withdrawn delivery held on its connection.
    fn release(&mut self, f: &InFlight) {
        if let Some(c) = self.conns.get_mut(&f.conn) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if f.group.is_none() {
                c.direct_in_flight = c.direct_in_flight.saturating_sub(1);
            }
        }
    }

    fn subscribe(&mut self, conn: ConnId, s: proto::Subscribe) -> Result<(), (u64, Refusal)> {
        let seq = s.seq;
        let filter = TopicFilter::new(&s.filter)
            .map_err(|e| (seq, Refusal::new(ErrorCode::InvalidFilter, e.to_string())))?;
        let group = match s.group.as_str() {
            "" => None,
            name => Some(
                GroupName::new(name)
                    .map_err(|e| (seq, Refusal::new(ErrorCode::InvalidArgument, e.to_string())))?,
            ),
        };
        let max_subs = self.config.max_subscriptions_per_client;
        let queue = self.config.queue.clone();
        let c = self.conns.get_mut(&conn).expect("checked by handle");
        if c.subs.contains_key(&s.sid) {
            return Err((
                seq,
                Refusal::new(
                    ErrorCode::InvalidArgument,
                    format!("subscription id {} in use", s.sid),
                ),
            ));
        }
        if c.subs.len() >= max_subs {
            return Err((
                seq,
                Refusal::new(
                    ErrorCode::SubscriptionLimit,
                    format!("subscription limit of {max_subs} reached"),
                )
                .detail("max_subscriptions", max_subs),
            ));
        }
        let client_id = c.client_id.clone();
        let gid = match group {
            None => {
                self.index
                    .insert(&filter, Target::Plain { conn, sid: s.sid });
                None
            }
            Some(name) => {
                let key = (filter.clone(), name.clone());
                let gid = match self.group_ids.get(&key) {
                    Some(&gid) => gid,
                    None => {
                        let gid = self.next_id();
                        self.group_ids.insert(key, gid);
                        self.groups.insert(
                            gid,
                            QueueGroup::new(filter.clone(), name, queue.max_len, queue.overflow),
                        );
                        self.index.insert(&filter, Target::Group(gid));
                        gid
                    }
                };
                let prefetch = match s.prefetch {
                    0 => queue.default_prefetch,
                    n => n.min(queue.max_prefetch),
                };
                self.groups
                    .get_mut(&gid)
                    .expect("just ensured")
                    .join(Member {
                        conn,
                        sid: s.sid,
                        client_id,
                        prefetch,
                        in_flight: 0,
                        delivered: 0,
                        acked: 0,
                    });
                Some(gid)
            }
        };
        let c = self.conns.get_mut(&conn).expect("checked by handle");
        c.subs.insert(s.sid, Sub { filter, group: gid });
        self.send(conn, ok(seq, 0));
        if let Some(gid) = gid {
            self.pump(gid);
        }
        Ok(())
    }

    fn unsubscribe(&mut self, conn: ConnId, u: proto::Unsubscribe) -> Result<(), (u64, Refusal)> {
        if self.drop_sub(conn, u.sid) {
            self.send(conn, ok(u.seq, 0));
            Ok(())
        } else {
            Err((
                u.seq,
                Refusal::new(
                    ErrorCode::UnknownSubscription,
                    format!("no subscription {}", u.sid),
                ),
            ))
        }
    }

    /// Removes one subscription; its queue deliveries in flight go back to the queue.
    fn drop_sub(&mut self, conn: ConnId, sid: u64) -> bool {
        let Some(sub) = self.conns.get_mut(&conn).and_then(|c| c.subs.remove(&sid)) else {
            return false;
        };
        match sub.group {
            None => {
                self.index.remove(&sub.filter, &Target::Plain { conn, sid });
            }
            Some(gid) => {
                let returned: Vec<u64> = self
                    .in_flight
                    .iter()
                    .filter(|(_, f)| f.conn == conn && f.sid == sid)
                    .map(|(&id, _)| id)
                    .collect();
                if let Some(group) = self.groups.get_mut(&gid) {
                    group.leave(conn, sid);
                }
                for id in returned {
                    let f = self.in_flight.remove(&id).expect("collected above");
                    self.release(&f);
                    if let Some(group) = self.groups.get_mut(&gid) {
                        group.requeue_front(f.message);
                    }
                }
                self.pump(gid);
                self.forget_group_if_idle(gid);
            }
        }
        true
    }

    fn forget_group_if_idle(&mut self, gid: u64) {
        if self.groups.get(&gid).is_some_and(QueueGroup::is_idle) {
            let group = self.groups.remove(&gid).expect("checked");
            self.index.remove(&group.filter, &Target::Group(gid));
            self.group_ids.remove(&(group.filter, group.name));
        }
    }

    fn settle(
        &mut self,
        conn: ConnId,
        delivery_id: u64,
        seq: u64,
        how: Settle,
    ) -> Result<(), (u64, Refusal)> {
        let owned = self
            .in_flight
            .get(&delivery_id)
            .is_some_and(|f| f.conn == conn);
        if !owned {
            return Err((
                seq,
                Refusal::new(
                    ErrorCode::UnknownDelivery,
                    format!("delivery {delivery_id} is not in flight to this client"),
                )
                .detail("delivery_id", delivery_id),
            ));
        }
        let f = self.in_flight.remove(&delivery_id).expect("checked");
        self.release(&f);
        if how == Settle::Ack
            && let Some(c) = self.conns.get_mut(&conn)
        {
            c.counters.acked += 1;
        }
        if f.group.is_none() && how != Settle::Ack {
            // A direct message handed back has nowhere else to go: its requester,
            // if any, learns it at once instead of waiting for a timeout.
            if let Some(pending) = self.requests.remove(&f.message.id) {
                let holder = self
                    .conns
                    .get(&conn)
                    .map(|c| c.client_id.to_string())
                    .unwrap_or_default();
                self.send(
                    pending.conn,
                    Refusal::new(
                        ErrorCode::NoResponders,
                        format!("client {holder} handed the direct message back"),
                    )
                    .detail("client_id", holder)
                    .into_frame(pending.seq),
                );
            }
        }
        if let Some(gid) = f.group
            && let Some(group) = self.groups.get_mut(&gid)
        {
            group.settle(conn, f.sid, how == Settle::Ack);
            if how == Settle::Requeue {
                group.requeue_front(f.message);
            }
            self.pump(gid);
        }
        if seq != 0 {
            self.send(conn, ok(seq, 0));
        }
        Ok(())
    }

    fn reply(&mut self, conn: ConnId, r: proto::Reply) -> Result<(), (u64, Refusal)> {
        if r.delivery_id != 0 {
            self.settle(conn, r.delivery_id, 0, Settle::Ack)?;
        }
        let Some(pending) = self.requests.remove(&r.correlation_id) else {
            return Err((
                r.seq,
                Refusal::new(
                    ErrorCode::UnknownMessage,
                    format!("request {} is not awaiting a reply", r.correlation_id),
                ),
            ));
        };
        let source = self.conns[&conn].client_id.as_str().to_owned();
        let mut message = r.message.unwrap_or_default();
        message.source = source;
        message.correlation_id = pending.seq;
        message.timestamp_us = now_us();
        self.send(
            pending.conn,
            Frame {
                kind: Some(Kind::Reply(proto::Reply {
                    correlation_id: pending.seq,
                    delivery_id: 0,
                    message: Some(message),
                    seq: 0,
                })),
            },
        );
        if r.seq != 0 {
            self.send(conn, ok(r.seq, 0));
        }
        Ok(())
    }

    fn cancel(&mut self, conn: ConnId, c: proto::Cancel) -> Result<(), (u64, Refusal)> {
        let id = c.message_id;
        let waiting = self
            .groups
            .values_mut()
            .find_map(|g| g.remove_waiting(id).map(|_| g));
        let found = if let Some(group) = waiting {
            group.counters.cancelled += 1;
            true
        } else if let Some((&delivery_id, _)) =
            self.in_flight.iter().find(|(_, f)| f.message.id == id)
        {
            let f = self.in_flight.remove(&delivery_id).expect("found above");
            if let Some(gid) = f.group
                && let Some(group) = self.groups.get_mut(&gid)
            {
                group.settle(f.conn, f.sid, false);
                group.counters.cancelled += 1;
            }
            self.release(&f);
            self.send(
                f.conn,
                Frame {
                    kind: Some(Kind::Cancel(proto::Cancel {
                        seq: 0,
                        message_id: id,
                    })),
                },
            );
            if let Some(gid) = f.group {
                self.pump(gid);
            }
            true
        } else {
            false
        };
        if !found {
            return Err((
                c.seq,
                Refusal::new(
                    ErrorCode::UnknownMessage,
                    format!("message {id} is neither queued nor in flight"),
                )
                .detail("message_id", id),
            ));
        }
        if let Some(pending) = self.requests.remove(&id) {
            self.send(
                pending.conn,
                Refusal::new(ErrorCode::Cancelled, format!("request {id} was cancelled"))
                    .detail("message_id", id)
                    .into_frame(pending.seq),
            );
        }
        self.send(conn, ok(c.seq, id));
        Ok(())
    }

    /// Removes a connection and everything it held. Idempotent.
    ///
    /// Its queue deliveries in flight go back to the front of their queues at once.
    pub fn disconnect(&mut self, conn: ConnId, reason: &str) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        tracing::debug!(client = %c.client_id, reason, "closing connection");
        let sids: Vec<u64> = c.subs.keys().copied().collect();
        for sid in sids {
            self.drop_sub(conn, sid);
        }
        let direct: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.conn == conn)
            .map(|(&id, _)| id)
            .collect();
        for id in direct {
            self.in_flight.remove(&id);
        }
        self.requests.retain(|_, p| p.conn != conn);
        let c = self.conns.remove(&conn).expect("checked above");
        if self.by_client.get(&c.client_id) == Some(&conn) {
            self.by_client.remove(&c.client_id);
        }
        let _ = c.out.push(Frame {
            kind: Some(Kind::Goodbye(proto::Goodbye {
                reason: reason.to_owned(),
            })),
        });
        c.out.close();
        c.cancel.cancel();
    }

    /// Periodic work: heartbeats out, dead peers and expired requests out.
    pub fn tick(&mut self, now: Instant) {
        for (&id, c) in &mut self.conns {
            if now.duration_since(c.last_seen) > c.heartbeat * c.misses {
                self.doomed.push((id, "heartbeats missed"));
            } else if now >= c.next_heartbeat {
                c.next_heartbeat = now + c.heartbeat;
                if let Err(PushError::TooSlow { .. }) = c.out.push(Frame {
                    kind: Some(Kind::Heartbeat(proto::Heartbeat { nonce: 0 })),
                }) {
                    self.doomed
                        .push((id, "too slow: outbound buffer at its hard cap"));
                }
            }
        }
        self.requests.retain(|_, p| p.deadline > now);
        self.reap();
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
            })
            .collect()
    }
}

/// How a delivery is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
    Drop,
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
