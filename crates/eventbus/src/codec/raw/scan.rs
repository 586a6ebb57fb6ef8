//! The broker's readers of the frames that carry messages: a `Publish` and
//! a `Reply` are checked field by field and kept encoded, so the broker
//! forwards the envelope's bytes instead of decoding and re-encoding them.
//!
//! Each accepts only encodings it reads exactly as prost would (well-formed
//! fields of known numbers and wire types, valid UTF-8 strings, a message
//! and a topic at most once); anything else comes back to be decoded by
//! prost and re-encoded, which is rare (no client of ours writes it).

use std::ops::Range;

use bytes::Bytes;

use super::{Fields, LEN, VARINT, only_field};

/// The prefix of the headers only the broker sets.
pub(crate) const RESERVED_HEADER_PREFIX: &str = "x-";

/// What an envelope holds that the broker needs, found without decoding it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct EnvelopeScan {
    /// Where its topic is (checked UTF-8), if it has one.
    topic: Option<Range<usize>>,
    /// It sets a correlation id or a reply-to.
    reply_fields: bool,
    /// Where the first header key starting with `x-` is.
    reserved_header: Option<Range<usize>>,
}

/// Checks an envelope field by field.
fn scan_envelope(envelope: &[u8]) -> Option<EnvelopeScan> {
    let mut fields = Fields::new(envelope);
    let mut scan = EnvelopeScan::default();
    // Topic and payload, as a client writes them, by a compare each; then
    // anything else field by field.
    if fields.next_key_is(2, LEN) {
        scan.topic = Some(fields.string()?);
    }
    if fields.next_key_is(3, LEN) {
        fields.bytes()?;
    }
    while let Some((field, wire)) = fields.key()? {
        match (field, wire) {
            // id, timestamp_us, attempt (the broker's stamps replace them).
            (1 | 8 | 9, VARINT) => {
                fields.varint()?;
            }
            // topic: once (a repeated one would be merged by the decoder).
            (2, LEN) if scan.topic.is_none() => scan.topic = Some(fields.string()?),
            (3, LEN) => {
                fields.bytes()?;
            }
            (4, LEN) => {
                let entry = fields.bytes()?;
                let key = scan_header(&envelope[entry.clone()])?;
                let key = entry.start + key.start..entry.start + key.end;
                if scan.reserved_header.is_none()
                    && envelope[key.clone()].starts_with(RESERVED_HEADER_PREFIX.as_bytes())
                {
                    scan.reserved_header = Some(key);
                }
            }
            (5, VARINT) => {
                fields.varint()?;
                scan.reply_fields = true;
            }
            (6, LEN) => {
                fields.string()?;
                scan.reply_fields = true;
            }
            // source (replaced by the broker's stamp).
            (7, LEN) => {
                fields.string()?;
            }
            _ => return None,
        }
    }
    Some(scan)
}

/// Checks a header (a map entry: key 1, value 2, both strings); returns
/// where its key is.
fn scan_header(entry: &[u8]) -> Option<Range<usize>> {
    let mut fields = Fields::new(entry);
    let mut key = None;
    while let Some((field, wire)) = fields.key()? {
        match (field, wire) {
            (1, LEN) if key.is_none() => key = Some(fields.string()?),
            (2, LEN) => {
                fields.string()?;
            }
            _ => return None,
        }
    }
    // An entry without a key has the empty key.
    Some(key.unwrap_or(0..0))
}

/// A `Publish` frame body, kept encoded.
#[derive(Debug, Clone)]
pub(crate) struct RawPublish {
    /// The whole frame body.
    pub body: Bytes,
    pub seq: u64,
    /// The publish mode as sent (not yet checked against the known ones).
    pub mode: u64,
    /// As prost reads a `uint32`: the varint's low 32 bits.
    pub timeout_ms: u32,
    /// A gather's scope as sent (not yet checked).
    pub gather_scope: u64,
    gather_group: Range<usize>,
    envelope: Range<usize>,
    topic: Range<usize>,
    target: Range<usize>,
    /// The envelope sets a correlation id or reply-to.
    pub reply_fields: bool,
    reserved_header: Option<Range<usize>>,
}

impl RawPublish {
    /// The topic as published (checked UTF-8, not yet a valid `Topic`).
    pub fn topic(&self) -> &str {
        // Checked by `scan_publish`; a failure here cannot happen, and would
        // only route nowhere.
        std::str::from_utf8(&self.body[self.topic.clone()]).unwrap_or_default()
    }

    /// The envelope's encoded bytes, shared with the frame.
    pub fn envelope(&self) -> Bytes {
        self.body.slice(self.envelope.clone())
    }

    /// A direct send's receiver (checked UTF-8), if it is one.
    pub fn target(&self) -> Option<&str> {
        (!self.target.is_empty())
            .then(|| std::str::from_utf8(&self.body[self.target.clone()]).unwrap_or_default())
    }

    /// The first header key starting with `x-`, if any.
    pub fn reserved_header(&self) -> Option<&str> {
        self.reserved_header
            .clone()
            .map(|r| std::str::from_utf8(&self.body[r]).unwrap_or_default())
    }

