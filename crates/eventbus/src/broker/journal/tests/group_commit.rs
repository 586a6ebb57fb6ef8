//! Group commit and the append bounds.

use super::support::*;
use crate::broker::journal::{
    AppendError, Journal, JournalConfig, Lsn, MessageId, Outcome, QueueRef, Record,
};

fn roomy(dir: &std::path::Path) -> JournalConfig {
    let mut config = config(dir);
    config.segment_bytes = 1 << 20;
    config
}

#[test]
fn a_quiet_append_is_synced_at_once_on_its_own() {
    let dir = temp_dir();
    let (journal, _, reports) = open(&roomy(dir.path()));
    let q = journal.queue(&key("a", "g"));
    for id in 1..=5 {
        let lsn = journal.append(accepted(q, id, b"x")).unwrap();
        wait_durable(&journal, lsn);
        let last = reports.lock().unwrap().last().cloned().unwrap();
        assert_eq!((last.first, last.last), (lsn, lsn));
        assert!(last.is_durable(lsn));
    }
    assert_eq!(journal.stats().syncs, 5);
    journal.close().unwrap();
}

#[test]
fn appends_from_several_threads_during_a_slow_sync_share_the_next_one() {
    let dir = temp_dir();
    let (journal, _, reports) = open(&roomy(dir.path()));
    let q = journal.queue(&key("a", "g"));
    journal.gate().close();
    let first = journal.append(accepted(q, 1, b"first")).unwrap();
    journal.gate().wait_arrived(1);
    let (threads, each) = (4u64, 50u64);
    let lsns: Vec<Lsn> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let journal = &journal;
                s.spawn(move || {
                    (0..each)
                        .map(|i| {
                            journal
                                .append(accepted(q, 100 + t * each + i, b"during"))
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(journal.stats().syncs, 0, "the first sync is still held");
    journal.gate().open();
    let last = *lsns.iter().max().unwrap();
    wait_durable(&journal, last);
    assert_eq!(
        journal.stats().syncs,
        2,
        "one sync for the first, one for the rest"
    );
    let reports = reports.lock().unwrap().clone();
    assert_eq!(reports.len(), 2);
    assert_eq!((reports[0].first, reports[0].last), (first, first));
    assert_eq!((reports[1].first, reports[1].last), (first.next(), last));
    assert_eq!(last.get() - first.get(), threads * each);
    assert!(lsns.iter().all(|&lsn| reports[1].is_durable(lsn)));
    journal.close().unwrap();
    let recovered = reopen(&roomy(dir.path()));
    assert_eq!(
        queue(&recovered, &key("a", "g")).messages.len() as u64,
        1 + threads * each
    );
}

#[test]
fn a_full_backlog_refuses_appends_until_the_writer_takes_it() {
    let dir = temp_dir();
    let mut config = roomy(dir.path());
    config.max_pending_bytes = 4096;
    let (journal, _, _) = open(&config);
    let q = journal.queue(&key("a", "g"));
    journal.gate().close();
    journal.append(accepted(q, 1, b"held")).unwrap();
    journal.gate().wait_arrived(1);
    let envelope = [3u8; 200];
    let mut id = 2;
    let error = loop {
        match journal.append(accepted(q, id, &envelope)) {
            Ok(_) => id += 1,
            Err(error) => break error,
        }
        assert!(id < 100, "never refused");
    };
    assert!(
        matches!(error, AppendError::Backlog { limit: 4096, pending } if pending <= 4096),
        "{error:?}"
    );
    journal.gate().open();
    let deadline = std::time::Instant::now() + DEADLINE;
    while journal.usage().pending_bytes > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never took the backlog"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let lsn = journal.append(accepted(q, id, &envelope)).unwrap();
    wait_durable(&journal, lsn);
    journal.close().unwrap();
    let recovered = reopen(&config);
    assert_eq!(queue(&recovered, &key("a", "g")).messages.len() as u64, id);
}

#[test]
fn the_disk_budget_counts_live_bytes_and_settling_frees_them() {
    let dir = temp_dir();
    let mut config = roomy(dir.path());
    config.max_disk_bytes = 1000;
    let (journal, _, _) = open(&config);
    let a = journal.queue(&key("a", "g"));
    let b = journal.queue(&key("b", "g"));
    let envelope = [1u8; 100];
    let len = Journal::record_len(&accepted(a, 1, &envelope));
    let fit = 1000 / len;
    for id in 1..=fit {
        let q = if id % 2 == 0 { a } else { b };
        journal.append(accepted(q, id, &envelope)).unwrap();
    }
    assert_eq!(journal.usage().live_bytes, fit * len);
    assert_eq!(
        journal.queue_live_bytes(a) + journal.queue_live_bytes(b),
        fit * len
    );
    assert_eq!(
        journal.would_fit(len),
        Err(AppendError::DiskBudget {
            live: fit * len,
            len,
            limit: 1000
        })
    );
    let error = journal.append(accepted(a, 99, &envelope)).unwrap_err();
    assert_eq!(
        error,
        AppendError::DiskBudget {
            live: fit * len,
            len,
            limit: 1000
        }
    );
    let settle = Record::Settled {
        queue: a,
        id: MessageId::new(2),
        outcome: Outcome::Evicted,
    };
    journal.append(settle).unwrap();
    assert_eq!(journal.queue_live_bytes(a), (fit / 2 - 1) * len);
    assert_eq!(journal.would_fit(len), Ok(()));
    journal.append(accepted(a, 99, &envelope)).unwrap();
    journal.close().unwrap();
}

#[test]
fn oversized_records_and_foreign_queues_are_refused() {
    let dir = temp_dir();
    let (journal, _, _) = open(&config(dir.path()));
    let q = journal.queue(&key("a", "g"));
    let big = vec![0u8; 2000];
    let error = journal.append(accepted(q, 1, &big)).unwrap_err();
    assert!(
        matches!(error, AppendError::TooLarge { limit: 1024, .. }),
        "{error:?}"
    );
    let error = journal.append(accepted(QueueRef(7), 1, b"x")).unwrap_err();
    assert_eq!(error, AppendError::UnknownQueue(7));
    assert_eq!(journal.durable_lsn(), Lsn::ZERO);
    journal.close().unwrap();
}
