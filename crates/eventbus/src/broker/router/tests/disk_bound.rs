//! The journal's disk bounds under each overflow policy: the total
//! (`durability.max_disk_bytes`) and each durable queue's own
//! (`queue.max_disk_bytes`), one queue at its bound leaving the others
//! alone, and the stats rule holding through evictions and drops.

use super::durable::{
    TASKS, answered, confirmed, declare, join, journal, open, queue_stats, receive_until, tasks,
};
use super::*;
use crate::broker::QueueOverride;
use crate::broker::journal::tests::support::temp_dir;
use crate::framed::OverflowPolicy;

const AUDIT: &str = "task.audit";

/// A 1,000-byte body whose first bytes say which publish it was.
fn body(seq: u64) -> String {
    format!("{seq:03}{}", "x".repeat(997))
}

/// A confirmed publish of `body(seq)` on `topic`: its answer.
fn confirmed_to(bus: &mut Bus, peer: &Peer, seq: u64, topic: &str) -> Result<u64, ErrorCode> {
    let applied = bus.publish_as(peer, seq, PublishMode::Confirmed, topic, &body(seq));
    assert!(matches!(applied, Applied::Done));
    answer(&receive_until(bus, peer, answered(seq)), seq)
}

/// Creates the durable queue `workers` on `topic` (a member joins and
/// leaves; the queue outlives it).
fn declare_on(bus: &mut Bus, topic: &str) {
    let d = bus.connect("declarer");
    bus.join(&d, 1, topic, "workers", 1);
    bus.disconnect(&d);
}

fn stats_of(bus: &mut Bus, peer: &Peer, topic: &str) -> proto::QueueStats {
    bus.stats(peer)
        .queues
        .into_iter()
        .find(|q| q.topic == topic && q.group == "workers")
        .expect("the queue is listed")
}

/// accepted = acked + dead-lettered + evicted + cancelled + depth + in
/// flight, since the first start (`docs/stats.md`).
fn assert_totals_add_up(q: &proto::QueueStats) {
    let t = q.totals.expect("a durable queue has totals");
    assert_eq!(
        t.accepted,
        t.acked + t.dead_lettered + t.evicted + t.cancelled + q.depth + q.in_flight,
        "{q:?}"
    );
}

/// The journal bytes one message of `body` takes, measured in a journal
/// of its own.
fn record_bytes() -> u64 {
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |_| {});
    declare(&mut bus);
    let p = bus.connect("p");
    confirmed_to(&mut bus, &p, 1, TASKS).unwrap();
    journal(&bus).usage().live_bytes
}

/// The payloads still waiting in `TASKS`, in order (a worker takes them all).
fn waiting(bus: &mut Bus) -> Vec<String> {
    let w = bus.connect("w");
    let got = tasks(&join(bus, &w, 7, TASKS, 100));
    got.into_iter()
        .map(|(_, p, _, _)| p[..3].to_owned())
        .collect()
}

#[test]
fn the_disk_budget_refuses_or_makes_room_as_the_queue_policy_says() {
    for overflow in [OverflowPolicy::Reject, OverflowPolicy::DropOldest] {
        let dir = temp_dir();
        let configure = |c: &mut BrokerConfig| {
            c.durability.max_disk_bytes = 1_000;
            c.queue.overflow = overflow;
        };
        let (mut bus, _) = open(dir.path(), configure);
        declare(&mut bus);
        let p = bus.connect("p");
        let body = "x".repeat(300);
        let mut accepted = 0;
        let mut refused = None;
        for seq in 1..=5 {
            match confirmed(&mut bus, &p, seq, &body) {
                Ok(_) => accepted += 1,
                Err(code) => refused = Some(code),
            }
        }
        let q = queue_stats(&mut bus, &p);
        match overflow {
            OverflowPolicy::Reject => {
                assert_eq!(refused, Some(ErrorCode::Storage));
                assert!(accepted < 5 && q.depth == accepted);
            }
            _ => {
                assert_eq!((refused, accepted), (None, 5));
                assert!(q.depth < 5 && q.dropped == 5 - q.depth, "{q:?}");
            }
        }
        assert!(journal(&bus).usage().live_bytes <= 1_000);
    }
}

