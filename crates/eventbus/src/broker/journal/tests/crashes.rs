//! A property test: random appends, settlements, compactions, crashes (what
//! is pending never written, a torn frame or garbage left at the tail) and
//! restarts; after each, the journal recovers exactly the model's state at
//! the last durable LSN.

use std::fs::OpenOptions;
use std::io::Write;

use proptest::prelude::*;

use super::model::{Model, Owned};
use super::support::*;
use crate::broker::journal::codec::{self, Entry};
use crate::broker::journal::{
    Counter, Journal, JournalConfig, Lsn, MessageId, Outcome, QueueKey, Record,
};

const LIVE_MS: u64 = u64::MAX / 2;

#[derive(Debug, Clone)]
enum Op {
    /// A new message into the queues whose bits are set (at least one).
    Accept {
        queues: u8,
        len: usize,
    },
    Deliver {
        pick: usize,
    },
    Requeue {
        pick: usize,
        nacked: bool,
    },
    Settle {
        pick: usize,
        outcome: usize,
    },
    Keep {
        len: usize,
        expired: bool,
    },
    Remove {
        pick: usize,
    },
    Count {
        queue: usize,
        counter: usize,
        by: u64,
    },
    Floor {
        ahead: u64,
    },
    Wait,
    /// Holds the writer's next sync, so appends pile up unwritten.
    Hold,
    Compact,
    Crash {
        tail: Tail,
    },
    Restart,
}

#[derive(Debug, Clone)]
enum Tail {
    Clean,
    Garbage(Vec<u8>),
    /// The first bytes of a frame (at most its length minus one).
    Torn(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let tail = prop_oneof![
        Just(Tail::Clean),
        proptest::collection::vec(any::<u8>(), 1..48).prop_map(Tail::Garbage),
        (0usize..200).prop_map(Tail::Torn),
    ];
    prop_oneof![
        8 => (1u8..8, 0usize..300).prop_map(|(queues, len)| Op::Accept { queues, len }),
        4 => any::<usize>().prop_map(|pick| Op::Deliver { pick }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, nacked)| Op::Requeue { pick, nacked }),
        5 => (any::<usize>(), 0usize..5).prop_map(|(pick, outcome)| Op::Settle { pick, outcome }),
        1 => (0usize..100, any::<bool>()).prop_map(|(len, expired)| Op::Keep { len, expired }),
        1 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
        1 => (0usize..3, 0usize..11, 1u64..5).prop_map(|(queue, counter, by)| Op::Count { queue, counter, by }),
        1 => (0u64..10).prop_map(|ahead| Op::Floor { ahead }),
        2 => Just(Op::Wait),
        2 => Just(Op::Hold),
        2 => Just(Op::Compact),
        1 => tail.prop_map(|tail| Op::Crash { tail }),
        1 => Just(Op::Restart),
    ]
}

struct Run {
    _dir: tempfile::TempDir,
    config: JournalConfig,
    journal: Option<Journal>,
    reports: Reports,
    keys: [QueueKey; 3],
    /// The state at the last open.
    base: Model,
    /// Records appended since.
    log: Vec<(Lsn, Owned)>,
    next_id: u64,
    /// The writer is held in a sync.
    held: bool,
}

impl Run {
    fn new() -> Self {
        let dir = temp_dir();
        let mut config = config(dir.path());
        config.segment_bytes = 2048;
        let (journal, _, reports) = open(&config);
        Self {
            _dir: dir,
            config,
            journal: Some(journal),
            reports,
            keys: [key("a.#", "g"), key("a.#", "h"), key("b", "g")],
            base: Model::default(),
            log: Vec::new(),
            next_id: 1,
            held: false,
        }
    }

    fn journal(&self) -> &Journal {
        self.journal.as_ref().unwrap()
    }

    /// What a router would hold now.
    fn now(&self) -> Model {
        let mut model = self.base.clone();
        self.log.iter().for_each(|(_, owned)| model.apply(owned));
        model
    }

    fn append(&mut self, key: Option<QueueKey>, record: Record<'_>) {
        let owned = Owned::new(&record, key.clone());
        let queue = key.map(|k| self.journal().queue(&k));
        let lsn = self.journal().append(owned.with(queue)).expect("append");
        self.log.push((lsn, owned));
    }

