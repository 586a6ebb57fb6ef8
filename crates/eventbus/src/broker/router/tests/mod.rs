//! Deterministic tests of the router's rules: fake connections (an
//! [`Outbound`] nobody writes, read back by the test), a clock the test
//! moves, no sockets and no tasks. Every frame goes through the same edge as
//! a real one (encoded, then [`command::decode`]d), and the router's
//! invariants are checked after every step.
//!
//! The harness (`Bus`) and the model of several clients (`model.rs`) are
//! compiled for the fuzzer too (`--cfg fuzzing`, `fuzz/`), which drives
//! the same model; the unit tests' conveniences are unused there.
#![cfg_attr(not(test), allow(dead_code))]

#[cfg(test)]
mod delivery;
#[cfg(test)]
mod disk_bound;
#[cfg(test)]
mod durable;
#[cfg(test)]
mod fuzzed;
#[cfg(test)]
mod gather;
#[cfg(test)]
mod isolation;
#[cfg(test)]
mod lifecycle;
pub mod model;
#[cfg(test)]
mod monitor;
#[cfg(test)]
mod ownership;
#[cfg(test)]
mod property;
#[cfg(test)]
mod pubsub;
#[cfg(test)]
mod requests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio_util::sync::CancellationToken;

use super::{Applied, Registration, Router};
use crate::broker::auth::{AuthConfig, Authenticator};
use crate::broker::command;
use crate::broker::config::BrokerConfig;
use crate::broker::confirm::Confirmations;
use crate::broker::effects::Effects;
use crate::broker::ids::{ConnId, Seq};
use crate::broker::monitor::MonitorEvent;
use crate::broker::refusal::{DisconnectReason, HandshakeRefusal, Refusal};
use crate::codec::FrameCodec;
use crate::framed::{Outbound, Outgoing, ReadError};
use crate::proto::{self, ErrorCode, Frame, PublishMode, frame::Kind};

/// A router, a clock, and the connections the test made.
pub(super) struct Bus {
    pub router: Router,
    pub now: Instant,
    pub config: Arc<BrokerConfig>,
    /// Who connections are: the socket owner's identity, or the users of
    /// an auth file.
    pub auth: Authenticator,
    /// The edge's topic cache (one for all fake connections).
    pub topics: command::TopicCache,
    /// Where confirmations of durable publishes wait for the journal.
    pub confirmations: Arc<Confirmations>,
    /// Whether every step checks the router's invariants (off only while a
    /// test sets up thousands of connections; see [`Bus::bulk`]).
    checking: bool,
}

/// The uid the fake connections' socket peers run as.
pub(super) const PEER_UID: u32 = 1000;

/// A fake connection.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    pub conn: ConnId,
    pub out: Arc<Outbound>,
    pub cancel: CancellationToken,
    /// What its `Welcome` said.
    pub welcome: proto::Welcome,
    /// The `kind` its `Hello` said.
    pub kind: String,
}

/// A frame a peer was sent, flattened for matching.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Got {
    Deliver {
        sid: u64,
        delivery: u64,
        msg: proto::Envelope,
    },
    Ok {
        seq: u64,
        message_id: u64,
        /// A confirmed request whose reply the broker keeps by id.
        result_kept: bool,
    },
    Error {
        seq: u64,
        code: ErrorCode,
        details: std::collections::HashMap<String, String>,
    },
    Reply {
        correlation: u64,
        msg: proto::Envelope,
    },
    Cancel {
        message_id: u64,
    },
    Heartbeat,
    Goodbye(String),
    Stats(proto::StatsResponse),
    GatherStarted(proto::GatherStarted),
    GatherDone(proto::GatherDone),
}

pub(super) fn hello(id: &str) -> proto::Hello {
    proto::Hello {
        protocol_version: proto::PROTOCOL_VERSION,
        client_id: id.to_owned(),
        ..Default::default()
    }
}

impl Bus {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(configure: impl FnOnce(&mut BrokerConfig)) -> Self {
        Self::with_auth(configure, None)
    }

    /// A bus whose connections authenticate against the auth file `auth`.
    pub fn with_auth(configure: impl FnOnce(&mut BrokerConfig), auth: Option<&str>) -> Self {
        let mut config = BrokerConfig::new("/nonexistent/router-test.sock");
        configure(&mut config);
        config.validate().expect("a valid test config");
        let users = auth.map(|text| AuthConfig::from_toml(text).expect("a valid auth file"));
        let auth = Authenticator::new(users.as_ref(), &config).expect("valid");
        let config = Arc::new(config);
        let now = Instant::now();
        Self {
            router: Router::new(config.clone(), now),
            now,
            config,
            auth,
            topics: command::TopicCache::default(),
            confirmations: Arc::default(),
            checking: true,
        }
    }

