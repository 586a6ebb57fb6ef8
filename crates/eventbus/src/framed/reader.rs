//! The read side: frames cut from a stream, partial ones kept across reads.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{READ_BUFFER_BYTES, READ_BUFFER_MIN_BYTES};
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
///
/// The read buffer is sized to what the connection uses (as NATS sizes its
/// connections' read buffers): it starts at `READ_BUFFER_MIN_BYTES`,
/// goes straight to `READ_BUFFER_BYTES` when a read fills all the room it
/// was given (so a burst is read in large batches from its second read on:
/// growing by doubling took six rounds of small batches, and a fan-out to
/// many subscribers paid for each round with a write to every one of
/// them), and halves after `SHORT_READS_TO_SHRINK` reads in a row that
/// fill less than half of it. Whenever every byte read has been cut
/// into frames, a buffer more than twice that size is let go, so a quiet
/// connection holds a small buffer, not the largest a burst needed. (A
/// frame larger than the size gets room for itself, up to the frame limit.)
#[derive(Debug)]
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    codec: FrameCodec,
    sizing: ReadSizing,
}

/// Reads in a row that filled less than half of the buffer's size before
/// the size is halved.
const SHORT_READS_TO_SHRINK: u8 = 3;

/// How much room the next read gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadSizing {
    /// The room a read is given, between the min and max read buffer sizes.
    size: usize,
    /// Reads in a row that filled less than half of `size`.
    short_reads: u8,
}

impl ReadSizing {
    const fn new() -> Self {
        Self {
            size: READ_BUFFER_MIN_BYTES,
            short_reads: 0,
        }
    }

