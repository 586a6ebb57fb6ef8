//! Durable queues against a real journal in a temp dir: confirmation after
//! the sync, recovery after a crash (order, attempts, what stays gone),
//! `max_attempts` across restarts and persisted counters; results by id in
//! [`results`] (the disk bounds are in `disk_bound.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::broker::journal::tests::support::{DEADLINE, temp_dir, wait_durable};
use crate::broker::journal::{Journal, Recovered};

mod hostile;
mod results;

pub(super) const TASKS: &str = "task.scan";

/// A bus whose queue groups are durable, journaled in `dir`, after
/// recovering what the journal there holds.
pub(super) fn open(dir: &Path, configure: impl FnOnce(&mut BrokerConfig)) -> (Bus, Recovered) {
    let mut bus = Bus::with(|c| {
        c.queue.durable = true;
        c.data_dir = Some(dir.join("data"));
        c.queue.ack_timeout_ms = 0;
        configure(c);
    });
    let confirmations = bus.confirmations.clone();
    let (journal, recovered) = Journal::open(bus.config.journal_config(), move |report| {
        confirmations.synced(&report);
    })
    .expect("journal opens");
    bus.run(|r, _| r.attach_journal(journal, &recovered));
    (bus, recovered)
}

/// Creates the durable queue (a member joins and leaves): it outlives its
/// members, so what is published next waits in it.
pub(super) fn declare(bus: &mut Bus) {
    let d = bus.connect("declarer");
    bus.join(&d, 1, TASKS, "workers", 1);
    bus.disconnect(&d);
}

pub(super) fn journal(bus: &Bus) -> &Journal {
    &bus.router.durable.as_ref().expect("durable").journal
}

/// Waits until every record appended so far is on disk.
pub(super) fn synced(bus: &Bus) {
    if let Some(lsn) = bus.router.durable.as_ref().and_then(|d| d.appended) {
        wait_durable(journal(bus), lsn);
    }
}

