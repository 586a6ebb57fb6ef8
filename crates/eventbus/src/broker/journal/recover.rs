//! Opening a journal: every segment read in order, the state rebuilt, a
//! damaged tail cut off and reported.
//!
//! Segments are read by base LSN. A compacted segment replaces the older
//! files whose bases it covers (left behind if compaction was interrupted
//! after its rename: they are deleted now). A frame that is cut short or
//! fails its checksum ends its segment: the segment is truncated there and
//! the loss reported, and replay goes on with the next segment.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::codec::{self, Entry, FrameRead, TornReason};
use super::error::OpenError;
use super::queues::QueueTable;
use super::record::{Counters, Lsn, MessageId, QueueKey, QueueRef, Record};
use super::segment::{self, DirEntry, FORMAT_VERSION, HEADER_LEN, Header, HeaderError, Segment};
use super::state::{Index, Map};
use crate::names::GroupName;
use crate::topic::TopicFilter;

/// What a journal held when it was opened.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Recovered {
    /// Every durable queue with live messages or counters, in the order the
    /// journal first met them.
    pub queues: Vec<RecoveredQueue>,
    /// Replies kept for requests, not expired at open.
    pub results: Vec<KeptResult>,
    /// Message ids up to here may have been issued before: issue ids above it.
    pub id_floor: MessageId,
    /// The last LSN read; new records get higher ones.
    pub last_lsn: Lsn,
    /// What could not be read.
    pub loss: LossReport,
}

/// One durable queue's state.
#[derive(Debug)]
#[non_exhaustive]
pub struct RecoveredQueue {
    /// Its key.
    pub key: QueueKey,
    /// Its handle in the opened journal.
    pub queue: QueueRef,
    /// Its unsettled messages, in the order they were accepted.
    pub messages: Vec<RecoveredMessage>,
    /// Its cumulative counters.
    pub counters: Counters,
}

/// An unsettled message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveredMessage {
    /// The message.
    pub id: MessageId,
    /// Its last attempt: of the delivery in flight, or the one it waits for.
    pub attempt: u32,
    /// Whether a delivery of it was in flight (its holder may have run it:
    /// the next delivery is a redelivery, `attempt + 1`).
    pub in_flight: bool,
    /// Its encoded `Envelope`.
    pub envelope: Bytes,
}

/// A reply kept for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeptResult {
    /// The request's message id.
    pub id: MessageId,
    /// When it may be forgotten (Unix ms).
    pub expires_at_ms: u64,
    /// The reply's bytes.
    pub reply: Bytes,
}

/// What opening could not recover. Everything before a damaged spot was
/// recovered; nothing here stops the journal from opening.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LossReport {
    /// Each place a segment was cut, or a file set aside.
    pub damage: Vec<Damage>,
    /// Bytes cut off or set aside, in all.
    pub bytes: u64,
    /// Records with a good checksum that could not be used (undecodable, or
    /// about a queue whose definition was lost).
    pub skipped_records: u64,
}

impl LossReport {
    /// Whether nothing was lost.
    pub fn is_empty(&self) -> bool {
        self.damage.is_empty() && self.skipped_records == 0
    }
}

/// One damaged spot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Damage {
    /// The segment.
    pub path: PathBuf,
    /// Where the damage starts.
    pub offset: u64,
    /// Bytes lost from there.
    pub bytes: u64,
    /// What was wrong.
    pub reason: DamageReason,
}

/// What was wrong at a damaged spot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DamageReason {
    /// A frame cut short (a crash mid-write): truncated.
    Torn,
    /// A frame whose length or checksum is wrong: truncated.
    Corrupt,
    /// A file shorter than a segment header (a crash while creating it):
    /// deleted.
    TornHeader,
    /// A file whose header is not a journal segment's: renamed to
    /// `*.corrupt` and left for inspection.
    BadHeader,
}

/// The open journal's starting point, for the engine.
#[derive(Debug)]
pub(crate) struct Replayed {
    pub recovered: Recovered,
    pub queues: QueueTable,
    pub index: Index,
    pub counters: Vec<Counters>,
    /// Segments left, in replay order.
    pub segments: Vec<Segment>,
    pub next_file_no: u64,
}