    /// Learns from a read of `n` bytes into `room` bytes of spare capacity.
    fn after_read(&mut self, n: usize, room: usize) {
        if n >= room && self.size < READ_BUFFER_BYTES {
            self.size = READ_BUFFER_BYTES;
            self.short_reads = 0;
        } else if n < self.size / 2 && self.size > READ_BUFFER_MIN_BYTES {
            self.short_reads += 1;
            if self.short_reads >= SHORT_READS_TO_SHRINK {
                self.size = (self.size / 2).max(READ_BUFFER_MIN_BYTES);
                self.short_reads = 0;
            }
        } else {
            self.short_reads = 0;
        }
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `io`, refusing frames larger than `codec` allows.
    pub fn new(io: R, codec: FrameCodec) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
            codec,
            sizing: ReadSizing::new(),
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
            if self.read_more().await? == 0 {
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
            if self.read_more().await? == 0 {
                return Ok(self.codec.decode_eof(&mut self.buf)?);
            }
        }
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// One read into the buffer, with the room [`ReadSizing`] gives it.
    ///
    /// Cancel-safe: the only await is the read, and a cancelled read has
    /// put nothing in the buffer.
    async fn read_more(&mut self) -> io::Result<usize> {
        let size = self.sizing.size;
        if self.buf.is_empty() && self.buf.capacity() > 2 * size {
            // Nothing partial to keep: let a burst's large buffer go (frames
            // cut from it still hold it until they are done).
            self.buf = BytesMut::new();
        }
        if self.buf.capacity() - self.buf.len() < size / 2 {
            self.buf.reserve(size);
        }
        let room = self.buf.capacity() - self.buf.len();
        let n = self.io.read_buf(&mut self.buf).await?;
        self.sizing.after_read(n, room);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{self, frame::Kind};

    #[test]
    fn read_size_jumps_on_a_full_read_and_shrinks_after_short_ones() {
        let mut sizing = ReadSizing::new();
        sizing.after_read(READ_BUFFER_MIN_BYTES / 2, READ_BUFFER_MIN_BYTES);
        assert_eq!(
            sizing.size, READ_BUFFER_MIN_BYTES,
            "room to spare: no growth"
        );
        sizing.after_read(READ_BUFFER_MIN_BYTES, READ_BUFFER_MIN_BYTES);
        assert_eq!(
            sizing.size, READ_BUFFER_BYTES,
            "a full read: straight to the max"
        );
        sizing.after_read(READ_BUFFER_BYTES, READ_BUFFER_BYTES);
        assert_eq!(sizing.size, READ_BUFFER_BYTES, "never past the max");
        // One short read, then a long one: no shrink.
        sizing.after_read(10, READ_BUFFER_BYTES);
        sizing.after_read(READ_BUFFER_BYTES / 2, READ_BUFFER_BYTES);
        assert_eq!(sizing.size, READ_BUFFER_BYTES);
        for _ in 0..SHORT_READS_TO_SHRINK {
            sizing.after_read(10, READ_BUFFER_BYTES);
        }
        assert_eq!(sizing.size, READ_BUFFER_BYTES / 2);
        for _ in 0..100 {
            sizing.after_read(10, sizing.size);
        }
        assert_eq!(sizing.size, READ_BUFFER_MIN_BYTES, "never under the min");
    }

    /// A reader that hands out its bytes `chunk` at a time, never past
    /// `stop` in one read.
    struct Chunked {
        data: Vec<u8>,
        at: usize,
        chunk: usize,
        stop: usize,
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            let end = if self.at < self.stop {
                self.stop
            } else {
                self.data.len()
            };
            let n = self.chunk.min(buf.remaining()).min(end - self.at);
            let at = self.at;
            buf.put_slice(&self.data[at..at + n]);
            self.at += n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn publishes(n: u64, payload: usize) -> (Vec<u8>, Vec<Frame>) {
        let codec = FrameCodec::default();
        let mut wire = BytesMut::new();
        let mut frames = Vec::new();
        for i in 0..n {
            let frame = Frame {
                kind: Some(Kind::Publish(proto::Publish {
                    seq: i,
                    message: Some(Box::new(proto::Envelope {
                        topic: "a.b".into(),
                        payload: vec![i as u8; payload].into(),
                        ..Default::default()
                    })),
                    ..Default::default()
                })),
            };
            codec.encode(&frame, &mut wire).unwrap();
            frames.push(frame);
        }
        (wire.to_vec(), frames)
    }

    #[tokio::test]
    async fn a_burst_grows_the_buffer_and_a_quiet_link_lets_it_go() {
        // 2,000 frames of ~1 KiB arriving as fast as they can be read: the
        // buffer grows to the max; then small frames one read at a time.
        let (mut wire, mut want) = publishes(2_000, 1_000);
        let (small, small_frames) = publishes(100, 10);
        let small_len = small.len() / 100;
        let stop = wire.len();
        wire.extend_from_slice(&small);
        want.extend(small_frames);
        let io = Chunked {
            data: wire,
            at: 0,
            chunk: usize::MAX,
            stop,
        };
        let mut reader = FrameReader::new(io, FrameCodec::default());
        let mut got = Vec::new();
        while got.len() < 2_000 {
            assert!(reader.read_batch(&mut got).await.unwrap());
        }
        assert_eq!(reader.sizing.size, READ_BUFFER_BYTES);
        // The small frames, one read each.
        reader.io.chunk = small_len;
        while got.len() < want.len() {
            assert!(reader.read_batch(&mut got).await.unwrap());
        }
        assert_eq!(got, want, "every frame, in order, whatever the sizes");
        assert_eq!(reader.sizing.size, READ_BUFFER_MIN_BYTES);
        assert!(
            reader.buf.capacity() <= 2 * READ_BUFFER_MIN_BYTES,
            "a quiet link keeps a small buffer, not {} bytes",
            reader.buf.capacity()
        );
        assert!(!reader.read_batch(&mut got).await.unwrap(), "clean end");
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_buffer_gets_room_for_itself() {
        let (wire, want) = publishes(3, 200_000);
        let io = Chunked {
            data: wire,
            at: 0,
            chunk: 4096,
            stop: 0,
        };
        let mut reader = FrameReader::new(io, FrameCodec::default());
        let mut got = Vec::new();
        while reader.read_batch(&mut got).await.unwrap() {}
        assert_eq!(got, want);
    }

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
