//! The fast path for fan-out, encoded by hand: a client encodes a headerless
//! publish or request straight into its write buffer (`RawPublishOut`); the
//! broker routes it without decoding its envelope and delivers it by copying
//! the envelope's bytes into each subscriber's `Deliver` frame, followed by
//! the fields the broker stamps.
//!
//! Protobuf merges a field that appears twice by keeping the last value, so
//! appending `id`, `source`, `timestamp_us` and `attempt` after the
//! publisher's envelope bytes gives every subscriber exactly the envelope the
//! decoding path would have built. `scan_publish` accepts only what that
//! path would accept and handle the same way (well-formed fields of known
//! numbers, valid UTF-8 strings, no headers, a plain fire-and-forget mode, no
//! direct target); anything else returns `None` and takes the decoding path.

#[cfg(any(feature = "client", feature = "broker"))]
use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::WIRE_VERSION;
use crate::topic::Topic;

#[cfg(feature = "client")]
mod deliver;
#[cfg(feature = "broker")]
mod scan;
// Built by the broker only; the outbound queue, which the client shares,
// names the types.
#[cfg_attr(not(feature = "broker"), allow(dead_code))]
mod stamped;

#[cfg(feature = "client")]
pub(crate) use deliver::{WireEnvelope, decode_deliver, decode_reply};
#[cfg(feature = "broker")]
pub(crate) use scan::{RawPublish, RawReply, scan_publish, scan_reply};
#[cfg(feature = "broker")]
pub(crate) use stamped::{ReplyStamp, Stamped};
pub use stamped::{StampedDeliver, StampedReply};

/// Wire type of varint fields.
const VARINT: u8 = 0;
/// Wire type of length-delimited fields.
const LEN: u8 = 2;

/// A reader over protobuf fields that refuses anything malformed.
#[cfg(any(feature = "client", feature = "broker"))]
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

#[cfg(any(feature = "client", feature = "broker"))]
impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        // Keys and short lengths are one byte: that case inline, the rest
        // out of line.
        let first = *self.buf.get(self.pos)?;
        if first < 0x80 {
            self.pos += 1;
            return Some(u64::from(first));
        }
        self.long_varint()
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Option<u64> {
        // Up to eight bytes at once when eight are there (ids, timestamps):
        // find the last byte, the first without its top bit, and gather
        // the 7-bit groups without a loop.
        if let Some(chunk) = self.buf.get(self.pos..self.pos + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let ends = !word & 0x8080_8080_8080_8080;
            if ends != 0 {
                let len = ends.trailing_zeros() as usize / 8 + 1;
                let x = if len == 8 {
                    word
                } else {
                    word & ((1u64 << (8 * len)) - 1)
                };
                let x = x & 0x7f7f_7f7f_7f7f_7f7f;
                let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
                let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
                let x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4);
                self.pos += len;
                return Some(x);
            }
        }
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos)?;
            self.pos += 1;
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && byte > 1 {
                return None;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// Takes the next key if it is `(field, wire)` written in one byte (as
    /// every field below 16 is).
    #[inline(always)]
    fn next_key_is(&mut self, field: u8, wire: u8) -> bool {
        if self.buf.get(self.pos) == Some(&((field << 3) | wire)) {
            self.pos += 1;
            return true;
        }
        false
    }

    /// The next `(field number, wire type)`, or `None` at the end.
    #[inline]
    fn key(&mut self) -> Option<Option<(u64, u8)>> {
        if self.pos == self.buf.len() {
            return Some(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return None;
        }
        Some(Some((field, (key & 7) as u8)))
    }

    /// The range of a length-delimited value.
    #[inline]
    fn bytes(&mut self) -> Option<Range<usize>> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.pos.checked_add(len)?;
        if end > self.buf.len() {
            return None;
        }
        let range = self.pos..end;
        self.pos = end;
        Some(range)
    }

    #[inline(always)]
    fn string(&mut self) -> Option<Range<usize>> {
        let range = self.bytes()?;
        let text = &self.buf[range.clone()];
        // Topics and client ids are ASCII: check that inline first.
        if !text.is_ascii() {
            std::str::from_utf8(text).ok()?;
        }
        Some(range)
    }
}

