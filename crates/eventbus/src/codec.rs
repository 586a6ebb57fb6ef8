//! Framing: how a [`Frame`] becomes bytes on a stream, and back.
//!
//! Every frame is `[u32 big-endian length][u8 wire version][protobuf body]`, where the
//! length counts the version byte and the body. The decoder keeps partial input in the
//! caller's buffer, so a frame split across any number of reads decodes exactly as
//! if it had arrived whole, and a read that is interrupted between two calls loses
//! nothing. It never panics: every malformed input is a typed [`FrameError`].
//!
//! **Invariant:** no frame larger than the negotiated maximum is ever written or
//! buffered; the length is checked before the body is awaited, so an oversized
//! length prefix costs the reader nothing.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use crate::proto::Frame;

/// Bytes in the frame header: a `u32` length and the wire version byte.
pub const FRAME_HEADER_LEN: usize = 5;

/// The only wire version this build reads and writes.
pub const WIRE_VERSION: u8 = 1;

/// Default largest frame (version byte and body) either side accepts: 1 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Smallest maximum frame size a codec accepts, so that control frames always fit.
pub const MIN_MAX_FRAME_BYTES: usize = 1024;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame's length exceeds the negotiated maximum.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length of the offending frame (version byte and body).
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended mid-frame: {have} of {need} bytes received")]
    Truncated {
        /// Bytes of the frame that did arrive, header included.
        have: usize,
        /// Bytes the whole frame needs, header included (the header size if the
        /// header itself was cut).
        need: usize,
    },
    /// The header names a wire version this build does not speak.
    #[error("unknown wire version {version} (this build speaks {WIRE_VERSION})")]
    UnknownVersion {
        /// The version byte received.
        version: u8,
    },
    /// The header's length is zero: there is not even a version byte.
    #[error("frame with a zero length")]
    Empty,
    /// The body is not a valid protobuf `Frame`, or carries no frame kind.
    #[error("malformed frame: {reason}")]
    Malformed {
        /// What the protobuf decoder objected to.
        reason: String,
    },
}

/// Encodes and decodes length-prefixed frames with a size limit.
///
/// Cheap to copy; one per connection direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    max_frame_bytes: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl FrameCodec {
    /// A codec that refuses frames over `max_frame_bytes` (version byte and body),
    /// raised to [`MIN_MAX_FRAME_BYTES`] if smaller and capped at `u32::MAX`.
    pub fn new(max_frame_bytes: usize) -> Self {
        let max_frame_bytes = max_frame_bytes.clamp(MIN_MAX_FRAME_BYTES, u32::MAX as usize);
        Self { max_frame_bytes }
    }

    /// The largest frame this codec reads or writes.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Appends `frame` to `dst`. On error `dst` is left as it was.
    pub fn encode(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = 1 + frame.encoded_len();
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        dst.reserve(4 + len);
        // The limit is at most u32::MAX, so the cast cannot truncate.
        dst.put_u32(len as u32);
        dst.put_u8(WIRE_VERSION);
        frame
            .encode(dst)
            .expect("BytesMut grows on demand, so encoding cannot run out of space");
        Ok(())
    }

    /// Takes one complete frame off the front of `src`.
    ///
    /// Returns `Ok(None)` when `src` holds only part of a frame; the partial bytes stay
    /// in `src` and the next call, after more bytes arrive, picks up where this one left.
    /// After an error the stream is out of sync and the connection should be closed.
    pub fn decode(&self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.decode_body(src)?.map(decode_body).transpose()
    }

    /// Like [`decode`](Self::decode), for when the stream has ended: leftover bytes
    /// that do not make a whole frame are a [`FrameError::Truncated`].
    pub fn decode_eof(&self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.decode_body_eof(src)?.map(decode_body).transpose()
    }

    /// Takes one complete frame off the front of `src` and returns its
    /// protobuf body (after the version byte), undecoded; see
    /// [`decode`](Self::decode) and [`decode_body`].
    pub fn decode_body(&self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(len) = self.peek_len(src)? else {
            return Ok(None);
        };
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let mut body = src.split_to(len).freeze();
        let version = body.get_u8();
        if version != WIRE_VERSION {
            return Err(FrameError::UnknownVersion { version });
        }
        Ok(Some(body))
    }

    /// [`decode_body`](Self::decode_body) at the end of the stream.
    pub fn decode_body_eof(&self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.decode_body(src)? {
            Some(body) => Ok(Some(body)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated {
                have: src.len(),
                need: self.peek_len(src)?.map_or(FRAME_HEADER_LEN, |len| 4 + len),
            }),
        }
    }

    /// Reads and checks the length prefix without consuming it.
    fn peek_len(&self, src: &BytesMut) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = src.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        Ok(Some(len))
    }
}

/// Decodes a frame body taken off the stream by [`FrameCodec::decode_body`].
pub fn decode_body(body: Bytes) -> Result<Frame, FrameError> {
    let frame = Frame::decode(body).map_err(|e| FrameError::Malformed {
        reason: e.to_string(),
    })?;
    if frame.kind.is_none() {
        return Err(FrameError::Malformed {
            reason: "frame carries no known kind".to_owned(),
        });
    }
    Ok(frame)
}

pub mod raw;

#[cfg(test)]
mod tests;
