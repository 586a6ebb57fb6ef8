//! Connection life cycle: registration, disconnects, reaping doomed
//! connections, slow-consumer announcements, and the periodic tick
//! (heartbeats, dead peers, expiries).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::connections::{Liveness, NewConn};
use super::schedule::MAX_TICK;
use super::{Clock, Router, SLOW_CONSUMER_TOPIC};
use crate::broker::ids::{ConnId, MessageId};
use crate::broker::refusal::{DisconnectReason, HandshakeRefusal, RequestFailure};
use crate::framed::Outbound;
use prost::Message as _;

use crate::broker::auth::Principal;
use crate::broker::queue::Queued;
use crate::codec::MIN_MAX_FRAME_BYTES;
use crate::codec::raw::{ReplyStamp, Stamped};
use crate::names::{ClientId, GroupName};
use crate::proto::{self, Frame, frame::Kind};
use crate::topic::Topic;

/// The shortest heartbeat interval a client may ask for (the longest, and
/// the most misses, are the broker's configuration).
pub(crate) const MIN_HEARTBEAT: Duration = Duration::from_millis(10);
/// The longest `Hello.kind`, in bytes.
pub(crate) const MAX_KIND_BYTES: usize = 64;
/// The most capabilities a client may declare.
pub(crate) const MAX_CAPABILITIES: usize = 16;
/// The client id only the broker uses (as the source of what it publishes).
pub(crate) const BROKER_CLIENT_ID: &str = "broker";
/// A slow consumer is announced at most this often.
const SLOW_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);

