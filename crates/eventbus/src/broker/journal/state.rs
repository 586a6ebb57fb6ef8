//! What the appenders and the journal's threads share, behind one mutex:
//! the batch being appended, the index of live records, the counters as
//! of the durable LSN, and the closed segments.
//!
//! **Invariant:** the index counts what will be on disk if every appended
//! record is written: a record that fails to be written is undone
//! ([`State::undo`]). A settlement (`Settled`, `ResultRemoved`) stops
//! counting its message's bytes at once, but the message stays in the index
//! until the settlement is durable, so compaction never drops a message
//! whose settlement could still be lost.

use std::collections::{HashMap, VecDeque};

/// The journal's maps: keys are the broker's own numbers, so a fast hash.
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use super::codec;
use super::error::DiskError;
use super::queues::QueueTable;
use super::record::{Counters, Lsn, MessageId, QueueRef, Record};
use super::segment::Segment;

/// A live record the index tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Message(QueueRef, MessageId),
    Result(MessageId),
}

/// A live message in the index.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Its framed size.
    len: u32,
    /// While replaying: its place in its queue's list.
    at: u32,
}

/// Live messages and kept replies, by key, with their framed sizes.
#[derive(Debug, Default)]
pub(crate) struct Index {
    messages: Map<(QueueRef, MessageId), Slot>,
    results: Map<MessageId, u32>,
    /// Settlements appended and not yet durable, by key ...
    settling: Map<Key, Lsn>,
    /// ... and in LSN order.
    settling_order: VecDeque<(Lsn, Key)>,
    queue_live: Vec<u64>,
    live_bytes: u64,
}

impl Index {
    pub(crate) fn add_queue(&mut self) {
        self.queue_live.push(0);
    }

    pub(crate) fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    pub(crate) fn queue_live_bytes(&self, queue: QueueRef) -> u64 {
        self.queue_live.get(queue.index()).copied().unwrap_or(0)
    }

    fn size(&self, key: Key) -> Option<u32> {
        match key {
            Key::Message(q, id) => self.messages.get(&(q, id)).map(|s| s.len),
            Key::Result(id) => self.results.get(&id).copied(),
        }
    }

    fn set_bytes(&mut self, key: Key, len: u32, add: bool) {
        let len = u64::from(len);
        let queue = match key {
            Key::Message(q, _) => Some(q.index()),
            Key::Result(_) => None,
        };
        if add {
            self.live_bytes += len;
            if let Some(q) = queue {
                self.queue_live[q] += len;
            }
        } else {
            self.live_bytes = self.live_bytes.saturating_sub(len);
            if let Some(q) = queue {
                self.queue_live[q] = self.queue_live[q].saturating_sub(len);
            }
        }
    }

    /// Whether `key` is counted live (not settled, durably or not).
    fn counted(&self, key: Key) -> bool {
        self.size(key).is_some() && !self.settling.contains_key(&key)
    }

    fn insert(&mut self, key: Key, len: u32) {
        // One lookup in the (large) map for the usual new key.
        let old = match key {
            Key::Message(q, id) => self
                .messages
                .insert((q, id), Slot { len, at: 0 })
                .map(|s| s.len),
            Key::Result(id) => self.results.insert(id, len),
        };
        let was_settling = !self.settling.is_empty() && self.settling.remove(&key).is_some();
        if let Some(old) = old
            && !was_settling
        {
            self.set_bytes(key, old, false);
        }
        self.set_bytes(key, len, true);
    }

    /// Replay: message `id` accepted into `queue` at place `at` of its
    /// list; returns the place of an earlier copy it replaces. (Nothing is
    /// settling while replaying: one lookup.)
    pub(crate) fn replay_accept(
        &mut self,
        queue: QueueRef,
        id: MessageId,
        len: u32,
        at: u32,
    ) -> Option<u32> {
        let old = self.messages.insert((queue, id), Slot { len, at });
        if let Some(old) = old {
            self.set_bytes(Key::Message(queue, id), old.len, false);
        }
        self.set_bytes(Key::Message(queue, id), len, true);
        old.map(|s| s.at)
    }