#[derive(Default)]
struct Replay {
    queues: QueueTable,
    /// Each queue's messages in the order accepted; `None` once settled.
    messages: Vec<Vec<Option<RecoveredMessage>>>,
    /// Live messages with their places in `messages`, and sizes.
    index: Index,
    counters: Vec<Counters>,
    counters_as_of: Lsn,
    results: Map<MessageId, (u64, Bytes, u32)>,
    id_floor: MessageId,
    last_lsn: Lsn,
    loss: LossReport,
}

/// Reads the journal in `dir`, repairing a damaged tail, at wall-clock time
/// `now_ms` (kept replies that expired are left out).
pub(crate) fn replay(dir: &Path, max_frame: usize, now_ms: u64) -> Result<Replayed, OpenError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OpenError::Io { path, source }
    };
    let mut replay = Replay::default();
    let mut next_file_no = 1;
    let mut found = Vec::new();
    for entry in segment::list(dir).map_err(io_err(dir))? {
        match entry {
            DirEntry::Temp(file_no, path) => {
                next_file_no = next_file_no.max(file_no + 1);
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
            DirEntry::Segment(file_no, path) => {
                next_file_no = next_file_no.max(file_no + 1);
                if let Some(segment) = replay.read_header(file_no, path)? {
                    found.push(segment);
                }
            }
        }
    }
    let mut segments = drop_superseded(found)?;
    segments.sort_by_key(|s| (s.header.base, s.file_no));
    let mut kept = Vec::with_capacity(segments.len());
    for mut segment in segments {
        let data = Bytes::from(fs::read(&segment.path).map_err(io_err(&segment.path))?);
        let end = replay.segment(&segment.path, &data, max_frame);
        if end < data.len() {
            truncate(&segment.path, end as u64).map_err(io_err(&segment.path))?;
        }
        segment.bytes = end as u64;
        if end == HEADER_LEN && segment.header.kind == segment::SegmentKind::Log {
            // Nothing in it: it only takes a file.
            fs::remove_file(&segment.path).map_err(io_err(&segment.path))?;
        } else {
            kept.push(segment);
        }
    }
    super::dir::sync_dir(dir).map_err(io_err(dir))?;
    Ok(replay.finish(kept, next_file_no, now_ms))
}

fn truncate(path: &Path, len: u64) -> std::io::Result<()> {
    let file = fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}

/// Deletes every segment a newer compacted segment replaces.
fn drop_superseded(found: Vec<Segment>) -> Result<Vec<Segment>, OpenError> {
    let covers: Vec<(u64, Lsn, Lsn)> = found
        .iter()
        .filter_map(|s| match s.header.kind {
            segment::SegmentKind::Compacted { covers } => Some((s.file_no, s.header.base, covers)),
            segment::SegmentKind::Log => None,
        })
        .collect();
    let mut kept = Vec::with_capacity(found.len());
    for s in found {
        let replaced = covers
            .iter()
            .any(|&(no, from, to)| s.file_no < no && (from..=to).contains(&s.header.base));
        if replaced {
            fs::remove_file(&s.path).map_err(|source| OpenError::Io {
                path: s.path.clone(),
                source,
            })?;
        } else {
            kept.push(s);
        }
    }
    Ok(kept)
}

