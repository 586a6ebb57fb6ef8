//! Queue groups: dispatch, settling, redelivery, dead letters, FIFO,
//! overflow policies, blocking and cancel.

use std::time::Duration;

use super::*;
use crate::framed::OverflowPolicy;

const TASKS: &str = "control.task.process";

fn message_of(got: &[Got]) -> Vec<(u64, String, u32)> {
    got.iter()
        .filter_map(|g| match g {
            Got::Deliver { delivery, msg, .. } => Some((*delivery, payload(msg), msg.attempt)),
            _ => None,
        })
        .collect()
}

fn queue_stats(bus: &mut Bus, peer: &Peer) -> proto::QueueStats {
    let stats = bus.stats(peer);
    assert_eq!(stats.queues.len(), 1, "one group: {:?}", stats.queues);
    stats.queues[0].clone()
}

#[test]
fn tasks_go_round_robin_to_members_with_credit_and_wait_for_credit() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let b = bus.connect("b");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 1);
    bus.join(&b, 1, TASKS, "g", 2);
    for n in 0..5 {
        bus.publish(&p, TASKS, &format!("t{n}"));
    }
    let got_a = deliveries(&bus.received(&a));
    let got_b = deliveries(&bus.received(&b));
    assert_eq!(
        got_a.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
        ["t0"]
    );
    assert_eq!(
        got_b.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(),
        ["t1", "t2"]
    );
    let q = queue_stats(&mut bus, &p);
    assert_eq!((q.depth, q.in_flight, q.delivered), (2, 3, 3));

    // An ack frees credit: the next waiting task goes at once.
    bus.ack(&a, got_a[0].0, 7);
    let got = bus.received(&a);
    assert!(got.contains(&ok(7)));
    assert_eq!(deliveries(&got)[0].1, "t3");
    let stats = bus.stats(&p);
    let a_row = stats.connections.iter().find(|c| c.id == "a").unwrap();
    assert_eq!((a_row.acked, a_row.in_flight, a_row.delivered), (1, 1, 2));
    assert_eq!(stats.queues[0].acked, 1);
    assert_eq!(stats.queues[0].members[0].acked, 1);
}

#[test]
fn a_delivery_is_settled_only_by_its_holder_and_only_once() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let b = bus.connect("b");
    bus.join(&a, 1, TASKS, "g", 1);
    bus.publish(&b, TASKS, "t");
    let (delivery, _) = deliveries(&bus.received(&a))[0].clone();
    bus.ack(&b, delivery, 3);
    assert_eq!(errors(&bus.received(&b)), [(3, ErrorCode::UnknownDelivery)]);
    bus.ack(&a, delivery, 4);
    assert_eq!(bus.received(&a), [ok(4)]);
    bus.ack(&a, delivery, 5);
    let got = bus.received(&a);
    assert_eq!(errors(&got), [(5, ErrorCode::UnknownDelivery)]);
    let Got::Error { details, .. } = &got[0] else {
        unreachable!()
    };
    assert_eq!(details["delivery_id"], delivery.to_string());
    // An ack that asks for no answer gets none, even refused... and a fine
    // one neither.
    bus.ack(&a, delivery, 0);
    assert_eq!(errors(&bus.received(&a)), [(0, ErrorCode::UnknownDelivery)]);
}

#[test]
fn a_holder_that_disconnects_gives_its_tasks_back_in_order_with_the_attempt_raised() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 3);
    for n in 0..3 {
        bus.publish(&p, TASKS, &format!("t{n}"));
    }
    assert_eq!(deliveries(&bus.received(&a)).len(), 3);
    bus.disconnect(&a);
    assert_eq!(
        bus.received(&a).last(),
        Some(&Got::Goodbye("client closed the connection".into()))
    );
    assert!(a.cancel.is_cancelled());
    let q = queue_stats(&mut bus, &p);
    assert_eq!((q.depth, q.in_flight, q.redelivered), (3, 0, 3));

    let b = bus.connect("b");
    let got = message_of(&bus.join(&b, 1, TASKS, "g", 3));
    let order: Vec<_> = got
        .iter()
        .map(|(_, p, attempt)| (p.as_str(), *attempt))
        .collect();
    assert_eq!(order, [("t0", 2), ("t1", 2), ("t2", 2)]);
}