#[test]
fn each_overflow_policy_applies_at_a_queues_own_disk_bound() {
    let len = record_bytes();
    // Room for two messages in the queue; the total has room for far more.
    let bound = 2 * len + len / 2;
    for overflow in [
        OverflowPolicy::Reject,
        OverflowPolicy::Block,
        OverflowPolicy::DropOldest,
        OverflowPolicy::DropIncoming,
    ] {
        let dir = temp_dir();
        let (mut bus, _) = open(dir.path(), |c| {
            c.queue.max_disk_bytes = bound;
            c.queue.overflow = overflow;
        });
        declare(&mut bus);
        let p = bus.connect("p");
        let answers: Vec<_> = (1..=5)
            .map(|seq| confirmed_to(&mut bus, &p, seq, TASKS))
            .collect();
        assert!(
            journal(&bus).usage().live_bytes <= bound,
            "{overflow:?}: the queue stays within its bound"
        );
        let q = queue_stats(&mut bus, &p);
        assert_totals_add_up(&q);
        assert_eq!(q.depth, 2, "{overflow:?}: {q:?}");
        let t = q.totals.unwrap();
        match overflow {
            OverflowPolicy::Reject | OverflowPolicy::Block => {
                // Refused, typed, and counted by the queue; nothing else moved.
                let refused: Vec<_> = answers.iter().filter_map(|a| a.err()).collect();
                assert_eq!(refused, [ErrorCode::Storage; 3], "{overflow:?}");
                assert_eq!((q.rejected, t.rejected, t.accepted), (3, 3, 2));
                assert_eq!((q.dropped, t.evicted), (0, 0));
                assert_eq!(waiting(&mut bus), ["001", "002"]);
            }
            OverflowPolicy::DropOldest => {
                // Every publish taken; the oldest made room for the newest.
                assert!(answers.iter().all(Result::is_ok), "{answers:?}");
                assert_eq!((q.dropped, t.evicted, t.accepted, q.rejected), (3, 3, 5, 0));
                assert_eq!(waiting(&mut bus), ["004", "005"]);
            }
            _ => {
                // Every publish answered Ok, the ones past the bound dropped.
                assert!(answers.iter().all(Result::is_ok), "{answers:?}");
                assert_eq!((q.dropped, t.dropped, t.accepted, t.evicted), (3, 3, 2, 0));
                assert_eq!(waiting(&mut bus), ["001", "002"]);
            }
        }
    }
}

#[test]
fn a_queue_at_its_disk_bound_leaves_other_queues_alone() {
    let len = record_bytes();
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |c| {
        c.queue.overrides.push(QueueOverride {
            filter: TASKS.into(),
            max_disk_bytes: Some(len + len / 2),
            ..Default::default()
        });
    });
    declare_on(&mut bus, TASKS);
    declare_on(&mut bus, AUDIT);
    let p = bus.connect("p");
    assert!(confirmed_to(&mut bus, &p, 1, TASKS).is_ok());
    assert_eq!(
        confirmed_to(&mut bus, &p, 2, TASKS),
        Err(ErrorCode::Storage)
    );
    // The other queue has no bound of its own: it takes all of them.
    for seq in 3..=8 {
        assert!(confirmed_to(&mut bus, &p, seq, AUDIT).is_ok(), "{seq}");
    }
    let (tasks_q, audit_q) = (stats_of(&mut bus, &p, TASKS), stats_of(&mut bus, &p, AUDIT));
    assert_eq!((tasks_q.depth, tasks_q.rejected), (1, 1));
    assert_eq!(
        (audit_q.depth, audit_q.rejected, audit_q.dropped),
        (6, 0, 0)
    );
    assert_totals_add_up(&tasks_q);
    assert_totals_add_up(&audit_q);
}

#[test]
fn the_total_disk_bound_still_applies_under_queue_bounds() {
    let len = record_bytes();
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |c| {
        // Each queue may take two; both together only three.
        c.queue.max_disk_bytes = 2 * len + len / 2;
        c.durability.max_disk_bytes = 3 * len + len / 2;
    });
    declare_on(&mut bus, TASKS);
    declare_on(&mut bus, AUDIT);
    let p = bus.connect("p");
    assert!(confirmed_to(&mut bus, &p, 1, TASKS).is_ok());
    assert!(confirmed_to(&mut bus, &p, 2, TASKS).is_ok());
    assert!(confirmed_to(&mut bus, &p, 3, AUDIT).is_ok());
    // Within its own bound, past the total: refused all the same.
    assert_eq!(
        confirmed_to(&mut bus, &p, 4, AUDIT),
        Err(ErrorCode::Storage)
    );
    let audit_q = stats_of(&mut bus, &p, AUDIT);
    assert_eq!((audit_q.depth, audit_q.rejected), (1, 1));
    assert!(journal(&bus).usage().live_bytes <= 3 * len + len / 2);
    // Settling frees room under both bounds.
    let w = bus.connect("w");
    let got = tasks(&join(&mut bus, &w, 1, AUDIT, 1));
    bus.ack(&w, got[0].0, 0);
    assert!(confirmed_to(&mut bus, &p, 5, AUDIT).is_ok());
}
