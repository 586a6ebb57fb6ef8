//! Compaction: the closed segments rewritten as one, without what is
//! settled, on a thread of its own.
//!
//! The closed segments are a prefix of the log (the active one is never
//! touched), so every settlement in them is about a message accepted in
//! them: rewriting them together needs no look at later segments. The
//! output keeps, in their original order and with their original LSNs, the
//! `Accepted` records of messages still live, each live message's last
//! `Delivered`/`Requeued`, the live kept replies, and a checkpoint of every
//! queue's counters and the id floor as of the durable LSN when it started.
//! Everything it copies is read from synced files, and a message is dropped
//! only when its settlement is durable, so the rewritten journal always
//! replays to a state the old one could have replayed to.
//!
//! The output is written to `*.tmp`, synced, renamed to `*.seg` (its header
//! says which segments it replaces), the directory synced, and only then
//! are the old files deleted. A crash at any point leaves a journal that
//! opens to the same state: a `.tmp` is deleted, and replaced segments left
//! behind are deleted at the next open.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Shared;
use super::codec::{self, Entry, FrameRead};
use super::record::{Counters, Lsn, MessageId, QueueKey, QueueRef, Record};
use super::segment::{self, HEADER_LEN, Header, Segment, SegmentKind};
use super::state::{Key, Map};
use crate::names::GroupName;
use crate::topic::TopicFilter;

/// Frames checked against the index per lock.
const CHECK_CHUNK: usize = 4096;

/// Runs compactions when the writer asks, until the journal closes.
pub(crate) fn run(shared: Arc<Shared>) {
    loop {
        {
            let mut st = shared.lock();
            while !st.compact_requested && !st.closing && !st.crashing {
                st = shared
                    .wake_compactor
                    .wait(st)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if st.closing || st.crashing {
                return;
            }
            st.compact_requested = false;
            st.compacting = true;
        }
        if let Err(error) = compact(&shared) {
            tracing::warn!(%error, "journal compaction failed; it will be tried again");
        }
        shared.lock().compacting = false;
    }
}

/// One compaction of every closed segment.
pub(crate) fn compact(shared: &Shared) -> std::io::Result<()> {
    let dir = &shared.config.dir;
    let (prefix, cutoff, counters, id_floor, file_no) = {
        let st = shared.lock();
        let file_no = shared.next_file_no.fetch_add(1, Ordering::Relaxed);
        (
            st.closed.clone(),
            st.durable,
            st.counters.clone(),
            st.max_id,
            file_no,
        )
    };
    let (Some(first), Some(last)) = (prefix.first(), prefix.last()) else {
        return Ok(());
    };
    let header = Header {
        kind: SegmentKind::Compacted {
            covers: last.header.base,
        },
        base: first.header.base,
    };
    let mut out = Rewrite {
        shared,
        cutoff,
        bytes: header.encode().to_vec(),
        defined: Vec::new(),
        updates: Map::default(),
        results: Map::default(),
        now_ms: super::now_ms(),
    };
    for segment in &prefix {
        out.segment(segment)?;
    }
    out.finish(counters, cutoff, id_floor);
    let temp = segment::temp_path(dir, file_no);
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(&out.bytes)?;
        file.sync_all()?;
        fs::rename(&temp, segment::segment_path(dir, file_no))?;
        super::dir::sync_dir(dir)
    })();
    if let Err(error) = result {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    let removed: u64 = prefix.iter().map(|s| s.bytes).sum();
    {
        // The files are replaced: account for it before deleting them, so a
        // failed delete leaves only a file the next open deletes.
        let mut st = shared.lock();
        st.closed.drain(..prefix.len());
        st.closed.insert(
            0,
            Segment {
                file_no,
                header,
                path: segment::segment_path(dir, file_no),
                bytes: out.bytes.len() as u64,
            },
        );
        st.file_bytes = st.file_bytes + out.bytes.len() as u64 - removed;
    }
    for segment in &prefix {
        fs::remove_file(&segment.path)?;
    }
    super::dir::sync_dir(dir)?;
    shared.stats.compactions.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        segments = prefix.len(),
        before = removed,
        after = out.bytes.len(),
        "journal compacted"
    );
    Ok(())
}

/// A record kept for later in the output: its LSN and its frame re-encoded.
type Held = (Lsn, Vec<u8>);

/// The output being built.
struct Rewrite<'a> {
    shared: &'a Shared,
    cutoff: Lsn,
    bytes: Vec<u8>,
    defined: Vec<bool>,
    /// The last `Delivered`/`Requeued` of each message, written after the
    /// `Accepted` records (they are absolute, so order among them is moot).
    updates: Map<(QueueRef, MessageId), Held>,
    /// The last `ResultKept` of each id.
    results: Map<MessageId, (Lsn, u64, Vec<u8>)>,
    now_ms: u64,
}