#[test]
fn leaving_the_group_gives_tasks_back_and_an_idle_group_is_forgotten() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let b = bus.connect("b");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 1);
    bus.join(&b, 1, TASKS, "g", 1);
    bus.publish(&p, TASKS, "t");
    let holder = if deliveries(&bus.received(&a)).is_empty() {
        &b
    } else {
        &a
    };
    let other = if holder.conn == a.conn { &b } else { &a };
    bus.received(other);
    bus.send_done(
        holder,
        Kind::Unsubscribe(proto::Unsubscribe { seq: 9, sid: 1 }),
    );
    assert_eq!(bus.received(holder), [ok(9)]);
    let got = message_of(&bus.received(other));
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].1.as_str(), got[0].2), ("t", 2));
    bus.ack(other, got[0].0, 0);
    bus.send_done(
        other,
        Kind::Unsubscribe(proto::Unsubscribe { seq: 0, sid: 1 }),
    );
    assert!(bus.stats(&p).queues.is_empty(), "forgotten when idle");
    bus.send_done(
        other,
        Kind::Unsubscribe(proto::Unsubscribe { seq: 4, sid: 1 }),
    );
    assert_eq!(
        errors(&bus.received(other)),
        [(4, ErrorCode::UnknownSubscription)]
    );
}

#[test]
fn ack_timeout_takes_a_delivery_back_tells_its_holder_and_redelivers_it() {
    let mut bus = Bus::with(|c| c.queue.ack_timeout_ms = 100);
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 1);
    let id = bus.submit(&p, 1, TASKS, "slow").unwrap();
    let (delivery, _) = deliveries(&bus.received(&a))[0].clone();

    let due = bus.advance(Duration::from_millis(99));
    assert!(
        due <= bus.now + Duration::from_millis(1),
        "the deadline is next"
    );
    assert!(bus.received(&a).is_empty(), "not yet");
    bus.advance(Duration::from_millis(1));
    let got = bus.received(&a);
    assert_eq!(got[0], Got::Cancel { message_id: id });
    let again = message_of(&got);
    assert_eq!(again.len(), 1, "redelivered to the only member");
    assert_eq!((again[0].1.as_str(), again[0].2), ("slow", 2));
    assert_ne!(again[0].0, delivery, "a new delivery id");
    bus.ack(&a, delivery, 2);
    assert_eq!(errors(&bus.received(&a)), [(2, ErrorCode::UnknownDelivery)]);
    assert_eq!(queue_stats(&mut bus, &p).redelivered, 1);
}

#[test]
fn no_ack_timeout_keeps_a_delivery_forever() {
    let mut bus = Bus::with(|c| c.queue.ack_timeout_ms = 0);
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 1);
    bus.publish(&p, TASKS, "t");
    bus.received(&a);
    bus.advance_alive(Duration::from_secs(3600), Duration::from_secs(1), &[&a, &p]);
    assert!(message_of(&bus.received(&a)).is_empty());
    assert_eq!(queue_stats(&mut bus, &p).in_flight, 1);
}

#[test]
fn max_attempts_dead_letters_with_headers_and_fails_the_requester() {
    let mut bus = Bus::with(|c| c.queue.max_attempts = 2);
    let a = bus.connect("a");
    let p = bus.connect("p");
    let watcher = bus.connect("watcher");
    bus.subscribe(&watcher, 5, "_sys.dead-letter.g");
    bus.join(&a, 1, TASKS, "g", 1);
    let id = bus.submit(&p, 1, TASKS, "poison").unwrap();
    for attempt in 1..=2 {
        let got = message_of(&bus.received(&a));
        assert_eq!(got[0].2, attempt);
        bus.nack(&a, got[0].0, true, 0);
    }
    assert!(message_of(&bus.received(&a)).is_empty(), "not a third time");
    let got = bus.received(&p);
    let Some(Got::Error { seq, code, details }) = got.first() else {
        panic!("the requester is told: {got:?}")
    };
    assert_eq!((*seq, *code), (1, ErrorCode::DeadLettered));
    assert_eq!(details["message_id"], id.to_string());
    assert_eq!(details["attempts"], "2");
    assert_eq!(details["reason"], "nacked; 2 attempts used");
    let dead = bus.received(&watcher);
    let Some(Got::Deliver { msg, sid: 5, .. }) = dead.first() else {
        panic!("dead letter published: {dead:?}")
    };
    assert_eq!(msg.topic, "_sys.dead-letter.g");
    assert_eq!(
        msg.headers["x-dead-letter-reason"],
        "nacked; 2 attempts used"
    );
    assert_eq!(msg.headers["x-attempts"], "2");
    assert_eq!(msg.headers["x-original-topic"], TASKS);
    assert_eq!(msg.headers["x-group"], "g");
    assert_eq!((msg.correlation_id, msg.reply_to.as_str()), (0, ""));
    let q = bus.stats(&p).queues;
    let g = q.iter().find(|q| q.group == "g").unwrap();
    assert_eq!((g.dead_lettered, g.nacked, g.redelivered), (1, 2, 1));
}

