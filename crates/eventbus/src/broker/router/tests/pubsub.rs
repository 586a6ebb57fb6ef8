//! Plain subscriptions, the fan-out fast path, subscribers' overflow
//! policies, stats counters, and the refusals of bad commands.

use super::*;
use crate::broker::router::counters::MAX_TRACKED_TOPICS;
use crate::framed::OverflowPolicy;

#[test]
fn every_matching_subscription_gets_a_stamped_copy() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let b = bus.connect("b");
    let p = bus.connect("p");
    bus.subscribe(&a, 1, "events.#");
    bus.subscribe(&a, 2, "events.+.start");
    bus.subscribe(&b, 1, "events.net.stop");
    bus.publish(&p, "events.proc.start", "e1");
    let got = bus.received(&a);
    let sids: Vec<u64> = got
        .iter()
        .map(|g| match g {
            Got::Deliver {
                sid,
                delivery: 0,
                msg,
            } => {
                assert_eq!(msg.source, "p");
                assert_eq!(msg.attempt, 1);
                assert_eq!(msg.topic, "events.proc.start");
                assert_ne!(msg.id, 0);
                *sid
            }
            other => panic!("{other:?}"),
        })
        .collect();
    let mut sorted = sids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [1, 2]);
    assert!(bus.received(&b).is_empty());
    let stats = bus.stats(&p);
    assert_eq!((stats.published, stats.delivered), (1, 2));
    let topic = &stats.topics[0];
    assert_eq!(
        (topic.topic.as_str(), topic.published, topic.delivered),
        ("events.proc.start", 1, 2)
    );
    let row = |id: &str| {
        stats
            .connections
            .iter()
            .find(|c| c.id == id)
            .unwrap()
            .clone()
    };
    assert_eq!((row("a").delivered, row("p").published), (2, 1));
}

#[test]
fn the_fast_path_and_the_decoding_path_stamp_alike() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.subscribe(&a, 1, "x.y");
    bus.publish(&p, "x.y", "fast");
    assert_eq!(
        bus.confirmed(&p, 5, "x.y", "decoded").map(|id| id > 0),
        Ok(true)
    );
    let got = bus.received(&a);
    let stamps: Vec<_> = got
        .iter()
        .map(|g| match g {
            Got::Deliver { msg, .. } => (msg.source.clone(), msg.attempt, payload(msg)),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        stamps,
        [
            ("p".to_owned(), 1, "fast".to_owned()),
            ("p".to_owned(), 1, "decoded".to_owned())
        ]
    );
}

#[test]
fn a_new_subscription_is_routed_to_at_once_and_a_dropped_one_no_more() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let b = bus.connect("b");
    let p = bus.connect("p");
    bus.subscribe(&a, 1, "t");
    bus.publish(&p, "t", "1");
    bus.subscribe(&b, 1, "t");
    bus.publish(&p, "t", "2");
    bus.send_done(&a, Kind::Unsubscribe(proto::Unsubscribe { seq: 0, sid: 1 }));
    bus.publish(&p, "t", "3");
    bus.publish(&p, "u", "other topic");
    bus.publish(&p, "t", "4");
    let a_got: Vec<_> = deliveries(&bus.received(&a))
        .into_iter()
        .map(|d| d.1)
        .collect();
    let b_got: Vec<_> = deliveries(&bus.received(&b))
        .into_iter()
        .map(|d| d.1)
        .collect();
    assert_eq!(a_got, ["1", "2"]);
    assert_eq!(b_got, ["2", "3", "4"]);
    let stats = bus.stats(&p);
    let count = |t: &str| {
        let s = stats.topics.iter().find(|s| s.topic == t).unwrap();
        (s.published, s.delivered)
    };
    assert_eq!(count("t"), (4, 5));
    assert_eq!(count("u"), (1, 0));
}

#[test]
fn stats_track_a_bounded_number_of_topics() {
    let mut bus = Bus::new();
    let p = bus.connect("p");
    for n in 0..=MAX_TRACKED_TOPICS {
        bus.publish(&p, &format!("t.n{n}"), "");
    }
    let stats = bus.stats(&p);
    assert_eq!(stats.topics.len(), MAX_TRACKED_TOPICS);
    assert_eq!(stats.published, MAX_TRACKED_TOPICS as u64 + 1);
}

