//! The `router` target's input: a script of steps, read from bytes (and
//! written, for the seeds), each becoming one or more ops of the router's
//! model (`eventbus::fuzzing::router::Op`).
//!
//! A step starts with a tag byte (modulo the number of kinds of step);
//! peers, subscription ids and table indices are single bytes; ids are
//! [`Reader::num`]s, short when small, so real message and delivery ids are
//! easy to hit; names come from [`STRINGS`] or are raw bytes; sizes are
//! `u16`s, so a short input can carry a huge header.

use bytes::Bytes;
use eventbus::fuzzing::router::Op;
use eventbus::proto::{self, frame::Kind};

use crate::input::{Reader, Writer};

/// Names a script picks by index: the model's topics and filters, the
/// broker's own topics and headers, the model's client ids, groups, users
/// and secrets, and invalid names.
pub const STRINGS: &[&str] = &[
    "q.a",
    "q.b",
    "q.block.x",
    "q.drop.x",
    "q.in.x",
    "e.x",
    "e.y",
    "q.+",
    "q.#",
    "e.#",
    "#",
    "+",
    "+.+",
    "_sys.slow-consumer",
    "_sys.dead-letter.g",
    "_sys",
    "_sys.#",
    "x-dead-letter-reason",
    "x-attempt",
    "c0",
    "c1",
    "c2",
    "c3",
    "broker",
    "g",
    "h",
    "admin",
    "limited",
    "a",
    "l",
    "",
    "a..b",
    "Q.A",
    "a.b.c.d.e.f.g.h.i",
    "a b",
    "#.a",
    "é",
];

/// Names longer than a bound, and exactly at it: a topic of 255 and 256
/// bytes, a client id of 64 and 65; picked after [`STRINGS`].
fn long_string(i: usize) -> String {
    match i {
        0 => "a".repeat(255),
        1 => "a".repeat(256),
        2 => "c".repeat(64),
        _ => "c".repeat(65),
    }
}

/// A name: one of [`STRINGS`] (or a long one) by index, or raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    /// Index into [`STRINGS`] and then the long names, modulo their number.
    Known(u8),
    /// Up to 127 raw bytes, read as lossy UTF-8.
    Raw(Vec<u8>),
}

impl Text {
    /// The `STRINGS` entry equal to `s`.
    ///
    /// # Panics
    /// If there is none.
    pub fn of(s: &str) -> Self {
        let i = STRINGS.iter().position(|k| *k == s);
        Self::Known(i.unwrap_or_else(|| panic!("{s:?} is not in STRINGS")) as u8)
    }

    fn read(r: &mut Reader) -> Self {
        match r.u8() {
            b @ 0..0x80 => Self::Known(b),
            b => Self::Raw(r.bytes(usize::from(b & 0x7f)).to_vec()),
        }
    }

    fn write(&self, w: &mut Writer) {
        match self {
            Self::Known(i) => w.u8(*i & 0x7f),
            Self::Raw(b) => w.u8(0x80 | b.len() as u8).bytes(b),
        };
    }

