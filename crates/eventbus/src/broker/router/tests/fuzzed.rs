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

/// Found by `router`: a group whose filter takes every topic (a declared
/// `#` group) gets both a message and, when another group dead-letters it,
/// its dead letter. The dead letter is a message of its own, with an id of
/// its own (the original's in `x-original-id`): the `#` group holds two
/// messages, not one twice.
#[test]
fn a_dead_letter_has_an_id_of_its_own() {
    let mut bus = Bus::with(|c| {
        c.queue.overrides.push(crate::broker::QueueOverride {
            filter: "#".into(),
            ..Default::default()
        });
    });
    let everything = bus.connect("all");
    let worker = bus.connect("w");
    let publisher = bus.connect("p");
    bus.join(&everything, 1, "#", "audit", 1);
    bus.join(&worker, 1, "q.a", "g", 1);
    let id = bus.confirmed(&publisher, 1, "q.a", "task").unwrap();
    let got = bus.received(&worker);
    let [Got::Deliver { delivery, .. }] = &got[..] else {
        panic!("the worker gets the task: {got:?}");
    };
    // Rejected: dead-lettered at once, into `audit` too (the invariants,
    // checked after every step, hold).
    bus.nack(&worker, *delivery, false, 0);
    let got = bus.received(&everything);
    let [Got::Deliver { msg, .. }] = &got[..] else {
        panic!("the audit member holds the task: {got:?}");
    };
    assert_eq!(msg.id, id);
    bus.disconnect(&everything);
    let again = bus.connect("all");
    let got = bus.join(&again, 1, "#", "audit", 2);
    let mut ids: Vec<_> = got
        .iter()
        .filter_map(|g| match g {
            Got::Deliver { msg, .. } => Some((msg.id, msg.headers.get("x-original-id").cloned())),
            _ => None,
        })
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 2, "the task and its dead letter: {got:?}");
    assert_eq!(ids[0], (id, None), "the task");
    assert!(ids[1].0 > id, "the dead letter's own id: {ids:?}");
    assert_eq!(ids[1].1, Some(id.to_string()));
}
