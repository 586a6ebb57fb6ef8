//! Random sequences of commands from several connections, with the clock
//! moving, slow readers and blocked publishers: the router's invariants hold
//! after every step (`Bus::run` checks them), and no message is ever held
//! by two clients at once as far as the clients can tell.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::broker::QueueOverride;
use crate::framed::OverflowPolicy;

const PEERS: usize = 4;
const TOPICS: &[&str] = &[
    "q.a",
    "q.b",
    "q.block.x",
    "q.drop.x",
    "q.in.x",
    "e.x",
    "e.y",
];
const FILTERS: &[&str] = &[
    "q.a",
    "q.+",
    "q.#",
    "e.#",
    "e.x",
    "q.block.x",
    "q.drop.#",
    "#",
];
const GROUPS: &[&str] = &["g", "h"];

#[derive(Debug, Clone)]
enum Op {
    Connect(usize),
    Disconnect(usize),
    Subscribe {
        peer: usize,
        sid: u64,
        filter: usize,
    },
    Join {
        peer: usize,
        sid: u64,
        filter: usize,
        group: usize,
        prefetch: u32,
    },
    Unsubscribe {
        peer: usize,
        sid: u64,
    },
    Publish {
        peer: usize,
        topic: usize,
        mode: i32,
        direct: Option<usize>,
    },
    /// Settle the `pick`-th delivery the peer holds (or a made-up id).
    Settle {
        peer: usize,
        pick: usize,
        how: u8,
    },
    Reply {
        peer: usize,
        pick: usize,
    },
    Cancel {
        peer: usize,
        pick: usize,
    },
    Advance(u64),
    Heartbeat(usize),
    /// Stops or resumes reading the peer's frames.
    Stall(usize),
    Stats(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let peer = 0..PEERS;
    prop_oneof![
        2 => peer.clone().prop_map(Op::Connect),
        1 => peer.clone().prop_map(Op::Disconnect),
        2 => (peer.clone(), 1..4u64, 0..FILTERS.len())
            .prop_map(|(peer, sid, filter)| Op::Subscribe { peer, sid, filter }),
        4 => (peer.clone(), 4..7u64, 0..FILTERS.len(), 0..GROUPS.len(), 0..3u32)
            .prop_map(|(peer, sid, filter, group, prefetch)| Op::Join { peer, sid, filter, group, prefetch }),
        1 => (peer.clone(), 1..7u64).prop_map(|(peer, sid)| Op::Unsubscribe { peer, sid }),
        8 => (peer.clone(), 0..TOPICS.len(), 0..5i32, proptest::option::weighted(0.15, 0..PEERS))
            .prop_map(|(peer, topic, mode, direct)| Op::Publish { peer, topic, mode, direct }),
        5 => (peer.clone(), 0..4usize, 0..4u8).prop_map(|(peer, pick, how)| Op::Settle { peer, pick, how }),
        2 => (peer.clone(), 0..4usize).prop_map(|(peer, pick)| Op::Reply { peer, pick }),
        1 => (peer.clone(), 0..8usize).prop_map(|(peer, pick)| Op::Cancel { peer, pick }),
        2 => (0..700u64).prop_map(Op::Advance),
        2 => peer.clone().prop_map(Op::Heartbeat),
        1 => peer.clone().prop_map(Op::Stall),
        1 => peer.prop_map(Op::Stats),
    ]
}

/// What one fake client knows.
#[derive(Default)]
struct Client {
    peer: Option<Peer>,
    stalled: bool,
    /// A publish waiting for room, and when it was parked.
    parked: Option<(super::super::Parked, std::time::Instant)>,
    /// Deliveries it holds: (delivery id, message id, correlation id, sid,
    /// the queue it came from).
    held: Vec<(u64, u64, u64, u64, Place)>,
    /// Its queue memberships: sid → (filter, group).
    joined: HashMap<u64, (usize, usize)>,
    /// Correlation tokens of requests and gathers it got without a delivery
    /// to settle (as a plain subscriber or a gather's recipient).
    tokens: Vec<u64>,
}

/// Where a held delivery came from: a queue group (filter and name) or the
/// direct inbox. A message published to two groups is held once in each.
type Place = Option<(usize, usize)>;

struct Model {
    bus: Bus,
    clients: Vec<Client>,
    /// Message ids the clients heard of (confirmations, deliveries).
    messages: Vec<u64>,
}

impl Model {
    fn new() -> Self {
        let bus = Bus::with(|c| {
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
        });
        let mut bus = bus;
        let _events = bus.observe();
        Self {
            bus,
            clients: (0..PEERS).map(|_| Client::default()).collect(),
            messages: Vec::new(),
        }
    }

