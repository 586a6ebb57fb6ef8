//! Request/reply: no responders, replies, expiry, the pending bound.

use std::time::Duration;

use super::*;

fn request(seq: u64, topic: &str, timeout_ms: u32) -> Kind {
    let mut kind = publish(seq, PublishMode::Request, topic, "ask");
    if let Kind::Publish(p) = &mut kind {
        p.timeout_ms = timeout_ms;
    }
    kind
}

/// The request delivered to `responder`: (delivery id, correlation id, reply-to).
fn delivered(bus: &Bus, responder: &Peer) -> (u64, u64, String) {
    let mut got = bus.received(responder);
    got.retain(|g| *g != Got::Heartbeat);
    match got.as_slice() {
        [Got::Deliver { delivery, msg, .. }] => {
            (*delivery, msg.correlation_id, msg.reply_to.clone())
        }
        other => panic!("one request expected: {other:?}"),
    }
}

#[test]
fn a_request_nobody_subscribes_to_fails_at_once_and_is_not_counted() {
    let mut bus = Bus::new();
    let p = bus.connect("p");
    bus.send_done(&p, request(1, "nobody.home", 0));
    let got = bus.received(&p);
    let Some(Got::Error {
        seq: 1,
        code,
        details,
    }) = got.first()
    else {
        panic!("{got:?}")
    };
    assert_eq!(*code, ErrorCode::NoResponders);
    assert_eq!(details["topic"], "nobody.home");
    let stats = bus.stats(&p);
    assert_eq!(stats.published, 0);
    assert!(stats.topics.is_empty());
}

#[test]
fn the_reply_reaches_the_requester_with_the_responder_as_source() {
    let mut bus = Bus::new();
    let responder = bus.connect("resp");
    let p = bus.connect("p");
    bus.subscribe(&responder, 1, "svc.time");
    bus.send_done(&p, request(7, "svc.time", 0));
    let (delivery, correlation, reply_to) = delivered(&bus, &responder);
    assert_eq!(
        (delivery, reply_to.as_str()),
        (0, "p"),
        "plain: nothing to settle"
    );
    assert_ne!(correlation, 0);
    bus.send_done(
        &responder,
        Kind::Reply(proto::Reply {
            correlation_id: correlation,
            delivery_id: 0,
            message: Some(Box::new(proto::Envelope {
                payload: "noon".into(),
                source: "forged".into(),
                ..Default::default()
            })),
            seq: 3,
        }),
    );
    assert_eq!(bus.received(&responder), [ok(3)]);
    let got = bus.received(&p);
    let [
        Got::Reply {
            correlation: 7,
            msg,
        },
    ] = got.as_slice()
    else {
        panic!("{got:?}")
    };
    assert_eq!(
        (msg.source.as_str(), payload(msg).as_str()),
        ("resp", "noon")
    );
    assert_eq!(msg.correlation_id, 7);
    // The first reply wins.
    bus.reply(&responder, correlation, 0, "late");
    assert_eq!(
        errors(&bus.received(&responder)),
        [(0, ErrorCode::UnknownMessage)]
    );
    assert!(bus.received(&p).is_empty());
}

#[test]
fn a_reply_from_a_queue_member_settles_its_delivery() {
    let mut bus = Bus::new();
    let m = bus.connect("m");
    let p = bus.connect("p");
    bus.join(&m, 1, "svc.work", "g", 1);
    let id = bus.submit(&p, 2, "svc.work", "job").unwrap();
    let (delivery, correlation, _) = delivered(&bus, &m);
    assert!(
        correlation != 0 && correlation != id,
        "an unguessable token"
    );
    bus.reply(&m, correlation, delivery, "done");
    let got = bus.received(&p);
    assert!(matches!(
        got.as_slice(),
        [Got::Reply { correlation: 2, .. }]
    ));
    let stats = bus.stats(&p);
    assert_eq!((stats.queues[0].acked, stats.queues[0].in_flight), (1, 0));
    let row = stats.connections.iter().find(|c| c.id == "m").unwrap();
    assert_eq!(row.acked, 1);
    // A reply naming a delivery it does not hold is refused before anything.
    bus.reply(&m, correlation, delivery, "again");
    assert_eq!(errors(&bus.received(&m)), [(0, ErrorCode::UnknownDelivery)]);
}

