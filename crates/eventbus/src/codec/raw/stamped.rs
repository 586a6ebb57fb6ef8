//! Messages as the broker holds and writes them: the publisher's envelope
//! bytes, kept as they came, and the broker's stamps, appended after them
//! when a frame is written. Protobuf keeps the last value of a field that
//! appears twice, so every receiver decodes exactly the stamped envelope,
//! whatever the publisher put in the same fields — with no decoding, no
//! allocation and one copy of the envelope per frame.

use bytes::{Bytes, BytesMut};

use super::{Head, LEN, VARINT, varint_len};
use crate::codec::WIRE_VERSION;
use crate::names::ClientId;
use crate::topic::Topic;

/// What the broker stamps about replies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum ReplyStamp {
    /// Nothing: the envelope sets no correlation id and no reply-to.
    #[default]
    None,
    /// The envelope sets one or both, and the message is no request: they
    /// are written again as 0 and empty.
    Clear,
    /// A request, answered with `correlation` to client `to`.
    Request { correlation: u64, to: ClientId },
}

impl ReplyStamp {
    /// The correlation id and reply-to the stamp writes, if any.
    fn written(&self) -> Option<(u64, &str)> {
        match self {
            Self::None => None,
            Self::Clear => Some((0, "")),
            Self::Request { correlation, to } => Some((*correlation, to.as_str())),
        }
    }
}

/// A message as the broker holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stamped {
    /// The publisher's `Envelope` encoding (topic, payload, headers).
    pub envelope: Bytes,
    /// The topic it routes by (the envelope's).
    pub topic: Topic,
    pub id: u64,
    pub source: ClientId,
    pub timestamp_us: u64,
    pub attempt: u32,
    pub reply: ReplyStamp,
}

impl Stamped {
    /// The correlation token a request carries; 0 for anything else.
    pub fn correlation(&self) -> u64 {
        match &self.reply {
            ReplyStamp::Request { correlation, .. } => *correlation,
            ReplyStamp::None | ReplyStamp::Clear => 0,
        }
    }

    fn stamp(&self) -> Stamp<'_> {
        Stamp {
            id: self.id,
            source: self.source.as_str(),
            timestamp_us: self.timestamp_us,
            attempt: self.attempt,
            reply: self.reply.written(),
        }
    }

    /// Bytes of the whole stamped envelope.
    pub fn message_len(&self) -> usize {
        self.envelope.len() + self.stamp().len()
    }

    /// The stamped envelope as one encoding: what a receiver decodes, and
    /// what the journal keeps of a durable message.
    pub fn to_bytes(&self) -> Bytes {
        let stamp = self.stamp().head();
        let mut out = BytesMut::with_capacity(self.envelope.len() + stamp.len);
        out.extend_from_slice(&self.envelope);
        out.extend_from_slice(stamp.as_slice());
        out.freeze()
    }

    /// The largest `Deliver` frame it makes (with any `sid` and
    /// `delivery_id`), as the frame's length prefix counts it.
    pub fn frame_len_bound(&self) -> usize {
        deliver_frame_len(u64::MAX, u64::MAX, self.message_len())
    }

    /// The same message republished on `topic` with `headers` added and no
    /// reply expected: a dead letter. One new envelope, its fields appended
    /// to the old ones (a later topic replaces the earlier; map entries add).
    pub fn republished(&self, topic: Topic, headers: &[(&str, &str)]) -> Self {
        let mut extra = BytesMut::new();
        put_string(&mut extra, 2, topic.as_str());
        for (key, value) in headers {
            let entry_len = 1
                + varint_len(key.len() as u64)
                + key.len()
                + 1
                + varint_len(value.len() as u64)
                + value.len();
            let mut head = Head::default();
            head.key(4, LEN);
            head.varint(entry_len as u64);
            extra.extend_from_slice(head.as_slice());
            put_string(&mut extra, 1, key);
            put_string(&mut extra, 2, value);
        }
        let mut envelope = BytesMut::with_capacity(self.envelope.len() + extra.len());
        envelope.extend_from_slice(&self.envelope);
        envelope.extend_from_slice(&extra);
        Self {
            envelope: envelope.freeze(),
            topic,
            reply: if self.reply == ReplyStamp::None {
                ReplyStamp::None
            } else {
                ReplyStamp::Clear
            },
            ..self.clone()
        }
    }
}