    fn string(&self) -> String {
        match self {
            Self::Known(i) => {
                let i = usize::from(*i) % (STRINGS.len() + 4);
                STRINGS
                    .get(i)
                    .map_or_else(|| long_string(i - STRINGS.len()), |s| (*s).to_owned())
            }
            Self::Raw(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }
}

/// Headers: up to four names with a value of the given size each.
pub type Headers = Vec<(Text, u16)>;

fn read_headers(r: &mut Reader) -> Headers {
    (0..r.u8() % 5).map(|_| (Text::read(r), r.u16())).collect()
}

fn write_headers(w: &mut Writer, headers: &Headers) {
    w.u8(headers.len() as u8);
    for (name, size) in headers {
        name.write(w);
        w.u16(*size);
    }
}

fn headers(spec: &Headers) -> std::collections::HashMap<String, String> {
    spec.iter()
        .map(|(name, size)| (name.string(), "v".repeat(usize::from(*size))))
        .collect()
}

/// A publish of `payload` bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishSpec {
    /// Its `seq`.
    pub seq: u64,
    /// The wire mode (any `i32`, valid or not).
    pub mode: u64,
    /// Its topic.
    pub topic: Text,
    /// Bytes of payload.
    pub payload: u16,
    /// Its headers.
    pub headers: Headers,
    /// A correlation id, set by a client.
    pub correlation: u64,
    /// A reply-to, set by a client.
    pub reply_to: Text,
    /// A direct send's receiver.
    pub target: Text,
    /// A request's timeout.
    pub timeout: u64,
    /// A gather's scope (any `i32`, valid or not).
    pub gather_scope: u64,
    /// A gather's queue group.
    pub gather_group: Text,
}

impl PublishSpec {
    /// A publish of 8 bytes on `topic` in `mode`, with `seq` 1.
    pub fn new(mode: u64, topic: &str) -> Self {
        Self {
            seq: 1,
            mode,
            topic: Text::of(topic),
            payload: 8,
            headers: Vec::new(),
            correlation: 0,
            reply_to: Text::of(""),
            target: Text::of(""),
            timeout: 0,
            gather_scope: 0,
            gather_group: Text::of(""),
        }
    }
}

/// A reply, by correlation id and delivery id (both perhaps forged).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplySpec {
    /// The request's correlation token.
    pub correlation: u64,
    /// The delivery it settles (0: none).
    pub delivery: u64,
    /// Its `seq`.
    pub seq: u64,
    /// Its headers.
    pub headers: Headers,
    /// Bytes of payload.
    pub payload: u16,
}

/// A frame a client sends (or one only the broker may send).
#[derive(Debug, Clone, PartialEq)]
pub enum FrameSpec {
    /// A publish.
    Publish(PublishSpec),
    /// A subscribe or join.
    Subscribe {
        /// Its `seq`.
        seq: u64,
        /// Its subscription id.
        sid: u64,
        /// Its filter.
        filter: Text,
        /// A group to join, if not empty.
        group: Text,
        /// The prefetch asked for.
        prefetch: u64,
    },
    /// An unsubscribe.
    Unsubscribe {
        /// Its `seq`.
        seq: u64,
        /// The subscription id.
        sid: u64,
    },
    /// An ack.
    Ack {
        /// The delivery.
        delivery: u64,
        /// Its `seq`.
        seq: u64,
    },
    /// A nack.
    Nack {
        /// The delivery.
        delivery: u64,
        /// Requeue, or reject.
        requeue: bool,
        /// Its `seq`.
        seq: u64,
    },
    /// A reply.
    Reply(ReplySpec),
    /// A cancel of any message id.
    Cancel {
        /// Its `seq`.
        seq: u64,
        /// The message.
        message: u64,
    },
    /// A stats request.
    Stats {
        /// Its `seq`.
        seq: u64,
    },
    /// A request for a durable request's result, by any message id.
    Result {
        /// Its `seq`.
        seq: u64,
        /// The request's message id.
        message: u64,
        /// How long it waits.
        timeout: u64,
    },
    /// A heartbeat.
    Heartbeat,
    /// A goodbye.
    Goodbye,
    /// A second `Hello`.
    Hello,
    /// A frame only the broker sends: [`BROKER_ONLY`]`[i]`, `i` taken
    /// modulo their number.
    BrokerOnly(u8),
}

const FRAME_KINDS: u8 = 13;

/// The frames only the broker sends, which a client may send all the same.
pub fn broker_only(i: u8) -> Kind {
    match i % 7 {
        0 => Kind::Deliver(proto::Deliver::default()),
        1 => Kind::Welcome(proto::Welcome::default()),
        2 => Kind::Ok(proto::Ok::default()),
        3 => Kind::Error(proto::Error::default()),
        4 => Kind::StatsResponse(Box::default()),
        5 => Kind::GatherStarted(proto::GatherStarted {
            seq: 1,
            message_id: 1,
            recipients: vec!["c0".into()],
        }),
        _ => Kind::GatherDone(proto::GatherDone {
            seq: 1,
            answered: 1,
            missing: Vec::new(),
        }),
    }
}