/// What `peer` got once the journal has reported every record appended so
/// far, and the held confirmations and deliveries it covers are out (a
/// durable queue's delivery leaves after its record's sync).
pub(super) fn settle(bus: &Bus, peer: &Peer) -> Vec<Got> {
    if let Some(lsn) = bus.router.durable.as_ref().and_then(|d| d.appended) {
        let deadline = Instant::now() + DEADLINE;
        while bus.confirmations.reported() < lsn {
            assert!(
                Instant::now() < deadline,
                "the journal never reported {lsn}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    bus.received(peer)
}

/// Joins `peer` to group `workers` on `filter`; returns what it got once
/// the journal caught up ([`settle`]).
pub(super) fn join(bus: &mut Bus, peer: &Peer, sid: u64, filter: &str, prefetch: u32) -> Vec<Got> {
    let mut got = bus.join(peer, sid, filter, "workers", prefetch);
    got.extend(settle(bus, peer));
    got
}

/// Kills the bus as SIGKILL would: what the journal had not synced is lost.
fn crash(mut bus: Bus) {
    let journal = bus.router.detach_journal().expect("durable");
    journal.crash();
}

/// Everything `peer` is sent until `done` holds of it, polled (the journal
/// releases confirmations from its own thread).
pub(super) fn receive_until(bus: &Bus, peer: &Peer, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
    let deadline = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    loop {
        got.extend(bus.received(peer));
        if done(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "timed out; got {got:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub(super) fn answered(seq: u64) -> impl Fn(&[Got]) -> bool {
    move |got| {
        got.iter()
            .any(|g| matches!(g, Got::Ok { seq: s, .. } | Got::Error { seq: s, .. } if *s == seq))
    }
}

/// A confirmed durable publish, waiting for its answer.
pub(super) fn confirmed(
    bus: &mut Bus,
    peer: &Peer,
    seq: u64,
    payload: &str,
) -> Result<u64, ErrorCode> {
    let applied = bus.publish_as(peer, seq, PublishMode::Confirmed, TASKS, payload);
    assert!(matches!(applied, Applied::Done));
    answer(&receive_until(bus, peer, answered(seq)), seq)
}

/// Deliveries among `got`: (delivery id, payload, attempt, correlation).
pub(super) fn tasks(got: &[Got]) -> Vec<(u64, String, u32, u64)> {
    got.iter()
        .filter_map(|g| match g {
            Got::Deliver { delivery, msg, .. } => Some((
                *delivery,
                String::from_utf8_lossy(&msg.payload).into_owned(),
                msg.attempt,
                msg.correlation_id,
            )),
            _ => None,
        })
        .collect()
}

fn payloads(t: &[(u64, String, u32, u64)]) -> Vec<(&str, u32)> {
    t.iter().map(|(_, p, a, _)| (p.as_str(), *a)).collect()
}

pub(super) fn queue_stats(bus: &mut Bus, peer: &Peer) -> proto::QueueStats {
    let stats = bus.stats(peer);
    stats
        .queues
        .into_iter()
        .find(|q| q.topic == TASKS && q.group == "workers")
        .expect("the queue is listed")
}

#[test]
fn a_durable_confirmation_and_its_delivery_wait_for_the_sync_that_covers_their_records() {
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |_| {});
    let p = bus.connect("p");
    let w = bus.connect("w");
    bus.join(&w, 1, TASKS, "workers", 1);
    journal(&bus).gate().close();
    let arrived = journal(&bus).gate().arrived();
    bus.send_done(&p, publish(5, PublishMode::Confirmed, TASKS, "t1"));
    journal(&bus).gate().wait_arrived(arrived + 1);
    assert_eq!(bus.received(&p), [], "not confirmed while its sync is held");
    // Not delivered either: a consumer never holds a message whose
    // `Delivered` record a crash could lose (it would come back at the
    // same attempt).
    assert_eq!(bus.received(&w), [], "not delivered while its sync is held");
    journal(&bus).gate().open();
    let got = receive_until(&bus, &p, answered(5));
    assert!(answer(&got, 5).unwrap() > 0);
    assert_eq!(payloads(&tasks(&settle(&bus, &w))), [("t1", 1)]);
}

#[test]
fn a_confirmed_ack_waits_for_its_sync_and_is_never_undone_by_a_crash() {
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |_| {});
    declare(&mut bus);
    let p = bus.connect("p");
    confirmed(&mut bus, &p, 1, "t1").unwrap();
    confirmed(&mut bus, &p, 2, "t2").unwrap();
    let w = bus.connect("w");
    let got = tasks(&join(&mut bus, &w, 1, TASKS, 2));
    assert_eq!(payloads(&got), [("t1", 1), ("t2", 1)]);
    journal(&bus).gate().close();
    let arrived = journal(&bus).gate().arrived();
    bus.ack(&w, got[0].0, 7);
    journal(&bus).gate().wait_arrived(arrived + 1);
    assert_eq!(bus.received(&w), [], "not confirmed while its sync is held");
    journal(&bus).gate().open();
    assert!(answer(&receive_until(&bus, &w, answered(7)), 7).is_ok());
    // Confirmed, then a crash: t1 stays acked, t2 (unacked) comes back.
    crash(bus);
    let (mut bus, _) = open(dir.path(), |_| {});
    let w = bus.connect("w");
    let got = tasks(&join(&mut bus, &w, 1, TASKS, 10));
    assert_eq!(payloads(&got), [("t2", 2)]);
}

#[test]
fn after_a_crash_confirmed_messages_come_back_in_order_and_those_in_flight_at_attempt_plus_one() {
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |_| {});
    declare(&mut bus);
    let p = bus.connect("p");
    let mut ids = Vec::new();
    for (seq, t) in (1..).zip(["t1", "t2", "t3", "t4", "t5"]) {
        ids.push(confirmed(&mut bus, &p, seq, t).unwrap());
    }
    let w = bus.connect("w");
    let got = tasks(&join(&mut bus, &w, 1, TASKS, 2));
    assert_eq!(payloads(&got), [("t1", 1), ("t2", 1)]);
    bus.ack(&w, got[0].0, 0);
    synced(&bus);
    crash(bus);

    let (mut bus, recovered) = open(dir.path(), |_| {});
    assert_eq!(recovered.queues.len(), 1);
    let w = bus.connect("w");
    let got = tasks(&join(&mut bus, &w, 1, TASKS, 10));
    assert_eq!(
        payloads(&got),
        [("t2", 2), ("t3", 2), ("t4", 1), ("t5", 1)],
        "t1 was acked; t2 and t3 (handed out after the ack) were in flight"
    );
    let p = bus.connect("p");
    let next = confirmed(&mut bus, &p, 9, "t6").unwrap();
    assert!(
        ids.iter().all(|&old| next > old),
        "a restarted broker never issues an id again: {next} after {ids:?}"
    );
}

#[test]
fn acked_dead_lettered_and_cancelled_messages_stay_gone_after_a_restart() {
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |_| {});
    declare(&mut bus);
    let p = bus.connect("p");
    let cancelled = {
        for (seq, t) in (1..).zip(["acked", "rejected"]) {
            confirmed(&mut bus, &p, seq, t).unwrap();
        }
        confirmed(&mut bus, &p, 3, "cancelled").unwrap()
    };
    confirmed(&mut bus, &p, 4, "kept").unwrap();
    bus.cancel(&p, cancelled, 5);
    assert_eq!(
        answer(&receive_until(&bus, &p, answered(5)), 5),
        Ok(cancelled)
    );
    let w = bus.connect("w");
    let got = tasks(&join(&mut bus, &w, 1, TASKS, 2));
    assert_eq!(payloads(&got), [("acked", 1), ("rejected", 1)]);
    bus.ack(&w, got[0].0, 0);
    bus.nack(&w, got[1].0, false, 0);
    bus.disconnect(&w);
    synced(&bus);
    // A clean stop this time: the journal is closed, not crashed.
    drop(bus);

    let (mut bus, _) = open(dir.path(), |_| {});
    let w = bus.connect("w");
    let got = tasks(&join(&mut bus, &w, 1, TASKS, 10));
    assert_eq!(
        payloads(&got),
        [("kept", 2)],
        "kept had been handed to w when it left"
    );
    let q = queue_stats(&mut bus, &w);
    let totals = q.totals.expect("a durable queue has totals");
    assert!(q.durable);
    assert_eq!(
        (
            totals.accepted,
            totals.acked,
            totals.dead_lettered,
            totals.cancelled
        ),
        (4, 1, 1, 1)
    );
}

#[test]
fn max_attempts_counts_the_deliveries_before_a_restart() {
    let dir = temp_dir();
    let configure = |c: &mut BrokerConfig| c.queue.max_attempts = 2;
    let (mut bus, _) = open(dir.path(), configure);
    declare(&mut bus);
    let p = bus.connect("p");
    confirmed(&mut bus, &p, 1, "poison").unwrap();
    for attempt in 1..=2 {
        let w = bus.connect("w");
        let got = tasks(&join(&mut bus, &w, 1, TASKS, 1));
        assert_eq!(payloads(&got), [("poison", attempt)]);
        synced(&bus);
        crash(bus);
        bus = open(dir.path(), configure).0;
    }
    let w = bus.connect("w");
    assert_eq!(tasks(&join(&mut bus, &w, 1, TASKS, 1)), []);
    let q = queue_stats(&mut bus, &w);
    assert_eq!((q.depth, q.in_flight, q.dead_lettered), (0, 0, 1));
    let totals = q.totals.unwrap();
    assert_eq!(
        (totals.accepted, totals.delivered, totals.dead_lettered),
        (1, 2, 1)
    );
}

#[test]
fn persisted_counters_add_up_across_restarts() {
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |_| {});
    declare(&mut bus);
    let p = bus.connect("p");
    for seq in 1..=4 {
        confirmed(&mut bus, &p, seq, "t").unwrap();
    }
    let w = bus.connect("w");
    let got = tasks(&join(&mut bus, &w, 1, TASKS, 3));
    bus.ack(&w, got[0].0, 0);
    bus.ack(&w, got[1].0, 0);
    bus.nack(&w, got[2].0, true, 0);
    synced(&bus);
    crash(bus);

    let (mut bus, _) = open(dir.path(), |_| {});
    let w = bus.connect("w");
    let got = tasks(&join(&mut bus, &w, 1, TASKS, 1));
    bus.ack(&w, got[0].0, 0);
    let q = queue_stats(&mut bus, &w);
    let t = q.totals.unwrap();
    assert_eq!((t.accepted, t.acked, t.nacked, t.redelivered), (4, 3, 1, 3));
    // Across restarts: accepted = acked + dead-lettered + evicted +
    // cancelled + depth + in flight.
    assert_eq!(
        t.accepted,
        t.acked + t.dead_lettered + t.evicted + t.cancelled + q.depth + q.in_flight
    );
    // Since this start: one ack.
    assert_eq!((q.acked, q.depth, q.in_flight), (1, 0, 1));
}