#[test]
fn a_nack_without_requeue_dead_letters_at_once() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 1);
    bus.submit(&p, 1, TASKS, "bad").unwrap();
    let (delivery, _) = deliveries(&bus.received(&a))[0].clone();
    bus.nack(&a, delivery, false, 6);
    assert_eq!(bus.received(&a), [ok(6)]);
    let got = bus.received(&p);
    let Some(Got::Error { code, details, .. }) = got.first() else {
        panic!("{got:?}")
    };
    assert_eq!(*code, ErrorCode::DeadLettered);
    assert_eq!(details["reason"], "rejected by the consumer");
}

#[test]
fn unlimited_attempts_never_dead_letter() {
    let mut bus = Bus::with(|c| c.queue.max_attempts = 0);
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 1);
    bus.publish(&p, TASKS, "t");
    for attempt in 1..=20 {
        let got = message_of(&bus.received(&a));
        assert_eq!(got[0].2, attempt);
        bus.nack(&a, got[0].0, true, 0);
    }
    assert_eq!(queue_stats(&mut bus, &p).dead_lettered, 0);
}

#[test]
fn concurrency_one_starts_tasks_one_at_a_time_in_publish_order() {
    let mut bus = Bus::with(|c| c.queue.concurrency = 1);
    let a = bus.connect("a");
    let b = bus.connect("b");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 10);
    bus.join(&b, 1, TASKS, "g", 10);
    for n in 0..4 {
        bus.publish(&p, TASKS, &format!("t{n}"));
    }
    let mut order = Vec::new();
    for _ in 0..4 {
        let mut started: Vec<_> = [&a, &b]
            .into_iter()
            .flat_map(|m| {
                deliveries(&bus.received(m))
                    .into_iter()
                    .map(move |d| (m, d))
            })
            .collect();
        assert_eq!(started.len(), 1, "one task in flight at a time");
        let (member, (delivery, task)) = started.pop().unwrap();
        order.push(task);
        let member = member.clone();
        bus.ack(&member, delivery, 0);
    }
    assert_eq!(order, ["t0", "t1", "t2", "t3"]);
}

#[test]
fn a_full_reject_queue_refuses_the_publish_and_names_itself() {
    let mut bus = Bus::with(|c| c.queue.max_len = 2);
    let a = bus.connect("a");
    let p = bus.connect("p");
    let plain = bus.connect("plain");
    bus.subscribe(&plain, 1, "control.#");
    bus.join(&a, 1, TASKS, "g", 1);
    for n in 0..3 {
        assert!(
            bus.confirmed(&p, n + 1, TASKS, "t").is_ok(),
            "1 in flight + 2 waiting"
        );
    }
    bus.received(&plain);
    bus.publish_as(&p, 9, PublishMode::Confirmed, TASKS, "t")
        .assert_done();
    let got = bus.received(&p);
    let Some(Got::Error {
        seq: 9,
        code,
        details,
    }) = got.first()
    else {
        panic!("{got:?}")
    };
    assert_eq!(*code, ErrorCode::QueueFull);
    assert_eq!(details["group"], "g");
    assert_eq!(details["topic"], TASKS);
    assert_eq!(details["max_len"], "2");
    assert!(
        bus.received(&plain).is_empty(),
        "a refused publish reaches nobody"
    );
    let stats = bus.stats(&p);
    assert_eq!(stats.queues[0].rejected, 1);
    assert_eq!(stats.published, 3, "the refused publish is not counted");
    // A fire-and-forget publisher is told under seq 0.
    bus.publish(&p, TASKS, "t");
    assert_eq!(errors(&bus.received(&p)), [(0, ErrorCode::QueueFull)]);
}

#[test]
fn drop_oldest_evicts_the_oldest_waiting_task() {
    let mut bus = Bus::with(|c| {
        c.queue.max_len = 2;
        c.queue.overflow = OverflowPolicy::DropOldest;
    });
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 1);
    for n in 0..5 {
        assert!(bus.confirmed(&p, n + 1, TASKS, &format!("t{n}")).is_ok());
    }
    let first = deliveries(&bus.received(&a));
    assert_eq!(first[0].1, "t0");
    bus.ack(&a, first[0].0, 0);
    let next = deliveries(&bus.received(&a));
    assert_eq!(next[0].1, "t3", "t1 and t2 were evicted");
    let q = queue_stats(&mut bus, &p);
    assert_eq!((q.dropped, q.depth), (2, 1));
}