impl Rewrite<'_> {
    fn segment(&mut self, segment: &Segment) -> std::io::Result<()> {
        let data = fs::read(&segment.path)?;
        let max = usize::try_from(self.shared.config.max_record_bytes).unwrap_or(usize::MAX);
        let mut defs: HashMap<u32, QueueRef> = HashMap::new();
        let mut at = HEADER_LEN;
        let mut chunk: Vec<(Lsn, Record<'_>)> = Vec::with_capacity(CHECK_CHUNK);
        while let FrameRead::Frame {
            lsn,
            kind,
            body,
            len,
        } = codec::read_frame(&data[at..], max)
        {
            at += len;
            match codec::decode(kind, body) {
                Ok(Entry::QueueDef {
                    queue,
                    filter,
                    group,
                }) => {
                    if let (Ok(filter), Ok(group)) =
                        (TopicFilter::new(filter), GroupName::new(group))
                    {
                        let global = self.shared.intern(&QueueKey::new(filter, group));
                        defs.insert(queue, global);
                    }
                }
                Ok(Entry::Record(record)) => {
                    let record = match record.queue() {
                        Some(local) => match defs.get(&local.0) {
                            Some(&global) => super::recover::with_queue(record, global),
                            None => continue,
                        },
                        None => record,
                    };
                    chunk.push((lsn, record));
                    if chunk.len() == CHECK_CHUNK {
                        self.check(&mut chunk);
                    }
                }
                // Checkpoints are replaced; undecodable frames dropped.
                Ok(Entry::Checkpoint { .. }) | Err(_) => {}
            }
        }
        self.check(&mut chunk);
        Ok(())
    }

    /// Keeps what the index says is live, in order.
    fn check(&mut self, chunk: &mut Vec<(Lsn, Record<'_>)>) {
        let keep: Vec<bool> = {
            let st = self.shared.lock();
            chunk
                .iter()
                .map(|(_, record)| match *record {
                    Record::Accepted { queue, id, .. }
                    | Record::Delivered { queue, id, .. }
                    | Record::Requeued { queue, id, .. } => {
                        st.index.keeps(Key::Message(queue, id), self.cutoff)
                    }
                    Record::ResultKept { id, .. } => st.index.keeps(Key::Result(id), self.cutoff),
                    _ => false,
                })
                .collect()
        };
        for ((lsn, record), keep) in chunk.drain(..).zip(keep) {
            if !keep {
                continue;
            }
            match record {
                Record::Accepted { queue, .. } => {
                    self.define(queue, lsn);
                    codec::encode(&mut self.bytes, lsn, &Entry::Record(record));
                }
                Record::Delivered { queue, id, .. } | Record::Requeued { queue, id, .. } => {
                    let mut frame = Vec::new();
                    codec::encode(&mut frame, lsn, &Entry::Record(record));
                    self.updates.insert((queue, id), (lsn, frame));
                }
                Record::ResultKept {
                    id, expires_at_ms, ..
                } => {
                    let mut frame = Vec::new();
                    codec::encode(&mut frame, lsn, &Entry::Record(record));
                    self.results.insert(id, (lsn, expires_at_ms, frame));
                }
                _ => {}
            }
        }
    }

    fn define(&mut self, queue: QueueRef, lsn: Lsn) {
        let i = queue.index();
        if self.defined.len() <= i {
            self.defined.resize(i + 1, false);
        }
        if self.defined[i] {
            return;
        }
        let key = self.shared.queue_key(queue);
        let def = Entry::QueueDef {
            queue: queue.0,
            filter: key.filter.as_str(),
            group: key.group.as_str(),
        };
        codec::encode(&mut self.bytes, lsn, &def);
        self.defined[i] = true;
    }

    /// Appends the held updates and replies, then the checkpoint.
    fn finish(&mut self, counters: Vec<Counters>, as_of: Lsn, id_floor: MessageId) {
        let mut updates: Vec<((QueueRef, MessageId), Held)> = self.updates.drain().collect();
        updates.sort_by_key(|(_, (lsn, _))| *lsn);
        for ((queue, _), (lsn, frame)) in updates {
            self.define(queue, lsn);
            self.bytes.extend_from_slice(&frame);
        }
        let mut results: Vec<_> = self.results.drain().collect();
        results.sort_by_key(|(_, (lsn, _, _))| *lsn);
        for (_, (_, expires_at_ms, frame)) in results {
            if expires_at_ms > self.now_ms {
                self.bytes.extend_from_slice(&frame);
            }
        }
        let mut kept = Vec::new();
        for (i, c) in counters.into_iter().enumerate() {
            if c != Counters::default() {
                let queue = QueueRef(u32::try_from(i).expect("fewer than 2^32 queues"));
                self.define(queue, as_of);
                kept.push((queue.0, c));
            }
        }
        let checkpoint = Entry::Checkpoint {
            as_of,
            id_floor,
            counters: kept,
        };
        codec::encode(&mut self.bytes, as_of, &checkpoint);
    }
}