#[test]
fn a_queue_that_is_not_durable_writes_nothing() {
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |c| {
        c.queue.durable = false;
        c.queue.overrides.push(crate::broker::QueueOverride {
            filter: "audit.#".into(),
            durable: Some(true),
            ..Default::default()
        });
    });
    let p = bus.connect("p");
    let w = bus.connect("w");
    bus.join(&w, 1, TASKS, "workers", 1);
    confirmed(&mut bus, &p, 1, "in memory").unwrap();
    assert_eq!(bus.router.durable.as_ref().unwrap().appended, None);
    assert!(!queue_stats(&mut bus, &p).durable);
}

#[test]
fn a_drained_durable_queue_keeps_its_totals_in_stats_after_a_restart() {
    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |_| {});
    declare(&mut bus);
    let p = bus.connect("p");
    confirmed(&mut bus, &p, 1, "t1").unwrap();
    let w = bus.connect("w");
    let got = tasks(&join(&mut bus, &w, 1, TASKS, 1));
    bus.ack(&w, got[0].0, 0);
    bus.disconnect(&w);
    synced(&bus);
    drop(bus);

    // Nothing is left in it, and no member has joined since the restart:
    // the queue is listed from its persisted totals alone.
    let (mut bus, _) = open(dir.path(), |_| {});
    let p = bus.connect("p");
    let q = queue_stats(&mut bus, &p);
    assert!(q.durable);
    let t = q.totals.expect("persisted totals");
    assert_eq!((t.accepted, t.acked), (1, 1));
    assert_eq!(
        (q.depth, q.in_flight, q.acked),
        (0, 0, 0),
        "nothing since this start"
    );
}

