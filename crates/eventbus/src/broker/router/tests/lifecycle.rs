//! Registration, heartbeats and the ticker, disconnects, direct sends and
//! their failover, slow and too-slow consumers, draining.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::Duration;

use super::*;
use crate::broker::router::schedule::MAX_TICK;
use crate::framed::OverflowPolicy;

/// Whether the ticker has been asked to wake (consumes the request).
fn woken(router: &Router) -> bool {
    let wake = router.ticker();
    let notified = wake.notified();
    let mut notified = pin!(notified);
    notified
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_ready()
}

fn hello_with(id: &str, heartbeat_ms: u32, misses: u32) -> proto::Hello {
    proto::Hello {
        heartbeat_interval_ms: heartbeat_ms,
        heartbeat_misses: misses,
        ..hello(id)
    }
}

fn direct(seq: u64, mode: PublishMode, to: &str, topic: &str, payload: &str) -> Kind {
    let mut kind = publish(seq, mode, topic, payload);
    if let Kind::Publish(p) = &mut kind {
        p.target_client = to.into();
    }
    kind
}

#[test]
fn the_ticker_sleeps_until_a_heartbeat_is_due_and_wakes_for_a_sooner_one() {
    let mut bus = Bus::new();
    let start = bus.now;
    assert_eq!(
        bus.advance(Duration::ZERO),
        start + MAX_TICK,
        "nothing to do"
    );
    let c = bus.connect_with(hello_with("c-1", 100, 3)).unwrap();
    assert!(
        woken(&bus.router),
        "a heartbeat due before the planned tick"
    );
    assert_eq!(
        bus.advance(Duration::ZERO),
        start + Duration::from_millis(100)
    );
    assert!(!woken(&bus.router));

    // Due: a heartbeat goes out, and the next one is planned.
    assert!(bus.received(&c).is_empty());
    let due = bus.advance(Duration::from_millis(100));
    assert_eq!(due, start + Duration::from_millis(200));
    assert_eq!(bus.received(&c), [Got::Heartbeat]);

    // A later deadline does not wake the ticker; an earlier one does.
    bus.router.schedule.due_by(due + Duration::from_secs(5));
    assert!(!woken(&bus.router));
    bus.router.schedule.due_by(due - Duration::from_millis(10));
    assert!(woken(&bus.router));
}

#[test]
fn a_silent_peer_is_dropped_just_past_misses_times_interval_and_its_tasks_go_back() {
    let mut bus = Bus::new();
    let c = bus.connect_with(hello_with("c", 100, 3)).unwrap();
    let p = bus.connect_with(hello_with("p", 10_000, 3)).unwrap();
    bus.join(&c, 1, "t", "g", 1);
    bus.publish(&p, "t", "work");
    let registered = bus.now;
    // Hearing from it moves its limit.
    bus.advance(Duration::from_millis(150));
    bus.send_done(&c, Kind::Heartbeat(proto::Heartbeat { nonce: 1 }));
    let heard = bus.now;
    bus.advance(heard + Duration::from_millis(300) - bus.now);
    assert_eq!(
        bus.router.connection_count(),
        2,
        "at the limit, not yet past it"
    );
    assert!(registered + Duration::from_millis(300) < bus.now);
    bus.advance(Duration::from_millis(1));
    assert_eq!(bus.router.connection_count(), 1, "dropped just past it");
    assert_eq!(
        bus.received(&c).last(),
        Some(&Got::Goodbye("heartbeats missed".into()))
    );
    let q = bus.stats(&p).queues;
    assert_eq!((q[0].depth, q[0].redelivered), (1, 1));
}

