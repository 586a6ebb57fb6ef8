//! The `frame_decoder` target: `FrameCodec` on any bytes, cut anywhere.
//!
//! Input: a byte choosing the frame limit, a byte giving the number of
//! splits (modulo 8), that many little-endian `u16` split offsets, then the
//! stream. Checked:
//! - the stream cut into frames whole and in the given pieces gives the same
//!   bodies and the same error at the same place (framing survives any
//!   split), and no body exceeds the limit;
//! - `decode` gives, frame by frame, what `decode_body` and the free
//!   `decode_body` give;
//! - the broker's edge (`command::decode`) refuses exactly the bodies prost
//!   refuses, never panics, and reads every publish and reply prost reads;
//! - a decoded frame encodes (or is `TooLarge`) and decodes back the same.

use bytes::{Bytes, BytesMut};
use eventbus::codec::{DEFAULT_MAX_FRAME_BYTES, FrameCodec, FrameError, decode_body};
use eventbus::fuzzing;

use crate::input::{Reader, Writer};

/// The frame limits an input picks from.
const LIMITS: [usize; 4] = [1024, 4096, 65536, DEFAULT_MAX_FRAME_BYTES];

/// What cutting a stream into frames produced, in order.
#[derive(Debug, PartialEq)]
enum Cut {
    Body(Bytes),
    /// The first error; nothing is read after it.
    Error(FrameError),
}

/// An input for the target: the limit's index, where to split, the stream.
pub fn encode(limit: u8, splits: &[u16], stream: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(limit).u8(splits.len() as u8);
    for &s in splits {
        w.u16(s);
    }
    w.bytes(stream);
    w.data
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut r = Reader::new(data);
    let codec = FrameCodec::new(LIMITS[usize::from(r.u8()) % LIMITS.len()]);
    let splits = usize::from(r.u8() % 8);
    let mut offsets: Vec<usize> = (0..splits).map(|_| usize::from(r.u16())).collect();
    let stream = r.rest();
    offsets.iter_mut().for_each(|o| *o = (*o).min(stream.len()));
    offsets.sort_unstable();

    let whole = cut(codec, [stream]);
    let mut pieces = Vec::new();
    let mut at = 0;
    for &o in offsets.iter().chain([&stream.len()]) {
        pieces.push(&stream[at..o]);
        at = o;
    }
    let split = cut(codec, pieces);
    assert_eq!(
        whole, split,
        "the same stream cut at {offsets:?} reads differently"
    );

    check_decode(codec, stream, &whole);
    for c in &whole {
        match c {
            Cut::Body(body) => check_body(codec, body),
            Cut::Error(e) => check_error(codec, e),
        }
    }
}

/// Cuts the stream that arrives in `pieces` into frame bodies, as
/// `FrameReader` does: every whole frame after each piece, then what is left
/// at the end of the stream.
fn cut<'a>(codec: FrameCodec, pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<Cut> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode_body(&mut buf) {
                Ok(Some(body)) => {
                    assert!(
                        body.len() < codec.max_frame_bytes(),
                        "a body over the limit"
                    );
                    out.push(Cut::Body(body));
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Cut::Error(e));
                    return out;
                }
            }
        }
    }
    match codec.decode_body_eof(&mut buf) {
        Ok(Some(body)) => out.push(Cut::Body(body)),
        Ok(None) => assert!(buf.is_empty(), "bytes left at a clean end"),
        Err(e) => out.push(Cut::Error(e)),
    }
    out
}

/// `decode` reads frame by frame what the body path reads.
fn check_decode(codec: FrameCodec, stream: &[u8], cuts: &[Cut]) {
    let mut buf = BytesMut::from(stream);
    for c in cuts {
        let got = codec.decode_eof(&mut buf);
        match c {
            Cut::Body(body) => assert_eq!(got, decode_body(body.clone()).map(Some)),
            Cut::Error(e) => {
                assert_eq!(
                    got.as_ref().err(),
                    Some(e),
                    "decode and decode_body disagree"
                );
            }
        }
        if got.is_err() {
            return;
        }
    }
}

/// A body: the edge refuses exactly what prost refuses, and a frame round
/// trips.
fn check_body(codec: FrameCodec, body: &Bytes) {
    let frame = decode_body(body.clone());
    let edge = fuzzing::edge(body.clone());
    assert_eq!(
        edge.is_err(),
        frame.is_err(),
        "the edge and prost disagree: {edge:?} / {frame:?}"
    );
    if let (Err(a), Err(b)) = (&edge, &frame) {
        assert_eq!(a, b, "the edge refuses for another reason than prost");
    }
    assert_ne!(
        edge.ok(),
        Some(fuzzing::Edge::Unreadable),
        "a message prost reads is unreadable to the broker once encoded canonically"
    );
    let Ok(frame) = frame else { return };
    let mut wire = BytesMut::new();
    match codec.encode(&frame, &mut wire) {
        Ok(()) => {
            let back = codec
                .decode_eof(&mut wire)
                .expect("what was encoded decodes");
            assert_eq!(back.as_ref(), Some(&frame), "a frame does not round trip");
            assert!(wire.is_empty());
        }
        Err(FrameError::TooLarge { len, max }) => {
            assert!(len > max && max == codec.max_frame_bytes());
            assert!(wire.is_empty(), "a refused encode left bytes");
        }
        Err(e) => panic!("encoding a decoded frame failed: {e}"),
    }
}

/// Errors carry facts that hold.
fn check_error(codec: FrameCodec, e: &FrameError) {
    match *e {
        FrameError::TooLarge { len, max } => {
            assert!(len > max && max == codec.max_frame_bytes());
        }
        FrameError::Truncated { have, need } => assert!(have < need, "{e}"),
        FrameError::UnknownVersion { version } => assert_ne!(version, 1),
        _ => {}
    }
}
