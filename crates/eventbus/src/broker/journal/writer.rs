//! The writer thread: takes everything appended since its last sync, writes
//! it to the active segment, `fdatasync`s once, and reports.
//!
//! Group commit without a timer: while the writer writes and syncs, appends
//! collect in the pending batch; the next turn takes them all. A quiet bus
//! gets each record synced at once; a busy one shares each sync among every
//! record appended during the one before.
//!
//! Failures are exact. A write that fails part-way (no space, a file size
//! limit) is cut back to the last whole frame, that part is synced, and
//! only the records after it are reported failed; the next batch tries
//! again. A failed sync leaves the file's content unknown (the kernel may
//! have dropped the pages), so the journal stops taking records.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::codec::{self, Entry};
use super::error::DiskError;
use super::record::{Lsn, QueueKey, QueueRef};
use super::segment::{self, HEADER_LEN, Header, Segment, SegmentKind};
use super::state::Batch;
use super::{Shared, SyncFailure, SyncReport};

/// How long the writer polls for the next record after a small batch's
/// sync before it sleeps: a 1-in-flight publisher's next record comes one
/// round trip through its client after the confirmation, some 20–60 µs
/// here (`docs/durability.md` has the measurements).
const LINGER: Duration = Duration::from_micros(100);

/// The writer lingers only after a batch of at most this many records: a
/// quiet bus, where latency is what a publisher waits on. A busy bus has
/// its next batch pending by the end of a sync anyway, and a writer
/// polling there would only take CPU from the runtime making it.
const LINGER_BATCH: usize = 4;

/// What the broker is told after each batch.
pub type SyncCallback = Box<dyn FnMut(SyncReport) + Send>;

/// How one batch went.
#[derive(Debug, Default)]
struct Outcome {
    /// The batch's records up to here are durable.
    durable: Option<Lsn>,
    /// The batch's records from here on were not written.
    failed: Option<(Lsn, DiskError)>,
    /// The failure was a sync: take nothing more.
    poison: bool,
    /// Segments closed during the batch.
    closed: Vec<Segment>,
    /// Bytes added to the files.
    growth: u64,
}

/// The writer thread's own state.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    dir: PathBuf,
    file: File,
    /// The active segment (its `bytes` are what is written and synced).
    active: Segment,
    /// Queues whose definition the active segment holds.
    defined: Vec<bool>,
    /// A copy of the queue table, for the definitions.
    keys: Vec<QueueKey>,
    /// The bytes of the part being written.
    out: Vec<u8>,
    /// Where each record's frame ends in `out`, and its index in the batch.
    ends: Vec<(usize, usize)>,
    /// The active file's length: past `active.bytes` it reads as zeros
    /// (see [`EXTEND_BYTES`]).
    extended: u64,
    /// Whether to keep extending the active file (until an extension fails).
    extend: bool,
    callback: SyncCallback,
}

