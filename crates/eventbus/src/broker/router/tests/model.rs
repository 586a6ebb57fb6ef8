//! A model of several clients driving one router through the [`Bus`]:
//! commands from several connections, the clock moving, slow readers and
//! blocked publishers. The router's invariants are checked after every
//! step (`Bus::run`), and the model checks what the clients can see: no
//! message is ever held by two clients at once, an honest client with a
//! free id is always registered, and when everyone has left nothing is in
//! flight.
//!
//! Driven by the property test (`property.rs`, the ops a well-behaved
//! client sends) and by the fuzzer (`fuzz/`, which adds any frame, any
//! bytes and any `Hello`), so both check the same rules.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;

use super::{Bus, Got, Peer, hello, publish};
use crate::broker::QueueOverride;
use crate::broker::config::BrokerConfig;
use crate::broker::ids::{DeliveryId, GroupId};
use crate::broker::router::{Applied, Parked};
use crate::framed::OverflowPolicy;
use crate::proto::{self, Frame, PublishMode, frame::Kind};

/// How many clients the model has; a peer index is taken modulo this.
pub const PEERS: usize = 4;
/// The topics [`Op::Publish`] picks from (a topic index is taken modulo
/// their number).
pub const TOPICS: &[&str] = &[
    "q.a",
    "q.b",
    "q.block.x",
    "q.drop.x",
    "q.in.x",
    "e.x",
    "e.y",
];
/// The filters [`Op::Subscribe`] and [`Op::Join`] pick from.
pub const FILTERS: &[&str] = &[
    "q.a",
    "q.+",
    "q.#",
    "e.#",
    "e.x",
    "q.block.x",
    "q.drop.#",
    "#",
];
/// The queue groups [`Op::Join`] picks from, which every client the model
/// connects declares as capabilities.
pub const GROUPS: &[&str] = &["g", "h"];

/// One step of the model. Indices (peers, topics, filters, groups) are
/// taken modulo their tables, so any value is a valid op.
#[derive(Debug, Clone)]
pub enum Op {
    /// Client `i` connects as `c<i>`, unless it is connected or its id is
    /// taken.
    Connect(usize),
    /// Client `i` closes its connection.
    Disconnect(usize),
    /// A plain subscription.
    Subscribe {
        /// Which client.
        peer: usize,
        /// Its subscription id.
        sid: u64,
        /// Index into [`FILTERS`].
        filter: usize,
    },
    /// A queue-group membership.
    Join {
        /// Which client.
        peer: usize,
        /// Its subscription id.
        sid: u64,
        /// Index into [`FILTERS`].
        filter: usize,
        /// Index into [`GROUPS`].
        group: usize,
        /// Prefetch asked for.
        prefetch: u32,
    },
    /// Ends a subscription or membership.
    Unsubscribe {
        /// Which client.
        peer: usize,
        /// The subscription id.
        sid: u64,
    },
    /// A publish in `mode` on [`TOPICS`]`[topic]`, or a direct send to
    /// client `direct`.
    Publish {
        /// Which client.
        peer: usize,
        /// Index into [`TOPICS`].
        topic: usize,
        /// The wire `PublishMode` (taken modulo 5: fire and forget,
        /// confirmed, request, confirmed request, gather).
        mode: i32,
        /// A direct send's receiver.
        direct: Option<usize>,
    },
    /// Settle the `pick`-th delivery the peer holds (or a made-up id): ack
    /// (`how` 0, 1), requeue (2) or reject (3).
    Settle {
        /// Which client.
        peer: usize,
        /// Which delivery.
        pick: usize,
        /// How (taken modulo 4).
        how: u8,
    },
    /// Reply to the `pick`-th delivery the peer holds, or a made-up one;
    /// with nothing held, to a request or gather it got without a delivery
    /// to settle.
    Reply {
        /// Which client.
        peer: usize,
        /// Which delivery.
        pick: usize,
    },
    /// Cancel the `pick`-th message anyone heard of, or a made-up id.
    Cancel {
        /// Which client.
        peer: usize,
        /// Which message.
        pick: usize,
    },
    /// Ask for the result of the `pick`-th message anyone heard of, or a
    /// made-up id, waiting up to `wait_ms` (only a durable request has
    /// one: the model's queues are not durable).
    Result {
        /// Which client.
        peer: usize,
        /// Which message.
        pick: usize,
        /// How long it waits.
        wait_ms: u32,
    },
    /// Moves the clock by this many milliseconds and runs the ticker.
    Advance(u64),
    /// Client `i` sends a heartbeat.
    Heartbeat(usize),
    /// Client `i` stops or resumes reading its frames.
    Stall(usize),
    /// Client `i` asks for stats.
    Stats(usize),
    /// Any frame, through the edge, as client `peer` sends it.
    Frame {
        /// Which client.
        peer: usize,
        /// The frame.
        kind: Kind,
    },
    /// Any bytes as a frame body, through the edge: what is not a frame
    /// closes the connection, as the broker does.
    Body {
        /// Which client.
        peer: usize,
        /// The body (after the length and version byte).
        body: Bytes,
    },
    /// Client `peer`, if not connected, connects with this `Hello`; with
    /// `resume`, the resume token of the client that holds the id is put in
    /// it (the real holder reconnecting).
    Hello {
        /// Which client.
        peer: usize,
        /// What it says.
        hello: Box<proto::Hello>,
        /// Whether it presents the holder's resume token.
        resume: bool,
    },
    /// The broker's memory is over (true) or under its high watermark.
    Memory(bool),
    /// The broker starts a graceful shutdown.
    Drain,
}