/// Compares a presented resume token without stopping at the first
/// difference.
fn tokens_equal(ours: &[u8; 16], presented: &[u8]) -> bool {
    if presented.len() != ours.len() {
        return false;
    }
    let diff = ours
        .iter()
        .zip(presented)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// A connection that said `Hello`, ready to register.
#[derive(Debug)]
pub(crate) struct Registration {
    pub hello: proto::Hello,
    /// Who the connection authenticated as.
    pub principal: Arc<Principal>,
    pub out: Arc<Outbound>,
    pub cancel: CancellationToken,
    /// The peer's process id as the socket tells it, if it does.
    pub peer_pid: Option<u32>,
}

impl Router {
    /// Registers a connection after its `Hello`; returns its id and the
    /// `Welcome`.
    ///
    /// A client id belongs to the identities allowed it. One that is
    /// connected can be taken over only with the resume token its link was
    /// given (the client that holds it, reconnecting before its old link
    /// timed out): the older connection is closed. Anyone else is refused
    /// until that link closes or misses its heartbeats.
    pub fn register(
        &mut self,
        r: Registration,
        now: Instant,
    ) -> Result<(ConnId, proto::Welcome), HandshakeRefusal> {
        let hello = r.hello;
        if hello.protocol_version != proto::PROTOCOL_VERSION {
            return Err(HandshakeRefusal::UnsupportedVersion {
                got: hello.protocol_version,
            });
        }
        let client_id =
            ClientId::new(&hello.client_id).map_err(HandshakeRefusal::InvalidClientId)?;
        if client_id.as_str() == BROKER_CLIENT_ID {
            return Err(HandshakeRefusal::ReservedClientId(hello.client_id));
        }
        if hello.kind.len() > MAX_KIND_BYTES {
            return Err(HandshakeRefusal::FieldTooLong {
                field: "kind",
                len: hello.kind.len(),
                max: MAX_KIND_BYTES,
            });
        }
        if hello.capabilities.len() > MAX_CAPABILITIES {
            return Err(HandshakeRefusal::TooManyCapabilities {
                count: hello.capabilities.len(),
                max: MAX_CAPABILITIES,
            });
        }
        let capabilities = hello
            .capabilities
            .iter()
            .map(GroupName::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(HandshakeRefusal::InvalidCapability)?;
        if self.draining {
            return Err(HandshakeRefusal::ShuttingDown);
        }
        if !r.principal.client_ids.allows(client_id.as_str()) {
            return Err(HandshakeRefusal::ClientIdNotAllowed {
                client: hello.client_id,
                identity: r.principal.name.clone(),
            });
        }
        if let Some(old) = self.conns.by_client(&client_id) {
            let holder = self.conns.get(old).map(|c| c.resume_token);
            if holder.is_none_or(|token| !tokens_equal(&token, &hello.resume_token)) {
                return Err(HandshakeRefusal::ClientIdInUse(hello.client_id));
            }
            self.disconnect(old, DisconnectReason::Replaced);
        }
        let resume_token = self.tokens.resume();
        let config = &self.config;
        let max_heartbeat = Duration::from_millis(config.max_heartbeat_interval_ms);
        let interval = match hello.heartbeat_interval_ms {
            0 => config.heartbeat_interval(),
            ms => Duration::from_millis(u64::from(ms)).clamp(MIN_HEARTBEAT, max_heartbeat),
        };
        let misses = match hello.heartbeat_misses {
            0 => config.heartbeat_misses,
            n => n.min(config.max_heartbeat_misses),
        };
        let max_frame = match hello.max_frame_bytes {
            0 => config.max_frame_bytes,
            n => (n as usize).clamp(MIN_MAX_FRAME_BYTES, config.max_frame_bytes),
        };
        let welcome = proto::Welcome {
            protocol_version: proto::PROTOCOL_VERSION,
            broker_version: env!("CARGO_PKG_VERSION").to_owned(),
            max_frame_bytes: max_frame as u32,
            heartbeat_interval_ms: interval.as_millis() as u32,
            heartbeat_misses: misses,
            max_subscriptions: r.principal.quotas.max_subscriptions as u32,
            broker_pid: std::process::id(),
            resume_token: resume_token.to_vec().into(),
            identity: r.principal.name.clone(),
        };
        let id = self.conns.insert(NewConn {
            client_id,
            kind: hello.kind,
            pid: r.peer_pid.unwrap_or(hello.pid),
            capabilities,
            out: r.out,
            cancel: r.cancel,
            max_frame,
            principal: r.principal,
            resume_token,
            liveness: Liveness {
                last_seen: now,
                next_heartbeat: now + interval,
                interval,
                misses,
            },
        });
        // Its first heartbeat comes before its first limit (misses ≥ 1).
        self.schedule.due_by(now + interval);
        self.log_connected(id);
        self.observe_connected(id);
        Ok((id, welcome))
    }

    /// Removes a connection and everything it held, telling it why.
    /// Idempotent.
    ///
    /// Its queue deliveries in flight go back to the front of their queues at
    /// once; its direct deliveries go to a capability group, if one can take
    /// them; its pending requests are forgotten.
    pub fn disconnect(&mut self, conn: ConnId, reason: DisconnectReason) {
        self.bridges.disconnected(conn);
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        tracing::info!(client = %c.client_id, %reason, "client disconnected");
        let sids: Vec<_> = c.subs.keys().copied().collect();
        let capabilities = std::mem::take(&mut c.capabilities);
        for sid in sids {
            self.drop_sub(conn, sid);
        }
        for f in self.in_flight.take_held(conn, None) {
            self.release(&f);
            self.hand_over_direct(&capabilities, f.into_queued(), reason);
        }
        self.requests.forget_requester(conn);
        self.results.forget(conn);
        self.gathers_on_disconnect(conn);
        self.observe_disconnected(conn, reason);
        let c = self.conns.remove(conn).expect("checked above");
        let _ = c.out.push(Frame {
            kind: Some(Kind::Goodbye(proto::Goodbye {
                reason: reason.to_string(),
            })),
        });
        c.out.close();
        c.cancel.cancel();
    }

    /// Closes connections that were found too slow or dead, and publishes
    /// the slow-consumer announcements queued meanwhile.
    pub(super) fn reap(&mut self) {
        while let Some((conn, reason)) = self.conns.take_doomed() {
            self.disconnect(conn, reason);
        }
        let topic = Topic::new(SLOW_CONSUMER_TOPIC).expect("a valid topic");
        let broker = ClientId::new(BROKER_CLIENT_ID).expect("a valid client id");
        for payload in std::mem::take(&mut self.slow_announcements) {
            let envelope = proto::Envelope {
                topic: SLOW_CONSUMER_TOPIC.to_owned(),
                payload: payload.into(),
                ..Default::default()
            };
            let message = Stamped {
                envelope: envelope.encode_to_vec().into(),
                topic: topic.clone(),
                id: self.ids.message().get(),
                source: broker.clone(),
                timestamp_us: self.clock.wall_us,
                attempt: 1,
                reply: ReplyStamp::None,
            };
            let _ = self.route(&topic, Queued::new(message), None);
        }
    }

    /// Counts a message a subscriber's full buffer cost, and queues an
    /// announcement if this client was not announced in the last second.
    pub(super) fn note_slow_consumer(&mut self, conn: ConnId) {
        let max_len = self.config.subscriber.max_len;
        let now = self.clock.now;
        let Some(c) = self.conns.get_mut(conn) else {
            return;
        };
        c.counters.dropped += 1;
        self.totals.dropped += 1;
        if c.last_slow_announce
            .is_some_and(|t| now.duration_since(t) < SLOW_ANNOUNCE_INTERVAL)
        {
            return;
        }
        c.last_slow_announce = Some(now);
        c.counters.slow_consumer_events += 1;
        tracing::warn!(client = %c.client_id, dropped = c.counters.dropped, "slow consumer");
        self.slow_announcements.push(format!(
            r#"{{"client_id":"{}","dropped":{},"outbound_depth":{},"max_len":{max_len}}}"#,
            c.client_id,
            c.counters.dropped,
            c.out.depth()
        ));
        self.observe_slow_consumer(conn);
    }

    /// Logs a registration at info: who, as whom, from which process.
    fn log_connected(&self, conn: ConnId) {
        if let Some(c) = self.conns.get(conn) {
            tracing::info!(
                client = %c.client_id,
                kind = c.kind,
                identity = c.principal.name,
                pid = c.pid,
                "client connected"
            );
        }
    }

    /// Periodic work at `now`: heartbeats out, dead peers, expired requests
    /// and ack timeouts. Returns when it is due again: the earliest heartbeat,
    /// heartbeat limit, request or ack deadline (at most [`MAX_TICK`] away),
    /// so an idle broker sleeps instead of waking on a fixed beat.
    pub fn tick(&mut self, now: Instant) -> Instant {
        self.clock = Clock::at(now);
        let mut next = now + MAX_TICK;
        let mut dead = Vec::new();
        let mut beat = Vec::new();
        for (id, c) in self.conns.iter_mut() {
            let limit = c.liveness.limit();
            if now > limit {
                dead.push(id);
                continue;
            }
            if now >= c.liveness.next_heartbeat {
                c.liveness.next_heartbeat = now + c.liveness.interval;
                beat.push(id);
            }
            next = next.min(c.liveness.next_heartbeat).min(limit);
        }
        for id in dead {
            self.conns.doom(id, DisconnectReason::HeartbeatsMissed);
        }
        for id in beat {
            self.conns.heartbeat(id);
        }
        let mut expired = Vec::new();
        if let Some(deadline) = self.requests.expire(now, &mut expired) {
            next = next.min(deadline);
        }
        for requester in expired {
            self.request_done(requester);
        }
        self.expire_deliveries();
        if let Some(d) = self.in_flight.next_deadline() {
            next = next.min(d);
        }
        self.expire_gathers();
        if let Some(d) = self.gathers.next_deadline() {
            next = next.min(d);
        }
        if let Some(d) = self.expire_results() {
            next = next.min(d);
        }
        self.reap();
        self.schedule.planned(now, next)
    }

    /// A direct message whose holder went away goes to a queue group named after
    /// one of the holder's capabilities whose filter matches its topic; with none,
    /// a waiting requester learns at once that nobody will answer.
    fn hand_over_direct(
        &mut self,
        capabilities: &[GroupName],
        queued: Queued,
        reason: DisconnectReason,
    ) {
        let topic = &queued.message.topic;
        let gid = self
            .queues
            .iter()
            .find(|(_, g)| capabilities.contains(&g.name) && g.filter.matches(topic))
            .map(|(gid, _)| gid);
        if let Some(gid) = gid {
            let group = self.queues.get_mut(gid).expect("found above");
            let max = group.policy().max_attempts;
            self.usage.add(&queued.message.source, queued.size);
            if max > 0 && queued.message.attempt >= max {
                group.counters.accepted += 1;
                self.journal_accepted(gid, &queued, false);
                let reason = format!("{reason}; {max} attempts used");
                self.dead_letter(gid, queued, &reason);
            } else {
                self.journal_accepted(gid, &queued, true);
                if let Some(group) = self.queues.get_mut(gid) {
                    group.adopt(queued);
                }
            }
            self.pump(gid);
        } else {
            let id = MessageId::new(queued.message.id);
            self.fail_request(
                id,
                RequestFailure::HolderLeft {
                    id,
                    reason: reason.to_string(),
                    topic: queued.message.topic.to_string(),
                },
            );
        }
    }
}
