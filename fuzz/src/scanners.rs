//! The `broker_scan` and `deliver_scan` targets: the hand-written readers
//! and writers of `codec::raw` against prost, on any frame body.
//!
//! The contracts are those of the property tests in
//! `crates/eventbus/src/codec/raw/tests.rs`:
//! - the broker's `scan_publish` and `scan_reply` take only bodies prost
//!   decodes to a `Publish` (with a message) or a `Reply`, read every field
//!   the broker uses as prost does (and the envelope's bytes are prost's
//!   envelope), and take every such body in prost's own encoding;
//! - what the broker writes from them (`StampedDeliver`, `StampedReply`)
//!   decodes, by prost and by the client's hand decoder, to that envelope
//!   with the broker's stamps over whatever the sender set in those fields;
//! - the client's `decode_deliver` reads every body it accepts exactly as
//!   prost does, and accepts every headerless `Deliver` with a message in
//!   prost's encoding.

use bytes::{Bytes, BytesMut};
use eventbus::codec::{FrameCodec, decode_body};
use eventbus::fuzzing::{self, Edge, Stamps};
use eventbus::proto::{self, Frame, frame::Kind};
use prost::Message as _;

/// Stamp values around the varint length boundaries, and the shortest and
/// longest client ids, picked by the input's first byte.
const NUMBERS: [u64; 6] = [0, 1, 127, 128, 16384, u64::MAX];
const ATTEMPTS: [u32; 3] = [1, 127, u32::MAX];
const IDS: [&str; 2] = [
    "p",
    "p-123456789-123456789-123456789-123456789-123456789-123456789-12",
];

/// An input for `broker_scan`: the stamps' choice, then the body.
pub fn broker_input(stamps: u8, body: &[u8]) -> Vec<u8> {
    [&[stamps][..], body].concat()
}

/// The stamps a byte picks.
fn stamps(b: u8, reply_fields: bool) -> Stamps {
    let b = usize::from(b);
    let n = |shift: usize| NUMBERS[(b >> shift) % NUMBERS.len()];
    let to = IDS[(b >> 3) % 2].to_owned();
    Stamps {
        sid: n(0),
        delivery_id: n(1),
        id: n(2),
        source: IDS[(b >> 4) % 2].to_owned(),
        timestamp_us: n(5),
        attempt: ATTEMPTS[(b >> 6) % ATTEMPTS.len()],
        // A request, or what the broker does with a plain message.
        reply: if b & 0x80 != 0 {
            Some(Some((n(4), to)))
        } else if reply_fields {
            Some(None)
        } else {
            None
        },
    }
}

/// Runs `broker_scan` on one input: a byte choosing the stamps, then the
/// body.
pub fn broker(input: &[u8]) {
    let Some((&choice, data)) = input.split_first() else {
        return;
    };
    let body = Bytes::copy_from_slice(data);
    let decoded = decode_body(body.clone());
    let edge = fuzzing::edge(body.clone());
    assert_eq!(
        edge.is_err(),
        decoded.is_err(),
        "the edge and prost disagree"
    );
    assert_ne!(
        edge.as_ref().ok(),
        Some(&Edge::Unreadable),
        "a message prost reads is unreadable to the broker once encoded canonically"
    );
    let canonical = decoded.as_ref().is_ok_and(|f| f.encode_to_vec() == data);
    match fuzzing::scan_publish_body(body.clone()) {
        Some(scan) => publish(&decoded, &scan, choice, canonical),
        None => {
            if let Ok(Frame {
                kind: Some(Kind::Publish(p)),
            }) = &decoded
            {
                assert!(
                    !canonical || p.message.is_none(),
                    "the reader refused a publish in prost's encoding"
                );
            }
        }
    }
    match fuzzing::scan_reply_body(body) {
        Some(scan) => reply(&decoded, &scan, choice),
        None => assert!(
            !(canonical
                && matches!(
                    &decoded,
                    Ok(Frame {
                        kind: Some(Kind::Reply(_))
                    })
                )),
            "the reader refused a reply in prost's encoding"
        ),
    }
}

fn reserved(headers: &std::collections::HashMap<String, String>) -> bool {
    headers.keys().any(|k| k.starts_with("x-"))
}

