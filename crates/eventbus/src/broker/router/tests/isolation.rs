//! Identities, permissions and quotas: one client at a limit is refused
//! with a typed error, and nobody else notices.

use super::*;
use crate::broker::QueueOverride;
use crate::broker::hash_secret;

/// An auth file: `procmond` (secret `p`), limited; `agent` (secret `a`),
/// an admin; `reader` (secret `r`), who may subscribe to events only.
fn users() -> String {
    format!(
        r#"
[[user]]
name = "procmond"
secret_sha256 = "{p}"
client_ids = ["procmond-*"]
groups = ["process"]
direct = ["agent-*"]
stats = false
[user.publish]
allow = ["events.process.#", "control.reply.#"]
[user.subscribe]
allow = ["control.task.#"]
deny = ["control.task.secret"]
[user.quotas]
max_pending_requests = 1
max_subscriptions = 2

[[user]]
name = "agent"
secret_sha256 = "{a}"
admin = true

[[user]]
name = "reader"
secret_sha256 = "{r}"
[user.subscribe]
allow = ["events.#"]
"#,
        p = hash_secret(b"p"),
        a = hash_secret(b"a"),
        r = hash_secret(b"r"),
    )
}

fn as_user(id: &str, user: &str, secret: &str) -> proto::Hello {
    proto::Hello {
        user: user.into(),
        secret: secret.as_bytes().to_vec().into(),
        ..hello(id)
    }
}

fn subscribe(seq: u64, filter: &str, group: &str) -> Kind {
    Kind::Subscribe(proto::Subscribe {
        seq,
        sid: seq,
        filter: filter.into(),
        group: group.into(),
        prefetch: 1,
        fallback: false,
    })
}

#[test]
fn an_identity_connects_only_as_its_client_ids() {
    let text = users();
    let mut bus = Bus::with_auth(|_| {}, Some(&text));
    let p = bus
        .connect_with(as_user("procmond-1", "procmond", "p"))
        .unwrap();
    assert_eq!(p.welcome.identity, "procmond");
    assert!(matches!(
        bus.connect_with(as_user("agent-1", "procmond", "p")),
        Err(HandshakeRefusal::ClientIdNotAllowed { .. })
    ));
    assert!(matches!(
        bus.connect_with(as_user("procmond-2", "procmond", "wrong")),
        Err(HandshakeRefusal::AuthenticationFailed)
    ));
    assert!(matches!(
        bus.connect_with(hello("procmond-3")),
        Err(HandshakeRefusal::AuthenticationFailed)
    ));
}

#[test]
fn permissions_are_enforced_per_identity() {
    let text = users();
    let mut bus = Bus::with_auth(|_| {}, Some(&text));
    let p = bus
        .connect_with(as_user("procmond-1", "procmond", "p"))
        .unwrap();
    let agent = bus.connect_with(as_user("agent-1", "agent", "a")).unwrap();
    let reader = bus
        .connect_with(as_user("reader-1", "reader", "r"))
        .unwrap();
    bus.subscribe(&reader, 1, "events.#");
    // Publish: allowed topics only, both paths.
    assert!(bus.confirmed(&p, 1, "events.process.start", "x").is_ok());
    assert_eq!(
        bus.confirmed(&p, 2, "events.net.up", "x"),
        Err(ErrorCode::PermissionDenied)
    );
    bus.publish(&p, "events.net.up", "fast");
    assert_eq!(
        errors(&bus.received(&p)),
        [(0, ErrorCode::PermissionDenied)]
    );
    let got = deliveries(&bus.received(&reader));
    assert_eq!(got.len(), 1, "only the allowed publish: {got:?}");
    // Subscribe: covered by an allow, overlapping no deny.
    for (seq, filter, group, code) in [
        (3, "control.task.process", "process", None),
        (4, "control.task.#", "", Some(ErrorCode::PermissionDenied)),
        (5, "events.#", "", Some(ErrorCode::PermissionDenied)),
        (
            6,
            "control.task.net",
            "network",
            Some(ErrorCode::PermissionDenied),
        ),
    ] {
        bus.send_done(&p, subscribe(seq, filter, group));
        let got = bus.received(&p);
        match code {
            None => assert_eq!(got, [ok(seq)], "{filter}"),
            Some(code) => assert_eq!(errors(&got), [(seq, code)], "{filter}"),
        }
    }
    // Direct sends: to allowed client ids only.
    let mut direct = publish(7, PublishMode::Confirmed, "control.reply.x", "d");
    if let Kind::Publish(pb) = &mut direct {
        pb.target_client = "reader-1".into();
    }
    bus.send_done(&p, direct);
    assert_eq!(
        errors(&bus.received(&p)),
        [(7, ErrorCode::PermissionDenied)]
    );
    // Stats.
    bus.send_done(&p, Kind::StatsRequest(proto::StatsRequest { seq: 8 }));
    assert_eq!(
        errors(&bus.received(&p)),
        [(8, ErrorCode::PermissionDenied)]
    );
    assert!(bus.stats(&agent).connections.len() == 3);
    // An admin cancels anyone's message; others only their own.
    let worker = bus.connect_with(as_user("agent-2", "agent", "a")).unwrap();
    bus.join(&worker, 1, "jobs", "j", 1);
    bus.send_done(
        &reader,
        publish(11, PublishMode::Confirmed, "jobs", "from reader"),
    );
    let job = answer(&bus.received(&reader), 11).unwrap();
    bus.cancel(&p, job, 12);
    assert_eq!(
        errors(&bus.received(&p)),
        [(12, ErrorCode::PermissionDenied)]
    );
    bus.cancel(&agent, job, 13);
    assert!(answer(&bus.received(&agent), 13).is_ok());
}