    /// Replay: the place of live message `id` in its queue's list.
    pub(crate) fn position(&self, queue: QueueRef, id: MessageId) -> Option<u32> {
        self.messages.get(&(queue, id)).map(|s| s.at)
    }

    /// Replay: message `id` settled; returns its place in its queue's list.
    pub(crate) fn replay_settle(&mut self, queue: QueueRef, id: MessageId) -> Option<u32> {
        let slot = self.messages.remove(&(queue, id))?;
        self.set_bytes(Key::Message(queue, id), slot.len, false);
        Some(slot.at)
    }

    pub(crate) fn insert_result(&mut self, id: MessageId, len: u32) {
        self.insert(Key::Result(id), len);
    }

    fn remove(&mut self, key: Key) {
        if let Some(len) = self.size(key)
            && self.counted(key)
        {
            self.set_bytes(key, len, false);
        }
        self.settling.remove(&key);
        match key {
            Key::Message(q, id) => self.messages.remove(&(q, id)).map(drop),
            Key::Result(id) => self.results.remove(&id).map(drop),
        };
    }

    /// A settlement of `key` appended at `lsn`.
    fn settle(&mut self, key: Key, lsn: Lsn) {
        if let Some(len) = self.size(key)
            && !self.settling.contains_key(&key)
        {
            self.set_bytes(key, len, false);
            self.settling.insert(key, lsn);
            self.settling_order.push_back((lsn, key));
        }
    }

    /// The settlement of `key` at `lsn` was not written: it is live again.
    fn unsettle(&mut self, key: Key, lsn: Lsn) {
        if self.settling.get(&key) == Some(&lsn) {
            self.settling.remove(&key);
            if let Some(len) = self.size(key) {
                self.set_bytes(key, len, true);
            }
        }
    }

    /// Settlements up to `durable` are on disk: forget their messages.
    fn settled_through(&mut self, durable: Lsn) {
        while let Some(&(lsn, key)) = self.settling_order.front() {
            if lsn > durable {
                break;
            }
            self.settling_order.pop_front();
            if self.settling.get(&key) == Some(&lsn) {
                self.remove(key);
            }
        }
    }

    /// Whether compaction must keep `key`'s record: it is in the index and
    /// no settlement of it up to `cutoff` (durable) exists.
    pub(crate) fn keeps(&self, key: Key, cutoff: Lsn) -> bool {
        self.size(key).is_some() && self.settling.get(&key).is_none_or(|&lsn| lsn > cutoff)
    }

    /// Applies an appended record.
    fn apply(&mut self, record: &Record<'_>, lsn: Lsn, len: u32) {
        match *record {
            Record::Accepted { queue, id, .. } => self.insert(Key::Message(queue, id), len),
            Record::Settled { queue, id, .. } => self.settle(Key::Message(queue, id), lsn),
            Record::ResultKept { id, .. } => self.insert_result(id, len),
            Record::ResultRemoved { id } => self.settle(Key::Result(id), lsn),
            Record::Delivered { .. }
            | Record::Requeued { .. }
            | Record::Counted { .. }
            | Record::IdFloor { .. } => {}
        }
    }
}

/// One appended record, as the writer needs it: where its frame ends in
/// the batch, and the record without its bytes (for counters and undo).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub lsn: Lsn,
    pub end: usize,
    pub record: Record<'static>,
}

/// Records appended and not yet taken by the writer: their frames back to
/// back, and one [`Meta`] each.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub bytes: Vec<u8>,
    pub records: Vec<Meta>,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }

    /// The frame of record `i`.
    pub(crate) fn frame(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.records[i - 1].end };
        &self.bytes[start..self.records[i].end]
    }
}

