//! The rules that hold for every client, whatever it may do: what is the
//! broker's (topics, headers, stamps), who may answer a request, and that
//! nothing is delivered that a receiver cannot read.

use super::*;

const SVC: &str = "svc.work";

fn with_header(kind: Kind, key: &str) -> Kind {
    match kind {
        Kind::Publish(mut p) => {
            let m = p.message.as_mut().unwrap();
            m.headers.insert(key.into(), "v".into());
            Kind::Publish(p)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_broker_topics_and_headers_are_its_own() {
    let mut bus = Bus::new();
    let watcher = bus.connect("watcher");
    let p = bus.connect("p");
    bus.subscribe(&watcher, 1, "#");
    assert_eq!(
        bus.confirmed(&p, 1, "_sys.slow-consumer", "{}"),
        Err(ErrorCode::PermissionDenied)
    );
    bus.publish(&p, "_sys.dead-letter.g", "fast path");
    assert_eq!(
        errors(&bus.received(&p)),
        [(0, ErrorCode::PermissionDenied)]
    );
    let forged = with_header(
        publish(2, PublishMode::Confirmed, "events.x", "x"),
        "x-dead-letter-reason",
    );
    bus.send_done(&p, forged);
    assert_eq!(
        errors(&bus.received(&p)),
        [(2, ErrorCode::PermissionDenied)]
    );
    let fine = with_header(
        publish(3, PublishMode::Confirmed, "events.x", "x"),
        "trace-id",
    );
    bus.send_done(&p, fine);
    assert!(answer(&bus.received(&p), 3).is_ok());
    let got = bus.received(&watcher);
    assert_eq!(deliveries(&got).len(), 1, "only the allowed one: {got:?}");
    // `_sys` only as a whole segment: `_system` is anybody's.
    assert!(bus.confirmed(&p, 4, "_system.x", "x").is_ok());
}

#[test]
fn reply_to_and_correlation_are_stripped_from_what_is_not_a_request() {
    let mut bus = Bus::new();
    let sub = bus.connect("sub");
    let p = bus.connect("p");
    bus.subscribe(&sub, 1, "t");
    for (seq, mode) in [(0, PublishMode::FireAndForget), (1, PublishMode::Confirmed)] {
        let mut kind = publish(seq, mode, "t", "x");
        if let Kind::Publish(p) = &mut kind {
            let m = p.message.as_mut().unwrap();
            m.reply_to = "victim".into();
            m.correlation_id = 42;
        }
        bus.send_done(&p, kind);
    }
    for got in bus.received(&sub) {
        let Got::Deliver { msg, .. } = got else {
            panic!("{got:?}")
        };
        assert_eq!((msg.reply_to.as_str(), msg.correlation_id), ("", 0));
    }
}

#[test]
fn only_a_client_a_request_was_delivered_to_may_answer_it() {
    let mut bus = Bus::new();
    let responder = bus.connect("responder");
    let bystander = bus.connect("bystander");
    let p = bus.connect("p");
    bus.subscribe(&responder, 1, SVC);
    bus.send_done(&p, publish(1, PublishMode::Request, SVC, "ask"));
    let got = bus.received(&responder);
    let [Got::Deliver { msg, .. }] = got.as_slice() else {
        panic!("{got:?}")
    };
    let token = msg.correlation_id;
    // Knowing the token is not enough.
    bus.reply(&bystander, token, 0, "forged");
    assert_eq!(
        errors(&bus.received(&bystander)),
        [(0, ErrorCode::PermissionDenied)]
    );
    assert!(bus.received(&p).is_empty());
    bus.reply(&responder, token, 0, "real");
    let got = bus.received(&p);
    let [Got::Reply { msg, .. }] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert_eq!(payload(msg), "real");
}

#[test]
fn a_queue_member_answers_only_the_request_it_holds() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let b = bus.connect("b");
    let p = bus.connect("p");
    bus.join(&a, 1, SVC, "g", 1);
    bus.join(&b, 1, SVC, "g", 1);
    bus.send_done(&p, publish(1, PublishMode::Request, SVC, "one"));
    bus.send_done(&p, publish(2, PublishMode::Request, SVC, "two"));
    let held = |bus: &Bus, peer: &Peer| match bus.received(peer).as_slice() {
        [Got::Deliver { delivery, msg, .. }] => (*delivery, msg.correlation_id),
        other => panic!("{other:?}"),
    };
    let (a_delivery, a_token) = held(&bus, &a);
    let (_, b_token) = held(&bus, &b);
    // a's delivery with b's request: refused, and a's delivery is untouched.
    bus.reply(&a, b_token, a_delivery, "forged");
    assert_eq!(
        errors(&bus.received(&a)),
        [(0, ErrorCode::PermissionDenied)]
    );
    // Without a delivery, a group member is nobody's responder.
    bus.reply(&a, b_token, 0, "forged");
    assert_eq!(
        errors(&bus.received(&a)),
        [(0, ErrorCode::PermissionDenied)]
    );
    assert!(bus.received(&p).is_empty());
    bus.reply(&a, a_token, a_delivery, "mine");
    assert!(matches!(
        bus.received(&p).as_slice(),
        [Got::Reply { correlation: 1, .. }]
    ));
}

#[test]
fn a_message_too_large_for_a_receiver_is_refused_not_dropped() {
    let mut bus = Bus::new();
    let small = bus
        .connect_with(proto::Hello {
            max_frame_bytes: 2048,
            ..hello("small")
        })
        .unwrap();
    let p = bus.connect("p");
    bus.subscribe(&small, 1, "t");
    // With the broker's stamps, its delivery is a few bytes over 2,048.
    let big = "x".repeat(2020);
    let got = bus.confirmed(&p, 1, "t", &big);
    assert_eq!(got, Err(ErrorCode::FrameTooLarge));
    // The fast path refuses it the same way.
    bus.publish(&p, "t", &big);
    let got = bus.received(&p);
    let [
        Got::Error {
            seq: 0,
            code,
            details,
        },
    ] = got.as_slice()
    else {
        panic!("{got:?}")
    };
    assert_eq!(*code, ErrorCode::FrameTooLarge);
    assert_eq!(details["receiver"], "small");
    assert_eq!(details["limit"], "2048");
    assert!(bus.received(&small).is_empty());
    // What fits goes through.
    assert!(bus.confirmed(&p, 2, "t", &"x".repeat(1980)).is_ok());
    assert_eq!(deliveries(&bus.received(&small)).len(), 1);
    // Direct sends too.
    let mut direct = publish(3, PublishMode::Confirmed, "t", &big);
    if let Kind::Publish(p) = &mut direct {
        p.target_client = "small".into();
    }
    bus.send_done(&p, direct);
    assert_eq!(errors(&bus.received(&p)), [(3, ErrorCode::FrameTooLarge)]);
}

#[test]
fn a_queued_message_waits_for_a_member_it_fits() {
    let mut bus = Bus::new();
    let small = bus
        .connect_with(proto::Hello {
            max_frame_bytes: 2048,
            ..hello("small")
        })
        .unwrap();
    let p = bus.connect("p");
    bus.join(&small, 1, SVC, "g", 5);
    let big = "x".repeat(2020);
    assert_eq!(
        bus.confirmed(&p, 1, SVC, &big),
        Err(ErrorCode::FrameTooLarge)
    );
    // A member it fits, busy: the message waits for it, not for `small`.
    let large = bus.connect("large");
    bus.join(&large, 1, SVC, "g", 1);
    bus.publish(&p, SVC, "small task");
    let busy = deliveries(&bus.received(&small));
    let held = deliveries(&bus.received(&large));
    assert_eq!(busy.len() + held.len(), 1);
    if held.is_empty() {
        // The small task went to `small`: occupy `large` with another.
        bus.publish(&p, SVC, "another");
    }
    let held = if held.is_empty() {
        deliveries(&bus.received(&large))
    } else {
        held
    };
    assert_eq!(held.len(), 1, "large holds one task");
    assert!(bus.confirmed(&p, 2, SVC, &big).is_ok());
    assert!(
        deliveries(&bus.received(&small)).is_empty(),
        "too big for small"
    );
    bus.ack(&large, held[0].0, 0);
    let got = deliveries(&bus.received(&large));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.len(), 2020);
}

#[test]
fn a_reply_too_large_for_its_requester_is_refused_to_the_responder() {
    let mut bus = Bus::new();
    let responder = bus.connect("responder");
    let p = bus
        .connect_with(proto::Hello {
            max_frame_bytes: 2048,
            ..hello("p")
        })
        .unwrap();
    bus.subscribe(&responder, 1, SVC);
    bus.send_done(&p, publish(1, PublishMode::Request, SVC, "ask"));
    let got = bus.received(&responder);
    let [Got::Deliver { msg, .. }] = got.as_slice() else {
        panic!("{got:?}")
    };
    let token = msg.correlation_id;
    bus.reply(&responder, token, 0, &"x".repeat(2100));
    assert_eq!(
        errors(&bus.received(&responder)),
        [(0, ErrorCode::FrameTooLarge)]
    );
    // Still pending: a reply that fits is delivered.
    bus.reply(&responder, token, 0, "short");
    assert!(matches!(bus.received(&p).as_slice(), [Got::Reply { .. }]));
}

/// A client of kind `bridge`.
fn connect_bridge(bus: &mut Bus, id: &str) -> Peer {
    bus.connect_with(proto::Hello {
        kind: crate::topic::BRIDGE_KIND.into(),
        ..hello(id)
    })
    .unwrap()
}

/// A client of kind `bridge` publishes its status on `_sys.bridge.<name>`
/// and nothing else of `_sys`; nobody else publishes there.
#[test]
fn only_a_bridge_publishes_below_sys_bridge() {
    let mut bus = Bus::new();
    let watcher = bus.connect("watcher");
    bus.subscribe(&watcher, 1, "_sys.bridge.#");
    let bridge = connect_bridge(&mut bus, "bridge-n1");
    let other = bus.connect("other");
    assert!(bus.confirmed(&bridge, 1, "_sys.bridge.n1", "{}").is_ok());
    bus.publish(&bridge, "_sys.bridge.n1", "fast path");
    for (seq, topic) in [
        (2, "_sys.bridge"),
        (3, "_sys.stats"),
        (4, "_sys.bridgex.n1"),
    ] {
        assert_eq!(
            bus.confirmed(&bridge, seq, topic, "{}"),
            Err(ErrorCode::PermissionDenied),
            "{topic}"
        );
    }
    assert_eq!(
        bus.confirmed(&other, 1, "_sys.bridge.n1", "{}"),
        Err(ErrorCode::PermissionDenied)
    );
    let impostor = bus
        .connect_with(proto::Hello {
            kind: "Bridge".into(),
            ..hello("impostor")
        })
        .unwrap();
    assert_eq!(
        bus.confirmed(&impostor, 1, "_sys.bridge.n1", "{}"),
        Err(ErrorCode::PermissionDenied)
    );
    let got = deliveries(&bus.received(&watcher));
    assert_eq!(got.len(), 2, "the bridge's two publishes only: {got:?}");
}

/// Under an auth file a bridge also needs its identity's permission.
#[test]
fn a_bridge_status_needs_the_identitys_permission() {
    let text = format!(
        r#"
[[user]]
name = "bridge"
secret_sha256 = "{b}"
client_ids = ["bridge-*"]
[user.publish]
allow = ["_sys.bridge.n1", "events.#"]
"#,
        b = crate::broker::hash_secret(b"b"),
    );
    let mut bus = Bus::with_auth(|_| {}, Some(&text));
    let as_bridge = |id: &str| proto::Hello {
        kind: crate::topic::BRIDGE_KIND.into(),
        user: "bridge".into(),
        secret: b"b".to_vec().into(),
        ..hello(id)
    };
    let bridge = bus.connect_with(as_bridge("bridge-n1")).unwrap();
    assert!(bus.confirmed(&bridge, 1, "_sys.bridge.n1", "{}").is_ok());
    assert_eq!(
        bus.confirmed(&bridge, 2, "_sys.bridge.n2", "{}"),
        Err(ErrorCode::PermissionDenied)
    );
    bus.publish(&bridge, "_sys.bridge.n3", "{}");
    // Only the permitted status is kept.
    let names: Vec<String> = bus
        .stats(&bridge)
        .bridges
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["n1"]);
}