#[test]
fn heartbeat_settings_are_clamped_to_the_broker_bounds() {
    let mut bus = Bus::new();
    let conn = |bus: &mut Bus, hello: proto::Hello| {
        let out = Outbound::new(bus.config.outbound_limits());
        let registration = Registration {
            principal: bus.auth.authenticate(None, Some(PEER_UID)).unwrap(),
            hello,
            out,
            cancel: CancellationToken::new(),
            peer_pid: Some(42),
        };
        bus.run(|r, now| r.register(registration, now)).unwrap().1
    };
    let w = conn(&mut bus, hello_with("fast", 1, 1000));
    assert_eq!((w.heartbeat_interval_ms, w.heartbeat_misses), (10, 10));
    let w = conn(&mut bus, hello_with("slow", 3_600_000, 2));
    assert_eq!((w.heartbeat_interval_ms, w.heartbeat_misses), (10_000, 2));
    let w = conn(&mut bus, hello_with("default", 0, 0));
    assert_eq!((w.heartbeat_interval_ms, w.heartbeat_misses), (1000, 3));
    assert_eq!(w.max_frame_bytes as usize, bus.config.max_frame_bytes);
    assert_eq!(
        w.max_subscriptions as usize,
        bus.config.max_subscriptions_per_client
    );
    let w = conn(
        &mut bus,
        proto::Hello {
            max_frame_bytes: 2048,
            ..hello("small")
        },
    );
    assert_eq!(w.max_frame_bytes, 2048);
    let w = conn(
        &mut bus,
        proto::Hello {
            max_frame_bytes: u32::MAX,
            ..hello("huge")
        },
    );
    assert_eq!(w.max_frame_bytes as usize, bus.config.max_frame_bytes);
    let w = conn(
        &mut bus,
        proto::Hello {
            max_frame_bytes: 1,
            ..hello("tiny")
        },
    );
    assert_eq!(
        w.max_frame_bytes as usize,
        crate::codec::MIN_MAX_FRAME_BYTES
    );
    let reader = bus.connect("reader");
    let stats = bus.stats(&reader);
    let row = stats.connections.iter().find(|c| c.id == "fast").unwrap();
    assert_eq!(row.pid, 42, "the socket's pid wins over the declared one");
}

#[test]
fn the_broker_bounds_come_from_its_configuration() {
    let mut bus = Bus::with(|c| {
        c.max_heartbeat_interval_ms = 2_000;
        c.max_heartbeat_misses = 4;
    });
    let slow = bus.connect_with(hello_with("slow", 60_000, 100)).unwrap();
    // Silent for 2 s × 4: dropped just after.
    bus.advance(Duration::from_millis(8_000));
    assert!(!slow.cancel.is_cancelled());
    bus.advance(Duration::from_millis(1));
    assert!(slow.cancel.is_cancelled());
}

#[test]
fn hello_fields_are_bounded_and_broker_is_not_a_client_id() {
    let mut bus = Bus::new();
    assert!(matches!(
        bus.connect_with(hello("broker")),
        Err(HandshakeRefusal::ReservedClientId(_))
    ));
    let long_kind = proto::Hello {
        kind: "k".repeat(65),
        ..hello("x")
    };
    assert!(matches!(
        bus.connect_with(long_kind),
        Err(HandshakeRefusal::FieldTooLong {
            field: "kind",
            len: 65,
            max: 64
        })
    ));
    let many = proto::Hello {
        capabilities: (0..17).map(|n| format!("c{n}")).collect(),
        ..hello("x")
    };
    assert!(matches!(
        bus.connect_with(many),
        Err(HandshakeRefusal::TooManyCapabilities { count: 17, max: 16 })
    ));
    let bad = proto::Hello {
        capabilities: vec!["Not A Group".into()],
        ..hello("x")
    };
    assert!(matches!(
        bus.connect_with(bad),
        Err(HandshakeRefusal::InvalidCapability(_))
    ));
    let fine = proto::Hello {
        kind: "k".repeat(64),
        capabilities: (0..16).map(|n| format!("c{n}")).collect(),
        ..hello("x")
    };
    assert!(bus.connect_with(fine).is_ok());
}

#[test]
fn a_hello_is_refused_for_a_wrong_version_a_bad_id_or_a_draining_broker() {
    let mut bus = Bus::new();
    let wrong = proto::Hello {
        protocol_version: 99,
        ..hello("x")
    };
    assert!(matches!(
        bus.connect_with(wrong),
        Err(HandshakeRefusal::UnsupportedVersion { got: 99 })
    ));
    assert!(matches!(
        bus.connect_with(hello("no spaces")),
        Err(HandshakeRefusal::InvalidClientId(_))
    ));
    bus.run(|r, _| r.begin_drain());
    assert!(matches!(
        bus.connect_with(hello("late")),
        Err(HandshakeRefusal::ShuttingDown)
    ));
    assert_eq!(bus.router.connection_count(), 0);
}

