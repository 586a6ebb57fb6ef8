//! Writes the checked-in seed corpus, `fuzz/seeds/<target>/<name>`: a few
//! curated inputs per target, each named for what it exercises, so the
//! fuzzer starts from every kind of frame and every attack of issue 14
//! rather than from nothing. Run by `cargo xtask fuzz --write-seeds`.
#![forbid(unsafe_code)]

use std::path::Path;

use bytes::BytesMut;
use eventbus::codec::FrameCodec;
use eventbus::fuzzing;
use eventbus::proto::{self, Frame, frame::Kind};
use eventbus_fuzz::input::Writer;
use eventbus_fuzz::script::{FrameSpec, HelloSpec, PublishSpec, ReplySpec, STRINGS, Step, Text};
use eventbus_fuzz::{decoder, router, scanners};
use prost::Message as _;

/// Named inputs of one target.
type Seeds = Vec<(&'static str, Vec<u8>)>;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let targets: [(&str, Seeds); 5] = [
        ("frame_decoder", frame_decoder()),
        ("broker_scan", broker_scan()),
        ("deliver_scan", deliver_scan()),
        ("router", router_scripts()),
        ("journal", journal_dirs()),
    ];
    for (target, seeds) in targets {
        let dir = root.join(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        for (name, data) in &seeds {
            std::fs::write(dir.join(name), data)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}

fn body(kind: Kind) -> Vec<u8> {
    Frame { kind: Some(kind) }.encode_to_vec()
}

fn wire(kinds: impl IntoIterator<Item = Kind>) -> Vec<u8> {
    let mut out = BytesMut::new();
    for kind in kinds {
        let frame = Frame { kind: Some(kind) };
        FrameCodec::new(u32::MAX as usize)
            .encode(&frame, &mut out)
            .expect("encodes");
    }
    out.to_vec()
}

fn envelope(topic: &str, payload: &[u8]) -> proto::Envelope {
    proto::Envelope {
        topic: topic.into(),
        payload: payload.to_vec().into(),
        ..Default::default()
    }
}

fn publish(p: proto::Publish) -> Kind {
    Kind::Publish(p)
}

fn plain(topic: &str, payload: &[u8]) -> proto::Publish {
    proto::Publish {
        message: Some(Box::new(envelope(topic, payload))),
        ..Default::default()
    }
}

/// A protobuf field written by hand: `(number, wire type)` key and value.
fn field(number: u8, wire: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | wire];
    if wire == 2 {
        prost::encoding::encode_varint(value.len() as u64, &mut out);
    }
    out.extend_from_slice(value);
    out
}

/// Every kind of frame, in one stream.
fn every_kind() -> Vec<Kind> {
    vec![
        Kind::Hello(proto::Hello {
            protocol_version: proto::PROTOCOL_VERSION,
            client_id: "c0".into(),
            ..Default::default()
        }),
        publish(plain("e.x", b"hello")),
        Kind::Subscribe(proto::Subscribe {
            seq: 1,
            sid: 1,
            filter: "q.#".into(),
            group: "g".into(),
            prefetch: 2,
            fallback: false,
        }),
        Kind::Unsubscribe(proto::Unsubscribe { seq: 2, sid: 1 }),
        Kind::Ack(proto::Ack {
            delivery_id: 3,
            seq: 3,
        }),
        Kind::Nack(proto::Nack {
            delivery_id: 4,
            requeue: true,
            seq: 4,
        }),
        Kind::Reply(proto::Reply {
            correlation_id: 5,
            delivery_id: 6,
            message: Some(Box::new(envelope("", b"answer"))),
            seq: 5,
        }),
        Kind::Cancel(proto::Cancel {
            seq: 6,
            message_id: 7,
        }),
        Kind::StatsRequest(proto::StatsRequest { seq: 7 }),
        Kind::Heartbeat(proto::Heartbeat { nonce: 8 }),
        Kind::Goodbye(proto::Goodbye {
            reason: "bye".into(),
        }),
        Kind::Deliver(proto::Deliver {
            sid: 1,
            delivery_id: 9,
            message: Some(Box::new(envelope("q.a", b"task"))),
        }),
        Kind::Ok(proto::Ok {
            seq: 1,
            message_id: 10,
            ..Default::default()
        }),
        publish(proto::Publish {
            seq: 11,
            mode: proto::PublishMode::Gather as i32,
            timeout_ms: 500,
            gather_scope: proto::GatherScope::Group as i32,
            gather_group: "g".into(),
            ..plain("q.a", b"who")
        }),
        Kind::GatherStarted(proto::GatherStarted {
            seq: 11,
            message_id: 12,
            recipients: vec!["c0".into(), "c1".into()],
        }),
        Kind::GatherDone(proto::GatherDone {
            seq: 11,
            answered: 1,
            missing: vec![proto::GatherMissing {
                client_id: "c1".into(),
                reason: proto::GatherMiss::TimedOut as i32,
            }],
        }),
        Kind::ResultRequest(proto::ResultRequest {
            seq: 13,
            message_id: 12,
            timeout_ms: 1000,
        }),
    ]
}

fn frame_decoder() -> Seeds {
    let stream = wire(every_kind());
    let two = wire([publish(plain("e.x", b"a")), publish(plain("e.y", b"b"))]);
    let mut bad_version = two.clone();
    bad_version[4] = 2;
    let mut garbage = vec![0, 0, 0, 4, 1];
    garbage.extend_from_slice(&[0xff, 0xff, 0xff]);
    // A frame of exactly 1024 bytes (version byte and body), then one over.
    let at_limit = |extra: usize| {
        let payload = vec![b'x'; 1024 - 15 + extra];
        wire([publish(plain("e.x", &payload))])
    };
    assert_eq!(at_limit(0).len(), 4 + 1024, "the frame is at the limit");
    vec![
        ("every_kind", decoder::encode(3, &[], &stream)),
        (
            "every_kind_split_mid_header_and_body",
            decoder::encode(3, &[1, 3, 5, 17, 40, 41, 200], &stream),
        ),
        (
            "two_frames_byte_by_byte",
            decoder::encode(0, &[1, 2, 3, 4, 5, 6, 7], &two),
        ),
        (
            "length_over_the_limit",
            decoder::encode(0, &[2], &[0, 0x20, 0, 0, 1, 8, 1]),
        ),
        ("zero_length", decoder::encode(3, &[], &[0, 0, 0, 0, 1])),
        (
            "unknown_wire_version",
            decoder::encode(3, &[], &bad_version),
        ),
        (
            "truncated_tail",
            decoder::encode(3, &[], &two[..two.len() - 3]),
        ),
        ("malformed_body", decoder::encode(3, &[3], &garbage)),
        ("no_kind", decoder::encode(3, &[], &[0, 0, 0, 1, 1])),
        ("at_the_limit", decoder::encode(0, &[600], &at_limit(0))),
        ("one_over_the_limit", decoder::encode(0, &[], &at_limit(1))),
    ]
}

fn broker_scan() -> Seeds {
    let p = |publish: proto::Publish| body(Kind::Publish(publish));
    // Fields the client's fast path never writes, by hand: an explicit
    // fire-and-forget mode, an empty target, a seq and a timeout, the
    // envelope's stamps, a repeated topic, a topic that is not UTF-8.
    let envelope_of = |fields: &[Vec<u8>]| field(3, 2, &fields.concat());
    let frame_of = |publish: &[Vec<u8>]| field(3, 2, &publish.concat());
    let topic = field(2, 2, b"e.x");
    let payload = field(3, 2, b"p");
    let explicit = frame_of(&[
        field(1, 0, &[9]),
        field(2, 0, &[0]),
        envelope_of(&[topic.clone(), payload.clone()]),
        field(4, 2, b""),
        field(5, 0, &[0x80, 1]),
    ]);
    let stamped = frame_of(&[envelope_of(&[
        field(
            1,
            0,
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1],
        ),
        topic.clone(),
        payload.clone(),
        field(7, 2, b"forged"),
        field(8, 0, &[5]),
        field(9, 0, &[7]),
    ])]);
    let twice = frame_of(&[envelope_of(&[topic.clone(), field(2, 2, b"e.y")])]);
    let not_utf8 = frame_of(&[envelope_of(&[field(2, 2, &[0xc3, 0x28])])]);
    let message_twice = frame_of(&[
        envelope_of(std::slice::from_ref(&topic)),
        envelope_of(std::slice::from_ref(&payload)),
    ]);
    let with = |f: fn(&mut proto::Publish)| {
        let mut publish = plain("e.x", b"x");
        f(&mut publish);
        p(publish)
    };
    let reply = |r: proto::Reply| body(Kind::Reply(r));
    let answer = proto::Reply {
        correlation_id: 0x1234_5678_9abc_def0,
        delivery_id: 5,
        message: Some(Box::new(envelope("", b"answer"))),
        seq: 3,
    };
    vec![
        ("client_fast_path", p(plain("e.x", b"hello"))),
        ("long_payload", p(plain("q.a.b", &[7; 300]))),
        ("no_payload", p(plain("e.x", b""))),
        ("explicit_defaults", explicit),
        ("publisher_stamps", stamped),
        ("topic_twice", twice),
        ("topic_not_utf8", not_utf8),
        ("message_twice", message_twice),
        ("confirmed", with(|p| p.mode = 1)),
        (
            "request_with_a_timeout",
            with(|p| {
                p.mode = 3;
                p.timeout_ms = u32::MAX;
            }),
        ),
        ("unknown_mode", with(|p| p.mode = -7)),
        (
            "gather_to_a_group",
            with(|p| {
                p.mode = 4;
                p.gather_scope = 2;
                p.gather_group = "g".into();
            }),
        ),
        (
            "gather_with_an_unknown_scope",
            with(|p| {
                p.mode = 4;
                p.gather_scope = -1;
                p.gather_group = "é".into();
            }),
        ),
        ("direct", with(|p| p.target_client = "c1".into())),
        (
            "headers",
            with(|p| {
                let m = p.message.as_mut().unwrap();
                m.headers.insert("k".into(), "v".into());
                m.headers
                    .insert("x-dead-letter-reason".into(), "forged".into());
            }),
        ),
        (
            "reply_to_on_a_plain_publish",
            with(|p| {
                let m = p.message.as_mut().unwrap();
                m.reply_to = "c0".into();
                m.correlation_id = 7;
            }),
        ),
        ("empty_topic", p(plain("", b"x"))),
        ("reserved_topic", p(plain("_sys.slow-consumer", b"{}"))),
        ("no_message", p(proto::Publish::default())),
        ("reply", reply(answer.clone())),
        (
            "reply_without_a_message",
            reply(proto::Reply {
                message: None,
                ..answer.clone()
            }),
        ),
        (
            "reply_with_a_reserved_header",
            reply(proto::Reply {
                message: Some(Box::new(proto::Envelope {
                    headers: [("x-attempt".to_owned(), "1".to_owned())].into(),
                    ..envelope("", b"")
                })),
                ..answer
            }),
        ),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (name, body))| (name, scanners::broker_input((i * 37) as u8, &body)))
    .collect()
}