fn put_string(out: &mut BytesMut, field: u64, text: &str) {
    let mut head = Head::default();
    head.key(field, LEN);
    head.varint(text.len() as u64);
    out.extend_from_slice(head.as_slice());
    out.extend_from_slice(text.as_bytes());
}

/// The stamp's fields: `id` (1), `source` (7), `timestamp_us` (8),
/// `attempt` (9), then a request's or a cleared `correlation_id` (5) and
/// `reply_to` (6).
struct Stamp<'a> {
    id: u64,
    source: &'a str,
    timestamp_us: u64,
    attempt: u32,
    reply: Option<(u64, &'a str)>,
}

impl Stamp<'_> {
    fn len(&self) -> usize {
        let reply = self.reply.map_or(0, |(correlation, to)| {
            1 + varint_len(correlation) + 1 + varint_len(to.len() as u64) + to.len()
        });
        1 + varint_len(self.id)
            + 1
            + varint_len(self.source.len() as u64)
            + self.source.len()
            + 1
            + varint_len(self.timestamp_us)
            + 1
            + varint_len(u64::from(self.attempt))
            + reply
    }

    fn head(&self) -> Head {
        let mut head = Head::default();
        head.key(1, VARINT);
        head.varint(self.id);
        head.key(7, LEN);
        head.varint(self.source.len() as u64);
        head.bytes(self.source.as_bytes());
        head.key(8, VARINT);
        head.varint(self.timestamp_us);
        head.key(9, VARINT);
        head.varint(u64::from(self.attempt));
        if let Some((correlation, to)) = self.reply {
            head.key(5, VARINT);
            head.varint(correlation);
            head.key(6, LEN);
            head.varint(to.len() as u64);
            head.bytes(to.as_bytes());
        }
        head
    }
}

/// The length prefix of a `Deliver` frame of a message of `message_len`
/// bytes (version byte and body).
fn deliver_frame_len(sid: u64, delivery_id: u64, message_len: usize) -> usize {
    let deliver_len = deliver_len(sid, delivery_id, message_len);
    1 + 1 + varint_len(deliver_len as u64) + deliver_len
}

fn deliver_len(sid: u64, delivery_id: u64, message_len: usize) -> usize {
    let field = |v: u64| if v == 0 { 0 } else { 1 + varint_len(v) };
    field(sid) + field(delivery_id) + 1 + varint_len(message_len as u64) + message_len
}

/// A `Deliver` frame kept as its parts, written by hand straight into the
/// write buffer: the stamped message on subscription `sid`, to be settled
/// by `delivery_id` (0 for fan-out).
#[derive(Debug, Clone, PartialEq)]
pub struct StampedDeliver {
    pub(crate) sid: u64,
    pub(crate) delivery_id: u64,
    pub(crate) envelope: Bytes,
    pub(crate) id: u64,
    pub(crate) source: ClientId,
    pub(crate) timestamp_us: u64,
    pub(crate) attempt: u32,
    pub(crate) reply: ReplyStamp,
}

impl StampedDeliver {
    /// `message` on subscription `sid` as delivery `delivery_id`.
    pub(crate) fn new(sid: u64, delivery_id: u64, message: &Stamped) -> Self {
        Self {
            sid,
            delivery_id,
            envelope: message.envelope.clone(),
            id: message.id,
            source: message.source.clone(),
            timestamp_us: message.timestamp_us,
            attempt: message.attempt,
            reply: message.reply.clone(),
        }
    }