#[test]
fn a_request_is_forgotten_after_its_timeout() {
    let mut bus = Bus::new();
    let responder = bus.connect("resp");
    let p = bus.connect("p");
    bus.subscribe(&responder, 1, "svc.slow");
    bus.send_done(&p, request(1, "svc.slow", 100));
    let (_, correlation, _) = delivered(&bus, &responder);
    let due = bus.advance(Duration::from_millis(50));
    assert_eq!(
        due,
        bus.now + Duration::from_millis(50),
        "the deadline is next"
    );
    bus.advance(Duration::from_millis(50));
    bus.reply(&responder, correlation, 0, "too late");
    assert_eq!(
        errors(&bus.received(&responder)),
        [(0, ErrorCode::UnknownMessage)]
    );
    assert!(bus.received(&p).is_empty());
}

#[test]
fn a_request_without_a_timeout_is_kept_thirty_seconds() {
    let mut bus = Bus::new();
    let responder = bus.connect("resp");
    let p = bus.connect("p");
    bus.subscribe(&responder, 1, "svc.x");
    bus.send_done(&p, request(1, "svc.x", 0));
    let (_, correlation, _) = delivered(&bus, &responder);
    let alive = [&responder, &p];
    bus.advance_alive(
        Duration::from_millis(29_999),
        Duration::from_secs(1),
        &alive,
    );
    bus.reply(&responder, correlation, 0, "in time");
    let replies = bus.received(&p);
    assert!(replies.iter().any(|g| matches!(g, Got::Reply { .. })));
    bus.send_done(
        &responder,
        publish(0, PublishMode::Request, "svc.x", "again"),
    );
    let (_, correlation, _) = delivered(&bus, &responder);
    bus.advance_alive(Duration::from_secs(30), Duration::from_secs(1), &alive);
    bus.reply(&responder, correlation, 0, "too late");
    assert_eq!(
        errors(&bus.received(&responder)),
        [(0, ErrorCode::UnknownMessage)]
    );
}

#[test]
fn a_requester_that_leaves_is_forgotten() {
    let mut bus = Bus::new();
    let responder = bus.connect("resp");
    let p = bus.connect("p");
    bus.subscribe(&responder, 1, "svc.x");
    bus.send_done(&p, request(1, "svc.x", 0));
    let (_, correlation, _) = delivered(&bus, &responder);
    bus.disconnect(&p);
    bus.reply(&responder, correlation, 0, "nobody listens");
    assert_eq!(
        errors(&bus.received(&responder)),
        [(0, ErrorCode::UnknownMessage)]
    );
}

#[test]
fn pending_requests_are_bounded() {
    let mut bus = Bus::with(|c| c.max_pending_requests = 2);
    let responder = bus.connect("resp");
    let p = bus.connect("p");
    bus.subscribe(&responder, 1, "svc.x");
    for seq in 1..=3 {
        bus.send_done(&p, request(seq, "svc.x", 0));
    }
    let got = bus.received(&p);
    let [
        Got::Error {
            seq: 3,
            code,
            details,
        },
    ] = got.as_slice()
    else {
        panic!("{got:?}")
    };
    assert_eq!(*code, ErrorCode::QueueFull);
    assert_eq!(details["max_len"], "2");
    assert_eq!(deliveries(&bus.received(&responder)).len(), 2);
    assert_eq!(bus.stats(&p).published, 2);
}

fn join_fallback(bus: &mut Bus, peer: &Peer, sid: u64, filter: &str, group: &str) -> Vec<Got> {
    bus.send_done(
        peer,
        Kind::Subscribe(proto::Subscribe {
            seq: sid,
            sid,
            filter: filter.into(),
            group: group.into(),
            prefetch: 4,
            fallback: true,
        }),
    );
    let mut got = bus.received(peer);
    assert_eq!(got.first(), Some(&ok(sid)), "joined as a fallback");
    got.remove(0);
    got
}