    /// Runs `setup` without checking the invariants after each step (they
    /// are O(connections), so thousands of steps would be quadratic), then
    /// checks them once.
    pub fn bulk<T>(&mut self, setup: impl FnOnce(&mut Self) -> T) -> T {
        self.checking = false;
        let result = setup(self);
        self.checking = true;
        if let Err(broken) = self.router.check_invariants() {
            panic!("router invariant broken: {broken}");
        }
        result
    }

    /// Attaches a monitor's observer, as `Broker::monitor` does; returns
    /// its events.
    pub fn observe(&mut self) -> tokio::sync::broadcast::Receiver<MonitorEvent> {
        let (events, rx) = tokio::sync::broadcast::channel(super::observe::MONITOR_EVENTS);
        let observer = super::observe::Observer::new(&self.config.monitor, events);
        self.router.attach_observer(observer);
        rx
    }

    pub fn connect(&mut self, id: &str) -> Peer {
        self.connect_with(hello(id)).expect("registered")
    }

    pub fn connect_with(&mut self, hello: proto::Hello) -> Result<Peer, HandshakeRefusal> {
        let credentials =
            (!hello.user.is_empty()).then(|| (hello.user.as_str(), &hello.secret[..]));
        let principal = self.auth.authenticate(credentials, Some(PEER_UID))?;
        let out = Outbound::new(self.config.outbound_limits());
        let cancel = CancellationToken::new();
        let kind = hello.kind.clone();
        let registration = Registration {
            hello,
            principal,
            out: out.clone(),
            cancel: cancel.clone(),
            peer_pid: None,
        };
        let registered = self.run(|r, now| r.register(registration, now));
        let (conn, welcome) = registered?;
        Ok(Peer {
            conn,
            out,
            cancel,
            welcome,
            kind,
        })
    }

    /// Runs `work` as the broker does (`RouterCell::with`): then
    /// `finish`, and the invariants must hold.
    pub fn run<T>(&mut self, work: impl FnOnce(&mut Router, Instant) -> T) -> T {
        let result = work(&mut self.router, self.now);
        let mut effects = Effects::default();
        self.router.finish(&mut effects);
        self.confirmations
            .hold(std::mem::take(&mut effects.held))
            .send();
        if !self.checking {
            return result;
        }
        if let Err(broken) = self.router.check_invariants() {
            panic!("router invariant broken: {broken}");
        }
        result
    }

    /// Sends `kind` from `peer` through the edge, as one batch.
    pub fn send(&mut self, peer: &Peer, kind: Kind) -> Applied {
        let frame = Frame { kind: Some(kind) };
        let mut wire = BytesMut::new();
        FrameCodec::default().encode(&frame, &mut wire).unwrap();
        // Length and version byte off: the body, as `FrameReader` cuts it.
        let body = Bytes::from(wire).slice(5..);
        self.send_body(peer, body).expect("a well-formed frame")
    }

    /// Sends a frame body (as `FrameReader` cuts it) from `peer` through
    /// the edge, as one batch. Bytes that are not a frame, or a frame over
    /// the size its `Welcome` allows, are refused and close the connection,
    /// as the broker's read loop does: `None`.
    pub fn send_body(&mut self, peer: &Peer, body: Bytes) -> Option<Applied> {
        let conn = peer.conn;
        let codec = FrameCodec::new(peer.welcome.max_frame_bytes as usize);
        let decoded = if 1 + body.len() > codec.max_frame_bytes() {
            Err(crate::codec::FrameError::TooLarge {
                len: 1 + body.len(),
                max: codec.max_frame_bytes(),
            })
        } else if peer.kind.is_empty() {
            command::decode(body, &mut self.topics)
        } else {
            // What the edge may let through depends on the kind.
            command::decode(body, &mut command::TopicCache::for_kind(&peer.kind))
        };
        match decoded {
            Ok(inbound) => Some(self.run(|r, now| {
                r.begin(conn, now);
                r.apply(conn, inbound)
            })),
            Err(e) => {
                let refusal = Refusal::unreadable(&ReadError::Frame(e));
                let _ = peer.out.push(refusal.into_frame(Seq::NONE));
                self.run(|r, _| r.disconnect(conn, DisconnectReason::Unreadable));
                None
            }
        }
    }