#[test]
fn stats_show_the_journal_and_what_its_recovery_could_not_read() {
    use crate::broker::journal::tests::support::{RawEntry, write_segment};
    use crate::broker::journal::{MessageId as JournalId, QueueRef, Record};

    let mut plain = Bus::new();
    let p = plain.connect("p");
    assert_eq!(
        plain.stats(&p).journal,
        None,
        "no journal, no journal stats"
    );

    let dir = temp_dir();
    let (mut bus, _) = open(dir.path(), |c| c.durability.max_disk_bytes = 1 << 20);
    declare(&mut bus);
    let p = bus.connect("p");
    confirmed(&mut bus, &p, 1, "t1").unwrap();
    confirmed(&mut bus, &p, 2, "t2").unwrap();
    let j = bus
        .stats(&p)
        .journal
        .expect("a durable bus has journal stats");
    assert!(j.syncs >= 1 && j.records >= 2, "{j:?}");
    assert!(j.live_bytes > 0 && j.file_bytes >= j.live_bytes, "{j:?}");
    assert_eq!(j.max_disk_bytes, 1 << 20);
    assert!(!j.disk_full && j.failed_records == 0, "{j:?}");
    assert_eq!(
        (
            j.recovery_lost_bytes,
            j.recovery_damaged,
            j.recovery_skipped_records
        ),
        (0, 0, 0)
    );
    crash(bus);

    // Damage to find: a segment whose one record names a queue it never
    // defined (skipped), then five bytes of a torn frame (cut off).
    let data = dir.path().join("data");
    let record = Record::Delivered {
        queue: QueueRef(7),
        id: JournalId::new(1),
        attempt: 1,
    };
    write_segment(&data, 900, 1000, None, &[(1000, RawEntry::Record(record))]);
    let damaged = crate::broker::journal::tests::support::segments(&data)
        .pop()
        .expect("the segment just written");
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes.extend_from_slice(&[9, 0, 0, 0, 1]);
    std::fs::write(&damaged, bytes).unwrap();

    let (mut bus, _) = open(dir.path(), |_| {});
    let p = bus.connect("p");
    let j = bus.stats(&p).journal.expect("journal stats");
    assert_eq!(
        (
            j.recovery_lost_bytes,
            j.recovery_damaged,
            j.recovery_skipped_records
        ),
        (5, 1, 1),
        "{j:?}"
    );
    let w = bus.connect("w");
    let got = tasks(&join(&mut bus, &w, 1, TASKS, 10));
    assert_eq!(
        payloads(&got),
        [("t1", 1), ("t2", 1)],
        "what came before the damage"
    );

    // A full disk shows, and makes the broker's health degraded.
    use crate::broker::monitor::HealthStatus;
    assert_eq!(bus.router.monitor_health(1).status, HealthStatus::Ready);
    journal(&bus).mark_disk_full();
    assert!(bus.stats(&p).journal.unwrap().disk_full);
    let health = bus.router.monitor_health(1);
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(
        health.reasons.iter().any(|r| r.contains("disk is full")),
        "{health:?}"
    );
    let overview = bus.router.monitor_overview(std::time::Instant::now());
    assert!(overview.journal.is_some_and(|j| j.disk_full));
}