    fn pick_message(&self, pick: usize) -> Option<(QueueKey, MessageId, u32)> {
        let now = self.now();
        let all: Vec<_> = now
            .queues
            .iter()
            .flat_map(|(k, q)| {
                q.messages
                    .iter()
                    .map(move |m| (k.clone(), MessageId::new(m.id), m.attempt))
            })
            .collect();
        (!all.is_empty()).then(|| all[pick % all.len()].clone())
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Accept { queues, len } => {
                let id = MessageId::new(self.next_id);
                self.next_id += 1;
                let envelope = vec![(id.get() % 251) as u8; len];
                for (i, key) in self.keys.clone().into_iter().enumerate() {
                    if queues & (1 << i) != 0 {
                        let queue = self.journal().queue(&key);
                        self.append(
                            Some(key),
                            Record::Accepted {
                                queue,
                                id,
                                attempt: 1,
                                envelope: &envelope,
                            },
                        );
                    }
                }
            }
            Op::Deliver { pick } | Op::Requeue { pick, .. } | Op::Settle { pick, .. } => {
                let Some((key, id, attempt)) = self.pick_message(pick) else {
                    return;
                };
                let queue = self.journal().queue(&key);
                let record = match op {
                    Op::Deliver { .. } => Record::Delivered {
                        queue,
                        id,
                        attempt: attempt + 1,
                    },
                    Op::Requeue { nacked, .. } => Record::Requeued {
                        queue,
                        id,
                        attempt: attempt + 1,
                        nacked,
                    },
                    Op::Settle { outcome, .. } => {
                        let outcome = [
                            Outcome::Acked,
                            Outcome::DeadLettered,
                            Outcome::Cancelled,
                            Outcome::Expired,
                            Outcome::Evicted,
                        ][outcome];
                        Record::Settled { queue, id, outcome }
                    }
                    _ => unreachable!(),
                };
                self.append(Some(key), record);
            }
            Op::Keep { len, expired } => {
                let id = MessageId::new(self.next_id);
                self.next_id += 1;
                let reply = vec![7u8; len];
                let expires_at_ms = if expired { 1 } else { LIVE_MS };
                self.append(
                    None,
                    Record::ResultKept {
                        id,
                        expires_at_ms,
                        reply: &reply,
                    },
                );
            }
            Op::Remove { pick } => {
                let now = self.now();
                let ids: Vec<u64> = now.results.keys().copied().collect();
                if let Some(&id) = ids.get(pick % ids.len().max(1)) {
                    self.append(
                        None,
                        Record::ResultRemoved {
                            id: MessageId::new(id),
                        },
                    );
                }
            }
            Op::Count { queue, counter, by } => {
                let key = self.keys[queue].clone();
                let queue = self.journal().queue(&key);
                self.append(
                    Some(key),
                    Record::Counted {
                        queue,
                        counter: Counter::ALL[counter],
                        by,
                    },
                );
            }
            Op::Floor { ahead } => {
                self.next_id += ahead;
                let id = MessageId::new(self.next_id);
                self.append(None, Record::IdFloor { id });
            }
            Op::Hold if !self.held => {
                // A record whose sync is held: what comes after stays pending.
                let gate = self.journal().gate();
                let arrived = gate.arrived();
                gate.close();
                let queue = self.journal().queue(&self.keys[2]);
                let filler = Record::Counted {
                    queue,
                    counter: Counter::Rejected,
                    by: 1,
                };
                self.append(Some(self.keys[2].clone()), filler);
                self.journal().gate().wait_arrived(arrived + 1);
                self.held = true;
            }
            Op::Hold => {}
            Op::Wait => {
                self.release();
                if let Some((lsn, _)) = self.log.last() {
                    wait_durable(self.journal(), *lsn);
                }
            }
            Op::Compact => self.journal().compact_now(),
            Op::Crash { tail } => {
                self.held = false;
                self.journal.take().unwrap().crash();
                let durable = self
                    .reports
                    .lock()
                    .unwrap()
                    .last()
                    .map_or(Lsn::ZERO, |r| r.last);
                assert!(
                    self.reports
                        .lock()
                        .unwrap()
                        .iter()
                        .all(|r| r.failed.is_none())
                );
                let mut expected = self.base.clone();
                expected.apply_through(&self.log, durable);
                damage(&self.config, &tail);
                self.reopen(expected);
            }
            Op::Restart => {
                self.release();
                self.journal.take().unwrap().close().unwrap();
                let expected = self.now();
                self.reopen(expected);
            }
        }
    }

    fn release(&mut self) {
        self.journal().gate().open();
        self.held = false;
    }

    fn reopen(&mut self, expected: Model) {
        let (journal, recovered, reports) = open(&self.config);
        assert_eq!(
            Model::of(&recovered).normalized(),
            expected.normalized(),
            "recovered state differs from the model's at the last durable LSN"
        );
        assert!(
            recovered.id_floor.get() >= expected.max_id,
            "id floor {} < {}",
            recovered.id_floor,
            expected.max_id
        );
        assert_eq!(recovered.loss.skipped_records, 0);
        self.next_id = recovered.id_floor.get() + 1;
        self.journal = Some(journal);
        self.reports = reports;
        self.base = expected;
        self.log.clear();
    }
}

/// Leaves `tail` at the end of the newest segment file.
fn damage(config: &JournalConfig, tail: &Tail) {
    let bytes = match tail {
        Tail::Clean => return,
        Tail::Garbage(bytes) => bytes.clone(),
        Tail::Torn(cut) => {
            let mut frame = Vec::new();
            let record = Record::ResultKept {
                id: MessageId::new(u64::MAX),
                expires_at_ms: LIVE_MS,
                reply: &[1; 100],
            };
            codec::encode(&mut frame, Lsn::new(u64::MAX), &Entry::Record(record));
            frame.truncate(cut % frame.len());
            frame
        }
    };
    let newest = segments(&config.dir).pop().unwrap();
    OpenOptions::new()
        .append(true)
        .open(newest)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_crashes_recover_the_state_at_the_last_durable_lsn(
        ops in proptest::collection::vec(op(), 1..80)
    ) {
        let mut run = Run::new();
        for op in ops {
            run.step(op);
        }
        run.step(Op::Restart);
    }
}