/// Where the message of a frame body is, if `field` (length-delimited) is
/// the body's only field.
#[cfg(any(feature = "client", feature = "broker"))]
fn only_field(body: &[u8], field: u64) -> Option<Range<usize>> {
    let mut frame = Fields::new(body);
    if frame.key()? != Some((field, LEN)) {
        return None;
    }
    let range = frame.bytes()?;
    frame.key()?.is_none().then_some(range)
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Bytes of protobuf headers built on the stack: one copy into the output
/// instead of a bounds-checked call per byte. Large enough for a request's
/// stamp with the longest client ids (64 bytes, twice) or a frame header.
struct Head {
    buf: [u8; 192],
    len: usize,
}

impl Default for Head {
    fn default() -> Self {
        Self {
            buf: [0; 192],
            len: 0,
        }
    }
}

impl Head {
    fn bytes(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf[self.len] = (v as u8) | 0x80;
            self.len += 1;
            v >>= 7;
        }
        self.buf[self.len] = v as u8;
        self.len += 1;
    }

    fn key(&mut self, field: u64, wire: u8) {
        self.varint((field << 3) | u64::from(wire));
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A headerless publish queued as its topic and payload (and, for a
/// request, its `seq` and timeout), encoded straight into the write buffer
/// when the connection is flushed: what the client's `publish` and
/// `request` queue, without building a `Frame` or a buffer of their own.
#[derive(Debug, Clone, PartialEq)]
pub struct RawPublishOut {
    pub(crate) topic: Topic,
    pub(crate) payload: Bytes,
    /// The request it is, if it is one.
    pub(crate) request: Option<RawRequest>,
}

/// What makes a publish a request: the `seq` its reply is correlated by,
/// and how long its requester waits (`Publish.timeout_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRequest {
    pub(crate) seq: u64,
    pub(crate) timeout_ms: u32,
}

/// `PublishMode::Request`, as its varint.
const MODE_REQUEST: u64 = 2;

impl RawPublishOut {
    /// Bytes of the `Publish` envelope: the topic and, if any, the payload.
    fn envelope_len(&self) -> usize {
        let (topic, payload) = (self.topic.as_str().len(), self.payload.len());
        let payload_field = if payload == 0 {
            0
        } else {
            1 + varint_len(payload as u64) + payload
        };
        1 + varint_len(topic as u64) + topic + payload_field
    }

    /// Bytes of the request's fields of `Publish` (`seq`, `mode`,
    /// `timeout_ms`; a zero is not written, as prost writes none).
    fn request_len(&self) -> usize {
        let Some(r) = self.request else {
            return 0;
        };
        let field = |v: u64| if v == 0 { 0 } else { 1 + varint_len(v) };
        field(r.seq) + field(MODE_REQUEST) + field(u64::from(r.timeout_ms))
    }

    /// Bytes of the envelope, of `Publish` and of the frame (as its prefix
    /// states it: version byte and body).
    fn lens(&self) -> (usize, usize, usize) {
        let envelope_len = self.envelope_len();
        let publish_len = self.request_len() + 1 + varint_len(envelope_len as u64) + envelope_len;
        let frame_len = 1 + 1 + varint_len(publish_len as u64) + publish_len;
        (envelope_len, publish_len, frame_len)
    }

    /// The frame's length as its prefix states it: version byte and body.
    pub fn frame_len(&self) -> usize {
        self.lens().2
    }

    /// Appends the whole frame (length prefix, version, `Frame.publish`):
    /// the envelope first, which the broker's reader takes by a compare,
    /// then a request's fields (protobuf reads fields in any order).
    pub fn encode(&self, out: &mut BytesMut) {
        let topic = self.topic.as_str().as_bytes();
        let (envelope_len, publish_len, frame_len) = self.lens();
        let mut head = Head::default();
        // Frame sizes are bounded far below u32::MAX by the codec's limit.
        head.bytes(&(frame_len as u32).to_be_bytes());
        head.bytes(&[WIRE_VERSION]);
        head.key(3, LEN);
        head.varint(publish_len as u64);
        head.key(3, LEN);
        head.varint(envelope_len as u64);
        head.key(2, LEN);
        head.varint(topic.len() as u64);
        out.reserve(4 + frame_len);
        out.extend_from_slice(head.as_slice());
        out.extend_from_slice(topic);
        if !self.payload.is_empty() {
            let mut field = Head::default();
            field.key(3, LEN);
            field.varint(self.payload.len() as u64);
            out.extend_from_slice(field.as_slice());
            out.extend_from_slice(&self.payload);
        }
        if let Some(r) = self.request {
            let mut fields = Head::default();
            if r.seq != 0 {
                fields.key(1, VARINT);
                fields.varint(r.seq);
            }
            fields.key(2, VARINT);
            fields.varint(MODE_REQUEST);
            if r.timeout_ms != 0 {
                fields.key(5, VARINT);
                fields.varint(u64::from(r.timeout_ms));
            }
            out.extend_from_slice(fields.as_slice());
        }
    }
}

#[cfg(test)]
mod tests;
