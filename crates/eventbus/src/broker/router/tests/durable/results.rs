//! Results by id against a real journal: the confirmation that says a reply
//! is kept, a reply fetched by id after a crash, waiters answered by the
//! reply, a failure of the request or their deadline, and their quota.

use super::*;

/// A confirmed request (`submit`) into the durable queue: its message id.
fn submit(bus: &mut Bus, peer: &Peer, seq: u64, payload: &str) -> u64 {
    let applied = bus.publish_as(peer, seq, PublishMode::RequestConfirmed, TASKS, payload);
    assert!(matches!(applied, Applied::Done));
    answer(&receive_until(bus, peer, answered(seq)), seq).expect("accepted")
}

fn ask_result(bus: &mut Bus, peer: &Peer, seq: u64, id: u64, timeout_ms: u32) {
    bus.send_done(
        peer,
        Kind::ResultRequest(proto::ResultRequest {
            seq,
            message_id: id,
            timeout_ms,
        }),
    );
}

fn reply_payload(got: &[Got], seq: u64) -> Option<String> {
    got.iter().find_map(|g| match g {
        Got::Reply { correlation, msg } if *correlation == seq => {
            Some(String::from_utf8_lossy(&msg.payload).into_owned())
        }
        _ => None,
    })
}

/// Whether the `Ok` answering `seq` says the request's reply is kept by id.
fn result_kept(got: &[Got], seq: u64) -> bool {
    got.iter()
        .find_map(|g| match g {
            Got::Ok {
                seq: s,
                result_kept,
                ..
            } if *s == seq => Some(*result_kept),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Ok for {seq} in {got:?}"))
}

#[test]
fn only_a_confirmed_request_into_a_durable_group_is_told_its_reply_is_kept() {
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |c| {
        c.queue.overrides.push(crate::broker::QueueOverride {
            filter: "memory.#".into(),
            durable: Some(false),
            ..Default::default()
        });
    });
    declare(&mut bus);
    let w = bus.connect("w");
    bus.join(&w, 1, "memory.task", "workers", 1);
    let r = bus.connect("requester");
    let ask = |bus: &mut Bus, seq: u64, mode: PublishMode, topic: &str| {
        let applied = bus.publish_as(&r, seq, mode, topic, "x");
        assert!(matches!(applied, Applied::Done));
        receive_until(bus, &r, answered(seq))
    };
    let durable_request = ask(&mut bus, 1, PublishMode::RequestConfirmed, TASKS);
    assert!(result_kept(&durable_request, 1));
    let durable_publish = ask(&mut bus, 2, PublishMode::Confirmed, TASKS);
    assert!(!result_kept(&durable_publish, 2), "not a request");
    let memory_request = ask(&mut bus, 3, PublishMode::RequestConfirmed, "memory.task");
    assert!(!result_kept(&memory_request, 3), "not a durable group");
}

#[test]
fn a_reply_to_a_request_the_broker_lost_on_a_crash_reaches_its_requester_by_id() {
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |_| {});
    declare(&mut bus);
    let r = bus.connect("requester");
    let id = submit(&mut bus, &r, 1, "scan /etc");
    let w = bus.connect("w");
    assert_eq!(tasks(&join(&mut bus, &w, 1, TASKS, 1)).len(), 1);
    synced(&bus);
    crash(bus);

    let (mut bus, _) = open(dir.path(), |_| {});
    let w = bus.connect("w");
    let got = tasks(&join(&mut bus, &w, 1, TASKS, 1));
    let [(delivery, payload, 2, correlation)] = got.as_slice() else {
        panic!("redelivered at attempt 2: {got:?}");
    };
    assert_eq!(payload, "scan /etc");
    // The requester is back before the answer, and waits for it by id.
    let r = bus.connect("requester");
    ask_result(&mut bus, &r, 7, id, 60_000);
    assert_eq!(bus.received(&r), []);
    bus.send_done(
        &w,
        Kind::Reply(proto::Reply {
            correlation_id: *correlation,
            delivery_id: *delivery,
            message: Some(Box::new(proto::Envelope {
                payload: Bytes::from_static(b"3 findings"),
                ..Default::default()
            })),
            seq: 4,
        }),
    );
    assert_eq!(
        answer(&receive_until(&bus, &w, answered(4)), 4),
        Ok(0),
        "the reply is taken"
    );
    assert_eq!(
        reply_payload(&bus.received(&r), 7).as_deref(),
        Some("3 findings")
    );
    // Asked again (after another restart): it is kept.
    synced(&bus);
    crash(bus);
    let (mut bus, recovered) = open(dir.path(), |_| {});
    assert_eq!(recovered.results.len(), 1);
    let r = bus.connect("requester");
    ask_result(&mut bus, &r, 8, id, 0);
    assert_eq!(
        reply_payload(&bus.received(&r), 8).as_deref(),
        Some("3 findings")
    );
    // Nobody else gets it; an unknown id is unknown.
    let other = bus.connect("other");
    ask_result(&mut bus, &other, 9, id, 0);
    assert_eq!(
        errors(&bus.received(&other)),
        [(9, ErrorCode::PermissionDenied)]
    );
    ask_result(&mut bus, &r, 10, id + 1000, 0);
    assert_eq!(errors(&bus.received(&r)), [(10, ErrorCode::UnknownMessage)]);
}

