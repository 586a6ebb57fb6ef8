use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::proto::{self, frame::Kind};

/// Envelopes with arbitrary field values (shared with `raw`'s tests).
pub(super) fn envelope() -> impl Strategy<Value = proto::Envelope> {
    (
        any::<u64>(),
        "[a-z0-9_.-]{0,40}",
        proptest::collection::vec(any::<u8>(), 0..512),
        proptest::collection::hash_map("[a-z-]{1,8}", ".{0,16}", 0..4),
        (any::<u64>(), "[a-z0-9-]{0,12}", "[a-z0-9-]{0,12}"),
        (any::<u64>(), any::<u32>()),
    )
        .prop_map(
            |(id, topic, payload, headers, (correlation_id, reply_to, source), (ts, attempt))| {
                proto::Envelope {
                    id,
                    topic,
                    payload: Bytes::from(payload),
                    headers,
                    correlation_id,
                    reply_to,
                    source,
                    timestamp_us: ts,
                    attempt,
                }
            },
        )
}

/// Frames of every shape the hot path carries, with arbitrary field values.
fn frame() -> impl Strategy<Value = Frame> {
    let kind = prop_oneof![
        (any::<u64>(), 0..3i32, envelope(), "[a-z0-9-]{0,12}").prop_map(
            |(seq, mode, message, target_client)| Kind::Publish(proto::Publish {
                seq,
                mode,
                message: Some(Box::new(message)),
                target_client,
                timeout_ms: 0,
                ..Default::default()
            })
        ),
        (any::<u64>(), any::<u64>(), envelope()).prop_map(|(sid, delivery_id, message)| {
            Kind::Deliver(proto::Deliver {
                sid,
                delivery_id,
                message: Some(Box::new(message)),
            })
        }),
        any::<u64>().prop_map(|delivery_id| Kind::Ack(proto::Ack {
            delivery_id,
            seq: 0
        })),
        (any::<u64>(), any::<bool>()).prop_map(|(delivery_id, requeue)| Kind::Nack(proto::Nack {
            delivery_id,
            requeue,
            seq: 0
        })),
        any::<u64>().prop_map(|nonce| Kind::Heartbeat(proto::Heartbeat { nonce })),
        (
            any::<u64>(),
            any::<u64>(),
            "[a-z.+#]{0,30}",
            "[a-z]{0,8}",
            any::<u32>()
        )
            .prop_map(|(seq, sid, filter, group, prefetch)| Kind::Subscribe(
                proto::Subscribe {
                    seq,
                    sid,
                    filter,
                    group,
                    prefetch,
                    fallback: false,
                }
            )),
        (any::<u64>(), 0..21i32, ".{0,40}").prop_map(|(seq, code, message)| Kind::Error(
            proto::Error {
                seq,
                code,
                message,
                details: Default::default(),
            }
        )),
        (
            "[a-z0-9-]{0,16}",
            proptest::collection::vec("[a-z]{1,8}", 0..3),
            any::<u32>()
        )
            .prop_map(|(client_id, capabilities, pid)| Kind::Hello(proto::Hello {
                protocol_version: proto::PROTOCOL_VERSION,
                client_id,
                kind: "collector".into(),
                capabilities,
                pid,
                ..Default::default()
            })),
    ];
    kind.prop_map(|kind| Frame { kind: Some(kind) })
}

fn encode_all(codec: &FrameCodec, frames: &[Frame]) -> BytesMut {
    let mut buf = BytesMut::new();
    for f in frames {
        codec.encode(f, &mut buf).expect("frame within limit");
    }
    buf
}

/// Feeds `wire` to the decoder in chunks cut at `cuts`, as successive reads would.
fn decode_in_chunks(codec: &FrameCodec, wire: &[u8], cuts: &[usize]) -> Vec<Frame> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.push(wire.len());
    points.sort_unstable();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut start = 0;
    for end in points {
        buf.extend_from_slice(&wire[start..end]);
        start = end;
        while let Some(f) = codec.decode(&mut buf).expect("valid stream") {
            out.push(f);
        }
    }
    assert!(codec.decode_eof(&mut buf).expect("no leftovers").is_none());
    out
}

