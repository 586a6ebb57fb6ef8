//! The read side: frames cut from a stream, partial ones kept across reads.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::READ_BUFFER_BYTES;
use crate::codec::{FrameCodec, FrameError};
use crate::proto::Frame;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The bytes did not make a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// Reads frames from a stream, keeping partial frames between reads.
///
/// `read_batch` is cancel-safe: bytes read before a cancellation stay in the buffer.
#[derive(Debug)]
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    codec: FrameCodec,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `io`, refusing frames larger than `codec` allows.
    pub fn new(io: R, codec: FrameCodec) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(READ_BUFFER_BYTES),
            codec,
        }
    }

    /// Replaces the codec, e.g. once the frame limit has been negotiated.
    pub fn set_codec(&mut self, codec: FrameCodec) {
        self.codec = codec;
    }

    /// Appends every frame that is complete after one read to `out`.
    ///
    /// Returns `Ok(false)` at a clean end of stream (between frames).
    pub async fn read_batch(&mut self, out: &mut Vec<Frame>) -> Result<bool, ReadError> {
        self.read_batch_with(out, crate::codec::decode_body).await
    }

    /// Like [`read_batch`](Self::read_batch), handing each frame's body (after
    /// the version byte) to `take`, which decodes it, or keeps it encoded.
    pub async fn read_batch_with<T>(
        &mut self,
        out: &mut Vec<T>,
        mut take: impl FnMut(Bytes) -> Result<T, FrameError>,
    ) -> Result<bool, ReadError> {
        self.read_each(|body| {
            out.push(take(body)?);
            Ok(())
        })
        .await
    }

    /// Hands the body (after the version byte) of every frame that is
    /// complete after one read to `take`, as it is cut from the buffer;
    /// returns `Ok(false)` at a clean end of stream (between frames).
    ///
    /// Cancel-safe like [`read_batch`](Self::read_batch): `take` runs only
    /// between reads, never across an await.
    pub async fn read_each(
        &mut self,
        mut take: impl FnMut(Bytes) -> Result<(), FrameError>,
    ) -> Result<bool, ReadError> {
        let mut any = false;
        loop {
            while let Some(body) = self.codec.decode_body(&mut self.buf)? {
                take(body)?;
                any = true;
            }
            if any {
                return Ok(true);
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(READ_BUFFER_BYTES);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return match self.codec.decode_body_eof(&mut self.buf)? {
                    Some(body) => {
                        take(body)?;
                        Ok(true)
                    }
                    None => Ok(false),
                };
            }
        }
    }

    /// Reads exactly one frame; `Ok(None)` at a clean end of stream.
    ///
    /// Used for the handshake, where nothing may follow before the answer.
    pub async fn read_one(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(self.codec.decode_eof(&mut self.buf)?);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{self, frame::Kind};

    #[tokio::test]
    async fn reader_reports_truncation_at_eof() {
        let frame = Frame {
            kind: Some(Kind::Heartbeat(proto::Heartbeat { nonce: 1 })),
        };
        let mut wire = BytesMut::new();
        FrameCodec::default().encode(&frame, &mut wire).unwrap();
        let cut = &wire[..wire.len() - 2];
        let mut reader = FrameReader::new(cut, FrameCodec::default());
        let err = reader.read_batch(&mut Vec::new()).await.unwrap_err();
        assert!(matches!(
            err,
            ReadError::Frame(FrameError::Truncated { .. })
        ));
    }
}
