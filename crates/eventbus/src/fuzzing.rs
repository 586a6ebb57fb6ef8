//! What the fuzz targets in `fuzz/` reach inside the crate: compiled only
//! with `--cfg fuzzing` (which cargo-fuzz sets), not part of the API.
//!
//! Each entry point hands back what the crate computed, as plain data the
//! fuzz targets compare with prost's reading; the targets hold the checks.

use bytes::{Bytes, BytesMut};

use crate::codec::FrameError;
use crate::codec::raw::{
    ReplyStamp, StampedDeliver, StampedReply, decode_deliver, scan_publish, scan_reply,
};
use crate::names::ClientId;
use crate::proto::{self, Frame, frame::Kind};

/// The router's model of several clients (`broker/router/tests/model.rs`),
/// shared with the router's property test.
pub use crate::broker::fuzz_model as router;

/// What the broker's reader found in a `Publish` body, without decoding it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedPublish {
    /// `Publish.seq`.
    pub seq: u64,
    /// `Publish.mode`, as the varint was sent.
    pub mode: u64,
    /// `Publish.timeout_ms`.
    pub timeout_ms: u32,
    /// `Publish.gather_scope`, as the varint was sent.
    pub gather_scope: u64,
    /// `Publish.gather_group` (empty when none).
    pub gather_group: String,
    /// `Publish.target_client`, if not empty.
    pub target: Option<String>,
    /// The envelope's topic (empty when it has none).
    pub topic: String,
    /// The envelope sets a correlation id or a reply-to.
    pub reply_fields: bool,
    /// The first header key starting with `x-`.
    pub reserved_header: Option<String>,
    /// The envelope's bytes, as the publisher encoded them.
    pub envelope: Bytes,
}

/// The broker's reader of `Publish` bodies: `None` when it leaves the body
/// to prost.
pub fn scan_publish_body(body: Bytes) -> Option<ScannedPublish> {
    let raw = scan_publish(body).ok()?;
    Some(ScannedPublish {
        seq: raw.seq,
        mode: raw.mode,
        timeout_ms: raw.timeout_ms,
        gather_scope: raw.gather_scope,
        gather_group: raw.gather_group().to_owned(),
        target: raw.target().map(str::to_owned),
        topic: raw.topic().to_owned(),
        reply_fields: raw.reply_fields,
        reserved_header: raw.reserved_header().map(str::to_owned),
        envelope: raw.envelope(),
    })
}

/// What the broker's reader found in a `Reply` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ScannedReply {
    /// `Reply.correlation_id`.
    pub correlation_id: u64,
    /// `Reply.delivery_id`.
    pub delivery_id: u64,
    /// `Reply.seq`.
    pub seq: u64,
    /// The first header key starting with `x-`.
    pub reserved_header: Option<String>,
    /// The envelope's bytes (empty when it has none).
    pub envelope: Bytes,
}

/// The broker's reader of `Reply` bodies: `None` when it leaves the body to
/// prost.
pub fn scan_reply_body(body: Bytes) -> Option<ScannedReply> {
    let raw = scan_reply(body).ok()?;
    Some(ScannedReply {
        correlation_id: raw.correlation_id,
        delivery_id: raw.delivery_id,
        seq: raw.seq,
        reserved_header: raw.reserved_header().map(str::to_owned),
        envelope: raw.envelope(),
    })
}

/// What the broker stamps on a message it delivers.
#[derive(Debug, Clone)]
pub struct Stamps {
    /// The subscription it is delivered on.
    pub sid: u64,
    /// 0 for fan-out.
    pub delivery_id: u64,
    /// The message id.
    pub id: u64,
    /// The publisher's client id (a valid one).
    pub source: String,
    /// When the broker took it.
    pub timestamp_us: u64,
    /// The delivery attempt.
    pub attempt: u32,
    /// `None`: nothing about replies; `Some(None)`: the publisher's
    /// correlation id and reply-to cleared; `Some(Some((token, to)))`: a
    /// request, answered with `token` to client `to` (a valid id).
    pub reply: Option<Option<(u64, String)>>,
}

/// The `Deliver` frame (length prefix and version byte included) the broker
/// writes for `envelope` with `stamps`.
///
/// # Panics
/// If a client id in `stamps` is not valid.
pub fn stamped_deliver(envelope: Bytes, stamps: &Stamps) -> Bytes {
    let id = |s: &str| ClientId::new(s).expect("a valid client id");
    let deliver = StampedDeliver {
        sid: stamps.sid,
        delivery_id: stamps.delivery_id,
        envelope,
        id: stamps.id,
        source: id(&stamps.source),
        timestamp_us: stamps.timestamp_us,
        attempt: stamps.attempt,
        reply: match &stamps.reply {
            None => ReplyStamp::None,
            Some(None) => ReplyStamp::Clear,
            Some(Some((correlation, to))) => ReplyStamp::Request {
                correlation: *correlation,
                to: id(to),
            },
        },
    };
    let mut wire = BytesMut::new();
    deliver.encode(&mut wire);
    assert_eq!(
        wire.len(),
        4 + deliver.frame_len(),
        "the prefix counts the frame"
    );
    wire.freeze()
}

/// The `Reply` frame (length prefix and version byte included) the broker
/// forwards to the requester whose request had `seq`.
///
/// # Panics
/// If `source` is not a valid client id.
pub fn stamped_reply(envelope: Bytes, seq: u64, source: &str, timestamp_us: u64) -> Bytes {
    let reply = StampedReply {
        seq,
        envelope,
        source: ClientId::new(source).expect("a valid client id"),
        timestamp_us,
    };
    let mut wire = BytesMut::new();
    reply.encode(&mut wire);
    assert_eq!(
        wire.len(),
        4 + reply.frame_len(),
        "the prefix counts the frame"
    );
    wire.freeze()
}

/// The client's hand decoder on a frame body: `None` when it leaves the
/// body to prost, else the frame it read, as prost's types.
pub fn hand_decoded_deliver(body: Bytes) -> Option<Frame> {
    let delivery = decode_deliver(body).ok()?;
    Some(Frame {
        kind: Some(Kind::Deliver(proto::Deliver {
            sid: delivery.sid,
            delivery_id: delivery.delivery_id,
            message: Some(Box::new(delivery.envelope.to_envelope())),
        })),
    })
}

/// What the broker's edge made of a frame body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// A command for the router.
    Command,
    /// A typed refusal under the frame's `seq`.
    Refused,
    /// `Unreadable`: a publish or reply prost reads, which the broker's
    /// readers refused even once encoded canonically.
    Unreadable,
}

/// The broker's edge on a frame body: `Err` for bytes that are not a
/// frame (the connection is closed).
pub fn edge(body: Bytes) -> Result<Edge, FrameError> {
    Ok(match crate::broker::fuzz_edge(body)? {
        None => Edge::Command,
        Some(false) => Edge::Refused,
        Some(true) => Edge::Unreadable,
    })
}

/// Journal directories of any segment files, opened as the broker opens
/// them (the `journal` fuzz target).
pub use crate::broker::journal::fuzz as journal;