    fn live(&self, i: usize) -> Option<Peer> {
        let c = &self.clients[i];
        // A client with a parked publish sends nothing else until it is done.
        c.peer.clone().filter(|_| c.parked.is_none())
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Connect(i) => {
                if self.clients[i].peer.is_none() {
                    let peer = self
                        .bus
                        .connect_with(proto::Hello {
                            capabilities: GROUPS.iter().map(|g| (*g).to_owned()).collect(),
                            heartbeat_interval_ms: 100,
                            heartbeat_misses: 3,
                            ..hello(&format!("c{i}"))
                        })
                        .expect("registered");
                    self.clients[i] = Client {
                        peer: Some(peer),
                        ..Client::default()
                    };
                }
            }
            Op::Disconnect(i) => {
                if let Some(peer) = self.clients[i].peer.take() {
                    self.bus.disconnect(&peer);
                    self.clients[i] = Client::default();
                }
            }
            Op::Subscribe { peer, sid, filter } => {
                if let Some(p) = self.live(peer) {
                    self.send(
                        peer,
                        &p,
                        Kind::Subscribe(proto::Subscribe {
                            seq: sid,
                            sid,
                            filter: FILTERS[filter].into(),
                            ..Default::default()
                        }),
                    );
                }
            }
            Op::Join {
                peer,
                sid,
                filter,
                group,
                prefetch,
            } => {
                if let Some(p) = self.live(peer) {
                    self.clients[peer]
                        .joined
                        .entry(sid)
                        .or_insert((filter, group));
                    self.send(
                        peer,
                        &p,
                        Kind::Subscribe(proto::Subscribe {
                            seq: sid,
                            sid,
                            filter: FILTERS[filter].into(),
                            group: GROUPS[group].into(),
                            prefetch,
                        }),
                    );
                }
            }
            Op::Unsubscribe { peer, sid } => {
                if let Some(p) = self.live(peer) {
                    // What it held there goes back to the queue, untold.
                    let c = &mut self.clients[peer];
                    c.joined.remove(&sid);
                    c.held.retain(|h| h.3 != sid);
                    self.send(
                        peer,
                        &p,
                        Kind::Unsubscribe(proto::Unsubscribe { seq: 0, sid }),
                    );
                }
            }
            Op::Publish {
                peer,
                topic,
                mode,
                direct,
            } => {
                if let Some(p) = self.live(peer) {
                    let mut kind =
                        publish(1, PublishMode::try_from(mode).unwrap(), TOPICS[topic], "x");
                    if let (Kind::Publish(p), Some(to)) = (&mut kind, direct) {
                        p.target_client = format!("c{to}");
                        p.timeout_ms = 500;
                    }
                    self.send(peer, &p, kind);
                }
            }
            Op::Settle { peer, pick, how } => {
                if let Some(p) = self.live(peer) {
                    let delivery = self.pick_delivery(peer, pick);
                    let kind = match how {
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
                    self.clients[peer].held.retain(|h| h.0 != delivery);
                    self.send(peer, &p, kind);
                }
            }
            Op::Reply { peer, pick } => {
                if let Some(p) = self.live(peer) {
                    let c = &self.clients[peer];
                    let (delivery, correlation) = if c.held.is_empty() && !c.tokens.is_empty() {
                        (0, c.tokens[pick % c.tokens.len()])
                    } else {
                        let delivery = self.pick_delivery(peer, pick);
                        let correlation = c
                            .held
                            .iter()
                            .find(|h| h.0 == delivery)
                            .map_or(delivery, |h| h.2);
                        (delivery, correlation)
                    };
                    self.clients[peer].held.retain(|h| h.0 != delivery);
                    self.send(
                        peer,
                        &p,
                        Kind::Reply(proto::Reply {
                            correlation_id: correlation,
                            delivery_id: delivery,
                            message: Some(Box::default()),
                            seq: 3,
                        }),
                    );
                }
            }
            Op::Cancel { peer, pick } => {
                if let Some(p) = self.live(peer) {
                    let id = self.messages.get(pick).copied().unwrap_or(pick as u64 + 1);
                    self.send(
                        peer,
                        &p,
                        Kind::Cancel(proto::Cancel {
                            seq: 4,
                            message_id: id,
                        }),
                    );
                }
            }
            Op::Advance(ms) => {
                self.bus.advance(Duration::from_millis(ms));
                self.drain_all();
            }
            Op::Heartbeat(i) => {
                if let Some(p) = self.clients[i].peer.clone() {
                    self.send(i, &p, Kind::Heartbeat(proto::Heartbeat::default()));
                }
            }
            Op::Stall(i) => self.clients[i].stalled = !self.clients[i].stalled,
            Op::Stats(i) => {
                if let Some(p) = self.live(i) {
                    self.send(i, &p, Kind::StatsRequest(proto::StatsRequest { seq: 5 }));
                }
            }
        }
        self.retry_parked();
        self.check_nothing_held_twice();
    }

    fn pick_delivery(&self, peer: usize, pick: usize) -> u64 {
        let held = &self.clients[peer].held;
        held.get(pick).map_or(pick as u64 * 7 + 1, |h| h.0)
    }

    fn send(&mut self, i: usize, peer: &Peer, kind: Kind) {
        if let Applied::Parked(parked) = self.bus.send(peer, kind) {
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
                        if delivery != 0 {
                            let place = self.clients[i].joined.get(&sid).copied();
                            self.clients[i].held.push((
                                delivery,
                                msg.id,
                                msg.correlation_id,
                                sid,
                                place,
                            ));
                        }
                    }
                    Got::Cancel { message_id } => {
                        self.clients[i].held.retain(|h| h.1 != message_id);
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
        let mut holders: HashMap<(u64, Place), usize> = HashMap::new();
        for (i, c) in self.clients.iter().enumerate() {
            if c.stalled || c.peer.is_none() {
                // A stalled client has not read its `Cancel`s yet.
                continue;
            }
            for &(_, message, _, _, place) in &c.held {
                if let Some(other) = holders.insert((message, place), i) {
                    assert_eq!(other, i, "message {message} held by c{other} and c{i}");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_commands_from_several_connections_keep_every_invariant(
        ops in proptest::collection::vec(op(), 1..80)
    ) {
        let mut model = Model::new();
        for op in ops {
            model.step(op);
        }
        // Everyone leaves: everything in flight goes back to its queue.
        for i in 0..PEERS {
            model.step(Op::Disconnect(i));
        }
        prop_assert_eq!(model.bus.router.in_flight_count(), 0);
    }
}
