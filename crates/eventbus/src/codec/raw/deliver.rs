//! The client's hot path: a `Deliver` frame, or a `Reply` to one of its
//! requests, read by hand into a [`WireEnvelope`] that borrows its strings
//! and payload from the frame's bytes, so a delivered message or a reply
//! costs no allocation and no copy.

use std::ops::Range;

use bytes::Bytes;

use super::{Fields, LEN, VARINT, only_field};
use crate::proto;

/// A `Deliver` frame read by hand.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawDelivery {
    /// The subscription it is for.
    pub sid: u64,
    /// Non-zero for a queue delivery that must be settled.
    pub delivery_id: u64,
    /// The message.
    pub envelope: WireEnvelope,
}

/// An envelope without headers whose strings and payload stay in the bytes
/// it was read from. Every string was checked as UTF-8 when it was read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WireEnvelope {
    /// The bytes the envelope was read from (its frame's body).
    bytes: Bytes,
    payload: Bytes,
    topic: Range<u32>,
    reply_to: Range<u32>,
    source: Range<u32>,
    id: u64,
    correlation_id: u64,
    timestamp_us: u64,
    attempt: u32,
}

impl WireEnvelope {
    /// Broker-assigned id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The topic it was published on.
    pub fn topic(&self) -> &str {
        self.text(&self.topic)
    }

    /// Bytes of the topic.
    pub fn topic_len(&self) -> usize {
        self.topic.len()
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Correlates a reply with its request; 0 when unused.
    pub fn correlation_id(&self) -> u64 {
        self.correlation_id
    }

    /// Client id a reply should go to; empty when none is expected.
    pub fn reply_to(&self) -> &str {
        self.text(&self.reply_to)
    }

    /// Client id of the sender.
    pub fn source(&self) -> &str {
        self.text(&self.source)
    }

    /// When the broker accepted it, µs since the Unix epoch.
    pub fn timestamp_us(&self) -> u64 {
        self.timestamp_us
    }

    /// Delivery attempt.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The owned envelope prost would have decoded.
    pub fn to_envelope(&self) -> proto::Envelope {
        proto::Envelope {
            id: self.id,
            topic: self.topic().to_owned(),
            payload: self.payload.clone(),
            headers: Default::default(),
            correlation_id: self.correlation_id,
            reply_to: self.reply_to().to_owned(),
            source: self.source().to_owned(),
            timestamp_us: self.timestamp_us,
            attempt: self.attempt,
        }
    }

    /// The envelope scanned from `body`, given its bytes and its payload
    /// (at `payload` in `body`).
    fn with_bytes(mut self, body: Bytes, payload: Range<usize>) -> Self {
        if !payload.is_empty() {
            self.payload = body.slice(payload);
        }
        self.bytes = body;
        self
    }

    fn text(&self, range: &Range<u32>) -> &str {
        // Checked when read; a failure here cannot happen, and would only
        // show an empty string.
        std::str::from_utf8(&self.bytes[range.start as usize..range.end as usize])
            .unwrap_or_default()
    }
}

/// A `Reply` frame (broker → requester) read by hand.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WireReply {
    /// The `seq` of the request it answers.
    pub correlation_id: u64,
    /// The reply.
    pub envelope: WireEnvelope,
}

/// `Frame.deliver`.
const DELIVER: u64 = 6;
/// `Frame.reply`.
const REPLY: u64 = 9;

/// A `Deliver` frame body read by hand, exactly as prost would decode it;
/// the body back (then decode it with prost) for anything this does not
/// handle: headers, unknown fields, a repeated message.
pub(crate) fn decode_deliver(body: Bytes) -> Result<RawDelivery, Bytes> {
    let Some(([sid, delivery_id, _], envelope, payload)) = scan_wrapped(&body, DELIVER, false)
    else {
        return Err(body);
    };
    Ok(RawDelivery {
        sid,
        delivery_id,
        envelope: envelope.with_bytes(body, payload),
    })
}

/// A `Reply` frame body read by hand, as prost would decode it (its
/// `delivery_id` and `seq`, which only a client's reply uses, are read and
/// dropped); the body back (then decode it with prost) for anything this
/// does not handle: headers, unknown fields, a repeated or missing message.
pub(crate) fn decode_reply(body: Bytes) -> Result<WireReply, Bytes> {
    let Some(([correlation_id, _, _], envelope, payload)) = scan_wrapped(&body, REPLY, true) else {
        return Err(body);
    };
    Ok(WireReply {
        correlation_id,
        envelope: envelope.with_bytes(body, payload),
    })
}

