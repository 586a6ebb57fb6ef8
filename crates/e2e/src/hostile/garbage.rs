//! Seeded nonsense for the broker's edge: frames of every kind with random
//! field values (ids of other clients' messages and deliveries, ids nobody
//! holds, filters and topics that are not valid, modes that do not exist,
//! frames only a broker sends), and byte strings that are not frames at
//! all. The same seed gives the same nonsense.

use bytes::{BufMut as _, Bytes, BytesMut};
use eventbus::proto::{self, frame::Kind};

use crate::rng::Rng;

/// Text a field may hold: valid names, wildcards in the wrong places,
/// reserved names, empty, non-ASCII and long strings. Not the process
/// task topic nor the `process` group: a client that joins a group as a
/// worker may reject its tasks, by design, and the scenarios' victims use
/// that group.
const WORDS: &[&str] = &[
    "",
    "a",
    "events.x",
    "control.collector.task.network",
    "#",
    "+",
    "a.#.b",
    "+.+.+",
    "_sys.slow-consumer",
    "_sys.dead-letter.process",
    "broker",
    "procmond-1",
    "network",
    "UPPER.case",
    "a..b",
    ".",
    "tab\there",
    "ünïcödé",
    "x-dead-letter-reason",
];

/// A random string: one of [`WORDS`], or up to 300 random characters.
fn text(rng: &mut Rng) -> String {
    if rng.chance(0.8) {
        return (*rng.pick(WORDS).expect("not empty")).to_owned();
    }
    let len = rng.below(300) as usize;
    (0..len)
        .map(|_| char::from_u32(rng.below(0x250) as u32).unwrap_or('?'))
        .collect()
}

/// Where the broker's ids are at: ids of live messages, deliveries and
/// requests are drawn around it, so the nonsense names what exists.
#[derive(Debug, Clone, Copy)]
pub struct Live(pub u64);

/// A random number: near the live ids, small, a boundary, or anything.
fn number(rng: &mut Rng, live: Live) -> u64 {
    match rng.below(5) {
        0 | 1 => live.0.saturating_sub(200) + rng.below(250),
        2 => rng.below(64),
        3 => *rng
            .pick(&[0, 1, u64::from(u32::MAX), u64::MAX])
            .expect("not empty"),
        _ => rng.next_u64(),
    }
}

fn number32(rng: &mut Rng, live: Live) -> u32 {
    number(rng, live) as u32
}

fn envelope(rng: &mut Rng, live: Live) -> proto::Envelope {
    let mut headers = std::collections::HashMap::new();
    for _ in 0..rng.below(3) {
        headers.insert(text(rng), text(rng));
    }
    proto::Envelope {
        id: number(rng, live),
        topic: text(rng),
        payload: Bytes::from(vec![b'p'; rng.below(2048) as usize]),
        headers,
        correlation_id: number(rng, live),
        reply_to: text(rng),
        source: text(rng),
        timestamp_us: number(rng, live),
        attempt: number32(rng, live),
    }
}

/// Sometimes no message at all.
fn maybe_envelope(rng: &mut Rng, live: Live) -> Option<Box<proto::Envelope>> {
    rng.chance(0.9).then(|| Box::new(envelope(rng, live)))
}