proptest! {
    #[test]
    fn round_trip(frames in proptest::collection::vec(frame(), 1..8)) {
        let codec = FrameCodec::default();
        let wire = encode_all(&codec, &frames);
        prop_assert_eq!(decode_in_chunks(&codec, &wire, &[]), frames);
    }

    #[test]
    fn any_split_decodes_identically(
        frames in proptest::collection::vec(frame(), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let codec = FrameCodec::default();
        let wire = encode_all(&codec, &frames);
        prop_assert_eq!(decode_in_chunks(&codec, &wire, &cuts), frames);
    }

    #[test]
    fn byte_at_a_time_decodes_identically(frames in proptest::collection::vec(frame(), 1..3)) {
        let codec = FrameCodec::default();
        let wire = encode_all(&codec, &frames);
        let cuts: Vec<usize> = (0..wire.len()).collect();
        prop_assert_eq!(decode_in_chunks(&codec, &wire, &cuts), frames);
    }

    #[test]
    fn garbage_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let codec = FrameCodec::new(4096);
        let mut buf = BytesMut::from(&garbage[..]);
        // Decode until the codec wants more input or reports an error; neither may panic.
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
        let _ = codec.decode_eof(&mut buf);
    }

    #[test]
    fn garbage_body_with_valid_header_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let codec = FrameCodec::default();
        let mut buf = BytesMut::new();
        buf.put_u32(body.len() as u32 + 1);
        buf.put_u8(WIRE_VERSION);
        buf.extend_from_slice(&body);
        let _ = codec.decode(&mut buf);
    }
}

fn heartbeat() -> Frame {
    Frame {
        kind: Some(Kind::Heartbeat(proto::Heartbeat { nonce: 7 })),
    }
}

#[test]
fn oversized_frame_is_refused_on_write_and_leaves_buffer_untouched() {
    let codec = FrameCodec::new(MIN_MAX_FRAME_BYTES);
    let frame = Frame {
        kind: Some(Kind::Publish(proto::Publish {
            message: Some(Box::new(proto::Envelope {
                payload: Bytes::from(vec![0u8; 2 * MIN_MAX_FRAME_BYTES]),
                ..Default::default()
            })),
            ..Default::default()
        })),
    };
    let mut buf = BytesMut::from(&b"xy"[..]);
    let err = codec.encode(&frame, &mut buf).unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { max, .. } if max == MIN_MAX_FRAME_BYTES));
    assert_eq!(&buf[..], b"xy");
}

#[test]
fn oversized_length_prefix_is_refused_before_the_body_arrives() {
    let codec = FrameCodec::new(MIN_MAX_FRAME_BYTES);
    let mut buf = BytesMut::new();
    buf.put_u32(u32::MAX);
    assert_eq!(
        codec.decode(&mut buf),
        Err(FrameError::TooLarge {
            len: u32::MAX as usize,
            max: MIN_MAX_FRAME_BYTES
        })
    );
}

#[test]
fn unknown_version_is_typed() {
    let codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    buf.put_u32(1);
    buf.put_u8(9);
    assert_eq!(
        codec.decode(&mut buf),
        Err(FrameError::UnknownVersion { version: 9 })
    );
}

#[test]
fn zero_length_is_typed() {
    let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
    assert_eq!(
        FrameCodec::default().decode(&mut buf),
        Err(FrameError::Empty)
    );
}

#[test]
fn frame_without_kind_is_malformed() {
    let codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    buf.put_u32(1);
    buf.put_u8(WIRE_VERSION);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(FrameError::Malformed { .. })
    ));
}

#[test]
fn invalid_protobuf_is_malformed() {
    let codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    buf.put_u32(3);
    buf.put_u8(WIRE_VERSION);
    buf.put_u8(0x0a); // field 1, length-delimited...
    buf.put_u8(0x7f); // ...claiming 127 bytes that are not there
    assert!(matches!(
        codec.decode(&mut buf),
        Err(FrameError::Malformed { .. })
    ));
}

#[test]
fn eof_mid_frame_is_truncated() {
    let codec = FrameCodec::default();
    let wire = encode_all(&codec, &[heartbeat()]);
    let mut buf = BytesMut::from(&wire[..wire.len() - 1]);
    assert_eq!(codec.decode(&mut buf), Ok(None));
    assert_eq!(
        codec.decode_eof(&mut buf),
        Err(FrameError::Truncated {
            have: wire.len() - 1,
            need: wire.len()
        })
    );
    let mut header_only = BytesMut::from(&wire[..2]);
    assert_eq!(
        codec.decode_eof(&mut header_only),
        Err(FrameError::Truncated {
            have: 2,
            need: FRAME_HEADER_LEN
        })
    );
}

#[test]
fn limit_is_clamped_to_a_usable_minimum() {
    assert_eq!(FrameCodec::new(0).max_frame_bytes(), MIN_MAX_FRAME_BYTES);
}