fn deliver_scan() -> Seeds {
    let d = |deliver: proto::Deliver| body(Kind::Deliver(deliver));
    let fast = |publish: proto::Publish, sid, reply| {
        let body = body(Kind::Publish(publish));
        let scan = fuzzing::scan_publish_body(body.into()).expect("the broker reads it");
        let stamps = fuzzing::Stamps {
            sid,
            delivery_id: sid / 2,
            id: 300,
            source: "pub-1".into(),
            timestamp_us: 1_700_000_000_000_000,
            attempt: 1,
            reply,
        };
        fuzzing::stamped_deliver(scan.envelope, &stamps)[5..].to_vec()
    };
    let full = proto::Envelope {
        id: 12,
        topic: "q.a".into(),
        payload: b"task".to_vec().into(),
        correlation_id: 0x1234_5678_9abc_def0,
        reply_to: "c1".into(),
        source: "c1".into(),
        timestamp_us: 1_700_000_000_000_000,
        attempt: 2,
        ..Default::default()
    };
    let mut headers = full.clone();
    headers.headers.insert("k".into(), "v".into());
    let reordered = field(
        6,
        2,
        &[
            field(3, 2, &field(9, 0, &[3])),
            field(2, 0, &[9]),
            field(1, 0, &[4]),
            field(3, 2, &field(2, 2, b"e.x")),
        ]
        .concat(),
    );
    vec![
        ("broker_fan_out", fast(plain("e.x", b"event"), 3, None)),
        (
            "broker_request_to_a_member",
            fast(
                plain("q.a", b"task"),
                8,
                Some(Some((0xfeed_f00d_dead_beef, "c1".into()))),
            ),
        ),
        (
            "broker_cleared_reply_fields",
            fast(
                proto::Publish {
                    message: Some(Box::new(proto::Envelope {
                        correlation_id: 9,
                        reply_to: "c2".into(),
                        ..envelope("e.x", b"")
                    })),
                    ..Default::default()
                },
                0,
                Some(None),
            ),
        ),
        (
            "queue_delivery_every_field",
            d(proto::Deliver {
                sid: 4,
                delivery_id: 77,
                message: Some(Box::new(full)),
            }),
        ),
        (
            "headers",
            d(proto::Deliver {
                sid: 4,
                delivery_id: 78,
                message: Some(Box::new(headers)),
            }),
        ),
        (
            "no_message",
            d(proto::Deliver {
                sid: 1,
                ..Default::default()
            }),
        ),
        ("fields_out_of_order_and_repeated", reordered),
    ]
}