#[test]
fn a_subscriber_that_rejects_refuses_the_publish_only_where_nobody_took_it() {
    let mut bus = Bus::with(|c| {
        c.subscriber.max_len = 1;
        c.subscriber.overflow = OverflowPolicy::Reject;
    });
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.subscribe(&a, 1, "t");
    assert!(bus.confirmed(&p, 1, "t", "fits").is_ok());
    let got = bus.confirmed(&p, 2, "t", "full");
    assert_eq!(got, Err(ErrorCode::QueueFull));
    bus.publish(&p, "t", "fire-and-forget");
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
    assert_eq!(*code, ErrorCode::QueueFull);
    assert_eq!(details["group"], "subscriber:a");
    // With one subscriber taking it, the publish is fine.
    let b = bus.connect("b");
    bus.subscribe(&b, 1, "t");
    assert!(bus.confirmed(&p, 3, "t", "half").is_ok());
    let stats = bus.stats(&p);
    assert_eq!(stats.published, 2);
    let row = stats.connections.iter().find(|c| c.id == "a").unwrap();
    assert_eq!(row.dropped, 3);
}

#[test]
fn a_subscriber_that_drops_incoming_keeps_the_oldest() {
    let mut bus = Bus::with(|c| {
        c.subscriber.max_len = 2;
        c.subscriber.overflow = OverflowPolicy::DropIncoming;
    });
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.subscribe(&a, 1, "t");
    for n in 0..4 {
        bus.publish(&p, "t", &n.to_string());
    }
    let got: Vec<_> = deliveries(&bus.received(&a))
        .into_iter()
        .map(|d| d.1)
        .collect();
    assert_eq!(got, ["0", "1"]);
    let stats = bus.stats(&p);
    assert_eq!((stats.delivered, stats.dropped), (2, 2));
}

#[test]
fn frames_that_are_not_valid_commands_are_refused_and_the_link_stays_open() {
    let mut bus = Bus::new();
    let c = bus.connect("c");
    bus.send_done(&c, Kind::Hello(hello("c")));
    bus.send_done(&c, Kind::Deliver(proto::Deliver::default()));
    bus.send_done(&c, Kind::Ok(proto::Ok::default()));
    let bad_mode = Kind::Publish(proto::Publish {
        seq: 4,
        mode: 77,
        message: Some(Box::default()),
        ..Default::default()
    });
    bus.send_done(&c, bad_mode);
    let missing = Kind::Publish(proto::Publish {
        seq: 5,
        mode: PublishMode::Confirmed as i32,
        ..Default::default()
    });
    bus.send_done(&c, missing);
    bus.send_done(&c, publish(6, PublishMode::Confirmed, "Bad Topic", "x"));
    let sub = |seq: u64, sid: u64, filter: &str, group: &str| {
        Kind::Subscribe(proto::Subscribe {
            seq,
            sid,
            filter: filter.into(),
            group: group.into(),
            prefetch: 0,
            fallback: false,
        })
    };
    bus.send_done(&c, sub(7, 1, "a.#.b", ""));
    bus.send_done(&c, sub(8, 1, "a", "Bad Group"));
    bus.send_done(&c, sub(9, 0, "a", ""));
    bus.send_done(&c, sub(10, 1, "a", ""));
    bus.send_done(&c, sub(11, 1, "b", ""));
    assert_eq!(
        errors(&bus.received(&c)),
        [
            (0, ErrorCode::Protocol),
            (0, ErrorCode::Protocol),
            (0, ErrorCode::Protocol),
            (4, ErrorCode::InvalidArgument),
            (5, ErrorCode::InvalidArgument),
            (6, ErrorCode::InvalidTopic),
            (7, ErrorCode::InvalidFilter),
            (8, ErrorCode::InvalidArgument),
            (9, ErrorCode::InvalidArgument),
            (11, ErrorCode::InvalidArgument),
        ]
    );
    assert_eq!(bus.router.connection_count(), 1, "still connected");
}

#[test]
fn subscriptions_per_client_are_bounded() {
    let mut bus = Bus::with(|c| c.max_subscriptions_per_client = 2);
    let c = bus.connect("c");
    bus.subscribe(&c, 1, "a");
    bus.join(&c, 2, "b", "g", 1);
    bus.send_done(
        &c,
        Kind::Subscribe(proto::Subscribe {
            seq: 3,
            sid: 3,
            filter: "c".into(),
            ..Default::default()
        }),
    );
    let got = bus.received(&c);
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
    assert_eq!(*code, ErrorCode::SubscriptionLimit);
    assert_eq!(details["max_subscriptions"], "2");
}

#[test]
fn queue_prefetch_is_defaulted_and_capped() {
    let mut bus = Bus::with(|c| {
        c.queue.default_prefetch = 3;
        c.queue.max_prefetch = 5;
    });
    let a = bus.connect("a");
    let b = bus.connect("b");
    bus.join(&a, 1, "t", "g", 0);
    bus.join(&b, 1, "t", "g", 1000);
    let stats = bus.stats(&a);
    let prefetch: Vec<_> = stats.queues[0]
        .members
        .iter()
        .map(|m| (m.client_id.as_str(), m.prefetch))
        .collect();
    assert_eq!(prefetch, [("a", 3), ("b", 5)]);
}