#[test]
fn drop_incoming_discards_the_new_task_and_counts_it() {
    let mut bus = Bus::with(|c| {
        c.queue.max_len = 1;
        c.queue.overflow = OverflowPolicy::DropIncoming;
    });
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 1);
    for n in 0..4 {
        assert!(bus.confirmed(&p, n + 1, TASKS, &format!("t{n}")).is_ok());
    }
    let first = deliveries(&bus.received(&a));
    bus.ack(&a, first[0].0, 0);
    assert_eq!(deliveries(&bus.received(&a))[0].1, "t1");
    let stats = bus.stats(&p);
    assert_eq!((stats.queues[0].dropped, stats.dropped), (2, 2));
}

#[test]
fn block_parks_the_publish_until_there_is_room_or_its_timeout() {
    let mut bus = Bus::with(|c| {
        c.queue.max_len = 1;
        c.queue.overflow = OverflowPolicy::Block;
        c.queue.block_timeout_ms = 500;
    });
    let a = bus.connect("a");
    let p = bus.connect("p");
    let other = bus.connect("other");
    bus.subscribe(&other, 1, "events.#");
    bus.join(&a, 1, TASKS, "g", 1);
    assert!(bus.confirmed(&p, 1, TASKS, "t0").is_ok(), "in flight");
    assert!(bus.confirmed(&p, 2, TASKS, "t1").is_ok(), "waiting");
    let Applied::Parked(parked) = bus.publish_as(&p, 3, PublishMode::Confirmed, TASKS, "t2") else {
        panic!("a full blocking queue parks the publish")
    };
    assert_eq!(parked.timeout, Duration::from_millis(500));
    assert!(bus.received(&p).is_empty(), "no answer while parked");
    // Everyone else carries on.
    bus.publish(&other, "events.x", "e");
    assert_eq!(deliveries(&bus.received(&other)).len(), 1);
    // Still full: parked again.
    let conn = p.conn;
    let again = bus.run(|r, _| r.retry_parked(conn, parked, Duration::from_millis(10)));
    let Applied::Parked(parked) = again else {
        panic!("still no room")
    };
    // Room: the retry publishes it.
    let t0 = deliveries(&bus.received(&a))[0].0;
    bus.ack(&a, t0, 0);
    let done = bus.run(|r, _| r.retry_parked(conn, parked, Duration::from_millis(20)));
    done.assert_done();
    assert!(answer(&bus.received(&p), 3).is_ok());

    // Full again, and the timeout passes.
    let Applied::Parked(parked) = bus.publish_as(&p, 4, PublishMode::Confirmed, TASKS, "t3") else {
        panic!("parked")
    };
    bus.run(|r, _| r.retry_parked(conn, parked, Duration::from_millis(500)))
        .assert_done();
    let got = bus.received(&p);
    let Some(Got::Error {
        seq: 4,
        code,
        details,
    }) = got.first()
    else {
        panic!("{got:?}")
    };
    assert_eq!(*code, ErrorCode::BlockTimeout);
    assert_eq!(details["group"], "g");
    assert_eq!(details["waited_ms"], "500");
    assert_eq!(details["max_len"], "1");
    assert_eq!(queue_stats(&mut bus, &p).rejected, 1);
}

#[test]
fn a_direct_send_is_never_parked_by_a_full_blocking_queue() {
    let mut bus = Bus::with(|c| {
        c.queue.max_len = 1;
        c.queue.overflow = OverflowPolicy::Block;
    });
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 1);
    bus.publish(&p, TASKS, "t0");
    bus.publish(&p, TASKS, "t1");
    let mut direct = publish(7, PublishMode::Confirmed, TASKS, "d");
    if let Kind::Publish(p) = &mut direct {
        p.target_client = "a".into();
    }
    bus.send(&p, direct).assert_done();
    assert!(answer(&bus.received(&p), 7).is_ok());
}