#[test]
fn quotas_refuse_the_client_at_its_limit_and_nobody_else() {
    let text = users();
    let mut bus = Bus::with_auth(
        |c| {
            c.quotas.max_queued_messages = 3;
            c.quotas.max_direct_unsettled = 1;
        },
        Some(&text),
    );
    let p = bus
        .connect_with(as_user("procmond-1", "procmond", "p"))
        .unwrap();
    let agent = bus.connect_with(as_user("agent-1", "agent", "a")).unwrap();
    let worker = bus.connect_with(as_user("agent-2", "agent", "a")).unwrap();
    // Pending requests (procmond's own quota: 1).
    bus.subscribe(&worker, 1, "control.reply.#");
    bus.send_done(&p, publish(1, PublishMode::Request, "control.reply.a", "q"));
    bus.send_done(&p, publish(2, PublishMode::Request, "control.reply.a", "q"));
    let got = bus.received(&p);
    let [
        Got::Error {
            seq: 2,
            code,
            details,
        },
    ] = got.as_slice()
    else {
        panic!("{got:?}")
    };
    assert_eq!(*code, ErrorCode::QuotaExceeded);
    assert_eq!(details["quota"], "max_pending_requests");
    assert_eq!(details["limit"], "1");
    // Another identity is not affected.
    bus.send_done(
        &agent,
        publish(3, PublishMode::Request, "control.reply.a", "q"),
    );
    bus.send_done(
        &agent,
        publish(4, PublishMode::Request, "control.reply.a", "q"),
    );
    assert!(errors(&bus.received(&agent)).is_empty());
    // Subscriptions (procmond: 2).
    bus.send_done(&p, subscribe(5, "control.task.a", ""));
    bus.send_done(&p, subscribe(6, "control.task.b", ""));
    bus.send_done(&p, subscribe(7, "control.task.c", ""));
    assert_eq!(
        errors(&bus.received(&p)),
        [(7, ErrorCode::SubscriptionLimit)]
    );
    // Queued messages (3 for everyone): nobody consumes `jobs`.
    bus.received(&worker);
    bus.join(&worker, 2, "jobs", "j", 1);
    for seq in 10..=13 {
        bus.send_done(&agent, publish(seq, PublishMode::Confirmed, "jobs", "x"));
    }
    let got = bus.received(&agent);
    assert_eq!(
        errors(&got),
        [(13, ErrorCode::QuotaExceeded)],
        "1 in flight + 2 waiting"
    );
    let other = bus.connect_with(as_user("agent-3", "agent", "a")).unwrap();
    assert!(bus.confirmed(&other, 14, "jobs", "x").is_ok(), "per client");
    // Unsettled direct messages sent (1).
    for seq in 20..=21 {
        let mut direct = publish(seq, PublishMode::Confirmed, "control.reply.d", "d");
        if let Kind::Publish(pb) = &mut direct {
            pb.target_client = "agent-2".into();
        }
        bus.send_done(&agent, direct);
    }
    assert_eq!(
        errors(&bus.received(&agent)),
        [(21, ErrorCode::QuotaExceeded)]
    );
    // Settled: the slot is free again.
    let held = bus.received(&worker);
    let direct = held
        .iter()
        .find_map(|g| match g {
            Got::Deliver {
                sid: 0, delivery, ..
            } => Some(*delivery),
            _ => None,
        })
        .expect("the direct message");
    bus.ack(&worker, direct, 0);
    let mut again = publish(22, PublishMode::Confirmed, "control.reply.d", "d");
    if let Kind::Publish(pb) = &mut again {
        pb.target_client = "agent-2".into();
    }
    bus.send_done(&agent, again);
    assert!(answer(&bus.received(&agent), 22).is_ok());
}

