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
        prop_oneof![Just(0), 0..4i32],
        envelope(),
        prop_oneof![Just(String::new()), "[a-z0-9-]{1,12}"],
        any::<u32>(),
    )
        .prop_map(
            |(seq, mode, message, target_client, timeout_ms)| proto::Publish {
                seq,
                mode,
                message: Some(Box::new(message)),
                target_client,
                timeout_ms,
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
    ) {
        let out = RawPublishOut {
            topic: crate::topic::Topic::new(topic.as_str()).unwrap(),
            payload: Bytes::from(payload.clone()),
        };
        let mut buf = BytesMut::new();
        out.encode(&mut buf);
        prop_assert_eq!(buf.len(), 4 + out.frame_len());
        let wire = Bytes::copy_from_slice(&buf);
        let decoded = FrameCodec::default().decode(&mut buf).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        let expected = Frame {
            kind: Some(Kind::Publish(proto::Publish {
                message: Some(Box::new(proto::Envelope {
                    topic: topic.clone(),
                    payload: Bytes::from(payload.clone()),
                    ..Default::default()
                })),
                ..Default::default()
            })),
        };
        prop_assert_eq!(&decoded, &expected);
        let raw = scan_publish(wire.slice(5..)).expect("the broker keeps it encoded");
        prop_assert_eq!(raw.topic(), topic.as_str());
    }

    /// The fast path takes exactly the fire-and-forget, headerless, untargeted
    /// publishes that carry no correlation id or reply-to, and delivers what
    /// the decoding path would: the publisher's
    /// envelope with the broker's id, source, timestamp and attempt 1.
    #[test]
    fn fast_deliveries_decode_to_what_the_slow_path_builds(
        publish in publish(),
        sid in any::<u64>(),
        (id, source, ts) in (any::<u64>(), "[a-z0-9-]{1,20}", any::<u64>()),
    ) {
        let scanned = scan_publish(body(&publish)).ok();
        let message = publish.message.as_deref().unwrap();
        // An empty topic is not encoded at all: the decoding path refuses it.
        // A correlation id or reply-to the broker must strip takes that path too.
        let eligible = publish.mode == 0
            && publish.target_client.is_empty()
            && message.headers.is_empty()
            && message.correlation_id == 0
            && message.reply_to.is_empty()
            && !message.topic.is_empty();
        prop_assert_eq!(scanned.is_some(), eligible);
        let Some(raw) = scanned else { return Ok(()) };
        prop_assert_eq!(raw.topic(), message.topic.as_str());
        let deliver = RawDeliver {
            sid,
            envelope: raw.envelope(),
            id,
            source: crate::names::ClientId::new(source.as_str()).unwrap(),
            timestamp_us: ts,
        };
        let mut wire = BytesMut::new();
        deliver.encode(&mut wire);
        prop_assert_eq!(wire.len(), 4 + deliver.frame_len());
        let decoded = FrameCodec::default().decode(&mut wire).unwrap().unwrap();
        prop_assert!(wire.is_empty(), "the prefix counts the whole frame");
        let mut expected = message.clone();
        expected.id = id;
        expected.source = source.clone();
        expected.timestamp_us = ts;
        expected.attempt = 1;
        let expected = Frame {
            kind: Some(Kind::Deliver(proto::Deliver {
                sid,
                delivery_id: 0,
                message: Some(Box::new(expected)),
            })),
        };
        prop_assert_eq!(decoded, expected);
    }

    /// Whatever the bytes, scanning never panics, and it never accepts a body
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
            prop_assert_eq!(p.mode, 0);
            prop_assert!(p.target_client.is_empty());
            let message = p.message.unwrap();
            prop_assert_eq!(message.topic.as_str(), raw.topic());
            prop_assert!(message.headers.is_empty());
        }
    }
}

#[test]
fn a_confirmed_publish_or_other_frames_take_the_decoding_path() {
    let confirmed = proto::Publish {
        mode: proto::PublishMode::Confirmed as i32,
        message: Some(Box::new(proto::Envelope {
            topic: "a.b".into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    assert!(scan_publish(body(&confirmed)).is_err());
    let ack: Bytes = Frame {
        kind: Some(Kind::Ack(proto::Ack {
            delivery_id: 1,
            seq: 0,
        })),
    }
    .encode_to_vec()
    .into();
    assert!(scan_publish(ack).is_err());
    assert!(scan_publish(Bytes::new()).is_err());
    let no_message = proto::Publish::default();
    assert!(scan_publish(body(&no_message)).is_err());
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
        let deliver = RawDeliver {
            sid,
            envelope: raw.envelope(),
            id,
            source: crate::names::ClientId::new("p-1").unwrap(),
            timestamp_us: 7,
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