/// A fallback member (a bridge) takes the requests nobody here serves, and
/// none while a member is there; a plain subscription cannot be one.
#[test]
fn a_fallback_member_serves_only_while_the_group_has_no_other_member() {
    let mut bus = Bus::new();
    let bridge = bus.connect("bridge");
    let worker = bus.connect("worker");
    let p = bus.connect("p");
    assert!(join_fallback(&mut bus, &bridge, 1, "svc.#", "svc").is_empty());
    // Alone: the request goes to the bridge instead of failing.
    bus.send_done(&p, request(1, "svc.time", 0));
    let (delivery, correlation, _) = delivered(&bus, &bridge);
    assert_ne!(delivery, 0);
    assert_ne!(correlation, 0);
    assert!(bus.received(&p).is_empty(), "pending, not refused");
    // A member joins: it takes every request, the bridge none.
    assert!(bus.join(&worker, 1, "svc.#", "svc", 4).is_empty());
    bus.send_done(&p, request(2, "svc.time", 0));
    bus.send_done(&p, request(3, "svc.date", 0));
    let to_worker = bus.received(&worker);
    assert_eq!(deliveries(&to_worker).len(), 2, "{to_worker:?}");
    assert!(bus.received(&bridge).is_empty());
    // It leaves: the bridge serves again, the two the worker held
    // (redelivered) and the next.
    bus.disconnect(&worker);
    bus.send_done(&p, request(4, "svc.time", 0));
    assert_eq!(deliveries(&bus.received(&bridge)).len(), 3);
    // A plain subscription cannot be a fallback.
    bus.send_done(
        &bridge,
        Kind::Subscribe(proto::Subscribe {
            seq: 9,
            sid: 9,
            filter: "x".into(),
            fallback: true,
            ..Default::default()
        }),
    );
    assert_eq!(
        errors(&bus.received(&bridge)),
        [(9, ErrorCode::InvalidArgument)]
    );
}

#[test]
fn a_burst_of_queued_requests_leaves_no_room_behind_once_answered() {
    use crate::broker::shrink::KEEP;
    const BURST: u64 = 5_000;
    let mut bus = Bus::new();
    let m = bus.connect("m");
    let p = bus.connect("p");
    bus.join(&m, 1, "svc.work", "g", 100);
    bus.bulk(|bus| {
        for seq in 1..=BURST {
            bus.send_done(&p, request(seq, "svc.work", 0));
        }
    });
    let gid = bus.run(|router, _| {
        let (gid, group) = router.queues.iter().next().expect("the group");
        assert_eq!(router.requests.len(), BURST as usize);
        assert!(group.room() >= (BURST - 100) as usize, "the burst waits");
        gid
    });
    let replies = bus.bulk(|bus| {
        let mut replies = 0;
        loop {
            let deliveries: Vec<_> = bus
                .received(&m)
                .into_iter()
                .filter_map(|g| match g {
                    Got::Deliver { delivery, msg, .. } => Some((delivery, msg.correlation_id)),
                    _ => None,
                })
                .collect();
            if deliveries.is_empty() {
                break;
            }
            for (delivery, correlation) in deliveries {
                bus.reply(&m, correlation, delivery, "done");
            }
            replies += bus
                .received(&p)
                .iter()
                .filter(|g| matches!(g, Got::Reply { .. }))
                .count();
        }
        replies
    });
    assert_eq!(replies, BURST as usize, "every request answered");
    bus.run(|router, _| {
        assert_eq!((router.requests.len(), router.in_flight.len()), (0, 0));
        let group = router.queues.get(gid).expect("the group");
        for (what, room) in [
            ("pending requests", router.requests.room()),
            ("deliveries in flight", router.in_flight.room()),
            ("the group's queue", group.room()),
        ] {
            assert!(room <= 2 * KEEP, "{what} kept room for {room}");
        }
    });
}