/// The active segment is extended this far ahead of what is written (a
/// sparse tail, zeros to a reader), so most syncs cover writes within the
/// file's size: `fdatasync` then has no new size to commit through the
/// filesystem's journal. Measured on this machine's ext4, a `write` of
/// 144 B and an `fdatasync`, p50: 117–159 µs appending, 90–135 µs within
/// the size. Recovery takes a tail of zeros for the end of the segment
/// (codec's `read_frame`), and a segment is cut back to what was written
/// when it is closed. An extension that fails (a file-size limit, a full disk) is not
/// tried again in that segment: it is appended to, as before.
const EXTEND_BYTES: u64 = 1 << 20;

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        dir: PathBuf,
        file: File,
        active: Segment,
        callback: SyncCallback,
    ) -> Self {
        Self {
            shared,
            dir,
            file,
            active,
            defined: Vec::new(),
            keys: Vec::new(),
            out: Vec::new(),
            ends: Vec::new(),
            extended: 0,
            extend: true,
            callback,
        }
    }

    /// Extends the active file ahead of `needed` bytes, if it is to be.
    fn extend_for(&mut self, needed: u64) {
        if !self.extend || needed <= self.extended {
            return;
        }
        let limit = self.shared.config.segment_bytes.max(needed);
        let target = (needed + EXTEND_BYTES).min(limit);
        match self.file.set_len(target) {
            Ok(()) => self.extended = target,
            Err(error) => {
                tracing::debug!(%error, "journal segment not extended ahead; appending");
                self.extend = false;
            }
        }
    }

    /// Cuts the active file back to what was written (closing it).
    fn cut_to_written(&mut self) {
        if self.extended > self.active.bytes {
            // Best effort: a tail of zeros left behind reads as the end.
            let _ = self.file.set_len(self.active.bytes);
        }
    }

    /// Runs until the journal closes (after writing what is pending).
    pub(crate) fn run(mut self) {
        let mut batch = Batch::default();
        let mut last_len = usize::MAX;
        loop {
            if last_len <= LINGER_BATCH {
                self.linger();
            }
            let failed = {
                let mut st = self.shared.lock();
                loop {
                    if st.crashing {
                        return;
                    }
                    if st.closing && st.pending.is_empty() {
                        drop(st);
                        self.cut_to_written();
                        return;
                    }
                    if !st.pending.is_empty() {
                        break;
                    }
                    st.writer_idle = true;
                    st = self
                        .shared
                        .wake_writer
                        .wait(st)
                        .unwrap_or_else(|e| e.into_inner());
                }
                st.writer_idle = false;
                self.shared.appended.store(false, Ordering::Relaxed);
                std::mem::swap(&mut st.pending, &mut batch);
                while self.keys.len() < st.queues.len() {
                    let queue = QueueRef(u32::try_from(self.keys.len()).expect("< 2^32"));
                    self.keys
                        .push(st.queues.key(queue).expect("interned").clone());
                }
                st.failed.clone()
            };
            let outcome = match failed {
                Some(error) => Outcome {
                    failed: Some((batch.records[0].lsn, error)),
                    ..Outcome::default()
                },
                None => self.write(&batch),
            };
            self.finish(&batch, outcome);
            last_len = batch.records.len();
            batch.clear();
        }
    }

    /// After a small batch's sync, polls for the next record for up to
    /// [`LINGER`] before the writer goes to sleep on its condition
    /// variable. A record that comes within it is taken without a wake-up:
    /// neither the appender's `futex` wake nor the writer's sleep and wake
    /// (on this 2-core VM a wake-up across CPUs costs ~20 µs, an eighth of
    /// a sync). It yields the CPU on each poll, so a thread that is ready
    /// to run (the runtime making the next record) is not kept from it.
    fn linger(&self) {
        let start = Instant::now();
        while !self.shared.appended.load(Ordering::Acquire) && start.elapsed() < LINGER {
            std::thread::yield_now();
        }
    }

    /// Records the outcome in the shared state, then reports it.
    fn finish(&mut self, batch: &Batch, outcome: Outcome) {
        let first = batch.records[0].lsn;
        let last = batch.records[batch.records.len() - 1].lsn;
        let stats = &self.shared.stats;
        {
            let mut st = self.shared.lock();
            if let Some(through) = outcome.durable {
                st.written(batch, through);
            }
            if let Some((from, error)) = &outcome.failed {
                st.undo(batch, *from);
                st.disk_full = error.is_full();
                if outcome.poison {
                    st.failed = Some(error.clone());
                }
            } else {
                st.disk_full = false;
            }
            st.durable = last;
            st.file_bytes += outcome.growth;
            st.closed.extend(outcome.closed);
            self.shared.maybe_compact(&mut st);
        }
        let failed_records = outcome.failed.as_ref().map_or(0, |(from, _)| {
            batch.records.iter().filter(|m| m.lsn >= *from).count() as u64
        });
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.records.fetch_add(
            batch.records.len() as u64 - failed_records,
            Ordering::Relaxed,
        );
        stats
            .failed_records
            .fetch_add(failed_records, Ordering::Relaxed);
        self.shared.durable.store(last.get(), Ordering::Release);
        if let Some((from, _)) = &outcome.failed {
            tracing::warn!(from = %from, to = %last, "journal records not written");
        }
        (self.callback)(SyncReport {
            first,
            last,
            failed: outcome
                .failed
                .map(|(from, error)| SyncFailure { from, error }),
        });
    }

    /// Writes and syncs `batch`, rolling over to new segments as they fill.
    fn write(&mut self, batch: &Batch) -> Outcome {
        let mut outcome = Outcome::default();
        let limit = self.shared.config.segment_bytes;
        self.out.clear();
        self.ends.clear();
        let mut i = 0;
        while i < batch.records.len() {
            let meta = &batch.records[i];
            let frame = batch.frame(i);
            let def_len = meta.record.queue().map_or(0, |q| self.def_len(q));
            let projected = self.active.bytes + (self.out.len() + def_len + frame.len()) as u64;
            let has_records = self.active.bytes > HEADER_LEN as u64 || !self.out.is_empty();
            if projected > limit && has_records {
                if self.flush(batch, &mut outcome).is_err()
                    || self.roll(meta.lsn, &mut outcome).is_err()
                {
                    return outcome;
                }
                continue;
            }
            if let Some(queue) = meta.record.queue() {
                self.define(queue, meta.lsn);
            }
            self.out.extend_from_slice(frame);
            self.ends.push((self.out.len(), i));
            i += 1;
        }
        let _ = self.flush(batch, &mut outcome);
        outcome
    }

    fn def_len(&self, queue: QueueRef) -> usize {
        if self.defined.get(queue.index()).copied().unwrap_or(false) {
            return 0;
        }
        let key = &self.keys[queue.index()];
        codec::frame_len(4 + 2 + key.filter.as_str().len() + key.group.as_str().len())
    }

    /// Puts `queue`'s definition in the part, if the segment lacks it.
    fn define(&mut self, queue: QueueRef, lsn: Lsn) {
        let i = queue.index();
        if self.defined.len() <= i {
            self.defined.resize(i + 1, false);
        }
        if self.defined[i] {
            return;
        }
        let key = &self.keys[i];
        let def = Entry::QueueDef {
            queue: queue.0,
            filter: key.filter.as_str(),
            group: key.group.as_str(),
        };
        codec::encode(&mut self.out, lsn, &def);
        self.defined[i] = true;
    }

    /// Writes and syncs the part. On failure, fills in `outcome` and
    /// returns `Err`: the rest of the batch is not to be written.
    fn flush(&mut self, batch: &Batch, outcome: &mut Outcome) -> Result<(), ()> {
        let Some(&(_, first_index)) = self.ends.first() else {
            return Ok(());
        };
        self.extend_for(self.active.bytes + self.out.len() as u64);
        let lsn_of = |i: usize| batch.records[i].lsn;
        let kept = match write_all(&mut self.file, &self.out) {
            Ok(()) => self.out.len(),
            Err((written, error)) => {
                // Keep the whole frames that made it; the rest is not written.
                let whole = self
                    .ends
                    .iter()
                    .take_while(|(end, _)| *end <= written)
                    .count();
                let kept = if whole == 0 {
                    0
                } else {
                    self.ends[whole - 1].0
                };
                let first_lost = self.ends[whole].1;
                self.defined.clear();
                let end = self.active.bytes + kept as u64;
                let cut = self.file.set_len(end);
                self.extended = end;
                self.extend = false;
                let synced = cut
                    .and_then(|()| self.file.seek(SeekFrom::Start(end)).map(drop))
                    .and_then(|()| self.sync());
                match synced {
                    Ok(()) => {
                        self.active.bytes += kept as u64;
                        outcome.growth += kept as u64;
                        if whole > 0 {
                            outcome.durable = Some(lsn_of(self.ends[whole - 1].1));
                        }
                        outcome.failed = Some((lsn_of(first_lost), DiskError::from_io(&error)));
                    }
                    Err(sync_error) => {
                        outcome.failed =
                            Some((lsn_of(first_index), DiskError::from_io(&sync_error)));
                        outcome.poison = true;
                    }
                }
                return Err(());
            }
        };
        if let Err(error) = self.sync() {
            outcome.failed = Some((lsn_of(first_index), DiskError::from_io(&error)));
            outcome.poison = true;
            return Err(());
        }
        self.active.bytes += kept as u64;
        outcome.growth += kept as u64;
        outcome.durable = Some(lsn_of(self.ends[self.ends.len() - 1].1));
        self.out.clear();
        self.ends.clear();
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        #[cfg(test)]
        self.shared.gate.before_sync();
        let result = self.file.sync_data();
        self.shared.stats.syncs.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Closes the active segment (synced already) and starts one whose first
    /// record is `base`. On failure, the rest of the batch fails and the old
    /// segment stays active.
    fn roll(&mut self, base: Lsn, outcome: &mut Outcome) -> Result<(), ()> {
        let file_no = self.shared.next_file_no.fetch_add(1, Ordering::Relaxed);
        let header = Header {
            kind: SegmentKind::Log,
            base,
        };
        match segment::create(&self.dir, file_no, header) {
            Ok(file) => {
                self.cut_to_written();
                self.extended = 0;
                self.extend = true;
                let next = Segment {
                    file_no,
                    header,
                    path: segment::segment_path(&self.dir, file_no),
                    bytes: HEADER_LEN as u64,
                };
                outcome
                    .closed
                    .push(std::mem::replace(&mut self.active, next));
                outcome.growth += HEADER_LEN as u64;
                self.file = file;
                self.defined.clear();
                Ok(())
            }
            Err(error) => {
                outcome.failed = Some((base, DiskError::from_io(&error)));
                Err(())
            }
        }
    }
}

/// Writes all of `buf`, or says how much was written before the error.
fn write_all(file: &mut File, buf: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut written = 0;
    while written < buf.len() {
        match file.write(&buf[written..]) {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, e)),
        }
    }
    Ok(())
}