impl Replay {
    /// The segment at `path`, or `None` if its header is damaged (then the
    /// file is removed or set aside and the loss counted).
    fn read_header(&mut self, file_no: u64, path: PathBuf) -> Result<Option<Segment>, OpenError> {
        let io_err = |source| OpenError::Io {
            path: path.clone(),
            source,
        };
        let mut head = Vec::with_capacity(HEADER_LEN);
        let file = fs::File::open(&path).map_err(io_err)?;
        let bytes = file.metadata().map_err(io_err)?.len();
        std::io::Read::read_to_end(&mut std::io::Read::take(file, HEADER_LEN as u64), &mut head)
            .map_err(io_err)?;
        let reason = match Header::decode(&head) {
            Ok(header) => {
                return Ok(Some(Segment {
                    file_no,
                    header,
                    path,
                    bytes,
                }));
            }
            Err(HeaderError::Newer(found)) => {
                return Err(OpenError::NewerFormat {
                    path,
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            Err(HeaderError::Short) => {
                fs::remove_file(&path).map_err(io_err)?;
                DamageReason::TornHeader
            }
            Err(HeaderError::Corrupt) => {
                fs::rename(&path, path.with_extension("corrupt")).map_err(io_err)?;
                DamageReason::BadHeader
            }
        };
        if bytes > 0 {
            self.damage(path, 0, bytes, reason);
        }
        Ok(None)
    }

    fn damage(&mut self, path: PathBuf, offset: u64, bytes: u64, reason: DamageReason) {
        tracing::warn!(path = %path.display(), offset, bytes, ?reason, "journal damage: bytes lost");
        self.loss.bytes += bytes;
        self.loss.damage.push(Damage {
            path,
            offset,
            bytes,
            reason,
        });
    }

    /// Replays one segment's frames; returns where its trusted bytes end.
    fn segment(&mut self, path: &Path, data: &Bytes, max_frame: usize) -> usize {
        let mut defs: HashMap<u32, QueueRef> = HashMap::new();
        let mut at = HEADER_LEN;
        loop {
            match codec::read_frame(&data[at..], max_frame) {
                FrameRead::End => return at,
                FrameRead::Torn(why) => {
                    let reason = match why {
                        TornReason::Short => DamageReason::Torn,
                        TornReason::BadLength | TornReason::BadChecksum => DamageReason::Corrupt,
                    };
                    let lost = (data.len() - at) as u64;
                    self.damage(path.to_path_buf(), at as u64, lost, reason);
                    return at;
                }
                FrameRead::Frame { lsn, len, .. } if lsn > Lsn::MAX => {
                    tracing::warn!(path = %path.display(), offset = at, %lsn, "journal record past the last LSN skipped");
                    self.loss.skipped_records += 1;
                    at += len;
                }
                FrameRead::Frame {
                    lsn,
                    kind,
                    body,
                    len,
                } => {
                    self.last_lsn = self.last_lsn.max(lsn);
                    match codec::decode(kind, body) {
                        Ok(entry) => self.entry(&mut defs, data, lsn, entry, len),
                        Err(error) => {
                            tracing::warn!(path = %path.display(), offset = at, %error, "journal record skipped");
                            self.loss.skipped_records += 1;
                        }
                    }
                    at += len;
                }
            }
        }
    }

    fn entry(
        &mut self,
        defs: &mut HashMap<u32, QueueRef>,
        data: &Bytes,
        lsn: Lsn,
        entry: Entry<'_>,
        frame_len: usize,
    ) {
        match entry {
            Entry::QueueDef {
                queue,
                filter,
                group,
            } => match (TopicFilter::new(filter), GroupName::new(group)) {
                (Ok(filter), Ok(group)) => {
                    let global = self.intern(&QueueKey::new(filter, group));
                    defs.insert(queue, global);
                }
                _ => self.loss.skipped_records += 1,
            },
            Entry::Checkpoint {
                as_of,
                id_floor,
                counters,
            } => {
                self.id_floor = self.id_floor.max(id_floor);
                if as_of < self.counters_as_of {
                    return;
                }
                self.counters_as_of = as_of;
                self.counters
                    .iter_mut()
                    .for_each(|c| *c = Counters::default());
                for (queue, c) in counters {
                    match defs.get(&queue) {
                        Some(global) => self.counters[global.index()] = c,
                        None => self.loss.skipped_records += 1,
                    }
                }
            }
            Entry::Record(record) => {
                let record = match record.queue() {
                    Some(local) => match defs.get(&local.0) {
                        Some(&global) => with_queue(record, global),
                        None => {
                            self.loss.skipped_records += 1;
                            return;
                        }
                    },
                    None => record,
                };
                self.record(data, lsn, &record, frame_len);
            }
        }
    }

    fn intern(&mut self, key: &QueueKey) -> QueueRef {
        let queue = self.queues.intern(key);
        if self.messages.len() < self.queues.len() {
            self.messages.push(Vec::new());
            self.counters.push(Counters::default());
            self.index.add_queue();
        }
        queue
    }

    fn record(&mut self, data: &Bytes, lsn: Lsn, record: &Record<'_>, frame_len: usize) {
        if let Some(id) = record.max_id() {
            self.id_floor = self.id_floor.max(id);
        }
        if let Some(queue) = record.queue()
            && lsn > self.counters_as_of
        {
            self.counters[queue.index()].apply(record);
        }
        match *record {
            Record::Accepted {
                queue,
                id,
                attempt,
                envelope,
            } => {
                let list = &mut self.messages[queue.index()];
                let len = u32::try_from(frame_len).expect("frames are under 4 GiB");
                let at = u32::try_from(list.len()).expect("fewer than 2^32 messages a queue");
                if let Some(old) = self.index.replay_accept(queue, id, len, at) {
                    list[old as usize] = None;
                }
                list.push(Some(RecoveredMessage {
                    id,
                    attempt,
                    in_flight: false,
                    envelope: data.slice_ref(envelope),
                }));
            }
            Record::Delivered { queue, id, attempt } => {
                if let Some(m) = self.live(queue, id) {
                    m.attempt = attempt;
                    m.in_flight = true;
                }
            }
            Record::Requeued {
                queue, id, attempt, ..
            } => {
                if let Some(m) = self.live(queue, id) {
                    m.attempt = attempt;
                    m.in_flight = false;
                }
            }
            Record::Settled { queue, id, .. } => {
                if let Some(at) = self.index.replay_settle(queue, id) {
                    self.messages[queue.index()][at as usize] = None;
                }
            }
            Record::ResultKept {
                id,
                expires_at_ms,
                reply,
            } => {
                let len = u32::try_from(frame_len).expect("frames are under 4 GiB");
                self.results
                    .insert(id, (expires_at_ms, data.slice_ref(reply), len));
            }
            Record::ResultRemoved { id } => {
                self.results.remove(&id);
            }
            Record::Counted { .. } | Record::IdFloor { .. } => {}
        }
    }

    fn live(&mut self, queue: QueueRef, id: MessageId) -> Option<&mut RecoveredMessage> {
        let at = self.index.position(queue, id)?;
        self.messages[queue.index()][at as usize].as_mut()
    }

    fn finish(self, segments: Vec<Segment>, next_file_no: u64, now_ms: u64) -> Replayed {
        let mut index = self.index;
        let mut queues = Vec::with_capacity(self.queues.len());
        for (i, list) in self.messages.into_iter().enumerate() {
            let queue = QueueRef(u32::try_from(i).expect("fewer than 2^32 queues"));
            let key = self.queues.key(queue).expect("interned").clone();
            let messages: Vec<RecoveredMessage> = list.into_iter().flatten().collect();
            queues.push(RecoveredQueue {
                key,
                queue,
                messages,
                counters: self.counters[i],
            });
        }
        let mut results: Vec<KeptResult> = self
            .results
            .into_iter()
            .filter(|(_, (expires_at_ms, _, _))| *expires_at_ms > now_ms)
            .map(|(id, (expires_at_ms, reply, len))| {
                index.insert_result(id, len);
                KeptResult {
                    id,
                    expires_at_ms,
                    reply,
                }
            })
            .collect();
        results.sort_by_key(|r| r.id);
        Replayed {
            recovered: Recovered {
                queues,
                results,
                id_floor: self.id_floor,
                last_lsn: self.last_lsn,
                loss: self.loss,
            },
            queues: self.queues,
            index,
            counters: self.counters,
            segments,
            next_file_no,
        }
    }
}

/// `record` with its queue replaced by `queue`.
pub(crate) fn with_queue<'a>(record: Record<'a>, queue: QueueRef) -> Record<'a> {
    match record {
        Record::Accepted {
            id,
            attempt,
            envelope,
            ..
        } => Record::Accepted {
            queue,
            id,
            attempt,
            envelope,
        },
        Record::Delivered { id, attempt, .. } => Record::Delivered { queue, id, attempt },
        Record::Requeued {
            id,
            attempt,
            nacked,
            ..
        } => Record::Requeued {
            queue,
            id,
            attempt,
            nacked,
        },
        Record::Settled { id, outcome, .. } => Record::Settled { queue, id, outcome },
        Record::Counted { counter, by, .. } => Record::Counted { queue, counter, by },
        other => other,
    }
}
