use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use prost::Message as _;

use super::deliver::RawDelivery;
use super::*;
use crate::codec::tests::envelope;
use crate::codec::{FrameCodec, decode_body};
use crate::proto::{self, Frame, frame::Kind};

fn publish() -> impl Strategy<Value = proto::Publish> {
    (
        any::<u64>(),
        prop_oneof![Just(0), 0..5i32],
        envelope(),
        prop_oneof![Just(String::new()), "[a-z0-9-]{1,12}"],
        any::<u32>(),
        (0..3i32, prop_oneof![Just(String::new()), "[a-z0-9-]{1,12}"]),
    )
        .prop_map(
            |(seq, mode, message, target_client, timeout_ms, (gather_scope, gather_group))| {
                proto::Publish {
                    seq,
                    mode,
                    message: Some(Box::new(message)),
                    target_client,
                    timeout_ms,
                    gather_scope,
                    gather_group,
                }
            },
        )
}

fn body(publish: &proto::Publish) -> Bytes {
    Frame {
        kind: Some(Kind::Publish(publish.clone())),
    }
    .encode_to_vec()
    .into()
}

proptest! {
    /// A hand-encoded publish decodes to the frame `Client::publish` used to
    /// build, and the broker's scan takes it.
    #[test]
    fn hand_encoded_publishes_decode_as_built_frames(
        topic in "[a-z0-9_-]{1,20}(\\.[a-z0-9_-]{1,20}){0,4}",
        payload in proptest::collection::vec(any::<u8>(), 0..400),
        request in proptest::option::of((any::<u64>(), prop_oneof![Just(0u32), any::<u32>()])),
    ) {
        let request = request.map(|(seq, timeout_ms)| RawRequest { seq, timeout_ms });
        let out = RawPublishOut {
            topic: crate::topic::Topic::new(topic.as_str()).unwrap(),
            payload: Bytes::from(payload.clone()),
            request,
        };
        let mut buf = BytesMut::new();
        out.encode(&mut buf);
        prop_assert_eq!(buf.len(), 4 + out.frame_len());
        let wire = Bytes::copy_from_slice(&buf);
        let decoded = FrameCodec::default().decode(&mut buf).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        let expected = Frame {
            kind: Some(Kind::Publish(proto::Publish {
                seq: request.map_or(0, |r| r.seq),
                mode: if request.is_some() { proto::PublishMode::Request as i32 } else { 0 },
                message: Some(Box::new(proto::Envelope {
                    topic: topic.clone(),
                    payload: Bytes::from(payload.clone()),
                    ..Default::default()
                })),
                timeout_ms: request.map_or(0, |r| r.timeout_ms),
                ..Default::default()
            })),
        };
        prop_assert_eq!(&decoded, &expected);
        let raw = scan_publish(wire.slice(5..)).expect("the broker keeps it encoded");
        prop_assert_eq!(raw.topic(), topic.as_str());
        prop_assert_eq!((raw.seq, raw.mode, raw.timeout_ms), (
            request.map_or(0, |r| r.seq),
            if request.is_some() { 2 } else { 0 },
            request.map_or(0, |r| r.timeout_ms),
        ));
    }

    /// The broker's reader takes every publish prost encodes (with a
    /// message), reads its fields as prost does, and a delivery written from
    /// it decodes to the publisher's envelope with the broker's stamps —
    /// whatever the publisher set in the stamped fields.
    #[test]
    fn stamped_deliveries_decode_to_the_envelope_with_its_stamps(
        publish in publish(),
        (sid, delivery_id) in (any::<u64>(), prop_oneof![Just(0), any::<u64>()]),
        (id, source, ts, attempt) in (any::<u64>(), "[a-z0-9-]{1,20}", any::<u64>(), any::<u32>()),
        reply in prop_oneof![Just(None), any::<u64>().prop_map(Some)],
    ) {
        let raw = scan_publish(body(&publish)).expect("every canonical publish");
        let message = publish.message.as_deref().unwrap();
        prop_assert_eq!(raw.seq, publish.seq);
        prop_assert_eq!(raw.mode as i32, publish.mode);
        prop_assert_eq!(raw.timeout_ms, publish.timeout_ms);
        prop_assert_eq!(raw.target().unwrap_or_default(), publish.target_client.as_str());
        prop_assert_eq!(raw.gather_scope as i32, publish.gather_scope);
        prop_assert_eq!(raw.gather_group(), publish.gather_group.as_str());
        prop_assert_eq!(raw.topic(), message.topic.as_str());
        prop_assert_eq!(
            raw.reply_fields,
            message.correlation_id != 0 || !message.reply_to.is_empty()
        );
        let reserved = message.headers.keys().any(|k| k.starts_with("x-"));
        prop_assert_eq!(raw.reserved_header().is_some(), reserved);
        let source = crate::names::ClientId::new(source.as_str()).unwrap();
        let reply = match reply {
            Some(correlation) => ReplyStamp::Request { correlation, to: source.clone() },
            None if raw.reply_fields => ReplyStamp::Clear,
            None => ReplyStamp::None,
        };
        let deliver = StampedDeliver {
            sid,
            delivery_id,
            envelope: raw.envelope(),
            id,
            source: source.clone(),
            timestamp_us: ts,
            attempt,
            reply: reply.clone(),
        };
        let mut wire = BytesMut::new();
        deliver.encode(&mut wire);
        prop_assert_eq!(wire.len(), 4 + deliver.frame_len());
        let decoded = FrameCodec::default().decode(&mut wire).unwrap().unwrap();
        prop_assert!(wire.is_empty(), "the prefix counts the whole frame");
        let mut expected = message.clone();
        expected.id = id;
        expected.source = source.to_string();
        expected.timestamp_us = ts;
        expected.attempt = attempt;
        match &reply {
            ReplyStamp::Request { correlation, to } => {
                expected.correlation_id = *correlation;
                expected.reply_to = to.to_string();
            }
            ReplyStamp::Clear => {
                expected.correlation_id = 0;
                expected.reply_to.clear();
            }
            ReplyStamp::None => {}
        }
        let expected = Frame {
            kind: Some(Kind::Deliver(proto::Deliver {
                sid,
                delivery_id,
                message: Some(Box::new(expected)),
            })),
        };
        prop_assert_eq!(decoded, expected);
    }

    /// A reply is read as prost reads it, and forwarded with the broker's
    /// stamps over whatever the responder set.
    #[test]
    fn stamped_replies_decode_to_the_envelope_with_its_stamps(
        (correlation_id, delivery_id, seq) in (any::<u64>(), any::<u64>(), any::<u64>()),
        message in prop_oneof![Just(None), envelope().prop_map(Some)],
        (requester_seq, source, ts) in (any::<u64>(), "[a-z0-9-]{1,20}", any::<u64>()),
    ) {
        let reply = proto::Reply {
            correlation_id,
            delivery_id,
            message: message.clone().map(Box::new),
            seq,
        };
        let body: Bytes = Frame { kind: Some(Kind::Reply(reply)) }.encode_to_vec().into();
        let raw = scan_reply(body).expect("every canonical reply");
        prop_assert_eq!((raw.correlation_id, raw.delivery_id, raw.seq), (correlation_id, delivery_id, seq));
        let message = message.unwrap_or_default();
        let reserved = message.headers.keys().any(|k| k.starts_with("x-"));
        prop_assert_eq!(raw.reserved_header().is_some(), reserved);
        let out = StampedReply {
            seq: requester_seq,
            envelope: raw.envelope(),
            source: crate::names::ClientId::new(source.as_str()).unwrap(),
            timestamp_us: ts,
        };
        let mut wire = BytesMut::new();
        out.encode(&mut wire);
        prop_assert_eq!(wire.len(), 4 + out.frame_len());
        let decoded = FrameCodec::default().decode(&mut wire).unwrap().unwrap();
        let mut expected = message;
        expected.source = source;
        expected.timestamp_us = ts;
        expected.correlation_id = requester_seq;
        let expected = Frame {
            kind: Some(Kind::Reply(proto::Reply {
                correlation_id: requester_seq,
                delivery_id: 0,
                message: Some(Box::new(expected)),
                seq: 0,
            })),
        };
        prop_assert_eq!(decoded, expected);
    }

    /// Whatever the bytes, reading never panics, and it never accepts a body
    /// the decoder refuses or reads differently.
    #[test]
    fn corrupted_bodies_are_refused_or_read_as_the_decoder_reads_them(
        publish in publish(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = body(&publish).to_vec();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let bytes = Bytes::from(bytes);
        if let Ok(raw) = scan_publish(bytes.clone()) {
            let frame = decode_body(bytes.clone());
            prop_assert!(frame.is_ok(), "accepted what the decoder refuses: {frame:?}");
            let Some(Kind::Publish(p)) = frame.unwrap().kind else {
                return Err(TestCaseError::fail("accepted a frame that is not a publish"));
            };
            prop_assert_eq!((raw.seq, raw.mode as i32, raw.timeout_ms), (p.seq, p.mode, p.timeout_ms));
            prop_assert_eq!(raw.target().unwrap_or_default(), p.target_client.as_str());
            let message = p.message.unwrap();
            prop_assert_eq!(message.topic.as_str(), raw.topic());
            prop_assert_eq!(
                proto::Envelope::decode(raw.envelope()).ok(),
                Some(*message),
                "the envelope's bytes are the decoder's envelope"
            );
        }
        if let Ok(raw) = scan_reply(bytes.clone()) {
            let frame = decode_body(bytes.clone());
            prop_assert!(frame.is_ok(), "accepted what the decoder refuses: {frame:?}");
            let Some(Kind::Reply(r)) = frame.unwrap().kind else {
                return Err(TestCaseError::fail("accepted a frame that is not a reply"));
            };
            prop_assert_eq!((raw.correlation_id, raw.delivery_id, raw.seq), (r.correlation_id, r.delivery_id, r.seq));
        }
    }
}

#[test]
fn other_frames_and_publishes_without_a_message_are_not_read_as_publishes() {
    let ack: Bytes = Frame {
        kind: Some(Kind::Ack(proto::Ack {
            delivery_id: 1,
            seq: 0,
        })),
    }
    .encode_to_vec()
    .into();
    assert!(scan_publish(ack.clone()).is_err());
    assert!(scan_reply(ack).is_err());
    assert!(scan_publish(Bytes::new()).is_err());
    let no_message = proto::Publish::default();
    assert!(scan_publish(body(&no_message)).is_err());
}

#[test]
fn a_republished_message_carries_its_new_topic_and_headers() {
    let topic = crate::topic::Topic::new("a.b").unwrap();
    let original = proto::Envelope {
        topic: "a.b".into(),
        payload: Bytes::from_static(b"task"),
        headers: [("trace".to_owned(), "1".to_owned())].into(),
        reply_to: "forged".into(),
        ..Default::default()
    };
    let message = Stamped {
        envelope: original.encode_to_vec().into(),
        topic,
        id: 7,
        source: crate::names::ClientId::new("p").unwrap(),
        timestamp_us: 9,
        attempt: 3,
        reply: ReplyStamp::Request {
            correlation: 5,
            to: crate::names::ClientId::new("p").unwrap(),
        },
    };
    let dead = message.republished(
        crate::topic::Topic::new("_sys.dead-letter.g").unwrap(),
        &[("x-dead-letter-reason", "nacked"), ("x-attempts", "3")],
    );
    let decoded = proto::Envelope::decode(dead.to_bytes()).unwrap();
    assert_eq!(decoded.topic, "_sys.dead-letter.g");
    assert_eq!(decoded.payload, Bytes::from_static(b"task"));
    assert_eq!(decoded.headers["trace"], "1");
    assert_eq!(decoded.headers["x-dead-letter-reason"], "nacked");
    assert_eq!(decoded.headers["x-attempts"], "3");
    assert_eq!(
        (decoded.id, decoded.attempt, decoded.timestamp_us),
        (7, 3, 9)
    );
    assert_eq!((decoded.correlation_id, decoded.reply_to.as_str()), (0, ""));
    assert!(dead.frame_len_bound() >= dead.message_len() + 20);
}

/// The frame prost would build for a delivery read by hand.
fn as_frame(delivery: &RawDelivery) -> Frame {
    Frame {
        kind: Some(Kind::Deliver(proto::Deliver {
            sid: delivery.sid,
            delivery_id: delivery.delivery_id,
            message: Some(Box::new(delivery.envelope.to_envelope())),
        })),
    }
}

fn deliver_body(deliver: proto::Deliver) -> Bytes {
    Frame {
        kind: Some(Kind::Deliver(deliver)),
    }
    .encode_to_vec()
    .into()
}

/// What prost reads from a `Reply` body: the requester's `seq` and the
/// message, as the hand decoder gives them.
fn prost_reply(body: Bytes) -> Option<(u64, proto::Envelope)> {
    match decode_body(body).ok()?.kind {
        Some(Kind::Reply(r)) => Some((r.correlation_id, *r.message?)),
        _ => None,
    }
}

proptest! {
    /// The client's hand decoder reads every `Reply` it accepts exactly as
    /// prost does, and accepts every headerless one that carries a message.
    #[test]
    fn hand_decoded_replies_match_prost(
        (correlation_id, delivery_id, seq) in (any::<u64>(), any::<u64>(), any::<u64>()),
        message in prop_oneof![Just(None), envelope().prop_map(Some)],
    ) {
        let readable = message.as_ref().is_some_and(|m| m.headers.is_empty());
        let reply = proto::Reply { correlation_id, delivery_id, message: message.map(Box::new), seq };
        let body: Bytes = Frame { kind: Some(Kind::Reply(reply)) }.encode_to_vec().into();
        let fast = decode_reply(body.clone()).ok();
        prop_assert_eq!(fast.is_some(), readable);
        if let Some(fast) = fast {
            prop_assert_eq!(Some((fast.correlation_id, fast.envelope.to_envelope())), prost_reply(body));
        }
    }

    /// Replies the broker's fast path writes (its stamps appended to the
    /// responder's envelope) decode by hand as prost decodes them, and
    /// corrupted ones are refused or read exactly as prost reads them.
    #[test]
    fn hand_decoding_agrees_with_prost_on_stamped_and_corrupted_replies(
        message in envelope(),
        requester_seq in any::<u64>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let reply = proto::Reply { correlation_id: 3, delivery_id: 4, message: Some(Box::new(message)), seq: 5 };
        let body: Bytes = Frame { kind: Some(Kind::Reply(reply)) }.encode_to_vec().into();
        let raw = scan_reply(body).expect("every canonical reply");
        let out = StampedReply {
            seq: requester_seq,
            envelope: raw.envelope(),
            source: crate::names::ClientId::new("w-1").unwrap(),
            timestamp_us: 9,
        };
        let mut wire = BytesMut::new();
        out.encode(&mut wire);
        let mut bytes = wire[5..].to_vec();
        let pristine = flips.is_empty();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let bytes = Bytes::from(bytes);
        match decode_reply(bytes.clone()) {
            Ok(fast) => {
                let slow = prost_reply(bytes);
                prop_assert!(slow.is_some(), "accepted what prost refuses");
                prop_assert_eq!(Some((fast.correlation_id, fast.envelope.to_envelope())), slow);
            }
            Err(_) if pristine => {
                // Only a reply with headers takes prost's path.
                let slow = prost_reply(bytes).expect("a canonical reply");
                prop_assert!(!slow.1.headers.is_empty());
            }
            Err(_) => {}
        }
    }
}

#[test]
fn other_frames_are_not_read_as_replies() {
    let deliver = deliver_body(proto::Deliver {
        sid: 1,
        delivery_id: 2,
        message: Some(Box::default()),
    });
    assert!(decode_reply(deliver.clone()).is_err());
    assert!(decode_deliver(deliver).is_ok());
    let ok: Bytes = Frame {
        kind: Some(Kind::Ok(proto::Ok {
            seq: 1,
            ..Default::default()
        })),
    }
    .encode_to_vec()
    .into();
    assert!(decode_reply(ok).is_err());
}

proptest! {
    /// The client's hand decoder reads every `Deliver` it accepts exactly as
    /// prost does, and accepts every headerless one.
    #[test]
    fn hand_decoded_deliveries_match_prost(
        sid in any::<u64>(),
        delivery_id in any::<u64>(),
        message in envelope(),
    ) {
        let headers = !message.headers.is_empty();
        let body = deliver_body(proto::Deliver { sid, delivery_id, message: Some(Box::new(message)) });
        let fast = decode_deliver(body.clone()).ok();
        prop_assert_eq!(fast.is_some(), !headers);
        if let Some(fast) = fast {
            prop_assert_eq!(as_frame(&fast), decode_body(body).unwrap());
        }
    }

    /// Deliveries the broker's fast path writes (stamped fields appended)
    /// decode by hand as prost decodes them, and corrupted bodies are
    /// refused or read exactly as prost reads them.
    #[test]
    fn hand_decoding_agrees_with_prost_on_raw_and_corrupted_deliveries(
        publish in publish(),
        sid in any::<u64>(),
        id in any::<u64>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let Ok(raw) = scan_publish(body(&publish)) else { return Ok(()) };
        let deliver = StampedDeliver {
            sid,
            delivery_id: id / 2,
            envelope: raw.envelope(),
            id,
            source: crate::names::ClientId::new("p-1").unwrap(),
            timestamp_us: 7,
            attempt: 2,
            reply: if raw.reply_fields { ReplyStamp::Clear } else { ReplyStamp::None },
        };
        let mut wire = BytesMut::new();
        deliver.encode(&mut wire);
        let mut bytes = wire[5..].to_vec();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let bytes = Bytes::from(bytes);
        if let Ok(fast) = decode_deliver(bytes.clone()) {
            let slow = decode_body(bytes.clone());
            prop_assert!(slow.is_ok(), "accepted what prost refuses: {slow:?}");
            prop_assert_eq!(as_frame(&fast), slow.unwrap());
        }
    }
}

proptest! {
    /// Varints read as prost writes them, at any length and with anything
    /// after them, and no further than their last byte.
    #[test]
    fn varints_read_as_prost_writes_them(
        value in prop_oneof![any::<u64>(), 0u64..1 << 14, 1u64 << 49..1u64 << 56],
        tail in proptest::collection::vec(any::<u8>(), 0..10),
    ) {
        let mut buf = Vec::new();
        prost::encoding::encode_varint(value, &mut buf);
        let len = buf.len();
        buf.extend_from_slice(&tail);
        let mut fields = Fields::new(&buf);
        prop_assert_eq!(fields.varint(), Some(value));
        prop_assert_eq!(fields.pos, len);
    }

    /// A varint that does not end within ten bytes, or whose tenth byte
    /// carries more than the top bit of a u64, is refused as prost refuses it.
    #[test]
    fn overlong_varints_are_refused_as_prost_refuses_them(
        bytes in proptest::collection::vec(any::<u8>(), 1..14),
    ) {
        let ours = Fields::new(&bytes).varint();
        let theirs = prost::encoding::decode_varint(&mut &bytes[..]).ok();
        prop_assert_eq!(ours, theirs);
    }
}