#[test]
fn cancel_removes_a_waiting_task_and_fails_its_requester() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let p = bus.connect("p");
    let admin = bus.connect("admin");
    bus.join(&a, 1, TASKS, "g", 1);
    bus.publish(&p, TASKS, "busy");
    let id = bus.submit(&p, 2, TASKS, "waiting").unwrap();
    bus.cancel(&p, id, 3);
    assert_eq!(
        bus.received(&p),
        [
            Got::Error {
                seq: 2,
                code: ErrorCode::Cancelled,
                details: [("message_id".to_owned(), id.to_string())].into()
            },
            Got::Ok {
                seq: 3,
                message_id: id,
                result_kept: false,
            }
        ]
    );
    let q = queue_stats(&mut bus, &p);
    assert_eq!((q.cancelled, q.depth), (1, 0));
    bus.cancel(&admin, id, 4);
    let got = bus.received(&admin);
    assert_eq!(errors(&got), [(4, ErrorCode::UnknownMessage)]);
    // Asked for no answer: a successful cancel sends none.
    let id = bus.submit(&p, 5, TASKS, "again").unwrap();
    bus.cancel(&p, id, 0);
    assert_eq!(errors(&bus.received(&p)), [(5, ErrorCode::Cancelled)]);
}

#[test]
fn only_the_publisher_or_an_admin_cancels_a_message() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let p = bus.connect("p");
    let other = bus.connect("other");
    bus.join(&a, 1, TASKS, "g", 1);
    let running = bus.submit(&p, 1, TASKS, "running").unwrap();
    let waiting = bus.submit(&p, 2, TASKS, "waiting").unwrap();
    for id in [running, waiting] {
        bus.cancel(&other, id, 9);
        let got = bus.received(&other);
        let [
            Got::Error {
                seq: 9,
                code,
                details,
            },
        ] = got.as_slice()
        else {
            panic!("{got:?}")
        };
        assert_eq!(*code, ErrorCode::PermissionDenied);
        assert_eq!(details["message_id"], id.to_string());
    }
    let q = queue_stats(&mut bus, &p);
    assert_eq!(
        (q.cancelled, q.depth, q.in_flight),
        (0, 1, 1),
        "nothing removed"
    );
    assert!(errors(&bus.received(&p)).is_empty());
    // The same client id on a new connection is still the publisher.
    bus.disconnect(&p);
    let p2 = bus.connect("p");
    bus.cancel(&p2, waiting, 3);
    assert!(answer(&bus.received(&p2), 3).is_ok());
    bus.cancel(&p2, running, 4);
    assert!(answer(&bus.received(&p2), 4).is_ok());
}

#[test]
fn cancel_withdraws_a_task_in_flight_and_frees_its_credit() {
    let mut bus = Bus::new();
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 1);
    let id = bus.submit(&p, 1, TASKS, "running").unwrap();
    bus.submit(&p, 2, TASKS, "next").unwrap();
    let (delivery, _) = deliveries(&bus.received(&a))[0].clone();
    bus.cancel(&p, id, 3);
    let got = bus.received(&p);
    assert_eq!(errors(&got), [(1, ErrorCode::Cancelled)]);
    assert!(got.contains(&Got::Ok {
        seq: 3,
        message_id: id,
        result_kept: false,
    }));
    let got = bus.received(&a);
    assert_eq!(got[0], Got::Cancel { message_id: id });
    assert_eq!(
        deliveries(&got)[0].1,
        "next",
        "the credit went to the next task"
    );
    bus.ack(&a, delivery, 4);
    assert_eq!(errors(&bus.received(&a)), [(4, ErrorCode::UnknownDelivery)]);
    let q = queue_stats(&mut bus, &p);
    assert_eq!((q.cancelled, q.nacked, q.in_flight), (1, 1, 1));
}

#[test]
fn per_pattern_overrides_apply_to_the_matching_groups_only() {
    let mut bus = Bus::with(|c| {
        c.queue.overrides.push(crate::broker::QueueOverride {
            filter: "control.#".into(),
            max_len: Some(1),
            ..Default::default()
        });
    });
    let a = bus.connect("a");
    let p = bus.connect("p");
    bus.join(&a, 1, TASKS, "g", 1);
    bus.join(&a, 2, "events.task", "e", 1);
    for n in 0..3 {
        bus.publish(&p, "events.task", &format!("e{n}"));
    }
    bus.publish(&p, TASKS, "t0");
    bus.publish(&p, TASKS, "t1");
    assert!(bus.received(&p).is_empty());
    assert_eq!(bus.confirmed(&p, 1, TASKS, "t2"), Err(ErrorCode::QueueFull));
}

impl Applied {
    fn assert_done(self) {
        assert!(matches!(self, Applied::Done), "expected done: {self:?}");
    }
}