impl FrameSpec {
    fn read(r: &mut Reader) -> Self {
        match r.u8() % FRAME_KINDS {
            0 => Self::Publish(PublishSpec {
                seq: r.num(),
                mode: r.num(),
                topic: Text::read(r),
                payload: r.u16(),
                headers: read_headers(r),
                correlation: r.num(),
                reply_to: Text::read(r),
                target: Text::read(r),
                timeout: r.num(),
                gather_scope: r.num(),
                gather_group: Text::read(r),
            }),
            1 => Self::Subscribe {
                seq: r.num(),
                sid: r.num(),
                filter: Text::read(r),
                group: Text::read(r),
                prefetch: r.num(),
            },
            2 => Self::Unsubscribe {
                seq: r.num(),
                sid: r.num(),
            },
            3 => Self::Ack {
                delivery: r.num(),
                seq: r.num(),
            },
            4 => Self::Nack {
                delivery: r.num(),
                requeue: r.u8() & 1 == 1,
                seq: r.num(),
            },
            5 => Self::Reply(ReplySpec {
                correlation: r.num(),
                delivery: r.num(),
                seq: r.num(),
                headers: read_headers(r),
                payload: r.u16(),
            }),
            6 => Self::Cancel {
                seq: r.num(),
                message: r.num(),
            },
            7 => Self::Stats { seq: r.num() },
            8 => Self::Heartbeat,
            9 => Self::Goodbye,
            10 => Self::Hello,
            11 => Self::BrokerOnly(r.u8()),
            _ => Self::Result {
                seq: r.num(),
                message: r.num(),
                timeout: r.num(),
            },
        }
    }

    fn write(&self, w: &mut Writer) {
        match self {
            Self::Publish(PublishSpec {
                seq,
                mode,
                topic,
                payload,
                headers,
                correlation,
                reply_to,
                target,
                timeout,
                gather_scope,
                gather_group,
            }) => {
                w.u8(0).num(*seq).num(*mode);
                topic.write(w);
                w.u16(*payload);
                write_headers(w, headers);
                w.num(*correlation);
                reply_to.write(w);
                target.write(w);
                w.num(*timeout).num(*gather_scope);
                gather_group.write(w);
            }
            Self::Subscribe {
                seq,
                sid,
                filter,
                group,
                prefetch,
            } => {
                w.u8(1).num(*seq).num(*sid);
                filter.write(w);
                group.write(w);
                w.num(*prefetch);
            }
            Self::Unsubscribe { seq, sid } => {
                w.u8(2).num(*seq).num(*sid);
            }
            Self::Ack { delivery, seq } => {
                w.u8(3).num(*delivery).num(*seq);
            }
            Self::Nack {
                delivery,
                requeue,
                seq,
            } => {
                w.u8(4).num(*delivery).u8(u8::from(*requeue)).num(*seq);
            }
            Self::Reply(ReplySpec {
                correlation,
                delivery,
                seq,
                headers,
                payload,
            }) => {
                w.u8(5).num(*correlation).num(*delivery).num(*seq);
                write_headers(w, headers);
                w.u16(*payload);
            }
            Self::Cancel { seq, message } => {
                w.u8(6).num(*seq).num(*message);
            }
            Self::Stats { seq } => {
                w.u8(7).num(*seq);
            }
            Self::Heartbeat => {
                w.u8(8);
            }
            Self::Goodbye => {
                w.u8(9);
            }
            Self::Hello => {
                w.u8(10);
            }
            Self::BrokerOnly(i) => {
                w.u8(11).u8(*i);
            }
            Self::Result {
                seq,
                message,
                timeout,
            } => {
                w.u8(12).num(*seq).num(*message).num(*timeout);
            }
        }
    }