#[test]
fn a_queue_group_on_a_leading_wildcard_must_be_declared() {
    let mut bus = Bus::new();
    let c = bus.connect("c");
    for filter in ["#", "+.task", "+"] {
        bus.send_done(&c, subscribe(1, filter, "g"));
        assert_eq!(
            errors(&bus.received(&c)),
            [(1, ErrorCode::PermissionDenied)],
            "{filter}"
        );
    }
    // Plain subscriptions on them are fine; so is a group on `events.#`.
    bus.subscribe(&c, 2, "#");
    bus.join(&c, 3, "events.#", "g", 1);
    let mut bus = Bus::with(|c| {
        c.queue.overrides.push(QueueOverride {
            filter: "#".into(),
            max_len: Some(10),
            ..Default::default()
        });
    });
    let c = bus.connect("c");
    bus.join(&c, 1, "#", "audit", 1);
}

#[test]
fn the_queue_byte_bound_and_the_memory_ceiling_refuse_only_queued_publishes() {
    let mut bus = Bus::with(|c| {
        c.queue.max_bytes = 2_000;
        c.memory.max_queued_bytes = 3_500;
    });
    let worker = bus.connect("worker");
    let watcher = bus.connect("watcher");
    let p = bus.connect("p");
    bus.join(&worker, 1, "a", "g", 1);
    bus.join(&worker, 2, "b", "h", 1);
    bus.subscribe(&watcher, 1, "events.#");
    // Each message counts as its largest delivery frame: about 765 bytes.
    let payload = "x".repeat(700);
    assert!(bus.confirmed(&p, 1, "a", &payload).is_ok(), "in flight");
    assert!(bus.confirmed(&p, 2, "a", &payload).is_ok());
    assert!(bus.confirmed(&p, 3, "a", &payload).is_ok());
    assert_eq!(
        bus.confirmed(&p, 4, "a", &payload),
        Err(ErrorCode::QueueFull),
        "over 2,000 bytes waiting in g"
    );
    let stats = bus.stats(&p);
    let g = stats.queues.iter().find(|q| q.group == "g").unwrap();
    assert!(g.bytes > 1_000 && g.bytes <= 2_000, "{}", g.bytes);
    // Across groups: the broker-wide ceiling (waiting and in flight).
    assert!(bus.confirmed(&p, 5, "b", &payload).is_ok());
    assert_eq!(
        bus.confirmed(&p, 6, "b", &payload),
        Err(ErrorCode::MemoryPressure)
    );
    // Pub/sub and acks go on.
    bus.publish(&p, "events.x", "still flows");
    assert_eq!(deliveries(&bus.received(&watcher)).len(), 1);
    let held = deliveries(&bus.received(&worker));
    bus.ack(&worker, held[0].0, 0);
    assert!(bus.confirmed(&p, 7, "b", &payload).is_ok(), "room again");
    // The resident-memory alarm refuses queued publishes the same way.
    bus.router.sample_memory(Some(10), Some(5));
    assert_eq!(
        bus.confirmed(&p, 8, "a", "y"),
        Err(ErrorCode::MemoryPressure)
    );
    bus.publish(&p, "events.x", "still flows");
    assert_eq!(deliveries(&bus.received(&watcher)).len(), 1);
    bus.router.sample_memory(Some(4), Some(5));
    bus.router.sample_memory(None, Some(5));
    assert!(bus.confirmed(&p, 9, "events.y", "y").is_ok());
}

#[test]
fn a_gather_needs_the_right_to_publish_on_its_topic() {
    let text = users();
    let mut bus = Bus::with_auth(|_| {}, Some(&text));
    let p1 = bus
        .connect_with(as_user("procmond-1", "procmond", "p"))
        .unwrap();
    let p2 = bus
        .connect_with(as_user("procmond-2", "procmond", "p"))
        .unwrap();
    let agent = bus.connect_with(as_user("agent-1", "agent", "a")).unwrap();
    for p in [&p1, &p2] {
        bus.send_done(p, subscribe(1, "control.task.process", "process"));
        assert_eq!(bus.received(p), [ok(1)]);
    }
    let gather = |seq: u64| {
        let mut kind = publish(seq, PublishMode::Gather, "control.task.process", "status?");
        if let Kind::Publish(pb) = &mut kind {
            pb.gather_scope = proto::GatherScope::Group as i32;
            pb.gather_group = "process".into();
            pb.timeout_ms = 5_000;
        }
        kind
    };
    // `procmond` may not publish on the group's topic: no gather either,
    // and no member hears of it.
    bus.send_done(&p1, gather(2));
    assert_eq!(
        errors(&bus.received(&p1)),
        [(2, ErrorCode::PermissionDenied)]
    );
    assert!(bus.received(&p2).is_empty());
    // An identity that may publish there asks both members.
    bus.send_done(&agent, gather(3));
    let got = bus.received(&agent);
    let Some(Got::GatherStarted(started)) = got.first() else {
        panic!("{got:?}")
    };
    let mut recipients = started.recipients.clone();
    recipients.sort();
    assert_eq!(recipients, ["procmond-1", "procmond-2"]);
}
