//! Inputs the fuzz targets (`fuzz/`) found, kept as tests: frame bodies
//! written by hand, field by field, in ways no client of ours writes them.

use super::*;

/// A length-delimited protobuf field.
fn field(number: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    prost::encoding::encode_varint(value.len() as u64, &mut out);
    out.extend_from_slice(value);
    out
}

/// A varint protobuf field.
fn varint(number: u8, value: u64) -> Vec<u8> {
    let mut out = vec![number << 3];
    prost::encoding::encode_varint(value, &mut out);
    out
}

/// `Frame.publish` with these `Publish` fields.
fn publish_body(publish: &[Vec<u8>]) -> Bytes {
    field(3, &publish.concat()).into()
}

/// Found by `broker_scan`: an envelope may write its topic as an empty
/// field, which the broker's reader takes (prost reads it too); it is
/// refused as a publish without a topic, and nobody gets it.
#[test]
fn an_explicitly_empty_topic_is_refused_as_a_missing_one() {
    let mut bus = Bus::new();
    let publisher = bus.connect("p");
    let subscriber = bus.connect("s");
    bus.subscribe(&subscriber, 1, "#");
    for mode in [PublishMode::FireAndForget, PublishMode::Confirmed] {
        let envelope = [field(2, b""), field(3, b"x")].concat();
        let body = publish_body(&[varint(1, 9), varint(2, mode as u64), field(3, &envelope)]);
        let applied = bus.send_body(&publisher, body);
        assert!(matches!(applied, Some(Applied::Done)));
        assert_eq!(
            errors(&bus.received(&publisher)),
            [(9, ErrorCode::InvalidTopic)]
        );
    }
    assert_eq!(bus.received(&subscriber), []);
}

/// Found by `broker_scan`: reply fields written with their default values
/// (an empty reply-to, a zero correlation id) count as written; whether set
/// or not, a plain publish reaches its subscribers without them, on the
/// fast path and the confirmed one.
#[test]
fn reply_fields_written_empty_or_set_never_reach_subscribers() {
    let mut bus = Bus::new();
    let publisher = bus.connect("p");
    let subscriber = bus.connect("s");
    bus.subscribe(&subscriber, 1, "e.#");
    for (mode, reply) in [
        (PublishMode::FireAndForget, [varint(5, 0), field(6, b"")]),
        (PublishMode::Confirmed, [varint(5, 0), field(6, b"")]),
        (PublishMode::FireAndForget, [varint(5, 7), field(6, b"s")]),
        (PublishMode::Confirmed, [varint(5, 7), field(6, b"s")]),
    ] {
        let envelope = [field(2, b"e.x"), field(3, b"x"), reply.concat()].concat();
        let body = publish_body(&[varint(1, 3), varint(2, mode as u64), field(3, &envelope)]);
        assert!(matches!(
            bus.send_body(&publisher, body),
            Some(Applied::Done)
        ));
        let got = bus.received(&subscriber);
        let [Got::Deliver { msg, .. }] = &got[..] else {
            panic!("one delivery expected, got {got:?}");
        };
        assert_eq!((msg.correlation_id, msg.reply_to.as_str()), (0, ""));
        assert_eq!(msg.source, "p");
    }
}

