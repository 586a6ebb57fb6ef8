//! Compaction: live records kept in order, settled segments deleted,
//! counters and the id floor carried over, a crash mid-way harmless.

use std::fs;

use super::model::{Model, Owned};
use super::support::*;
use crate::broker::journal::{
    Counter, Journal, JournalConfig, Lsn, MessageId, Outcome, QueueKey, Record,
};

/// Appends `record` to `journal` and to `model`.
fn append(journal: &Journal, model: &mut Model, key: Option<&QueueKey>, record: Record<'_>) -> Lsn {
    model.apply(&Owned::new(&record, key.cloned()));
    journal.append(record).unwrap()
}

/// Two queues with 400 messages, most settled, some redelivered, and the
/// highest id settled; returns the model of it.
fn busy_journal(journal: &Journal) -> Model {
    let keys = [key("a.#", "g"), key("b.#", "g")];
    let qs = keys.clone().map(|k| journal.queue(&k));
    let mut model = Model::default();
    let mut last = Lsn::ZERO;
    for id in 1..=400u64 {
        let i = (id % 2) as usize;
        let (q, k) = (qs[i], Some(&keys[i]));
        let envelope = vec![id as u8; 40 + (id % 7) as usize];
        last = append(journal, &mut model, k, accepted(q, id, &envelope));
        let id = MessageId::new(id);
        append(
            journal,
            &mut model,
            k,
            Record::Delivered {
                queue: q,
                id,
                attempt: 1,
            },
        );
        if id.get() % 10 == 3 {
            append(
                journal,
                &mut model,
                k,
                Record::Requeued {
                    queue: q,
                    id,
                    attempt: 2,
                    nacked: false,
                },
            );
        } else if id.get() % 10 != 7 || id.get() == 397 {
            let outcome = Outcome::Acked;
            append(
                journal,
                &mut model,
                k,
                Record::Settled {
                    queue: q,
                    id,
                    outcome,
                },
            );
        }
    }
    // Fill a few segments with counters only, so the messages are all in
    // closed segments.
    for _ in 0..200 {
        last = append(
            journal,
            &mut model,
            Some(&keys[0]),
            Record::Counted {
                queue: qs[0],
                counter: Counter::Rejected,
                by: 1,
            },
        );
    }
    wait_durable(journal, last);
    model
}

fn assert_recovers(config: &JournalConfig, model: &Model) {
    let recovered = reopen(config);
    assert!(recovered.loss.is_empty(), "{:?}", recovered.loss);
    assert_eq!(Model::of(&recovered).normalized(), model.normalized());
    assert!(
        recovered.id_floor.get() >= 400,
        "id floor {}",
        recovered.id_floor
    );
}

#[test]
fn compaction_keeps_live_records_in_order_and_deletes_settled_segments() {
    let dir = temp_dir();
    let config = config(dir.path());
    let (journal, _, _) = open(&config);
    let model = busy_journal(&journal);
    let before = segments(&config.dir);
    let bytes_before = journal.usage().file_bytes;
    journal.compact_now();
    let after = segments(&config.dir);
    assert!(
        after.len() < before.len() / 2,
        "{} -> {}",
        before.len(),
        after.len()
    );
    assert!(journal.usage().file_bytes < bytes_before / 2);
    assert!(
        before.iter().filter(|p| after.contains(p)).count() <= 2,
        "old closed segments deleted"
    );
    assert_eq!(journal.stats().compactions, 1);
    // A second compaction (of the first's output and what came after) too.
    let q = journal.queue(&key("a.#", "g"));
    let mut more = model.clone();
    let record = Record::Settled {
        queue: q,
        id: MessageId::new(3),
        outcome: Outcome::Expired,
    };
    let last = append(&journal, &mut more, Some(&key("a.#", "g")), record);
    wait_durable(&journal, last);
    journal.compact_now();
    journal.close().unwrap();
    assert_recovers(&config, &more);
}