    /// Like [`send`](Self::send), expecting it to be done at once.
    pub fn send_done(&mut self, peer: &Peer, kind: Kind) {
        assert!(matches!(self.send(peer, kind), Applied::Done));
    }

    /// Moves the clock by `by` in steps of at most `step`, each peer in
    /// `alive` sending a heartbeat after each, and runs the ticker.
    pub fn advance_alive(&mut self, by: Duration, step: Duration, alive: &[&Peer]) {
        let end = self.now + by;
        while self.now < end {
            self.advance(step.min(end - self.now));
            for peer in alive {
                self.send_done(peer, Kind::Heartbeat(proto::Heartbeat::default()));
            }
        }
    }

    /// Moves the clock by `by` and runs the ticker; returns when it is due
    /// next.
    pub fn advance(&mut self, by: Duration) -> Instant {
        self.now += by;
        self.run(|r, now| r.tick(now))
    }

    /// What `peer` was sent since the last call, in order.
    pub fn received(&self, peer: &Peer) -> Vec<Got> {
        peer.out.take_queued().into_iter().map(flatten).collect()
    }

    pub fn disconnect(&mut self, peer: &Peer) {
        let conn = peer.conn;
        self.run(|r, _| {
            r.disconnect(conn, crate::broker::refusal::DisconnectReason::ClientClosed);
        });
    }

    // Frames a client sends.

    pub fn subscribe(&mut self, peer: &Peer, sid: u64, filter: &str) {
        self.send_done(
            peer,
            Kind::Subscribe(proto::Subscribe {
                seq: sid,
                sid,
                filter: filter.into(),
                ..Default::default()
            }),
        );
        assert_eq!(self.received(peer), [ok(sid)], "subscribed");
    }

    /// Joins a queue group; returns what came after the `Ok` (deliveries of
    /// what was waiting).
    pub fn join(
        &mut self,
        peer: &Peer,
        sid: u64,
        filter: &str,
        group: &str,
        prefetch: u32,
    ) -> Vec<Got> {
        self.send_done(peer, join(sid, filter, group, prefetch));
        let mut got = self.received(peer);
        assert_eq!(got.first(), Some(&ok(sid)), "joined");
        got.remove(0);
        got
    }

    /// A publish in `mode` with `seq`.
    pub fn publish_as(
        &mut self,
        peer: &Peer,
        seq: u64,
        mode: PublishMode,
        topic: &str,
        payload: &str,
    ) -> Applied {
        self.send(peer, publish(seq, mode, topic, payload))
    }

    /// A fire-and-forget publish.
    pub fn publish(&mut self, peer: &Peer, topic: &str, payload: &str) {
        assert!(matches!(
            self.publish_as(peer, 0, PublishMode::FireAndForget, topic, payload),
            Applied::Done
        ));
    }

    /// A confirmed publish; returns the message id of the `Ok`, or the error
    /// code.
    pub fn confirmed(
        &mut self,
        peer: &Peer,
        seq: u64,
        topic: &str,
        payload: &str,
    ) -> Result<u64, ErrorCode> {
        let applied = self.publish_as(peer, seq, PublishMode::Confirmed, topic, payload);
        assert!(matches!(applied, Applied::Done));
        answer(&self.received(peer), seq)
    }

    /// A confirmed request (`submit`): the message id, or the error code.
    pub fn submit(
        &mut self,
        peer: &Peer,
        seq: u64,
        topic: &str,
        payload: &str,
    ) -> Result<u64, ErrorCode> {
        let applied = self.publish_as(peer, seq, PublishMode::RequestConfirmed, topic, payload);
        assert!(matches!(applied, Applied::Done));
        answer(&self.received(peer), seq)
    }

    pub fn ack(&mut self, peer: &Peer, delivery: u64, seq: u64) {
        self.send_done(
            peer,
            Kind::Ack(proto::Ack {
                delivery_id: delivery,
                seq,
            }),
        );
    }

    pub fn nack(&mut self, peer: &Peer, delivery: u64, requeue: bool, seq: u64) {
        self.send_done(
            peer,
            Kind::Nack(proto::Nack {
                delivery_id: delivery,
                requeue,
                seq,
            }),
        );
    }

    pub fn reply(&mut self, peer: &Peer, correlation: u64, delivery: u64, payload: &str) {
        self.send_done(
            peer,
            Kind::Reply(proto::Reply {
                correlation_id: correlation,
                delivery_id: delivery,
                message: Some(Box::new(proto::Envelope {
                    payload: Bytes::copy_from_slice(payload.as_bytes()),
                    ..Default::default()
                })),
                seq: 0,
            }),
        );
    }

