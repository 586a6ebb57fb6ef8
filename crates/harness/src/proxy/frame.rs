//! Reading whole frames off a stream, whatever the split of the reads.
//!
//! A frame is `[u32 big-endian length][length bytes]` (the length counts the
//! wire version byte and the protobuf body, see `eventbus::codec`). The proxy
//! never looks inside: it only needs the boundaries, so that whatever it drops,
//! duplicates or delays is a whole frame and the stream stays well-framed.

use tokio::io::{AsyncRead, AsyncReadExt as _};

/// The largest frame length the proxy forwards: 16 MiB, far above any broker
/// limit. A larger length prefix is garbage, and closes the connection.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// The length prefix: a big-endian `u32`.
const LENGTH_BYTES: usize = 4;

/// What one read of a frame produced.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ReadFrame {
    /// A whole frame, its length prefix included.
    Frame(Vec<u8>),
    /// The stream ended (or failed); `tail` holds the bytes of a frame it cut
    /// short, empty at a clean end between frames.
    End { tail: Vec<u8> },
    /// A length prefix above [`MAX_FRAME_BYTES`].
    TooLarge(usize),
}

/// Reads the next whole frame. Not cancel-safe, so it is never raced: the
/// reader task owns the stream and only ever awaits this to completion.
pub(super) async fn read_frame<R: AsyncRead + Unpin>(src: &mut R) -> ReadFrame {
    let mut header = [0u8; LENGTH_BYTES];
    let got = read_full(src, &mut header).await;
    if got < LENGTH_BYTES {
        return ReadFrame::End {
            tail: header[..got].to_vec(),
        };
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_BYTES {
        return ReadFrame::TooLarge(len);
    }
    let mut frame = vec![0u8; LENGTH_BYTES + len];
    frame[..LENGTH_BYTES].copy_from_slice(&header);
    let got = read_full(src, &mut frame[LENGTH_BYTES..]).await;
    if got < len {
        frame.truncate(LENGTH_BYTES + got);
        return ReadFrame::End { tail: frame };
    }
    ReadFrame::Frame(frame)
}

/// Fills `buf` unless the stream ends or fails first; returns the bytes read.
/// A failed stream (a reset) is an end like any other: the proxy's job is to
/// pass the end on, not to report it.
async fn read_full<R: AsyncRead + Unpin>(src: &mut R, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::ReadBuf;

    use super::*;

    /// Hands out its bytes `step` at a time, pending every other poll.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
        pend: bool,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.pend = !self.pend;
            if self.pend {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = self
                .step
                .min(self.data.len() - self.at)
                .min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.data[at..at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    }

    async fn read_all(data: Vec<u8>, step: usize) -> Vec<ReadFrame> {
        let mut src = Trickle {
            data,
            at: 0,
            step,
            pend: false,
        };
        let mut out = Vec::new();
        loop {
            let next = read_frame(&mut src).await;
            let end = !matches!(next, ReadFrame::Frame(_));
            out.push(next);
            if end {
                return out;
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn frames_survive_any_split_of_the_reads() {
        let (a, b, empty) = (frame(&[1, 7, 7]), frame(&[1; 300]), frame(&[]));
        let stream = [a.clone(), b.clone(), empty.clone()].concat();
        for step in [1, 2, 3, 5, 64, 4096] {
            assert_eq!(
                read_all(stream.clone(), step).await,
                vec![
                    ReadFrame::Frame(a.clone()),
                    ReadFrame::Frame(b.clone()),
                    ReadFrame::Frame(empty.clone()),
                    ReadFrame::End { tail: vec![] },
                ],
                "step {step}"
            );
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stream_cut_mid_frame_ends_with_its_tail() {
        let a = frame(&[1, 2, 3, 4]);
        let cut = [a.clone(), a[..6].to_vec()].concat();
        assert_eq!(
            read_all(cut, 1).await,
            vec![
                ReadFrame::Frame(a.clone()),
                ReadFrame::End {
                    tail: a[..6].to_vec()
                }
            ]
        );
        assert_eq!(
            read_all(a[..2].to_vec(), 1).await,
            vec![ReadFrame::End {
                tail: a[..2].to_vec()
            }]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_oversized_length_prefix_is_refused_before_its_body() {
        let huge = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes().to_vec();
        assert_eq!(
            read_all(huge, 4).await,
            vec![ReadFrame::TooLarge(MAX_FRAME_BYTES + 1)]
        );
    }
}