    /// A gather's group (checked UTF-8; empty when none).
    pub fn gather_group(&self) -> &str {
        std::str::from_utf8(&self.body[self.gather_group.clone()]).unwrap_or_default()
    }
}

/// A frame body that is a `Publish` this reader takes, kept encoded;
/// anything else (another frame, or a publish to decode with prost) comes
/// back.
pub(crate) fn scan_publish(body: Bytes) -> Result<RawPublish, Bytes> {
    match scan_publish_at(&body) {
        Some(parts) => Ok(RawPublish { body, ..parts }),
        None => Err(body),
    }
}

fn scan_publish_at(body: &[u8]) -> Option<RawPublish> {
    // `Frame.publish` (3) must be the body's only field.
    let publish = only_field(body, 3)?;
    let at = |r: Range<usize>| publish.start + r.start..publish.start + r.end;
    let mut fields = Fields::new(&body[publish.clone()]);
    let (mut seq, mut mode, mut timeout_ms, mut gather_scope) = (0, 0, 0, 0);
    let (mut envelope, mut target, mut gather_group) = (None, 0..0, 0..0);
    // A client's `publish` writes only the message: take it by a compare,
    // then check whatever else there is field by field.
    if fields.next_key_is(3, LEN) {
        envelope = Some(fields.bytes()?);
    }
    while let Some((field, wire)) = fields.key()? {
        match (field, wire) {
            (1, VARINT) => seq = fields.varint()?,
            (2, VARINT) => mode = fields.varint()?,
            // message: exactly once.
            (3, LEN) if envelope.is_none() => envelope = Some(fields.bytes()?),
            (4, LEN) => target = at(fields.string()?),
            (5, VARINT) => timeout_ms = fields.varint()? as u32,
            (6, VARINT) => gather_scope = fields.varint()?,
            (7, LEN) => gather_group = at(fields.string()?),
            _ => return None,
        }
    }
    let envelope = at(envelope?);
    let scan = scan_envelope(&body[envelope.clone()])?;
    let base = envelope.start;
    let shift = |r: Range<usize>| base + r.start..base + r.end;
    // A publish without a topic is refused by the broker; the decoder
    // reads it the same way, so it is the broker's call, not this reader's.
    let topic = scan.topic.map_or(base..base, shift);
    Some(RawPublish {
        body: Bytes::new(),
        seq,
        mode,
        timeout_ms,
        gather_scope,
        gather_group,
        envelope,
        topic,
        target,
        reply_fields: scan.reply_fields,
        reserved_header: scan.reserved_header.map(shift),
    })
}

/// A `Reply` frame body, kept encoded.
#[derive(Debug, Clone)]
pub(crate) struct RawReply {
    /// The whole frame body.
    pub body: Bytes,
    pub correlation_id: u64,
    pub delivery_id: u64,
    pub seq: u64,
    envelope: Range<usize>,
    reserved_header: Option<Range<usize>>,
}

impl RawReply {
    /// The reply's envelope bytes (empty when it has none), shared with the
    /// frame.
    pub fn envelope(&self) -> Bytes {
        self.body.slice(self.envelope.clone())
    }

    /// The first header key starting with `x-`, if any.
    pub fn reserved_header(&self) -> Option<&str> {
        self.reserved_header
            .clone()
            .map(|r| std::str::from_utf8(&self.body[r]).unwrap_or_default())
    }
}

/// A frame body that is a `Reply` this reader takes, kept encoded;
/// anything else comes back.
pub(crate) fn scan_reply(body: Bytes) -> Result<RawReply, Bytes> {
    match scan_reply_at(&body) {
        Some(parts) => Ok(RawReply { body, ..parts }),
        None => Err(body),
    }
}

fn scan_reply_at(body: &[u8]) -> Option<RawReply> {
    // `Frame.reply` (9) must be the body's only field.
    let reply = only_field(body, 9)?;
    let at = |r: Range<usize>| reply.start + r.start..reply.start + r.end;
    let mut fields = Fields::new(&body[reply.clone()]);
    let (mut correlation_id, mut delivery_id, mut seq, mut envelope) = (0, 0, 0, None);
    while let Some((field, wire)) = fields.key()? {
        match (field, wire) {
            (1, VARINT) => correlation_id = fields.varint()?,
            (2, VARINT) => delivery_id = fields.varint()?,
            (3, LEN) if envelope.is_none() => envelope = Some(at(fields.bytes()?)),
            (4, VARINT) => seq = fields.varint()?,
            _ => return None,
        }
    }
    let envelope = envelope.unwrap_or(reply.end..reply.end);
    let scan = scan_envelope(&body[envelope.clone()])?;
    let base = envelope.start;
    let shift = |r: Range<usize>| base + r.start..base + r.end;
    Some(RawReply {
        body: Bytes::new(),
        correlation_id,
        delivery_id,
        seq,
        envelope,
        reserved_header: scan.reserved_header.map(shift),
    })
}