/// An auth file and what each client presents.
#[derive(Debug, Clone)]
pub struct Auth {
    /// The auth file (TOML).
    pub file: String,
    /// The user and secret client `i` presents: entry `i` modulo their
    /// number.
    pub credentials: Vec<(String, Vec<u8>)>,
}

/// What one fake client knows.
#[derive(Default)]
struct Client {
    peer: Option<Peer>,
    /// The id it registered as.
    id: String,
    stalled: bool,
    /// A publish waiting for room, and when it was parked.
    parked: Option<(Parked, Instant)>,
    /// Deliveries it holds.
    held: Vec<Held>,
    /// Correlation tokens of requests and gathers it got without a delivery
    /// to settle (as a plain subscriber or a gather's recipient).
    tokens: Vec<u64>,
}

/// A delivery a client holds until it settles it, is told `Cancel`, or its
/// link ends.
#[derive(Debug, Clone, Copy)]
struct Held {
    delivery: u64,
    message: u64,
    correlation: u64,
    sid: u64,
    /// The queue group it came from (`None`: the direct inbox). A message
    /// published to two groups is held once in each.
    group: Option<GroupId>,
}

/// The router, its clients and what they heard of.
pub struct Model {
    bus: Bus,
    clients: Vec<Client>,
    auth: Option<Auth>,
    /// Message ids the clients heard of (confirmations, deliveries).
    messages: Vec<u64>,
    draining: bool,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Model {
    /// Small bounds, so that queues fill, publishers block, deliveries time
    /// out and quotas are met within a few ops.
    pub fn new() -> Self {
        Self::with(|_| {}, None)
    }

    /// The model's configuration changed by `configure`, with `auth`.
    ///
    /// # Panics
    /// If the configuration or the auth file is not valid.
    pub fn with(configure: impl FnOnce(&mut BrokerConfig), auth: Option<Auth>) -> Self {
        let bus = Bus::with_auth(
            |c| {
                c.queue.max_len = 4;
                c.queue.ack_timeout_ms = 300;
                c.queue.max_attempts = 3;
                c.queue.block_timeout_ms = 200;
                c.max_pending_requests = 6;
                c.max_direct_in_flight = 2;
                c.subscriber.max_len = 4;
                c.subscriber.hard_cap = 40;
                // A small task ring, so it fills and forgets while observed.
                c.monitor.tasks = 8;
                for (filter, overflow) in [
                    ("q.block.#", OverflowPolicy::Block),
                    ("q.drop.#", OverflowPolicy::DropOldest),
                    ("q.in.#", OverflowPolicy::DropIncoming),
                ] {
                    c.queue.overrides.push(QueueOverride {
                        filter: filter.into(),
                        overflow: Some(overflow),
                        ..Default::default()
                    });
                }
                configure(c);
            },
            auth.as_ref().map(|a| a.file.as_str()),
        );
        let mut bus = bus;
        // Observed, as under `Broker::monitor`: the observer's hooks run on
        // every step (their events are not read).
        let _events = bus.observe();
        Self {
            bus,
            clients: (0..PEERS).map(|_| Client::default()).collect(),
            auth,
            messages: Vec::new(),
            draining: false,
        }
    }

    fn live(&self, i: usize) -> Option<Peer> {
        let c = &self.clients[i];
        // A client with a parked publish sends nothing else until it is done.
        c.peer.clone().filter(|_| c.parked.is_none())
    }

    /// Carries out `op`, then retries parked publishes and checks that no
    /// message is held twice.
    ///
    /// # Panics
    /// When the router breaks an invariant or the clients see a broken
    /// rule.
    pub fn step(&mut self, op: Op) {
        match op {
            Op::Connect(i) => self.connect(i % PEERS),
            Op::Disconnect(i) => {
                if let Some(peer) = self.clients[i % PEERS].peer.take() {
                    self.bus.disconnect(&peer);
                    self.clients[i % PEERS] = Client::default();
                }
            }
            Op::Subscribe { peer, sid, filter } => self.frame(
                peer,
                Kind::Subscribe(proto::Subscribe {
                    seq: sid,
                    sid,
                    filter: FILTERS[filter % FILTERS.len()].into(),
                    ..Default::default()
                }),
            ),
            Op::Join {
                peer,
                sid,
                filter,
                group,
                prefetch,
            } => self.frame(
                peer,
                Kind::Subscribe(proto::Subscribe {
                    seq: sid,
                    sid,
                    filter: FILTERS[filter % FILTERS.len()].into(),
                    group: GROUPS[group % GROUPS.len()].into(),
                    prefetch,
                    fallback: false,
                }),
            ),
            Op::Unsubscribe { peer, sid } => {
                self.frame(peer, Kind::Unsubscribe(proto::Unsubscribe { seq: 0, sid }));
            }
            Op::Publish {
                peer,
                topic,
                mode,
                direct,
            } => {
                let mode = PublishMode::try_from(mode.rem_euclid(5)).expect("0..5 are modes");
                let mut kind = publish(1, mode, TOPICS[topic % TOPICS.len()], "x");
                if let (Kind::Publish(p), Some(to)) = (&mut kind, direct) {
                    p.target_client = format!("c{}", to % PEERS);
                    p.timeout_ms = 500;
                }
                self.frame(peer, kind);
            }
            Op::Settle { peer, pick, how } => {
                let delivery = self.pick_delivery(peer % PEERS, pick);
                let kind = match how % 4 {
                    0 | 1 => Kind::Ack(proto::Ack {
                        delivery_id: delivery,
                        seq: 2,
                    }),
                    2 => Kind::Nack(proto::Nack {
                        delivery_id: delivery,
                        requeue: true,
                        seq: 2,
                    }),
                    _ => Kind::Nack(proto::Nack {
                        delivery_id: delivery,
                        requeue: false,
                        seq: 0,
                    }),
                };
                self.frame(peer, kind);
            }
            Op::Reply { peer, pick } => {
                let c = &self.clients[peer % PEERS];
                let (delivery, correlation) = if c.held.is_empty() && !c.tokens.is_empty() {
                    (0, c.tokens[pick % c.tokens.len()])
                } else {
                    let delivery = self.pick_delivery(peer % PEERS, pick);
                    let correlation = c
                        .held
                        .iter()
                        .find(|h| h.delivery == delivery)
                        .map_or(delivery, |h| h.correlation);
                    (delivery, correlation)
                };
                self.frame(
                    peer,
                    Kind::Reply(proto::Reply {
                        correlation_id: correlation,
                        delivery_id: delivery,
                        message: Some(Box::default()),
                        seq: 3,
                    }),
                );
            }
            Op::Cancel { peer, pick } => {
                let id = self.messages.get(pick).copied().unwrap_or(pick as u64 + 1);
                self.frame(
                    peer,
                    Kind::Cancel(proto::Cancel {
                        seq: 4,
                        message_id: id,
                    }),
                );
            }
            Op::Result {
                peer,
                pick,
                wait_ms,
            } => {
                let id = self.messages.get(pick).copied().unwrap_or(pick as u64 + 1);
                self.frame(
                    peer,
                    Kind::ResultRequest(proto::ResultRequest {
                        seq: 8,
                        message_id: id,
                        timeout_ms: wait_ms,
                    }),
                );
            }
            Op::Advance(ms) => {
                self.bus.advance(Duration::from_millis(ms));
                self.drain_all();
            }
            Op::Heartbeat(i) => {
                // Sent even by a client whose publish is parked: its link is
                // alive.
                if let Some(p) = self.clients[i % PEERS].peer.clone() {
                    self.send(i % PEERS, &p, Kind::Heartbeat(proto::Heartbeat::default()));
                }
            }
            Op::Stall(i) => {
                let c = &mut self.clients[i % PEERS];
                c.stalled = !c.stalled;
            }
            Op::Stats(i) => self.frame(i, Kind::StatsRequest(proto::StatsRequest { seq: 5 })),
            Op::Frame { peer, kind } => self.frame(peer, kind),
            Op::Body { peer, body } => {
                if let Some(p) = self.live(peer % PEERS) {
                    if let Ok(frame) = crate::codec::decode_body(body.clone())
                        && let Some(kind) = &frame.kind
                    {
                        self.forget_settled(peer % PEERS, kind);
                    }
                    self.send_body(peer % PEERS, &p, body);
                }
            }
            Op::Hello {
                peer,
                hello,
                resume,
            } => self.hello(peer % PEERS, *hello, resume),
            Op::Memory(over) => {
                self.bus
                    .run(|r, _| r.sample_memory(Some(u64::from(over) + 1), Some(1)));
            }
            Op::Drain => {
                self.draining = true;
                self.bus.run(|r, _| r.begin_drain());
            }
        }
        self.retry_parked();
        self.check_nothing_held_twice();
    }

    /// Everyone leaves: everything in flight goes back to its queue, and
    /// nothing is left pending (requests, gathers).
    ///
    /// # Panics
    /// When something is still in flight or pending.
    pub fn finish(mut self) {
        for i in 0..PEERS {
            self.step(Op::Disconnect(i));
        }
        assert_eq!(
            self.bus.router.in_flight_count(),
            0,
            "in flight after all left"
        );
        assert_eq!(self.bus.router.requests.len(), 0, "pending after all left");
        assert_eq!(
            self.bus.router.gathers.iter().count(),
            0,
            "gathers after all left"
        );
    }

    /// The credentials client `i` presents in the auth file's case.
    fn credentials(&self, i: usize) -> (String, Bytes) {
        match &self.auth {
            Some(auth) if !auth.credentials.is_empty() => {
                let (user, secret) = &auth.credentials[i % auth.credentials.len()];
                (user.clone(), Bytes::copy_from_slice(secret))
            }
            _ => (String::new(), Bytes::new()),
        }
    }

    fn connect(&mut self, i: usize) {
        let id = format!("c{i}");
        let taken = self.clients.iter().any(|c| c.peer.is_some() && c.id == id);
        if self.clients[i].peer.is_some() || taken || self.draining {
            return;
        }
        let (user, secret) = self.credentials(i);
        let peer = self
            .bus
            .connect_with(proto::Hello {
                capabilities: GROUPS.iter().map(|g| (*g).to_owned()).collect(),
                heartbeat_interval_ms: 100,
                heartbeat_misses: 3,
                user,
                secret,
                ..hello(&id)
            })
            .unwrap_or_else(|refused| panic!("{id} with a free id was refused: {refused}"));
        self.clients[i] = Client {
            peer: Some(peer),
            id,
            ..Client::default()
        };
    }

    fn hello(&mut self, i: usize, mut hello: proto::Hello, resume: bool) {
        if self.clients[i].peer.is_some() {
            return;
        }
        if resume
            && let Some(holder) = self
                .clients
                .iter()
                .filter_map(|c| c.peer.as_ref().filter(|_| c.id == hello.client_id))
                .next()
        {
            hello.resume_token = holder.welcome.resume_token.clone();
        }
        let id = hello.client_id.clone();
        if let Ok(peer) = self.bus.connect_with(hello) {
            self.clients[i] = Client {
                peer: Some(peer),
                id,
                ..Client::default()
            };
        }
        // A link it replaced is closed: its client learns it when it reads.
        self.drain_all();
    }

    fn pick_delivery(&self, peer: usize, pick: usize) -> u64 {
        let held = &self.clients[peer].held;
        held.get(pick).map_or(pick as u64 * 7 + 1, |h| h.delivery)
    }

    /// Sends `kind` as client `i`, if it is connected and not parked.
    fn frame(&mut self, i: usize, kind: Kind) {
        let i = i % PEERS;
        if let Some(p) = self.live(i) {
            self.forget_settled(i, &kind);
            self.send(i, &p, kind);
        }
    }

    /// What a client stops holding by sending `kind`: what it settles, and
    /// what it held on a subscription it ends (which goes back to its
    /// queue, untold).
    fn forget_settled(&mut self, i: usize, kind: &Kind) {
        let held = &mut self.clients[i].held;
        match kind {
            Kind::Ack(proto::Ack { delivery_id, .. })
            | Kind::Nack(proto::Nack { delivery_id, .. })
            | Kind::Reply(proto::Reply { delivery_id, .. }) => {
                held.retain(|h| h.delivery != *delivery_id);
            }
            Kind::Unsubscribe(u) => held.retain(|h| h.sid != u.sid),
            _ => {}
        }
    }

    /// Sends `kind` as client `i`: a frame over its size limit closes its
    /// connection.
    fn send(&mut self, i: usize, peer: &Peer, kind: Kind) {
        let body = Frame { kind: Some(kind) }.encode_to_vec();
        self.send_body(i, peer, body.into());
    }

    fn send_body(&mut self, i: usize, peer: &Peer, body: Bytes) {
        if let Some(Applied::Parked(parked)) = self.bus.send_body(peer, body) {
            self.clients[i].parked = Some((parked, self.bus.now));
        }
        self.drain_all();
    }

    fn retry_parked(&mut self) {
        for i in 0..PEERS {
            let Some((parked, since)) = self.clients[i].parked.take() else {
                continue;
            };
            let Some(peer) = self.clients[i].peer.clone() else {
                continue;
            };
            let waited = self.bus.now - since;
            let conn = peer.conn;
            if let Applied::Parked(again) = self.bus.run(|r, now| {
                r.begin(conn, now);
                r.retry_parked(conn, parked, waited)
            }) {
                self.clients[i].parked = Some((again, since));
            }
        }
        self.drain_all();
    }

    /// Reads what each client that is not stalled was sent; a client the
    /// broker closed is gone.
    fn drain_all(&mut self) {
        for i in 0..PEERS {
            let Some(peer) = self.clients[i].peer.clone() else {
                continue;
            };
            if peer.cancel.is_cancelled() {
                self.clients[i] = Client::default();
                continue;
            }
            if self.clients[i].stalled {
                continue;
            }
            for got in self.bus.received(&peer) {
                match got {
                    Got::Deliver { delivery, msg, sid } => {
                        self.messages.push(msg.id);
                        if delivery == 0 && msg.correlation_id != 0 {
                            self.clients[i].tokens.push(msg.correlation_id);
                        }
                        // A delivery the broker already took back (its
                        // subscription ended while the client was not
                        // reading) is not held.
                        let in_flight = self
                            .bus
                            .router
                            .in_flight
                            .get_held(DeliveryId::new(delivery), peer.conn);
                        if let Some(f) = in_flight.filter(|_| delivery != 0) {
                            self.clients[i].held.push(Held {
                                delivery,
                                message: msg.id,
                                correlation: msg.correlation_id,
                                sid,
                                group: f.group,
                            });
                        }
                    }
                    Got::Cancel { message_id } => {
                        self.clients[i].held.retain(|h| h.message != message_id);
                    }
                    Got::Ok { message_id, .. } if message_id != 0 => {
                        self.messages.push(message_id);
                    }
                    _ => {}
                }
            }
        }
    }

    /// A client holds what it was delivered until it settles it, is told
    /// `Cancel`, or its link ends: no two clients may hold one message.
    fn check_nothing_held_twice(&self) {
        let mut holders: HashMap<(u64, Option<GroupId>), usize> = HashMap::new();
        for (i, c) in self.clients.iter().enumerate() {
            if c.stalled || c.peer.is_none() {
                // A stalled client has not read its `Cancel`s yet.
                continue;
            }
            for h in &c.held {
                if let Some(other) = holders.insert((h.message, h.group), i) {
                    assert_eq!(other, i, "message {} held by c{other} and c{i}", h.message);
                }
            }
        }
    }
}