#[test]
fn stats_report_uptime_on_the_callers_clock() {
    let mut bus = Bus::new();
    let c = bus.connect("c");
    bus.now += std::time::Duration::from_millis(1234);
    assert_eq!(bus.stats(&c).uptime_ms, 1234);
}

#[test]
fn a_plain_fire_and_forget_publish_takes_the_fast_path_and_others_do_not() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.subscribe(&a, 1, "x");
    bus.subscribe(&a, 2, "y");
    assert!(bus.confirmed(&p, 1, "y", "general").is_ok());
    assert!(
        bus.router.fanout_route.is_none(),
        "a confirmed publish: no route kept"
    );
    bus.publish(&p, "x", "fast");
    let route = bus.router.fanout_route.as_ref().expect("a route kept");
    assert_eq!((route.topic.as_str(), route.pending.published), ("x", 1));
    assert!(matches!(
        a.out.take_queued().as_slice(),
        [Outgoing::Deliver(_), Outgoing::Deliver(_)]
    ));
}

#[test]
fn deliveries_are_stamped_with_the_wall_clock_of_their_batch() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.subscribe(&a, 1, "x");
    let before = super::super::wall_us();
    bus.publish(&p, "x", "fast");
    assert!(bus.confirmed(&p, 1, "x", "decoded").is_ok());
    let after = super::super::wall_us();
    for got in bus.received(&a) {
        let Got::Deliver { msg, .. } = got else {
            panic!("{got:?}")
        };
        assert!(
            (before..=after).contains(&msg.timestamp_us),
            "{before} <= {} <= {after}",
            msg.timestamp_us
        );
    }
}

#[test]
fn a_batch_hands_each_touched_queue_to_the_caller_once() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let b = bus.connect("b");
    let quiet = bus.connect("quiet");
    let p = bus.connect("p");
    bus.subscribe(&a, 1, "x");
    bus.subscribe(&b, 1, "x");
    bus.subscribe(&quiet, 1, "y");
    let conn = p.conn;
    let frames: Vec<_> = (0..3)
        .map(|_| {
            let mut wire = BytesMut::new();
            let frame = Frame {
                kind: Some(publish(0, PublishMode::FireAndForget, "x", "m")),
            };
            FrameCodec::default().encode(&frame, &mut wire).unwrap();
            command::decode(
                Bytes::from(wire).slice(5..),
                &mut command::TopicCache::default(),
            )
            .unwrap()
        })
        .collect();
    let now = bus.now;
    bus.router.begin(conn, now);
    for inbound in frames {
        assert!(matches!(bus.router.apply(conn, inbound), Applied::Done));
    }
    let mut effects = Effects::default();
    bus.router.finish(&mut effects);
    let mut flushed: Vec<_> = effects
        .flush
        .iter()
        .map(|out| Arc::as_ptr(out) as usize)
        .collect();
    flushed.sort_unstable();
    let mut expected = vec![Arc::as_ptr(&a.out) as usize, Arc::as_ptr(&b.out) as usize];
    expected.sort_unstable();
    assert_eq!(flushed, expected, "a and b, once each; not the quiet one");
    // Handed over: the next batch starts with nothing to flush.
    let mut effects = Effects::default();
    bus.router.finish(&mut effects);
    assert!(effects.flush.is_empty());
    assert_eq!(deliveries(&bus.received(&a)).len(), 3);
}

#[test]
fn stats_fit_the_frame_of_whoever_asks() {
    let mut bus = Bus::new();
    let p = bus.connect("p");
    let reader = bus
        .connect_with(proto::Hello {
            max_frame_bytes: 4096,
            ..hello("reader")
        })
        .unwrap();
    let long = "a".repeat(60);
    for n in 0..200 {
        for _ in 0..=(n % 3) {
            bus.publish(&p, &format!("t.{long}.n{n}"), "");
        }
    }
    let full = bus.stats(&p);
    assert_eq!((full.topics.len(), full.omitted_topics), (200, 0));
    let trimmed = bus.stats(&reader);
    assert!(prost::Message::encoded_len(&trimmed) + 64 <= 4096);
    assert!(trimmed.omitted_topics > 0);
    assert_eq!(
        trimmed.topics.len() as u64 + trimmed.omitted_topics,
        200,
        "every topic is listed or counted"
    );
    assert!(
        trimmed.topics.iter().all(|t| t.published == 3),
        "the busiest topics are kept"
    );
    assert!(trimmed.topics.windows(2).all(|w| w[0].topic < w[1].topic));
    assert_eq!(trimmed.connections.len(), 2);
}