fn frame(peer: u8, spec: FrameSpec) -> Step {
    Step::Frame(peer, spec)
}

/// A publish frame of `mode` on `topic`.
fn pub_spec(mode: u64, topic: &str) -> PublishSpec {
    PublishSpec::new(mode, topic)
}

fn join(peer: u8, sid: u64, filter: &str, group: &str, prefetch: u64) -> Step {
    frame(
        peer,
        FrameSpec::Subscribe {
            seq: sid,
            sid,
            filter: Text::of(filter),
            group: Text::of(group),
            prefetch,
        },
    )
}

fn hello(id: &str) -> HelloSpec {
    HelloSpec::new(Text::of(id))
}

fn connect_all() -> Vec<Step> {
    (0..4).map(Step::Connect).collect()
}

fn script(setup: u8, steps: Vec<Step>) -> Vec<u8> {
    let data = router::encode(setup, &steps);
    assert_eq!(router::decode(&data), (setup, steps), "a script reads back");
    data
}

fn router_scripts() -> Seeds {
    use router::{AUTH, HASH_GROUP, SMALL_FRAMES, TIGHT};
    let seq = |steps: &[&[Step]]| steps.concat();
    let all = connect_all();
    let direct_task = FrameSpec::Publish(PublishSpec {
        target: Text::of("c0"),
        timeout: 500,
        ..pub_spec(3, "q.a")
    });
    let huge_headers = FrameSpec::Publish(PublishSpec {
        headers: vec![(Text::of("h"), 60_000), (Text::of("g"), 60_000)],
        ..pub_spec(1, "q.a")
    });
    let parked_request = FrameSpec::Publish(PublishSpec {
        timeout: u64::from(u32::MAX),
        ..pub_spec(3, "e.y")
    });
    let forged_reply = |correlation| ReplySpec {
        correlation,
        delivery: 0,
        seq: 9,
        headers: Vec::new(),
        payload: 4,
    };
    vec![
        (
            // A property-test-like mix: members, plain subscribers, publishes
            // of every mode, settles, a slow reader, time passing.
            "mixed",
            script(
                0,
                seq(&[
                    &all,
                    &[
                        Step::Join(0, 4, 0, 0, 1),
                        Step::Join(1, 5, 2, 0, 2),
                        Step::Subscribe(2, 1, 3),
                        Step::Stall(2),
                        Step::Publish(3, 0, 1, 0),
                        Step::Publish(3, 0, 3, 0),
                        Step::Publish(3, 5, 0, 0),
                        Step::Publish(3, 2, 1, 0),
                        Step::Settle(0, 0, 0),
                        Step::Reply(1, 0),
                        Step::Advance(350),
                        Step::Settle(1, 0, 2),
                        Step::Stall(2),
                        Step::Heartbeat(3),
                        Step::Advance(400),
                        Step::Stats(3),
                    ],
                ]),
            ),
        ),
        (
            // Another client takes a live id: refused without the holder's
            // resume token, taken over with it.
            "impostor_takes_a_live_id",
            script(
                0,
                vec![
                    Step::Connect(0),
                    Step::Join(0, 4, 0, 0, 1),
                    Step::Connect(1),
                    frame(1, direct_task.clone()),
                    Step::Hello(2, hello("c0"), false),
                    Step::Hello(3, hello("c0"), true),
                    Step::Publish(1, 0, 3, 1),
                    Step::Settle(3, 0, 0),
                ],
            ),
        ),
        (
            "cancel_others_messages",
            script(
                0,
                seq(&[
                    &all,
                    &[Step::Join(0, 4, 0, 0, 1)],
                    &(0..6)
                        .map(|_| Step::Publish(1, 0, 1, 0))
                        .collect::<Vec<_>>(),
                    &(1..12)
                        .map(|message| frame(2, FrameSpec::Cancel { seq: 3, message }))
                        .collect::<Vec<_>>(),
                    &[Step::Cancel(1, 0), Step::Settle(0, 0, 0)],
                ]),
            ),
        ),
        (
            "forged_replies",
            script(
                0,
                seq(&[
                    &all,
                    &[
                        Step::Join(0, 4, 0, 0, 1),
                        Step::Subscribe(3, 1, 4),
                        Step::Publish(1, 0, 3, 0),
                        Step::Publish(1, 5, 2, 0),
                    ],
                    &(1..8)
                        .map(|c| frame(2, FrameSpec::Reply(forged_reply(c))))
                        .collect::<Vec<_>>(),
                    &[
                        frame(
                            2,
                            FrameSpec::Reply(ReplySpec {
                                delivery: 1,
                                ..forged_reply(1)
                            }),
                        ),
                        Step::Reply(0, 0),
                    ],
                ]),
            ),
        ),
        (
            // A `#` group with prefetch 1 that never acks, under a flood:
            // refused where declared, other topics unaffected.
            "hash_group_flood",
            script(
                HASH_GROUP,
                seq(&[
                    &all,
                    &[
                        join(0, 4, "#", "g", 1),
                        Step::Join(1, 5, 0, 1, 1),
                        Step::Flood(2, 120, FrameSpec::Publish(pub_spec(0, "q.b"))),
                        Step::Publish(3, 0, 1, 0),
                        Step::Publish(3, 5, 1, 0),
                    ],
                ]),
            ),
        ),
        (
            "hash_group_undeclared",
            script(
                0,
                seq(&[&all, &[join(0, 4, "#", "g", 1), join(0, 5, "+", "g", 1)]]),
            ),
        ),
        (
            "parked_requests",
            script(
                TIGHT,
                seq(&[
                    &all,
                    &[
                        Step::Subscribe(3, 1, 3),
                        Step::Flood(1, 40, parked_request),
                        Step::Publish(2, 5, 3, 0),
                        Step::Advance(60_000),
                    ],
                ]),
            ),
        ),
        (
            "huge_headers_into_an_unacked_queue",
            script(
                TIGHT,
                seq(&[
                    &all,
                    &[
                        Step::Join(0, 4, 0, 0, 1),
                        Step::Flood(1, 6, huge_headers.clone()),
                        Step::Publish(2, 0, 1, 0),
                    ],
                ]),
            ),
        ),
        (
            "huge_headers_over_the_frame_limit",
            script(
                SMALL_FRAMES,
                seq(&[
                    &all,
                    &[
                        Step::Join(0, 4, 0, 0, 1),
                        frame(1, huge_headers),
                        frame(
                            2,
                            FrameSpec::Publish(PublishSpec {
                                payload: 4000,
                                ..pub_spec(1, "q.a")
                            }),
                        ),
                    ],
                ]),
            ),
        ),
        (
            "reserved_topics_and_headers",
            script(
                0,
                seq(&[
                    &all,
                    &[
                        Step::Subscribe(0, 1, 7),
                        frame(1, FrameSpec::Publish(pub_spec(0, "_sys.slow-consumer"))),
                        frame(1, FrameSpec::Publish(pub_spec(1, "_sys.dead-letter.g"))),
                        frame(
                            1,
                            FrameSpec::Publish(PublishSpec {
                                headers: vec![(Text::of("x-dead-letter-reason"), 4)],
                                ..pub_spec(1, "e.x")
                            }),
                        ),
                        frame(
                            1,
                            FrameSpec::Publish(PublishSpec {
                                correlation: 7,
                                reply_to: Text::of("c2"),
                                ..pub_spec(0, "e.x")
                            }),
                        ),
                        frame(0, FrameSpec::Reply(forged_reply(7))),
                        frame(
                            2,
                            FrameSpec::Reply(ReplySpec {
                                headers: vec![(Text::of("x-attempt"), 1)],
                                ..forged_reply(7)
                            }),
                        ),
                    ],
                ]),
            ),
        ),
        (
            "hostile_hellos",
            script(
                0,
                vec![
                    Step::Connect(0),
                    Step::Hello(1, hello("broker"), false),
                    Step::Hello(
                        1,
                        HelloSpec {
                            kind: 255,
                            ..hello("c1")
                        },
                        false,
                    ),
                    Step::Hello(
                        1,
                        HelloSpec {
                            capabilities: (0..19).map(|_| Text::of("g")).collect(),
                            ..hello("c1")
                        },
                        false,
                    ),
                    Step::Hello(
                        1,
                        HelloSpec {
                            version: 9,
                            ..hello("c1")
                        },
                        false,
                    ),
                    Step::Hello(
                        1,
                        HelloSpec::new(Text::Known(STRINGS.len() as u8 + 3)),
                        false,
                    ),
                    Step::Hello(
                        2,
                        HelloSpec {
                            interval: 60_000,
                            misses: 100,
                            max_frame: 1,
                            ..hello("c2")
                        },
                        false,
                    ),
                    frame(0, FrameSpec::Hello),
                    frame(0, FrameSpec::BrokerOnly(0)),
                    frame(0, FrameSpec::BrokerOnly(5)),
                    frame(0, FrameSpec::BrokerOnly(6)),
                    Step::Advance(30_000),
                ],
            ),
        ),
        (
            "direct_sends_and_handover",
            script(
                TIGHT,
                seq(&[
                    &all,
                    &[
                        Step::Join(1, 4, 0, 0, 1),
                        Step::Publish(2, 0, 1, 1),
                        Step::Publish(2, 0, 1, 1),
                        Step::Publish(2, 0, 3, 1),
                        Step::Disconnect(0),
                        Step::Advance(600),
                        Step::Settle(1, 0, 0),
                    ],
                ]),
            ),
        ),
        (
            "memory_alarm_and_drain",
            script(
                0,
                seq(&[
                    &all,
                    &[
                        Step::Join(0, 4, 0, 0, 1),
                        Step::Publish(1, 0, 1, 0),
                        Step::Memory(true),
                        Step::Publish(1, 0, 1, 0),
                        Step::Settle(0, 0, 0),
                        Step::Memory(false),
                        Step::Publish(1, 0, 1, 0),
                        Step::Drain,
                        Step::Publish(1, 0, 1, 0),
                        Step::Connect(0),
                    ],
                ]),
            ),
        ),
        (
            "garbage_bodies",
            script(
                0,
                seq(&[
                    &all,
                    &[
                        Step::Body(0, vec![0x1a, 0x05, 0x1a, 0x03, 0x12, 0x01, b'x']),
                        Step::Body(1, vec![0xff, 0xff, 0xff]),
                        Step::Body(2, Vec::new()),
                        frame(3, FrameSpec::Goodbye),
                        Step::Connect(3),
                    ],
                ]),
            ),
        ),
        (
            "auth_permissions_and_quotas",
            script(
                AUTH,
                seq(&[
                    &all,
                    &[
                        Step::Join(2, 4, 0, 1, 1),
                        Step::Join(2, 5, 0, 0, 1),
                        Step::Publish(2, 6, 1, 0),
                        Step::Publish(2, 0, 1, 2),
                        Step::Publish(3, 0, 3, 1),
                        Step::Stats(2),
                        frame(2, FrameSpec::Cancel { seq: 1, message: 1 }),
                        Step::Cancel(0, 0),
                        Step::Hello(1, hello("c2"), true),
                    ],
                ]),
            ),
        ),
        (
            // Gathers to everyone, to plain subscribers only, to one group
            // and to a group nobody joined; answered by the recipients'
            // tokens, by forged replies, and not at all (a recipient
            // leaves, the timeout passes); a requester that leaves first.
            "gathers",
            script(
                0,
                seq(&[
                    &all,
                    &[
                        Step::Join(0, 4, 0, 0, 1),
                        Step::Subscribe(1, 1, 2),
                        Step::Subscribe(2, 1, 0),
                        Step::Publish(3, 0, 4, 0),
                        frame(
                            3,
                            FrameSpec::Publish(PublishSpec {
                                gather_scope: 1,
                                timeout: 300,
                                ..pub_spec(4, "q.a")
                            }),
                        ),
                        frame(
                            3,
                            FrameSpec::Publish(PublishSpec {
                                gather_scope: 2,
                                gather_group: Text::of("g"),
                                ..pub_spec(4, "q.a")
                            }),
                        ),
                        frame(
                            3,
                            FrameSpec::Publish(PublishSpec {
                                gather_scope: 2,
                                gather_group: Text::of("h"),
                                target: Text::of("c0"),
                                ..pub_spec(4, "q.a")
                            }),
                        ),
                        Step::Reply(1, 0),
                        Step::Reply(2, 0),
                        Step::Reply(2, 0),
                        frame(0, FrameSpec::Reply(forged_reply(1))),
                        Step::Disconnect(1),
                        Step::Advance(350),
                        Step::Publish(2, 0, 4, 0),
                        Step::Disconnect(2),
                        Step::Reply(0, 0),
                    ],
                ]),
            ),
        ),
        (
            // Results asked for by the requester, by another client and by
            // made-up ids, at once and with a wait: the queues are not
            // durable, so there are none.
            "result_requests",
            script(
                0,
                seq(&[
                    &all,
                    &[
                        Step::Join(0, 4, 0, 0, 1),
                        Step::Publish(1, 0, 3, 0),
                        Step::Result(1, 0, 0),
                        Step::Result(1, 0, 500),
                        Step::Result(2, 0, 500),
                        frame(
                            2,
                            FrameSpec::Result {
                                seq: 1,
                                message: u64::MAX,
                                timeout: u64::from(u32::MAX),
                            },
                        ),
                        Step::Reply(0, 0),
                        Step::Result(1, 0, 0),
                        Step::Advance(600),
                    ],
                ]),
            ),
        ),
    ]
}

