//! A model of what the journal should recover: the records applied to plain
//! collections, compared with a [`Recovered`].

use std::collections::BTreeMap;

use crate::broker::journal::state::skeleton;
use crate::broker::journal::{Counters, Lsn, QueueKey, QueueRef, Record, Recovered};

/// A record the test keeps: what it says, its queue's key, and its bytes.
#[derive(Debug, Clone)]
pub(crate) struct Owned {
    pub record: Record<'static>,
    pub key: Option<QueueKey>,
    pub bytes: Vec<u8>,
}

impl Owned {
    pub(crate) fn new(record: &Record<'_>, key: Option<QueueKey>) -> Self {
        let bytes = match *record {
            Record::Accepted { envelope, .. } => envelope.to_vec(),
            Record::ResultKept { reply, .. } => reply.to_vec(),
            _ => Vec::new(),
        };
        Self {
            record: skeleton(record),
            key,
            bytes,
        }
    }

    /// The record, with its bytes, for `queue` (its handle in the journal
    /// at hand).
    pub(crate) fn with(&self, queue: Option<QueueRef>) -> Record<'_> {
        let record = match (self.record, queue) {
            (r, Some(q)) => crate::broker::journal::recover::with_queue(r, q),
            (r, None) => r,
        };
        match record {
            Record::Accepted {
                queue, id, attempt, ..
            } => Record::Accepted {
                queue,
                id,
                attempt,
                envelope: &self.bytes,
            },
            Record::ResultKept {
                id, expires_at_ms, ..
            } => Record::ResultKept {
                id,
                expires_at_ms,
                reply: &self.bytes,
            },
            other => other,
        }
    }
}

/// One message as the model keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub id: u64,
    pub attempt: u32,
    pub in_flight: bool,
    pub envelope: Vec<u8>,
}

/// A queue as the model keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Queue {
    pub messages: Vec<Message>,
    pub counters: Counters,
}

/// What the journal should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Model {
    pub queues: BTreeMap<QueueKey, Queue>,
    pub results: BTreeMap<u64, (u64, Vec<u8>)>,
    /// The largest id of any record applied.
    pub max_id: u64,
}

impl Model {
    pub(crate) fn apply(&mut self, owned: &Owned) {
        let record = owned.with(None);
        if let Some(id) = record.max_id() {
            self.max_id = self.max_id.max(id.get());
        }
        if let Some(key) = &owned.key {
            let queue = self.queues.entry(key.clone()).or_default();
            queue.counters.apply(&record);
            let find = |queue: &mut Queue, id: u64| queue.messages.iter().position(|m| m.id == id);
            match record {
                Record::Accepted { id, attempt, .. } => {
                    if let Some(at) = find(queue, id.get()) {
                        queue.messages.remove(at);
                    }
                    queue.messages.push(Message {
                        id: id.get(),
                        attempt,
                        in_flight: false,
                        envelope: owned.bytes.clone(),
                    });
                }
                Record::Delivered { id, attempt, .. } | Record::Requeued { id, attempt, .. } => {
                    if let Some(at) = find(queue, id.get()) {
                        queue.messages[at].attempt = attempt;
                        queue.messages[at].in_flight = matches!(record, Record::Delivered { .. });
                    }
                }
                Record::Settled { id, .. } => {
                    if let Some(at) = find(queue, id.get()) {
                        queue.messages.remove(at);
                    }
                }
                _ => {}
            }
            return;
        }
        match record {
            Record::ResultKept {
                id, expires_at_ms, ..
            } => {
                self.results
                    .insert(id.get(), (expires_at_ms, owned.bytes.clone()));
            }
            Record::ResultRemoved { id } => {
                self.results.remove(&id.get());
            }
            _ => {}
        }
    }

    /// Applies every record up to `through`.
    pub(crate) fn apply_through(&mut self, log: &[(Lsn, Owned)], through: Lsn) {
        for (lsn, owned) in log {
            if *lsn <= through {
                self.apply(owned);
            }
        }
    }

    /// The model of what `recovered` holds (ids and the floor aside).
    pub(crate) fn of(recovered: &Recovered) -> Self {
        let mut model = Model::default();
        for q in &recovered.queues {
            model.queues.insert(
                q.key.clone(),
                Queue {
                    messages: q
                        .messages
                        .iter()
                        .map(|m| Message {
                            id: m.id.get(),
                            attempt: m.attempt,
                            in_flight: m.in_flight,
                            envelope: m.envelope.to_vec(),
                        })
                        .collect(),
                    counters: q.counters,
                },
            );
        }
        for r in &recovered.results {
            model
                .results
                .insert(r.id.get(), (r.expires_at_ms, r.reply.to_vec()));
        }
        model
    }

    /// Without queues that hold nothing, and without the id floor, for
    /// comparing.
    pub(crate) fn normalized(&self) -> Self {
        let mut out = self.clone();
        out.queues
            .retain(|_, q| !q.messages.is_empty() || q.counters != Counters::default());
        out.max_id = 0;
        // Expired replies are not recovered.
        out.results
            .retain(|_, (expires_at_ms, _)| *expires_at_ms > 1);
        out
    }
}