    fn stamp(&self) -> Stamp<'_> {
        Stamp {
            id: self.id,
            source: self.source.as_str(),
            timestamp_us: self.timestamp_us,
            attempt: self.attempt,
            reply: self.reply.written(),
        }
    }

    /// The frame's length as its prefix states it: version byte and body.
    pub fn frame_len(&self) -> usize {
        deliver_frame_len(
            self.sid,
            self.delivery_id,
            self.envelope.len() + self.stamp().len(),
        )
    }

    /// Appends the whole frame (length prefix, version, `Frame.deliver`):
    /// headers built on the stack, then three copies.
    pub fn encode(&self, out: &mut BytesMut) {
        let stamp = self.stamp().head();
        let message_len = self.envelope.len() + stamp.len;
        let deliver_len = deliver_len(self.sid, self.delivery_id, message_len);
        let frame_len = 1 + 1 + varint_len(deliver_len as u64) + deliver_len;
        let mut head = Head::default();
        // Frame sizes are bounded far below u32::MAX by the codec's limit.
        head.bytes(&(frame_len as u32).to_be_bytes());
        head.bytes(&[WIRE_VERSION]);
        head.key(6, LEN);
        head.varint(deliver_len as u64);
        if self.sid != 0 {
            head.key(1, VARINT);
            head.varint(self.sid);
        }
        if self.delivery_id != 0 {
            head.key(2, VARINT);
            head.varint(self.delivery_id);
        }
        head.key(3, LEN);
        head.varint(message_len as u64);
        out.reserve(head.len + message_len);
        out.extend_from_slice(head.as_slice());
        out.extend_from_slice(&self.envelope);
        out.extend_from_slice(stamp.as_slice());
    }

    /// Gives it its own copy of an envelope that may be a slice of a larger
    /// read buffer.
    pub(crate) fn detach(&mut self) {
        self.envelope = Bytes::copy_from_slice(&self.envelope);
    }
}

/// A `Reply` frame forwarded to its requester, written by hand: the
/// responder's envelope bytes, then the broker's stamps (`source`,
/// `timestamp_us`, and `correlation_id` = the requester's `seq`, also the
/// frame's `correlation_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct StampedReply {
    pub(crate) seq: u64,
    pub(crate) envelope: Bytes,
    pub(crate) source: ClientId,
    pub(crate) timestamp_us: u64,
}

impl StampedReply {
    fn stamp(&self) -> Head {
        let source = self.source.as_str();
        let mut head = Head::default();
        head.key(7, LEN);
        head.varint(source.len() as u64);
        head.bytes(source.as_bytes());
        head.key(8, VARINT);
        head.varint(self.timestamp_us);
        head.key(5, VARINT);
        head.varint(self.seq);
        head
    }

    fn lens(&self) -> (usize, usize, usize) {
        let source = self.source.as_str().len();
        let stamp = 1
            + varint_len(source as u64)
            + source
            + 1
            + varint_len(self.timestamp_us)
            + 1
            + varint_len(self.seq);
        let message_len = self.envelope.len() + stamp;
        let correlation = if self.seq == 0 {
            0
        } else {
            1 + varint_len(self.seq)
        };
        let reply_len = correlation + 1 + varint_len(message_len as u64) + message_len;
        let frame_len = 1 + 1 + varint_len(reply_len as u64) + reply_len;
        (message_len, reply_len, frame_len)
    }

    /// The frame's length as its prefix states it: version byte and body.
    pub fn frame_len(&self) -> usize {
        self.lens().2
    }

    /// Appends the whole frame (length prefix, version, `Frame.reply`).
    pub fn encode(&self, out: &mut BytesMut) {
        let (message_len, reply_len, frame_len) = self.lens();
        let stamp = self.stamp();
        let mut head = Head::default();
        head.bytes(&(frame_len as u32).to_be_bytes());
        head.bytes(&[WIRE_VERSION]);
        head.key(9, LEN);
        head.varint(reply_len as u64);
        if self.seq != 0 {
            head.key(1, VARINT);
            head.varint(self.seq);
        }
        head.key(3, LEN);
        head.varint(message_len as u64);
        out.reserve(head.len + message_len);
        out.extend_from_slice(head.as_slice());
        out.extend_from_slice(&self.envelope);
        out.extend_from_slice(stamp.as_slice());
    }
}
