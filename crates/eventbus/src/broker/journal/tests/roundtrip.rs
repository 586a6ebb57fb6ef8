//! Every record kind written, the journal reopened, the state compared.

use super::support::*;
use crate::broker::journal::{Counter, Counters, Lsn, MessageId, Outcome, Record};

const FAR_FUTURE_MS: u64 = u64::MAX / 2;

#[test]
fn every_record_kind_survives_a_restart() {
    let dir = temp_dir();
    let config = config(dir.path());
    let (journal, recovered, reports) = open(&config);
    assert!(recovered.queues.is_empty() && recovered.loss.is_empty());
    let a = journal.queue(&key("task.#", "workers"));
    let b = journal.queue(&key("scan.+", "scanners"));
    assert_eq!(journal.queue(&key("task.#", "workers")), a);
    let records = [
        accepted(a, 1, b"one"),
        accepted(a, 2, b"two"),
        accepted(b, 2, b"two in b"),
        accepted(a, 3, b"three"),
        Record::Delivered {
            queue: a,
            id: MessageId::new(1),
            attempt: 1,
        },
        Record::Delivered {
            queue: a,
            id: MessageId::new(2),
            attempt: 1,
        },
        Record::Requeued {
            queue: a,
            id: MessageId::new(2),
            attempt: 2,
            nacked: true,
        },
        Record::Delivered {
            queue: a,
            id: MessageId::new(3),
            attempt: 1,
        },
        Record::Settled {
            queue: a,
            id: MessageId::new(3),
            outcome: Outcome::Acked,
        },
        Record::ResultKept {
            id: MessageId::new(10),
            expires_at_ms: FAR_FUTURE_MS,
            reply: b"reply ten",
        },
        Record::ResultKept {
            id: MessageId::new(11),
            expires_at_ms: 1,
            reply: b"expired long ago",
        },
        Record::ResultKept {
            id: MessageId::new(12),
            expires_at_ms: FAR_FUTURE_MS,
            reply: b"fetched",
        },
        Record::ResultRemoved {
            id: MessageId::new(12),
        },
        Record::Counted {
            queue: b,
            counter: Counter::Rejected,
            by: 3,
        },
        Record::IdFloor {
            id: MessageId::new(1000),
        },
    ];
    let mut last = Lsn::ZERO;
    for record in records {
        last = journal.append(record).unwrap();
    }
    wait_durable(&journal, last);
    journal.close().unwrap();
    let reported: Vec<_> = reports.lock().unwrap().clone();
    assert!(reported.iter().all(|r| r.failed.is_none()));
    assert_eq!(reported.last().unwrap().last, last);

    for _ in 0..2 {
        let recovered = reopen(&config);
        assert!(recovered.loss.is_empty(), "{:?}", recovered.loss);
        assert_eq!(recovered.last_lsn, last);
        assert_eq!(recovered.id_floor, MessageId::new(1000));
        let qa = queue(&recovered, &key("task.#", "workers"));
        assert_eq!(ids(qa), [1, 2]);
        assert_eq!(
            (qa.messages[0].attempt, qa.messages[0].in_flight),
            (1, true)
        );
        assert_eq!(
            (qa.messages[1].attempt, qa.messages[1].in_flight),
            (2, false)
        );
        assert_eq!(&qa.messages[1].envelope[..], b"two");
        let want_a = Counters {
            accepted: 3,
            delivered: 3,
            acked: 1,
            nacked: 1,
            redelivered: 1,
            ..Counters::default()
        };
        assert_eq!(qa.counters, want_a);
        let qb = queue(&recovered, &key("scan.+", "scanners"));
        assert_eq!(ids(qb), [2]);
        assert_eq!(&qb.messages[0].envelope[..], b"two in b");
        assert_eq!((qb.counters.accepted, qb.counters.rejected), (1, 3));
        let results: Vec<_> = recovered
            .results
            .iter()
            .map(|r| (r.id.get(), &r.reply[..]))
            .collect();
        assert_eq!(results, [(10, &b"reply ten"[..])]);
    }
}

#[test]
fn new_records_continue_after_the_recovered_lsn() {
    let dir = temp_dir();
    let config = config(dir.path());
    let (journal, _, _) = open(&config);
    let q = journal.queue(&key("a", "g"));
    let first = journal.append(accepted(q, 1, b"x")).unwrap();
    journal.close().unwrap();
    let (journal, recovered, _) = open(&config);
    assert_eq!(recovered.last_lsn, first);
    let q = journal.queue(&key("a", "g"));
    let second = journal.append(accepted(q, 2, b"y")).unwrap();
    assert!(second > first);
    journal.close().unwrap();
    assert_eq!(ids(queue(&reopen(&config), &key("a", "g"))), [1, 2]);
}

#[test]
fn recovery_keeps_publish_order_across_segments() {
    let dir = temp_dir();
    let config = config(dir.path());
    let (journal, _, _) = open(&config);
    let qs = [
        journal.queue(&key("a.#", "g")),
        journal.queue(&key("b.#", "g")),
    ];
    let envelope = [7u8; 100];
    let mut want: [Vec<u64>; 2] = Default::default();
    let mut last = Lsn::ZERO;
    for id in 1..=300u64 {
        let q = (id % 2) as usize;
        last = journal.append(accepted(qs[q], id, &envelope)).unwrap();
        want[q].push(id);
        if id % 3 == 0 {
            let settle = want[q].remove(want[q].len() / 2);
            last = journal
                .append(Record::Settled {
                    queue: qs[q],
                    id: MessageId::new(settle),
                    outcome: Outcome::Acked,
                })
                .unwrap();
        }
    }
    wait_durable(&journal, last);
    journal.close().unwrap();
    assert!(segments(&config.dir).len() > 5, "records roll over");
    let recovered = reopen(&config);
    assert_eq!(ids(queue(&recovered, &key("a.#", "g"))), want[0]);
    assert_eq!(ids(queue(&recovered, &key("b.#", "g"))), want[1]);
}

#[test]
fn a_reply_kept_twice_keeps_the_last_and_settled_messages_stay_gone() {
    let dir = temp_dir();
    let config = config(dir.path());
    let (journal, _, _) = open(&config);
    let q = journal.queue(&key("a", "g"));
    for (id, outcome) in [
        (1, Outcome::Acked),
        (2, Outcome::DeadLettered),
        (3, Outcome::Cancelled),
        (4, Outcome::Expired),
        (5, Outcome::Evicted),
    ] {
        journal.append(accepted(q, id, b"m")).unwrap();
        journal
            .append(Record::Settled {
                queue: q,
                id: MessageId::new(id),
                outcome,
            })
            .unwrap();
    }
    for reply in [&b"first"[..], b"second"] {
        journal
            .append(Record::ResultKept {
                id: MessageId::new(9),
                expires_at_ms: FAR_FUTURE_MS,
                reply,
            })
            .unwrap();
    }
    journal.close().unwrap();
    let recovered = reopen(&config);
    let q = queue(&recovered, &key("a", "g"));
    assert!(q.messages.is_empty());
    let c = q.counters;
    assert_eq!(
        (
            c.acked,
            c.dead_lettered,
            c.cancelled,
            c.expired,
            c.evicted,
            c.dropped
        ),
        (1, 1, 1, 1, 1, 1)
    );
    assert_eq!(&recovered.results[0].reply[..], b"second");
    assert_eq!(recovered.id_floor, MessageId::new(9));
}