#[test]
fn only_the_holder_of_a_live_client_id_takes_it_over() {
    let mut bus = Bus::new();
    let old = bus.connect("dup");
    let p = bus.connect("p");
    bus.join(&old, 1, "t", "g", 1);
    bus.publish(&p, "t", "held");
    bus.received(&old);
    assert_eq!(old.welcome.resume_token.len(), 16);
    assert_eq!(old.welcome.identity, format!("uid:{PEER_UID}"));
    // Anyone else, same uid or not, is refused while the link lives.
    assert!(matches!(
        bus.connect_with(hello("dup")),
        Err(HandshakeRefusal::ClientIdInUse(_))
    ));
    let mut wrong = old.welcome.resume_token.to_vec();
    wrong[0] ^= 1;
    assert!(matches!(
        bus.connect_with(proto::Hello {
            resume_token: wrong.into(),
            ..hello("dup")
        }),
        Err(HandshakeRefusal::ClientIdInUse(_))
    ));
    assert!(!old.cancel.is_cancelled(), "the holder is untouched");
    // The holder, reconnecting with its token, takes it over.
    let new = bus
        .connect_with(proto::Hello {
            resume_token: old.welcome.resume_token.clone(),
            ..hello("dup")
        })
        .unwrap();
    assert_ne!(new.welcome.resume_token, old.welcome.resume_token);
    assert_eq!(
        bus.received(&old).last(),
        Some(&Got::Goodbye(
            "replaced by a newer connection with the same client id".into()
        ))
    );
    assert!(old.cancel.is_cancelled());
    assert_eq!(bus.router.connection_count(), 2);
    // The old link's late disconnect does not touch the new one.
    bus.disconnect(&old);
    assert_eq!(bus.router.connection_count(), 2);
    let got = bus.join(&new, 1, "t", "g", 1);
    assert_eq!(deliveries(&got)[0].1, "held");
    // Once the link is gone, the id is free for anyone.
    bus.disconnect(&new);
    assert!(bus.connect_with(hello("dup")).is_ok());
}

#[test]
fn goodbye_disconnects_and_later_frames_are_ignored() {
    let mut bus = Bus::new();
    let c = bus.connect("c");
    let watcher = bus.connect("watcher");
    bus.subscribe(&watcher, 1, "t");
    bus.send_done(&c, Kind::Goodbye(proto::Goodbye::default()));
    assert_eq!(
        bus.received(&c),
        [Got::Goodbye("client said goodbye".into())]
    );
    assert_eq!(bus.router.connection_count(), 1);
    bus.publish(&c, "t", "after");
    bus.send_done(&c, publish(1, PublishMode::Confirmed, "t", "after"));
    assert!(bus.received(&c).is_empty());
    assert!(bus.received(&watcher).is_empty(), "routed nowhere");
}

#[test]
fn close_all_says_goodbye_to_everyone() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let b = bus.connect("b");
    bus.run(|r, _| r.close_all(crate::broker::refusal::DisconnectReason::ShuttingDown));
    for peer in [&a, &b] {
        assert_eq!(
            bus.received(peer),
            [Got::Goodbye("broker shutting down".into())]
        );
        assert!(peer.out.is_closed());
    }
    assert_eq!(bus.router.connection_count(), 0);
}

#[test]
fn a_draining_broker_refuses_publishes_and_counts_what_is_in_flight() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.subscribe(&a, 2, "events.#");
    bus.join(&a, 1, "t", "g", 1);
    bus.publish(&p, "t", "work");
    let (delivery, _) = deliveries(&bus.received(&a))[0].clone();
    assert_eq!(bus.router.in_flight_count(), 1);
    bus.run(|r, _| r.begin_drain());
    assert_eq!(
        bus.confirmed(&p, 1, "t", "late"),
        Err(ErrorCode::ShuttingDown)
    );
    // The fan-out fast path too.
    bus.publish(&p, "events.x", "late");
    assert_eq!(errors(&bus.received(&p)), [(0, ErrorCode::ShuttingDown)]);
    assert!(bus.received(&a).is_empty());
    // What is in flight can still be settled.
    bus.ack(&a, delivery, 3);
    assert_eq!(bus.received(&a), [ok(3)]);
    assert_eq!(bus.router.in_flight_count(), 0);
}