/// A frame kind with random fields, its ids mostly around `live`: any of
/// the 19, including those only the broker sends and a second `Hello`.
pub fn random_kind(rng: &mut Rng, live: Live) -> Kind {
    match rng.below(19) {
        0 => Kind::Hello(proto::Hello {
            protocol_version: number32(rng, live),
            client_id: text(rng),
            kind: text(rng),
            capabilities: vec![text(rng)],
            pid: number32(rng, live),
            max_frame_bytes: number32(rng, live),
            heartbeat_interval_ms: number32(rng, live),
            heartbeat_misses: number32(rng, live),
            ..Default::default()
        }),
        1 => Kind::Welcome(proto::Welcome {
            max_frame_bytes: number32(rng, live),
            ..Default::default()
        }),
        2 | 3 => Kind::Publish(proto::Publish {
            seq: number(rng, live),
            mode: number32(rng, live) as i32 % 6,
            message: maybe_envelope(rng, live),
            target_client: if rng.chance(0.3) {
                text(rng)
            } else {
                String::new()
            },
            timeout_ms: number32(rng, live),
            gather_scope: number32(rng, live) as i32 % 4,
            gather_group: text(rng),
        }),
        4 => Kind::Subscribe(proto::Subscribe {
            seq: number(rng, live),
            sid: number(rng, live),
            filter: text(rng),
            group: if rng.chance(0.5) {
                text(rng)
            } else {
                String::new()
            },
            prefetch: number32(rng, live),
            fallback: false,
        }),
        5 => Kind::Unsubscribe(proto::Unsubscribe {
            seq: number(rng, live),
            sid: number(rng, live),
        }),
        6 => Kind::Deliver(proto::Deliver {
            sid: number(rng, live),
            delivery_id: number(rng, live),
            message: maybe_envelope(rng, live),
        }),
        7 => Kind::Ack(proto::Ack {
            delivery_id: number(rng, live),
            seq: number(rng, live),
        }),
        8 => Kind::Nack(proto::Nack {
            delivery_id: number(rng, live),
            requeue: rng.chance(0.5),
            seq: number(rng, live),
        }),
        9 => Kind::Reply(proto::Reply {
            correlation_id: number(rng, live),
            delivery_id: number(rng, live),
            message: maybe_envelope(rng, live),
            seq: number(rng, live),
        }),
        10 => Kind::Heartbeat(proto::Heartbeat {
            nonce: number(rng, live),
        }),
        11 => Kind::Cancel(proto::Cancel {
            seq: number(rng, live),
            message_id: number(rng, live),
        }),
        12 => Kind::StatsRequest(proto::StatsRequest {
            seq: number(rng, live),
        }),
        13 => Kind::StatsResponse(Box::new(proto::StatsResponse {
            seq: number(rng, live),
            ..Default::default()
        })),
        16 => Kind::GatherStarted(proto::GatherStarted {
            seq: number(rng, live),
            message_id: number(rng, live),
            recipients: vec![text(rng)],
        }),
        17 => Kind::GatherDone(proto::GatherDone {
            seq: number(rng, live),
            answered: number32(rng, live),
            missing: Vec::new(),
        }),
        18 => Kind::ResultRequest(proto::ResultRequest {
            seq: number(rng, live),
            message_id: number(rng, live),
            timeout_ms: number32(rng, live),
        }),
        14 => Kind::Ok(proto::Ok {
            seq: number(rng, live),
            message_id: number(rng, live),
            result_kept: rng.below(2) == 1,
        }),
        _ => Kind::Error(proto::Error {
            seq: number(rng, live),
            code: number32(rng, live) as i32,
            message: text(rng),
            details: Default::default(),
        }),
    }
}

/// Bytes that are not a valid frame: random bytes, a wrong wire version, a
/// zero length, a length far over any limit, a body that is not protobuf,
/// or a frame cut short.
pub fn broken_bytes(rng: &mut Rng) -> Bytes {
    let mut out = BytesMut::new();
    match rng.below(6) {
        0 => out.extend((0..rng.below(512)).map(|_| rng.next_u64() as u8)),
        1 => {
            out.put_u32(3);
            out.put_u8(7);
            out.put_slice(&[0, 0]);
        }
        2 => out.put_u32(0),
        3 => out.put_u32(u32::MAX),
        4 => {
            out.put_u32(9);
            out.put_u8(1);
            out.put_slice(&[0xff; 8]);
        }
        _ => {
            out.put_u32(1000);
            out.put_u8(1);
            out.put_slice(&[0x1a; 10]);
        }
    }
    out.freeze()
}