    pub fn cancel(&mut self, peer: &Peer, message_id: u64, seq: u64) {
        self.send_done(peer, Kind::Cancel(proto::Cancel { seq, message_id }));
    }

    pub fn stats(&mut self, peer: &Peer) -> proto::StatsResponse {
        self.send_done(peer, Kind::StatsRequest(proto::StatsRequest { seq: 99 }));
        let got = self.received(peer);
        let mut stats = got.iter().filter_map(|g| match g {
            Got::Stats(s) => Some(s.clone()),
            _ => None,
        });
        match (stats.next(), stats.next()) {
            (Some(s), None) => s,
            _ => panic!("expected one stats response, got {got:?}"),
        }
    }
}

/// Joining queue group `group` on `filter` as subscription `sid` (also
/// the command's `seq`).
pub(super) fn join(sid: u64, filter: &str, group: &str, prefetch: u32) -> Kind {
    Kind::Subscribe(proto::Subscribe {
        seq: sid,
        sid,
        filter: filter.into(),
        group: group.into(),
        prefetch,
        fallback: false,
    })
}

pub(super) fn publish(seq: u64, mode: PublishMode, topic: &str, payload: &str) -> Kind {
    Kind::Publish(proto::Publish {
        seq,
        mode: mode as i32,
        message: Some(Box::new(proto::Envelope {
            topic: topic.into(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            ..Default::default()
        })),
        ..Default::default()
    })
}

pub(super) fn ok(seq: u64) -> Got {
    Got::Ok {
        seq,
        message_id: 0,
        result_kept: false,
    }
}

/// The answer to `seq` among `got`: the `Ok`'s message id or the error code.
pub(super) fn answer(got: &[Got], seq: u64) -> Result<u64, ErrorCode> {
    got.iter()
        .find_map(|g| match g {
            Got::Ok {
                seq: s, message_id, ..
            } if *s == seq => Some(Ok(*message_id)),
            Got::Error { seq: s, code, .. } if *s == seq => Some(Err(*code)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no answer to {seq} in {got:?}"))
}

/// The deliveries among `got`: `(delivery id, payload)`.
pub(super) fn deliveries(got: &[Got]) -> Vec<(u64, String)> {
    got.iter()
        .filter_map(|g| match g {
            Got::Deliver { delivery, msg, .. } => Some((*delivery, payload(msg))),
            _ => None,
        })
        .collect()
}

/// The error codes among `got`, with the `seq` each answers.
pub(super) fn errors(got: &[Got]) -> Vec<(u64, ErrorCode)> {
    got.iter()
        .filter_map(|g| match g {
            Got::Error { seq, code, .. } => Some((*seq, *code)),
            _ => None,
        })
        .collect()
}

pub(super) fn payload(msg: &proto::Envelope) -> String {
    String::from_utf8_lossy(&msg.payload).into_owned()
}

fn flatten(item: Outgoing) -> Got {
    let frame = match item {
        Outgoing::Frame(frame) => frame,
        other => {
            // Encoded by hand: decoded as the client would.
            let mut wire = BytesMut::new();
            other
                .encode(&FrameCodec::default(), &mut wire)
                .expect("encodes");
            FrameCodec::default()
                .decode(&mut wire)
                .expect("decodes")
                .expect("a whole frame")
        }
    };
    match frame.kind.expect("a kind") {
        Kind::Deliver(d) => Got::Deliver {
            sid: d.sid,
            delivery: d.delivery_id,
            msg: *d.message.expect("a message"),
        },
        Kind::Ok(o) => Got::Ok {
            seq: o.seq,
            message_id: o.message_id,
            result_kept: o.result_kept,
        },
        Kind::Error(e) => Got::Error {
            seq: e.seq,
            code: ErrorCode::try_from(e.code).expect("a known code"),
            details: e.details,
        },
        Kind::Reply(r) => Got::Reply {
            correlation: r.correlation_id,
            msg: *r.message.expect("a message"),
        },
        Kind::Cancel(c) => Got::Cancel {
            message_id: c.message_id,
        },
        Kind::Heartbeat(_) => Got::Heartbeat,
        Kind::Goodbye(g) => Got::Goodbye(g.reason),
        Kind::StatsResponse(s) => Got::Stats(*s),
        Kind::GatherStarted(s) => Got::GatherStarted(s),
        Kind::GatherDone(d) => Got::GatherDone(d),
        other => panic!("the broker does not send {other:?}"),
    }
}