/// A publish the reader took reads as prost reads it, and delivers as the
/// envelope with the broker's stamps.
fn publish(
    decoded: &Result<Frame, eventbus::codec::FrameError>,
    scan: &fuzzing::ScannedPublish,
    choice: u8,
    canonical: bool,
) {
    let Ok(Frame {
        kind: Some(Kind::Publish(p)),
    }) = decoded
    else {
        panic!("the reader took a body prost reads as {decoded:?}");
    };
    let message = p
        .message
        .as_deref()
        .expect("the reader took a publish without a message");
    assert_eq!(
        (scan.seq, scan.mode as i32, scan.timeout_ms),
        (p.seq, p.mode, p.timeout_ms)
    );
    assert_eq!(scan.target.as_deref().unwrap_or_default(), p.target_client);
    assert_eq!(
        (scan.gather_scope as i32, scan.gather_group.as_str()),
        (p.gather_scope, p.gather_group.as_str())
    );
    assert_eq!(scan.topic, message.topic);
    // Reply fields the publisher set are always found (the broker clears
    // them); one written with its default value may be found too (clearing
    // it again changes nothing), but not in prost's encoding, which omits it.
    let set = message.correlation_id != 0 || !message.reply_to.is_empty();
    assert!(
        scan.reply_fields || !set,
        "reply fields the broker would not clear"
    );
    assert!(
        !canonical || scan.reply_fields == set,
        "reply fields found in none"
    );
    assert_eq!(scan.reserved_header.is_some(), reserved(&message.headers));
    if let Some(key) = &scan.reserved_header {
        assert!(message.headers.contains_key(key), "{key:?} is no header");
    }
    assert_eq!(
        proto::Envelope::decode(scan.envelope.clone()).ok().as_ref(),
        Some(message),
        "the envelope's bytes are not prost's envelope"
    );
    let stamps = stamps(choice, scan.reply_fields);
    let wire = fuzzing::stamped_deliver(scan.envelope.clone(), &stamps);
    let mut expected = message.clone();
    expected.id = stamps.id;
    expected.source = stamps.source.clone();
    expected.timestamp_us = stamps.timestamp_us;
    expected.attempt = stamps.attempt;
    match &stamps.reply {
        None => {}
        Some(None) => {
            expected.correlation_id = 0;
            expected.reply_to.clear();
        }
        Some(Some((token, to))) => {
            expected.correlation_id = *token;
            expected.reply_to.clone_from(to);
        }
    }
    let headerless = expected.headers.is_empty();
    let expected = Frame {
        kind: Some(Kind::Deliver(proto::Deliver {
            sid: stamps.sid,
            delivery_id: stamps.delivery_id,
            message: Some(Box::new(expected)),
        })),
    };
    assert_eq!(
        read_frame(&wire),
        expected,
        "the delivery reads differently"
    );
    // The client reads it by hand as prost does (prost takes the headers).
    let hand = fuzzing::hand_decoded_deliver(wire.slice(5..));
    assert_eq!(
        hand.is_some(),
        headerless,
        "the client's reader refused a delivery"
    );
    if let Some(hand) = hand {
        assert_eq!(hand, expected, "the client reads the delivery differently");
    }
}

/// A reply the reader took reads as prost reads it, and is forwarded as its
/// envelope with the broker's stamps.
fn reply(
    decoded: &Result<Frame, eventbus::codec::FrameError>,
    scan: &fuzzing::ScannedReply,
    choice: u8,
) {
    let Ok(Frame {
        kind: Some(Kind::Reply(r)),
    }) = decoded
    else {
        panic!("the reader took a body prost reads as {decoded:?}");
    };
    assert_eq!(
        (scan.correlation_id, scan.delivery_id, scan.seq),
        (r.correlation_id, r.delivery_id, r.seq)
    );
    let message = r.message.as_deref().cloned().unwrap_or_default();
    assert_eq!(scan.reserved_header.is_some(), reserved(&message.headers));
    let stamps = stamps(choice, false);
    let (seq, source, ts) = (stamps.id, stamps.source, stamps.timestamp_us);
    let wire = fuzzing::stamped_reply(scan.envelope.clone(), seq, &source, ts);
    let mut expected = message;
    expected.source = source;
    expected.timestamp_us = ts;
    expected.correlation_id = seq;
    let expected = Frame {
        kind: Some(Kind::Reply(proto::Reply {
            correlation_id: seq,
            delivery_id: 0,
            message: Some(Box::new(expected)),
            seq: 0,
        })),
    };
    assert_eq!(
        read_frame(&wire),
        expected,
        "the forwarded reply reads differently"
    );
}

/// One whole frame as prost reads it; nothing may follow.
fn read_frame(wire: &Bytes) -> Frame {
    let mut buf = BytesMut::from(&wire[..]);
    let frame = FrameCodec::new(u32::MAX as usize)
        .decode(&mut buf)
        .expect("the frame decodes")
        .expect("a whole frame");
    assert!(buf.is_empty(), "the prefix counts the whole frame");
    frame
}

/// Runs `deliver_scan` on one body.
pub fn deliver(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    let decoded = decode_body(body.clone());
    match fuzzing::hand_decoded_deliver(body) {
        Some(hand) => assert_eq!(
            Ok(hand),
            decoded,
            "the hand decoder reads a delivery differently from prost"
        ),
        None => {
            let Ok(frame) = decoded else { return };
            let Some(Kind::Deliver(d)) = &frame.kind else {
                return;
            };
            if d.message.as_ref().is_some_and(|m| m.headers.is_empty()) {
                assert_ne!(
                    frame.encode_to_vec(),
                    data,
                    "the hand decoder refused a headerless delivery in prost's encoding"
                );
            }
        }
    }
}