    /// The frame.
    pub fn kind(&self) -> Kind {
        let payload = |n: &u16| Bytes::from(vec![b'p'; usize::from(*n)]);
        match self {
            Self::Publish(PublishSpec {
                seq,
                mode,
                topic,
                payload: size,
                headers: h,
                correlation,
                reply_to,
                target,
                timeout,
                gather_scope,
                gather_group,
            }) => Kind::Publish(proto::Publish {
                seq: *seq,
                mode: *mode as i32,
                message: Some(Box::new(proto::Envelope {
                    topic: topic.string(),
                    payload: payload(size),
                    headers: headers(h),
                    correlation_id: *correlation,
                    reply_to: reply_to.string(),
                    ..Default::default()
                })),
                target_client: target.string(),
                timeout_ms: *timeout as u32,
                gather_scope: *gather_scope as i32,
                gather_group: gather_group.string(),
            }),
            Self::Subscribe {
                seq,
                sid,
                filter,
                group,
                prefetch,
            } => Kind::Subscribe(proto::Subscribe {
                seq: *seq,
                sid: *sid,
                filter: filter.string(),
                group: group.string(),
                prefetch: *prefetch as u32,
                fallback: false,
            }),
            Self::Unsubscribe { seq, sid } => Kind::Unsubscribe(proto::Unsubscribe {
                seq: *seq,
                sid: *sid,
            }),
            Self::Ack { delivery, seq } => Kind::Ack(proto::Ack {
                delivery_id: *delivery,
                seq: *seq,
            }),
            Self::Nack {
                delivery,
                requeue,
                seq,
            } => Kind::Nack(proto::Nack {
                delivery_id: *delivery,
                requeue: *requeue,
                seq: *seq,
            }),
            Self::Reply(ReplySpec {
                correlation,
                delivery,
                seq,
                headers: h,
                payload: size,
            }) => Kind::Reply(proto::Reply {
                correlation_id: *correlation,
                delivery_id: *delivery,
                seq: *seq,
                message: Some(Box::new(proto::Envelope {
                    payload: payload(size),
                    headers: headers(h),
                    ..Default::default()
                })),
            }),
            Self::Cancel { seq, message } => Kind::Cancel(proto::Cancel {
                seq: *seq,
                message_id: *message,
            }),
            Self::Stats { seq } => Kind::StatsRequest(proto::StatsRequest { seq: *seq }),
            Self::Heartbeat => Kind::Heartbeat(proto::Heartbeat { nonce: 1 }),
            Self::Goodbye => Kind::Goodbye(proto::Goodbye::default()),
            Self::Hello => Kind::Hello(proto::Hello::default()),
            Self::BrokerOnly(i) => broker_only(*i),
            Self::Result {
                seq,
                message,
                timeout,
            } => Kind::ResultRequest(proto::ResultRequest {
                seq: *seq,
                message_id: *message,
                timeout_ms: *timeout as u32,
            }),
        }
    }
}

/// What a `Hello` says.
#[derive(Debug, Clone, PartialEq)]
pub struct HelloSpec {
    /// 0: this build's protocol version; else this value.
    pub version: u8,
    /// The client id it asks for.
    pub client_id: Text,
    /// Bytes of `kind`.
    pub kind: u8,
    /// Its capabilities (up to 19).
    pub capabilities: Vec<Text>,
    /// Its largest frame.
    pub max_frame: u64,
    /// The heartbeat interval it asks for.
    pub interval: u64,
    /// The missed heartbeats it asks for.
    pub misses: u64,
    /// A user of the auth file.
    pub user: Text,
    /// Its secret.
    pub secret: Text,
}

impl HelloSpec {
    /// A hello for `client_id` that asks for nothing special.
    pub fn new(client_id: Text) -> Self {
        Self {
            version: 0,
            client_id,
            kind: 0,
            capabilities: Vec::new(),
            max_frame: 0,
            interval: 0,
            misses: 0,
            user: Text::of(""),
            secret: Text::of(""),
        }
    }

    fn read(r: &mut Reader) -> Self {
        Self {
            version: r.u8(),
            client_id: Text::read(r),
            kind: r.u8(),
            capabilities: (0..r.u8() % 20).map(|_| Text::read(r)).collect(),
            max_frame: r.num(),
            interval: r.num(),
            misses: r.num(),
            user: Text::read(r),
            secret: Text::read(r),
        }
    }

    fn write(&self, w: &mut Writer) {
        w.u8(self.version);
        self.client_id.write(w);
        w.u8(self.kind).u8(self.capabilities.len() as u8);
        for c in &self.capabilities {
            c.write(w);
        }
        w.num(self.max_frame).num(self.interval).num(self.misses);
        self.user.write(w);
        self.secret.write(w);
    }