/// `record` without its byte fields, to keep beside its frame.
pub(crate) fn skeleton(record: &Record<'_>) -> Record<'static> {
    match *record {
        Record::Accepted {
            queue, id, attempt, ..
        } => Record::Accepted {
            queue,
            id,
            attempt,
            envelope: &[],
        },
        Record::ResultKept {
            id, expires_at_ms, ..
        } => Record::ResultKept {
            id,
            expires_at_ms,
            reply: &[],
        },
        Record::Delivered { queue, id, attempt } => Record::Delivered { queue, id, attempt },
        Record::Requeued {
            queue,
            id,
            attempt,
            nacked,
        } => Record::Requeued {
            queue,
            id,
            attempt,
            nacked,
        },
        Record::Settled { queue, id, outcome } => Record::Settled { queue, id, outcome },
        Record::Counted { queue, counter, by } => Record::Counted { queue, counter, by },
        Record::ResultRemoved { id } => Record::ResultRemoved { id },
        Record::IdFloor { id } => Record::IdFloor { id },
    }
}

/// Everything behind the journal's mutex.
#[derive(Debug)]
pub(crate) struct State {
    pub next_lsn: Lsn,
    pub pending: Batch,
    pub queues: QueueTable,
    pub index: Index,
    /// Counters as of `durable`, kept by the writer from written records.
    pub counters: Vec<Counters>,
    /// Every LSN up to here has been written and synced, or reported failed.
    pub durable: Lsn,
    /// The largest message id appended or recovered.
    pub max_id: MessageId,
    /// Bytes of every segment file, the active one included.
    pub file_bytes: u64,
    /// Closed segments, in replay order: compaction's candidates.
    pub closed: Vec<Segment>,
    /// Set once a sync failed: nothing more is taken.
    pub failed: Option<DiskError>,
    /// The writer is waiting for records.
    pub writer_idle: bool,
    /// `close` was called: the writer writes what is pending and stops.
    pub closing: bool,
    /// Tests only: stop without writing what is pending.
    pub crashing: bool,
    /// Compaction was asked for and has not started.
    pub compact_requested: bool,
    /// Compaction is running.
    pub compacting: bool,
    /// The last write failed for lack of space (cleared by the next success).
    pub disk_full: bool,
}

impl State {
    /// Appends `record` to the pending batch as `len` bytes at the next LSN.
    pub(crate) fn push(&mut self, record: &Record<'_>, len: usize) -> Lsn {
        let lsn = self.next_lsn;
        self.next_lsn = lsn.next();
        codec::encode(&mut self.pending.bytes, lsn, &codec::Entry::Record(*record));
        debug_assert_eq!(self.pending.bytes.len() - self.pending_end(), len);
        self.pending.records.push(Meta {
            lsn,
            end: self.pending.bytes.len(),
            record: skeleton(record),
        });
        let len = u32::try_from(len).expect("records are under 4 GiB");
        self.index.apply(record, lsn, len);
        if let Some(id) = record.max_id() {
            self.max_id = self.max_id.max(id);
        }
        lsn
    }

    fn pending_end(&self) -> usize {
        self.pending.records.last().map_or(0, |m| m.end)
    }

    /// The records of `batch` up to `durable` are on disk: count them, and
    /// forget what their settlements settled.
    pub(crate) fn written(&mut self, batch: &Batch, through: Lsn) {
        for meta in batch.records.iter().take_while(|m| m.lsn <= through) {
            if let Some(queue) = meta.record.queue() {
                self.counters[queue.index()].apply(&meta.record);
            }
        }
        self.index.settled_through(through);
    }

    /// The records of `batch` from `from` on were not written: take their
    /// effects out of the index.
    pub(crate) fn undo(&mut self, batch: &Batch, from: Lsn) {
        for meta in batch.records.iter().filter(|m| m.lsn >= from) {
            match meta.record {
                Record::Accepted { queue, id, .. } => self.index.remove(Key::Message(queue, id)),
                Record::ResultKept { id, .. } => self.index.remove(Key::Result(id)),
                Record::Settled { queue, id, .. } => {
                    self.index.unsettle(Key::Message(queue, id), meta.lsn);
                }
                Record::ResultRemoved { id } => self.index.unsettle(Key::Result(id), meta.lsn),
                _ => {}
            }
        }
    }

    /// Garbage: bytes in the files that no live record needs.
    pub(crate) fn garbage_bytes(&self) -> u64 {
        self.file_bytes.saturating_sub(self.index.live_bytes())
    }
}