#[test]
fn a_result_waiter_hears_that_its_request_was_cancelled_or_dead_lettered() {
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |_| {});
    declare(&mut bus);
    let r = bus.connect("requester");
    let id = submit(&mut bus, &r, 1, "scan /etc");
    ask_result(&mut bus, &r, 2, id, 60_000);
    bus.send_done(
        &r,
        Kind::Cancel(proto::Cancel {
            seq: 0,
            message_id: id,
        }),
    );
    let got = receive_until(&bus, &r, answered(2));
    assert_eq!(answer(&got, 2), Err(ErrorCode::Cancelled));

    let id = submit(&mut bus, &r, 3, "scan /var");
    ask_result(&mut bus, &r, 4, id, 60_000);
    let w = bus.connect("w");
    let [(delivery, ..)] = tasks(&join(&mut bus, &w, 1, TASKS, 1))[..] else {
        panic!("one task");
    };
    bus.send_done(
        &w,
        Kind::Nack(proto::Nack {
            delivery_id: delivery,
            requeue: false,
            seq: 0,
        }),
    );
    let got = receive_until(&bus, &r, answered(4));
    assert_eq!(answer(&got, 4), Err(ErrorCode::DeadLettered));
    assert_eq!(bus.router.results.waiting_conns().count(), 0);
    assert_eq!(bus.router.conns.get(r.conn).unwrap().pending_requests, 0);
}

#[test]
fn a_result_waiter_times_out_and_a_kept_result_expires() {
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |c| c.durability.result_ttl_ms = 1);
    declare(&mut bus);
    let r = bus.connect("requester");
    let id = submit(&mut bus, &r, 1, "slow");
    ask_result(&mut bus, &r, 2, id, 1_000);
    bus.advance_alive(Duration::from_secs(2), Duration::from_millis(500), &[&r]);
    let got: Vec<_> = bus
        .received(&r)
        .into_iter()
        .filter(|g| *g != Got::Heartbeat)
        .collect();
    assert_eq!(errors(&got), [(2, ErrorCode::Timeout)]);
    // Answered: kept for 1 ms of wall time, then gone with `Expired`.
    let w = bus.connect("w");
    let got = tasks(&join(&mut bus, &w, 1, TASKS, 1));
    bus.reply(&w, got[0].3, got[0].0, "done");
    assert!(
        reply_payload(&bus.received(&r), 1).is_some(),
        "the live requester"
    );
    std::thread::sleep(Duration::from_millis(5));
    bus.advance_alive(
        Duration::from_millis(600),
        Duration::from_millis(300),
        &[&r, &w],
    );
    ask_result(&mut bus, &r, 3, id, 0);
    assert_eq!(errors(&bus.received(&r)), [(3, ErrorCode::Expired)]);
}

#[test]
fn result_waits_count_against_the_askers_quota_and_go_with_its_connection() {
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |c| c.quotas.max_pending_requests = 3);
    declare(&mut bus);
    let r = bus.connect("requester");
    // One pending request of its own, then waits for its result with the
    // longest timeout there is, again and again.
    let id = submit(&mut bus, &r, 1, "scan /etc");
    for seq in 10..12 {
        ask_result(&mut bus, &r, seq, id, u32::MAX);
    }
    // The request and two waits fill its quota of 3: the next wait is
    // refused, typed, and nothing else about it changes.
    ask_result(&mut bus, &r, 12, id, u32::MAX);
    assert_eq!(answer(&bus.received(&r), 12), Err(ErrorCode::QuotaExceeded));
    // Somebody else is not touched by it.
    let other = bus.connect("other");
    submit(&mut bus, &other, 1, "scan /var");
    // Gone with its connection: no waiter is left behind.
    assert_eq!(bus.router.results.waiting_conns().count(), 2);
    bus.disconnect(&r);
    assert_eq!(bus.router.results.waiting_conns().count(), 0);
}