    fn hello(&self) -> proto::Hello {
        proto::Hello {
            protocol_version: match self.version {
                0 => proto::PROTOCOL_VERSION,
                v => u32::from(v),
            },
            client_id: self.client_id.string(),
            kind: "k".repeat(usize::from(self.kind)),
            capabilities: self.capabilities.iter().map(Text::string).collect(),
            max_frame_bytes: self.max_frame as u32,
            heartbeat_interval_ms: self.interval as u32,
            heartbeat_misses: self.misses as u32,
            user: self.user.string(),
            secret: self.secret.string().into_bytes().into(),
            ..Default::default()
        }
    }
}

/// One step of a script.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `Op::Connect`.
    Connect(u8),
    /// `Op::Disconnect`.
    Disconnect(u8),
    /// `Op::Subscribe`: peer, sid, filter index.
    Subscribe(u8, u8, u8),
    /// `Op::Join`: peer, sid, filter index, group index, prefetch.
    Join(u8, u8, u8, u8, u8),
    /// `Op::Unsubscribe`: peer, sid.
    Unsubscribe(u8, u8),
    /// `Op::Publish`: peer, topic index, mode, direct receiver + 1 (0: none).
    Publish(u8, u8, u8, u8),
    /// `Op::Settle`: peer, pick, how.
    Settle(u8, u8, u8),
    /// `Op::Reply`: peer, pick.
    Reply(u8, u8),
    /// `Op::Cancel`: peer, pick.
    Cancel(u8, u8),
    /// `Op::Advance`, in milliseconds.
    Advance(u16),
    /// `Op::Heartbeat`.
    Heartbeat(u8),
    /// `Op::Stall`.
    Stall(u8),
    /// `Op::Stats`.
    Stats(u8),
    /// `Op::Frame`.
    Frame(u8, FrameSpec),
    /// `Op::Body`: up to 255 bytes.
    Body(u8, Vec<u8>),
    /// `Op::Hello`, with or without the holder's resume token.
    Hello(u8, HelloSpec, bool),
    /// `Op::Memory`.
    Memory(bool),
    /// `Op::Drain`.
    Drain,
    /// The same frame `count` times from one peer.
    Flood(u8, u8, FrameSpec),
    /// `Op::Result`: peer, pick, wait in milliseconds.
    Result(u8, u8, u16),
}

const STEP_KINDS: u8 = 20;

impl Step {
    /// Reads one step.
    pub fn read(r: &mut Reader) -> Self {
        match r.u8() % STEP_KINDS {
            0 => Self::Connect(r.u8()),
            1 => Self::Disconnect(r.u8()),
            2 => Self::Subscribe(r.u8(), r.u8(), r.u8()),
            3 => Self::Join(r.u8(), r.u8(), r.u8(), r.u8(), r.u8()),
            4 => Self::Unsubscribe(r.u8(), r.u8()),
            5 => Self::Publish(r.u8(), r.u8(), r.u8(), r.u8()),
            6 => Self::Settle(r.u8(), r.u8(), r.u8()),
            7 => Self::Reply(r.u8(), r.u8()),
            8 => Self::Cancel(r.u8(), r.u8()),
            9 => Self::Advance(r.u16()),
            10 => Self::Heartbeat(r.u8()),
            11 => Self::Stall(r.u8()),
            12 => Self::Stats(r.u8()),
            13 => Self::Frame(r.u8(), FrameSpec::read(r)),
            14 => {
                let peer = r.u8();
                let len = usize::from(r.u8());
                Self::Body(peer, r.bytes(len).to_vec())
            }
            15 => Self::Hello(r.u8(), HelloSpec::read(r), r.u8() & 1 == 1),
            16 => Self::Memory(r.u8() & 1 == 1),
            17 => Self::Drain,
            18 => Self::Flood(r.u8(), r.u8(), FrameSpec::read(r)),
            _ => Self::Result(r.u8(), r.u8(), r.u16()),
        }
    }