/// What a bridge announces is in `stats`, by name, on both publish paths;
/// a refused announcement is not; a gone bridge's last one stays, marked.
#[test]
fn a_bridges_last_status_is_in_stats_and_outlives_it_marked() {
    let mut bus = Bus::new();
    let watcher = bus.connect("watcher");
    let bridge = connect_bridge(&mut bus, "bridge-n1");
    let other = bus.connect("other");
    bus.publish(&bridge, "_sys.bridge.n1", r#"{"nats":"connecting"}"#);
    assert!(
        bus.confirmed(&bridge, 1, "_sys.bridge.n1", r#"{"nats":"connected"}"#)
            .is_ok()
    );
    // Refused: neither an impostor nor a topic outside `_sys.bridge.<name>`.
    let _ = bus.confirmed(&other, 1, "_sys.bridge.n9", "{}");
    let _ = bus.confirmed(&bridge, 2, "_sys.bridge", "{}");
    // The fast path (someone subscribes to the status topic) keeps it too.
    bus.subscribe(&watcher, 1, "_sys.bridge.#");
    bus.publish(&bridge, "_sys.bridge.n2", r#"{"nats":"connected"}"#);

    let stats = bus.stats(&watcher);
    let got: Vec<(&str, &str, bool, &str)> = stats
        .bridges
        .iter()
        .map(|b| {
            (
                b.name.as_str(),
                b.client_id.as_str(),
                b.connected,
                b.status_json.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("n1", "bridge-n1", true, r#"{"nats":"connected"}"#),
            ("n2", "bridge-n1", true, r#"{"nats":"connected"}"#),
        ]
    );
    bus.disconnect(&bridge);
    let stats = bus.stats(&watcher);
    assert!(stats.bridges.iter().all(|b| !b.connected));
    assert_eq!(stats.bridges.len(), 2);
}