/// A journal record's kind byte and body, as `broker/journal/codec.rs`
/// writes them.
fn record(kind: u8, queue: u32, id: u64, rest: &[u8]) -> (u8, Vec<u8>) {
    let mut body = queue.to_le_bytes().to_vec();
    body.extend_from_slice(&id.to_le_bytes());
    body.extend_from_slice(rest);
    (kind, body)
}

fn queue_def(queue: u32, filter: &str, group: &str) -> (u8, Vec<u8>) {
    let mut body = queue.to_le_bytes().to_vec();
    body.extend_from_slice(&(filter.len() as u16).to_le_bytes());
    body.extend_from_slice(filter.as_bytes());
    body.extend_from_slice(group.as_bytes());
    (1, body)
}

/// A segment's frames: kind byte and body each.
type Frames = [(u8, Vec<u8>)];

/// One segment file as `eventbus_fuzz::journal` reads it: a log segment
/// based at the next LSN, its frames at the LSNs that follow, and `tail`.
fn segment(w: &mut Writer, frames: &Frames, tail: &[u8]) {
    w.u8(3).u8(frames.len() as u8);
    for (kind, body) in frames {
        w.u8(0).u8(*kind).u8(body.len() as u8).bytes(body);
    }
    if tail.is_empty() {
        w.u8(1);
    } else {
        w.u8(0).u8(tail.len() as u8).bytes(tail);
    }
}