/// A body whose only field is `frame` (a `Deliver` or a `Reply`): its
/// varint fields 1, 2 and (where `with_4`) 4, and its message (field 3)
/// without its bytes yet, with where the payload is.
fn scan_wrapped(
    body: &[u8],
    frame: u64,
    with_4: bool,
) -> Option<([u64; 3], WireEnvelope, Range<usize>)> {
    let outer = only_field(body, frame)?;
    let mut fields = Fields::new(&body[outer.clone()]);
    let (mut varints, mut message) = ([0u64; 3], None);
    // In the order the broker writes them, then anything else (see
    // `scan_envelope`).
    if fields.next_key_is(1, VARINT) {
        varints[0] = fields.varint()?;
    }
    if fields.next_key_is(2, VARINT) {
        varints[1] = fields.varint()?;
    }
    if fields.next_key_is(3, LEN) {
        message = Some(fields.bytes()?);
    }
    while let Some((field, wire)) = fields.key()? {
        match (field, wire) {
            (1, VARINT) => varints[0] = fields.varint()?,
            (2, VARINT) => varints[1] = fields.varint()?,
            (4, VARINT) if with_4 => varints[2] = fields.varint()?,
            (3, LEN) if message.is_none() => message = Some(fields.bytes()?),
            _ => return None,
        }
    }
    let message = message?;
    let start = outer.start + message.start;
    let (envelope, payload) = scan_envelope(body, start..outer.start + message.end)?;
    Some((varints, envelope, payload))
}

/// The envelope at `at` within `body`, without headers, its bytes and
/// payload left empty, and where its payload is; a field that appears twice
/// keeps its last value, as protobuf decoders do.
fn scan_envelope(body: &[u8], at: Range<usize>) -> Option<(WireEnvelope, Range<usize>)> {
    // Ranges are kept as u32: frames are bounded far below 4 GiB.
    u32::try_from(body.len()).ok()?;
    let base = at.start;
    let shift = |r: Range<usize>| base + r.start..base + r.end;
    let narrow = |r: Range<usize>| (base + r.start) as u32..(base + r.end) as u32;
    let mut fields = Fields::new(&body[at]);
    let (mut id, mut correlation_id, mut timestamp_us, mut attempt) = (0, 0, 0, 0);
    let (mut topic, mut payload, mut reply_to, mut source) = (0..0, 0..0, 0..0, 0..0);
    // The fields in the order the broker's fast path writes them, each
    // taken only if its key is next (a compare, where the loop below
    // dispatches on every key); whatever else follows, in any order, the
    // loop reads, and a later value of a field replaces an earlier one.
    if fields.next_key_is(2, LEN) {
        topic = narrow(fields.string()?);
    }
    if fields.next_key_is(3, LEN) {
        payload = shift(fields.bytes()?);
    }
    if fields.next_key_is(1, VARINT) {
        id = fields.varint()?;
    }
    if fields.next_key_is(7, LEN) {
        source = narrow(fields.string()?);
    }
    if fields.next_key_is(8, VARINT) {
        timestamp_us = fields.varint()?;
    }
    if fields.next_key_is(9, VARINT) {
        attempt = fields.varint()? as u32;
    }
    while let Some((field, wire)) = fields.key()? {
        match (field, wire) {
            (1, VARINT) => id = fields.varint()?,
            (2, LEN) => topic = narrow(fields.string()?),
            (3, LEN) => payload = shift(fields.bytes()?),
            (5, VARINT) => correlation_id = fields.varint()?,
            (6, LEN) => reply_to = narrow(fields.string()?),
            (7, LEN) => source = narrow(fields.string()?),
            (8, VARINT) => timestamp_us = fields.varint()?,
            // A uint32 keeps the low 32 bits of its varint, as prost does.
            (9, VARINT) => attempt = fields.varint()? as u32,
            _ => return None,
        }
    }
    let envelope = WireEnvelope {
        bytes: Bytes::new(),
        payload: Bytes::new(),
        topic,
        reply_to,
        source,
        id,
        correlation_id,
        timestamp_us,
        attempt,
    };
    Some((envelope, payload))
}