#[test]
fn direct_sends_reach_the_named_client_within_its_bound() {
    let mut bus = Bus::with(|c| c.max_direct_in_flight = 2);
    let a = bus.connect("a");
    let p = bus.connect("p");
    for n in 1..=2 {
        bus.send_done(&p, direct(n, PublishMode::Confirmed, "a", "cmd.x", "d"));
    }
    let got = bus.received(&a);
    let sids: Vec<_> = got
        .iter()
        .map(|g| match g {
            Got::Deliver { sid, delivery, .. } => (*sid, *delivery != 0),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        sids,
        [(0, true), (0, true)],
        "the direct inbox, to be settled"
    );
    bus.send_done(&p, direct(3, PublishMode::Confirmed, "a", "cmd.x", "d"));
    let got = bus.received(&p);
    let Some(Got::Error {
        seq: 3,
        code,
        details,
    }) = got.last()
    else {
        panic!("{got:?}")
    };
    assert_eq!(*code, ErrorCode::QueueFull);
    assert_eq!(details["group"], "direct:a");
    assert_eq!(details["max_len"], "2");
    bus.send_done(
        &p,
        direct(4, PublishMode::Confirmed, "nobody", "cmd.x", "d"),
    );
    let got = bus.received(&p);
    let Some(Got::Error {
        seq: 4,
        code,
        details,
    }) = got.last()
    else {
        panic!("{got:?}")
    };
    assert_eq!(*code, ErrorCode::NoSuchClient);
    assert_eq!(details["client_id"], "nobody");
    bus.send_done(
        &p,
        direct(5, PublishMode::Confirmed, "bad id!", "cmd.x", "d"),
    );
    assert_eq!(errors(&bus.received(&p)), [(5, ErrorCode::NoSuchClient)]);
    let stats = bus.stats(&p);
    let topic = stats.topics.iter().find(|t| t.topic == "cmd.x").unwrap();
    assert_eq!((topic.published, topic.delivered), (2, 0));
}

#[test]
fn a_direct_task_whose_holder_leaves_goes_to_its_capability_group() {
    let mut bus = Bus::new();
    let holder = bus
        .connect_with(proto::Hello {
            capabilities: vec!["process".into()],
            ..hello("procmond-1")
        })
        .unwrap();
    let peer = bus.connect("procmond-2");
    let p = bus.connect("agent");
    bus.join(&peer, 1, "control.task.process", "process", 1);
    bus.send_done(
        &p,
        direct(
            1,
            PublishMode::Request,
            "procmond-1",
            "control.task.process",
            "scan",
        ),
    );
    assert_eq!(deliveries(&bus.received(&holder)).len(), 1);
    bus.disconnect(&holder);
    let got = bus.received(&peer);
    let Some(Got::Deliver { msg, delivery, .. }) = got.first() else {
        panic!("handed over: {got:?}")
    };
    assert_eq!((payload(msg).as_str(), msg.attempt), ("scan", 2));
    bus.reply(&peer, msg.correlation_id, *delivery, "done");
    let got = bus.received(&p);
    let Some(Got::Reply {
        correlation: 1,
        msg,
    }) = got.first()
    else {
        panic!("{got:?}")
    };
    assert_eq!(
        (msg.source.as_str(), payload(msg).as_str()),
        ("procmond-2", "done")
    );
}

#[test]
fn a_direct_task_nobody_can_take_fails_its_requester_at_once() {
    let mut bus = Bus::new();
    let holder = bus.connect("lonely");
    let p = bus.connect("agent");
    bus.send_done(&p, direct(1, PublishMode::Request, "lonely", "cmd.x", "a"));
    bus.send_done(&p, direct(2, PublishMode::Request, "lonely", "cmd.x", "b"));
    let got = deliveries(&bus.received(&holder));
    // Handed back: nowhere else to go.
    bus.nack(&holder, got[0].0, true, 0);
    let got_p = bus.received(&p);
    let Some(Got::Error {
        seq: 1,
        code,
        details,
    }) = got_p.first()
    else {
        panic!("{got_p:?}")
    };
    assert_eq!(*code, ErrorCode::NoResponders);
    assert_eq!(details["client_id"], "lonely");
    // Its holder leaves.
    bus.disconnect(&holder);
    let got_p = bus.received(&p);
    let Some(Got::Error {
        seq: 2,
        code,
        details,
    }) = got_p.first()
    else {
        panic!("{got_p:?}")
    };
    assert_eq!(*code, ErrorCode::NoResponders);
    assert_eq!(details["topic"], "cmd.x");
}

#[test]
fn a_handed_over_task_that_used_its_attempts_is_dead_lettered() {
    let mut bus = Bus::with(|c| c.queue.max_attempts = 1);
    let holder = bus
        .connect_with(proto::Hello {
            capabilities: vec!["process".into()],
            ..hello("h")
        })
        .unwrap();
    let peer = bus.connect("m");
    let p = bus.connect("agent");
    bus.join(&peer, 1, "control.task.process", "process", 1);
    bus.send_done(
        &p,
        direct(1, PublishMode::Request, "h", "control.task.process", "x"),
    );
    bus.disconnect(&holder);
    assert!(deliveries(&bus.received(&peer)).is_empty());
    assert_eq!(errors(&bus.received(&p)), [(1, ErrorCode::DeadLettered)]);
    let q = bus.stats(&p).queues;
    assert_eq!(q[0].dead_lettered, 1);
}

#[test]
fn a_slow_subscriber_is_counted_and_announced_once_a_second() {
    let mut bus = Bus::with(|c| {
        c.subscriber.max_len = 2;
        c.subscriber.overflow = OverflowPolicy::DropOldest;
    });
    let slow = bus.connect("slow");
    let watcher = bus.connect("watcher");
    let p = bus.connect("p");
    bus.subscribe(&slow, 1, "events.#");
    bus.subscribe(&watcher, 1, "_sys.slow-consumer");
    for n in 0..5 {
        bus.publish(&p, "events.x", &format!("e{n}"));
    }
    let announced = deliveries(&bus.received(&watcher));
    assert_eq!(announced.len(), 1, "once");
    assert!(
        announced[0]
            .1
            .starts_with(r#"{"client_id":"slow","dropped":1,"#),
        "{}",
        announced[0].1
    );
    let got = deliveries(&bus.received(&slow));
    assert_eq!(
        got.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
        ["e3", "e4"]
    );
    let stats = bus.stats(&p);
    let row = stats.connections.iter().find(|c| c.id == "slow").unwrap();
    assert_eq!((row.dropped, row.slow_consumer_events), (3, 1));
    assert_eq!(stats.dropped, 3);
    // A second later, it is announced again.
    for n in 0..3 {
        bus.publish(&p, "events.x", &format!("f{n}"));
    }
    assert!(deliveries(&bus.received(&watcher)).is_empty());
    bus.now += Duration::from_secs(1);
    for n in 0..3 {
        bus.publish(&p, "events.x", &format!("g{n}"));
    }
    assert_eq!(deliveries(&bus.received(&watcher)).len(), 1);
}

#[test]
fn a_consumer_at_the_hard_cap_is_disconnected_as_too_slow() {
    let mut bus = Bus::with(|c| {
        c.subscriber.max_len = 2;
        c.subscriber.hard_cap = 3;
    });
    let slow = bus.connect("slow");
    let p = bus.connect("p");
    bus.join(&slow, 1, "t", "g", 10);
    for n in 0..4 {
        bus.publish(&p, "t", &format!("t{n}"));
    }
    assert_eq!(bus.router.connection_count(), 1, "closed at the cap");
    let got = bus.received(&slow);
    assert_eq!(deliveries(&got).len(), 3);
    assert!(slow.out.is_closed());
    // Its tasks went back: 4 waiting, nobody to take them.
    let q = bus.stats(&p).queues;
    assert_eq!((q[0].depth, q[0].in_flight), (4, 0));
}