#[test]
fn a_crash_after_the_rename_and_before_the_deletes_opens_the_same() {
    let dir = temp_dir();
    let config = config(dir.path());
    let (journal, _, _) = open(&config);
    let model = busy_journal(&journal);
    let saved = temp_dir();
    for path in segments(&config.dir) {
        fs::copy(&path, saved.path().join(path.file_name().unwrap())).unwrap();
    }
    journal.compact_now();
    journal.close().unwrap();
    // The replaced segments come back, as if the deletes never happened.
    for entry in fs::read_dir(saved.path()).unwrap() {
        let path = entry.unwrap().path();
        let back = config.dir.join(path.file_name().unwrap());
        if !back.exists() {
            fs::copy(&path, back).unwrap();
        }
    }
    assert_recovers(&config, &model);
    assert!(
        segments(&config.dir).len() < 10,
        "replaced segments deleted at open"
    );
}

#[test]
fn compaction_runs_by_itself_when_garbage_dominates() {
    let dir = temp_dir();
    let mut config = config(dir.path());
    config.compact_min_garbage_bytes = 4096;
    let (journal, _, _) = open(&config);
    let model = busy_journal(&journal);
    let deadline = std::time::Instant::now() + DEADLINE;
    while journal.stats().compactions == 0 {
        assert!(std::time::Instant::now() < deadline, "no compaction");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    journal.close().unwrap();
    assert_recovers(&config, &model);
}

#[test]
fn compaction_drops_expired_and_removed_replies() {
    let dir = temp_dir();
    let config = config(dir.path());
    let (journal, _, _) = open(&config);
    let q = journal.queue(&key("a", "g"));
    let keep = |id: u64, expires_at_ms: u64| Record::ResultKept {
        id: MessageId::new(id),
        expires_at_ms,
        reply: &[9; 50],
    };
    journal.append(keep(1, u64::MAX)).unwrap();
    journal.append(keep(2, 1)).unwrap();
    journal.append(keep(3, u64::MAX)).unwrap();
    journal
        .append(Record::ResultRemoved {
            id: MessageId::new(3),
        })
        .unwrap();
    let mut last = Lsn::ZERO;
    for _ in 0..300 {
        last = journal
            .append(Record::Counted {
                queue: q,
                counter: Counter::Dropped,
                by: 2,
            })
            .unwrap();
    }
    wait_durable(&journal, last);
    journal.compact_now();
    journal.close().unwrap();
    let recovered = reopen(&config);
    let ids: Vec<u64> = recovered.results.iter().map(|r| r.id.get()).collect();
    assert_eq!(ids, [1]);
    assert_eq!(queue(&recovered, &key("a", "g")).counters.dropped, 600);
}

#[test]
fn compaction_keeps_a_message_whose_settlement_is_not_durable_yet() {
    let dir = temp_dir();
    let config = config(dir.path());
    let (journal, _, _) = open(&config);
    let q = journal.queue(&key("a", "g"));
    let mut last = Lsn::ZERO;
    for id in 1..=100 {
        last = journal.append(accepted(q, id, &[4; 60])).unwrap();
    }
    wait_durable(&journal, last);
    // Hold the writer in a sync; the settlement after it stays pending.
    journal.gate().close();
    let arrived = journal.gate().arrived();
    journal
        .append(Record::IdFloor {
            id: MessageId::new(100),
        })
        .unwrap();
    journal.gate().wait_arrived(arrived + 1);
    journal
        .append(Record::Settled {
            queue: q,
            id: MessageId::new(1),
            outcome: Outcome::Acked,
        })
        .unwrap();
    journal.compact_now();
    journal.crash();
    let recovered = reopen(&config);
    let want: Vec<u64> = (1..=100).collect();
    assert_eq!(
        ids(queue(&recovered, &key("a", "g"))),
        want,
        "the settlement was lost, the message kept"
    );
}