fn journal_dirs() -> Seeds {
    let envelope = envelope("task.scan", b"m").encode_to_vec();
    let accepted = |id: u64| {
        let mut rest = 1u32.to_le_bytes().to_vec();
        rest.extend_from_slice(&envelope);
        record(2, 0, id, &rest)
    };
    let delivered = |id: u64, attempt: u32| record(3, 0, id, &attempt.to_le_bytes());
    let settled = |id: u64| record(5, 0, id, &[0]);
    let def = queue_def(0, "task.scan", "workers");
    let mut kept = 9u64.to_le_bytes().to_vec();
    kept.extend_from_slice(&u64::MAX.to_le_bytes());
    kept.extend_from_slice(b"reply");
    let mut seeds = Seeds::new();
    let mut one = |name, segments: &[(&Frames, &[u8])]| {
        let mut w = Writer::default();
        w.u8(segments.len() as u8 - 1);
        for (frames, tail) in segments {
            segment(&mut w, frames, tail);
        }
        seeds.push((name, w.data));
    };
    let life = [
        def.clone(),
        accepted(1),
        accepted(2),
        delivered(1, 1),
        settled(1),
        delivered(2, 1),
        (6, kept.clone()),
        (9, 100u64.to_le_bytes().to_vec()),
    ];
    one("a_queue_s_life", &[(&life, &[])]);
    one("a_torn_tail", &[(&life, &[40, 0, 0, 0, 1, 2])]);
    one(
        "two_segments",
        &[
            (&life[..4], &[]),
            (&[def.clone(), settled(2), accepted(3)], &[]),
        ],
    );
    one(
        "ids_at_their_limits",
        &[(
            &[
                def.clone(),
                accepted(u64::MAX >> 1),
                accepted(u64::MAX),
                delivered(u64::MAX >> 1, u32::MAX),
                (9, u64::MAX.to_le_bytes().to_vec()),
            ],
            &[],
        )],
    );
    one(
        "a_record_of_an_undefined_queue",
        &[(&[accepted(1), def, accepted(2)], &[])],
    );
    seeds
}
