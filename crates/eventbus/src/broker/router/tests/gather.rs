//! Scatter-gather: who gets a gather, its replies, and how it ends.

use std::time::Duration;

use super::*;
use crate::framed::OverflowPolicy;
use crate::proto::{GatherMiss, GatherScope};

const SNAPSHOT: &str = "control.collector.snapshot";

fn gather(seq: u64, topic: &str, scope: GatherScope, group: &str, timeout_ms: u32) -> Kind {
    let mut kind = publish(seq, PublishMode::Gather, topic, "report");
    if let Kind::Publish(p) = &mut kind {
        p.gather_scope = scope as i32;
        p.gather_group = group.into();
        p.timeout_ms = timeout_ms;
    }
    kind
}

/// The `GatherStarted` among `got`: its recipients, sorted.
fn started(got: &[Got]) -> Vec<String> {
    let mut recipients: Vec<String> = got
        .iter()
        .find_map(|g| match g {
            Got::GatherStarted(s) => Some(s.recipients.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no GatherStarted in {got:?}"));
    recipients.sort();
    recipients
}

/// The `GatherDone` among `got`: answered, and the missing with reasons.
fn done(got: &[Got]) -> Option<(u32, Vec<(String, GatherMiss)>)> {
    got.iter().find_map(|g| match g {
        Got::GatherDone(d) => {
            let mut missing: Vec<_> = d
                .missing
                .iter()
                .map(|m| (m.client_id.clone(), GatherMiss::try_from(m.reason).unwrap()))
                .collect();
            missing.sort();
            Some((d.answered, missing))
        }
        _ => None,
    })
}

/// What a recipient got: the request's correlation token.
fn token(bus: &Bus, peer: &Peer) -> u64 {
    let got = bus.received(peer);
    let tokens: Vec<u64> = got
        .iter()
        .filter_map(|g| match g {
            Got::Deliver {
                msg, delivery: 0, ..
            } => Some(msg.correlation_id),
            _ => None,
        })
        .collect();
    assert_eq!(tokens.len(), 1, "delivered once: {got:?}");
    tokens[0]
}

/// The details of the one frame in `got`: gather 1 refused for
/// `max_gather_recipients`.
fn over_the_recipient_bound(got: &[Got]) -> std::collections::HashMap<String, String> {
    let [
        Got::Error {
            seq: 1,
            code,
            details,
        },
    ] = got
    else {
        panic!("{got:?}")
    };
    assert_eq!(*code, ErrorCode::QuotaExceeded);
    assert_eq!(details["quota"], "max_gather_recipients");
    details.clone()
}

/// A bus with plain subscriber `plain`, group members `g1` and `g2` (group
/// `process`), `h1` (group `network`), and the requester `agent`.
fn fleet(configure: impl FnOnce(&mut BrokerConfig)) -> (Bus, [Peer; 5]) {
    let mut bus = Bus::with(configure);
    let plain = bus.connect("plain");
    let g1 = bus.connect("g1");
    let g2 = bus.connect("g2");
    let h1 = bus.connect("h1");
    let agent = bus.connect("agent");
    bus.subscribe(&plain, 1, "control.collector.#");
    bus.join(&g1, 1, SNAPSHOT, "process", 1);
    bus.join(&g2, 1, SNAPSHOT, "process", 1);
    // g1 also subscribes plainly: it still gets the gather once.
    bus.subscribe(&g1, 2, "control.#");
    bus.join(&h1, 1, SNAPSHOT, "network", 1);
    (bus, [plain, g1, g2, h1, agent])
}

#[test]
fn a_gather_reaches_every_recipient_once_and_ends_with_the_last_reply() {
    let (mut bus, [plain, g1, g2, h1, agent]) = fleet(|_| {});
    bus.send_done(&agent, gather(7, SNAPSHOT, GatherScope::All, "", 5_000));
    let got = bus.received(&agent);
    assert_eq!(started(&got), ["g1", "g2", "h1", "plain"]);
    assert_eq!(done(&got), None);
    let peers = [&plain, &g1, &g2, &h1];
    let tokens: Vec<u64> = peers.iter().map(|p| token(&bus, p)).collect();
    assert!(tokens.windows(2).all(|w| w[0] == w[1] && w[0] != 0));
    for (i, peer) in peers.iter().enumerate() {
        bus.reply(peer, tokens[i], 0, &format!("r{i}"));
        let got = bus.received(&agent);
        let replies: Vec<_> = got
            .iter()
            .filter_map(|g| match g {
                Got::Reply {
                    correlation: 7,
                    msg,
                } => Some(msg.source.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(replies.len(), 1, "{got:?}");
        if i < 3 {
            assert_eq!(done(&got), None, "not before the last");
        } else {
            assert_eq!(done(&got), Some((4, vec![])), "done with the last reply");
        }
    }
    // A reply to a finished gather is refused, never delivered late.
    bus.reply(&plain, tokens[0], 0, "late");
    assert_eq!(
        errors(&bus.received(&plain)),
        [(0, ErrorCode::UnknownMessage)]
    );
    assert!(bus.received(&agent).is_empty());
}

#[test]
fn scopes_pick_plain_subscribers_or_one_group() {
    let (mut bus, [plain, g1, g2, h1, agent]) = fleet(|_| {});
    bus.send_done(&agent, gather(1, SNAPSHOT, GatherScope::Plain, "", 5_000));
    assert_eq!(started(&bus.received(&agent)), ["g1", "plain"]);
    bus.send_done(
        &agent,
        gather(2, SNAPSHOT, GatherScope::Group, "process", 5_000),
    );
    assert_eq!(started(&bus.received(&agent)), ["g1", "g2"]);
    for p in [&plain, &g1, &g2, &h1] {
        bus.received(p);
    }
    bus.send_done(
        &agent,
        gather(3, SNAPSHOT, GatherScope::Group, "nobody", 5_000),
    );
    assert_eq!(
        errors(&bus.received(&agent)),
        [(3, ErrorCode::NoResponders)]
    );
    bus.send_done(
        &agent,
        gather(4, "no.such.topic", GatherScope::All, "", 5_000),
    );
    assert_eq!(
        errors(&bus.received(&agent)),
        [(4, ErrorCode::NoResponders)]
    );
    bus.send_done(
        &agent,
        gather(5, SNAPSHOT, GatherScope::Group, "Bad Name", 5_000),
    );
    assert_eq!(
        errors(&bus.received(&agent)),
        [(5, ErrorCode::InvalidArgument)]
    );
}

#[test]
fn a_recipient_that_leaves_is_reported_at_once_and_one_that_is_silent_at_the_deadline() {
    let (mut bus, [plain, g1, g2, h1, agent]) = fleet(|_| {});
    bus.send_done(&agent, gather(1, SNAPSHOT, GatherScope::All, "", 1_000));
    bus.received(&agent);
    let t = token(&bus, &plain);
    bus.reply(&plain, t, 0, "ok");
    bus.reply(&g1, t, 0, "ok");
    bus.disconnect(&g2);
    let got = bus.received(&agent);
    assert_eq!(done(&got), None, "h1 has not answered");
    let due = bus.advance(Duration::from_millis(500));
    assert!(
        due <= bus.now + Duration::from_millis(500),
        "the deadline is planned"
    );
    bus.advance(Duration::from_millis(500));
    let got = bus.received(&agent);
    assert_eq!(
        done(&got),
        Some((
            2,
            vec![
                ("g2".to_owned(), GatherMiss::Disconnected),
                ("h1".to_owned(), GatherMiss::TimedOut)
            ]
        ))
    );
    bus.reply(&h1, t, 0, "late");
    assert_eq!(errors(&bus.received(&h1)), [(0, ErrorCode::UnknownMessage)]);
}

#[test]
fn a_recipient_answers_once_and_only_recipients_answer() {
    let (mut bus, [plain, g1, g2, h1, agent]) = fleet(|_| {});
    let outsider = bus.connect("outsider");
    bus.send_done(
        &agent,
        gather(1, SNAPSHOT, GatherScope::Group, "process", 5_000),
    );
    bus.received(&agent);
    let t = token(&bus, &g1);
    bus.received(&g2);
    bus.reply(&outsider, t, 0, "forged");
    bus.reply(&plain, t, 0, "not asked");
    bus.reply(&h1, t, 0, "not asked");
    for p in [&outsider, &plain, &h1] {
        assert_eq!(errors(&bus.received(p)), [(0, ErrorCode::PermissionDenied)]);
    }
    bus.reply(&g1, t, 0, "first");
    bus.reply(&g1, t, 0, "second");
    assert_eq!(errors(&bus.received(&g1)), [(0, ErrorCode::UnknownMessage)]);
    // The same client id on a new connection is the same recipient.
    bus.disconnect(&g1);
    let g1_again = bus.connect("g1");
    bus.reply(&g1_again, t, 0, "third");
    assert_eq!(
        errors(&bus.received(&g1_again)),
        [(0, ErrorCode::UnknownMessage)]
    );
    let got = bus.received(&agent);
    let replies = got
        .iter()
        .filter(|g| matches!(g, Got::Reply { .. }))
        .count();
    assert_eq!(replies, 1, "{got:?}");
    bus.reply(&g2, t, 0, "done");
    assert_eq!(done(&bus.received(&agent)), Some((2, vec![])));
}

#[test]
fn gathers_are_bounded_per_gather_and_per_client() {
    let (mut bus, [plain, g1, g2, h1, agent]) = fleet(|c| {
        c.max_gather_recipients = 3;
        c.quotas.max_concurrent_gathers = 1;
    });
    bus.send_done(&agent, gather(1, SNAPSHOT, GatherScope::All, "", 5_000));
    over_the_recipient_bound(&bus.received(&agent));
    for p in [&plain, &g1, &g2, &h1] {
        assert!(bus.received(p).is_empty(), "nobody got it");
    }
    bus.send_done(&agent, gather(2, SNAPSHOT, GatherScope::Plain, "", 5_000));
    assert_eq!(started(&bus.received(&agent)), ["g1", "plain"]);
    bus.send_done(&agent, gather(3, SNAPSHOT, GatherScope::Plain, "", 5_000));
    let got = bus.received(&agent);
    assert_eq!(errors(&got), [(3, ErrorCode::QuotaExceeded)]);
    // Another client is not affected.
    let other = bus.connect("other");
    bus.send_done(&other, gather(4, SNAPSHOT, GatherScope::Plain, "", 5_000));
    assert_eq!(started(&bus.received(&other)).len(), 2);
}

#[test]
fn a_requester_that_leaves_ends_its_gathers_and_a_refused_delivery_is_missing() {
    let mut bus = Bus::with(|c| {
        c.subscriber.max_len = 1;
        c.subscriber.overflow = OverflowPolicy::DropIncoming;
    });
    let busy = bus.connect("busy");
    let free = bus.connect("free");
    let agent = bus.connect("agent");
    let p = bus.connect("p");
    bus.subscribe(&busy, 1, SNAPSHOT);
    bus.subscribe(&free, 1, SNAPSHOT);
    // `busy` does not read: its buffer holds one fan-out message already.
    bus.publish(&p, SNAPSHOT, "filler");
    bus.received(&free);
    bus.send_done(&agent, gather(1, SNAPSHOT, GatherScope::All, "", 5_000));
    let got = bus.received(&agent);
    assert_eq!(started(&got), ["busy", "free"]);
    let t = token(&bus, &free);
    bus.reply(&free, t, 0, "ok");
    assert_eq!(
        done(&bus.received(&agent)),
        Some((1, vec![("busy".to_owned(), GatherMiss::Refused)]))
    );
    // A requester that leaves takes its gathers with it.
    bus.send_done(&agent, gather(2, SNAPSHOT, GatherScope::Plain, "", 5_000));
    bus.received(&agent);
    let t = token(&bus, &free);
    bus.disconnect(&agent);
    bus.reply(&free, t, 0, "nobody listens");
    assert_eq!(
        errors(&bus.received(&free)),
        [(0, ErrorCode::UnknownMessage)]
    );
}

#[test]
fn a_gather_over_ten_thousand_recipients_is_refused_and_reaches_nobody() {
    let mut bus = Bus::with(|_| {});
    let limit = BrokerConfig::default().max_gather_recipients;
    let fleet: Vec<Peer> = bus.bulk(|bus| {
        (0..10_001)
            .map(|i| {
                let p = bus.connect(&format!("c{i}"));
                bus.subscribe(&p, 1, SNAPSHOT);
                p
            })
            .collect()
    });
    let agent = bus.connect("agent");
    bus.send_done(&agent, gather(1, SNAPSHOT, GatherScope::All, "", 5_000));
    let details = over_the_recipient_bound(&bus.received(&agent));
    assert_eq!(details["limit"], limit.to_string());
    for p in fleet.iter().step_by(997) {
        assert!(bus.received(p).is_empty(), "nobody got it");
    }
}

#[test]
fn a_plain_subscriber_and_a_group_on_the_same_filter_are_both_asked() {
    let mut bus = Bus::new();
    let member = bus.connect("member");
    let plain = bus.connect("plain");
    let agent = bus.connect("agent");
    bus.join(&member, 1, SNAPSHOT, "process", 1);
    bus.subscribe(&plain, 1, SNAPSHOT);
    bus.send_done(&agent, gather(1, SNAPSHOT, GatherScope::All, "", 5_000));
    assert_eq!(started(&bus.received(&agent)), ["member", "plain"]);
}