    /// Writes the step as [`read`](Self::read) reads it.
    pub fn write(&self, w: &mut Writer) {
        match self {
            Self::Connect(p) => w.u8(0).u8(*p),
            Self::Disconnect(p) => w.u8(1).u8(*p),
            Self::Subscribe(p, s, f) => w.u8(2).u8(*p).u8(*s).u8(*f),
            Self::Join(p, s, f, g, n) => w.u8(3).u8(*p).u8(*s).u8(*f).u8(*g).u8(*n),
            Self::Unsubscribe(p, s) => w.u8(4).u8(*p).u8(*s),
            Self::Publish(p, t, m, d) => w.u8(5).u8(*p).u8(*t).u8(*m).u8(*d),
            Self::Settle(p, k, h) => w.u8(6).u8(*p).u8(*k).u8(*h),
            Self::Reply(p, k) => w.u8(7).u8(*p).u8(*k),
            Self::Cancel(p, k) => w.u8(8).u8(*p).u8(*k),
            Self::Advance(ms) => w.u8(9).u16(*ms),
            Self::Heartbeat(p) => w.u8(10).u8(*p),
            Self::Stall(p) => w.u8(11).u8(*p),
            Self::Stats(p) => w.u8(12).u8(*p),
            Self::Frame(p, f) => {
                w.u8(13).u8(*p);
                f.write(w);
                w
            }
            Self::Body(p, b) => w.u8(14).u8(*p).u8(b.len() as u8).bytes(b),
            Self::Hello(p, h, resume) => {
                w.u8(15).u8(*p);
                h.write(w);
                w.u8(u8::from(*resume))
            }
            Self::Memory(over) => w.u8(16).u8(u8::from(*over)),
            Self::Drain => w.u8(17),
            Self::Flood(p, n, f) => {
                w.u8(18).u8(*p).u8(*n);
                f.write(w);
                w
            }
            Self::Result(p, k, ms) => w.u8(19).u8(*p).u8(*k).u16(*ms),
        };
    }

    /// The model's ops for this step.
    pub fn ops(&self) -> Vec<Op> {
        let p = |peer: &u8| usize::from(*peer);
        let op = match self {
            Self::Connect(i) => Op::Connect(p(i)),
            Self::Disconnect(i) => Op::Disconnect(p(i)),
            Self::Subscribe(peer, sid, filter) => Op::Subscribe {
                peer: p(peer),
                sid: u64::from(*sid),
                filter: p(filter),
            },
            Self::Join(peer, sid, filter, group, prefetch) => Op::Join {
                peer: p(peer),
                sid: u64::from(*sid),
                filter: p(filter),
                group: p(group),
                prefetch: u32::from(*prefetch),
            },
            Self::Unsubscribe(peer, sid) => Op::Unsubscribe {
                peer: p(peer),
                sid: u64::from(*sid),
            },
            Self::Publish(peer, topic, mode, direct) => Op::Publish {
                peer: p(peer),
                topic: p(topic),
                mode: i32::from(*mode),
                direct: (*direct != 0).then(|| p(direct) - 1),
            },
            Self::Settle(peer, pick, how) => Op::Settle {
                peer: p(peer),
                pick: p(pick),
                how: *how,
            },
            Self::Reply(peer, pick) => Op::Reply {
                peer: p(peer),
                pick: p(pick),
            },
            Self::Cancel(peer, pick) => Op::Cancel {
                peer: p(peer),
                pick: p(pick),
            },
            Self::Advance(ms) => Op::Advance(u64::from(*ms)),
            Self::Heartbeat(i) => Op::Heartbeat(p(i)),
            Self::Stall(i) => Op::Stall(p(i)),
            Self::Stats(i) => Op::Stats(p(i)),
            Self::Frame(peer, f) => Op::Frame {
                peer: p(peer),
                kind: f.kind(),
            },
            Self::Body(peer, b) => Op::Body {
                peer: p(peer),
                body: Bytes::copy_from_slice(b),
            },
            Self::Hello(peer, h, resume) => Op::Hello {
                peer: p(peer),
                hello: Box::new(h.hello()),
                resume: *resume,
            },
            Self::Result(peer, pick, ms) => Op::Result {
                peer: p(peer),
                pick: p(pick),
                wait_ms: u32::from(*ms),
            },
            Self::Memory(over) => Op::Memory(*over),
            Self::Drain => Op::Drain,
            Self::Flood(peer, n, f) => {
                let kind = f.kind();
                return (0..*n)
                    .map(|_| Op::Frame {
                        peer: p(peer),
                        kind: kind.clone(),
                    })
                    .collect();
            }
        };
        vec![op]
    }
}
