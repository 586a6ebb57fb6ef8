//! The journal: the storage engine under durable queues.
//!
//! An append-only log of [`Record`]s in segment files, each record framed
//! with its length and a CRC32C (`codec.rs`, `segment.rs`); the broker
//! appends under its router lock and is told on another thread when the
//! records are on disk (`writer.rs`); closed segments are rewritten without
//! what is settled (`compact.rs`); opening replays everything into a
//! [`Recovered`] state and cuts off a damaged tail (`recover.rs`).
//! `docs/durability.md` has the format, the measurements behind it and what
//! is promised under each failure.
//!
//! Map: `record.rs` the domain types; `codec.rs` frames and bodies;
//! `segment.rs` file headers and names; `dir.rs` the data directory;
//! `state.rs` what appenders and threads share (pending batch, index,
//! durable counters); `queues.rs` the queue table; `writer.rs` the sync
//! thread; `compact.rs` compaction; `recover.rs` replay; `config.rs`,
//! `error.rs`.
//!
//! **Threads:** appends run on the caller's thread and never block on I/O
//! (a short mutex section: encode into the pending batch); one writer
//! thread writes and syncs; one compaction thread rewrites closed segments.
//!
//! ```no_run
//! use eventbus::broker::journal::{Journal, JournalConfig, MessageId, QueueKey, Record};
//! use eventbus::{GroupName, TopicFilter};
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (journal, recovered) = Journal::open(JournalConfig::new("/tmp/bus-data"), |report| {
//!     // On the writer thread: release the confirmations up to report.last.
//!     println!("durable up to {} (failed: {:?})", report.last, report.failed);
//! })?;
//! println!("{} queues recovered", recovered.queues.len());
//! let queue = journal.queue(&QueueKey::new(TopicFilter::new("task.#")?, GroupName::new("workers")?));
//! let lsn = journal.append(Record::Accepted {
//!     queue,
//!     id: MessageId::new(recovered.id_floor.get() + 1),
//!     attempt: 1,
//!     envelope: b"encoded envelope",
//! })?;
//! println!("appended at {lsn}");
//! journal.close()?;
//! # Ok(()) }
//! ```

mod codec;
mod compact;
mod config;
mod dir;
mod error;
mod queues;
mod record;
mod recover;
mod segment;
mod state;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

// For the `journal` fuzz target (`crate::fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz;

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

pub use config::JournalConfig;
pub use error::{AppendError, CloseError, DiskError, OpenError};
pub use record::{Counter, Counters, Lsn, MessageId, Outcome, QueueKey, QueueRef, Record};
pub use recover::{
    Damage, DamageReason, KeptResult, LossReport, Recovered, RecoveredMessage, RecoveredQueue,
};
pub use segment::FORMAT_VERSION;
pub use writer::SyncCallback;

use segment::{HEADER_LEN, Header, Segment, SegmentKind};
use state::{Batch, State};

/// What became of one batch of records, in LSN order: `first..=last` were
/// taken together; those before `failed.from` (all if `failed` is `None`)
/// are durable, the rest were not written. Every LSN is reported exactly
/// once, and reports come in LSN order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// The batch's first LSN.
    pub first: Lsn,
    /// The batch's last LSN.
    pub last: Lsn,
    /// The records not written, if any.
    pub failed: Option<SyncFailure>,
}

impl SyncReport {
    /// Whether the record at `lsn`, which this report covers, is durable.
    pub fn is_durable(&self, lsn: Lsn) -> bool {
        (self.first..=self.last).contains(&lsn) && self.failed.as_ref().is_none_or(|f| lsn < f.from)
    }
}

/// The records of a batch from `from` on were not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFailure {
    /// The first record not written.
    pub from: Lsn,
    /// Why.
    pub error: DiskError,
}

/// Space the journal takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Framed bytes of live messages and kept replies (what
    /// `max_disk_bytes` bounds).
    pub live_bytes: u64,
    /// Bytes of the segment files.
    pub file_bytes: u64,
    /// Bytes appended and not yet taken by the writer.
    pub pending_bytes: u64,
    /// Whether the last write failed for lack of space.
    pub disk_full: bool,
}

/// What the journal has done since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalStats {
    /// `fdatasync` calls.
    pub syncs: u64,
    /// Batches taken by the writer.
    pub batches: u64,
    /// Records written and synced.
    pub records: u64,
    /// Records reported failed.
    pub failed_records: u64,
    /// Compactions completed.
    pub compactions: u64,
}

#[derive(Debug, Default)]
struct Stats {
    syncs: AtomicU64,
    batches: AtomicU64,
    records: AtomicU64,
    failed_records: AtomicU64,
    compactions: AtomicU64,
}

/// What the handle and the threads share.
#[derive(Debug)]
pub(crate) struct Shared {
    config: JournalConfig,
    state: Mutex<State>,
    wake_writer: Condvar,
    wake_compactor: Condvar,
    /// `State::durable`, readable without the lock.
    durable: AtomicU64,
    /// A record was appended since the writer last took the batch: what
    /// the writer polls while it lingers after a sync.
    appended: AtomicBool,
    next_file_no: AtomicU64,
    stats: Stats,
    #[cfg(test)]
    gate: tests::support::Gate,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data, still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn intern(&self, key: &QueueKey) -> QueueRef {
        let mut st = self.lock();
        let before = st.queues.len();
        let queue = st.queues.intern(key);
        if st.queues.len() > before {
            st.counters.push(Counters::default());
            st.index.add_queue();
        }
        queue
    }

    fn queue_key(&self, queue: QueueRef) -> QueueKey {
        self.lock().queues.key(queue).expect("issued").clone()
    }

    /// Asks for a compaction if there is enough garbage. At most one per
    /// segment closed: garbage in the active segment stays until it is
    /// closed, and compacting again before that would only copy the same
    /// live records again.
    fn maybe_compact(&self, st: &mut State) {
        let config = &self.config;
        let garbage = st.garbage_bytes();
        let newly_closed = st.closed.iter().any(|s| s.header.kind == SegmentKind::Log);
        if !newly_closed || st.compacting || st.compact_requested {
            return;
        }
        let ratio_met = garbage as f64 >= config.compact_garbage_ratio * st.file_bytes as f64;
        let over_budget = st.file_bytes > config.max_disk_bytes && garbage * 8 >= st.file_bytes;
        if (garbage >= config.compact_min_garbage_bytes && ratio_met) || over_budget {
            st.compact_requested = true;
            self.wake_compactor.notify_one();
        }
    }
}

/// An open journal. Appends are cheap and never wait for the disk; the
/// callback given to [`open`](Journal::open) learns, on the writer thread,
/// which records are durable.
#[derive(Debug)]
pub struct Journal {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    compactor: Option<JoinHandle<()>>,
    /// Holds the data directory's lock.
    _lock: File,
}

impl Journal {
    /// Opens (or creates) the journal in `config.dir`, replays it, and starts
    /// its writer and compaction threads. `on_sync` is called on the writer
    /// thread after each batch; it must not block for long (it delays the
    /// next sync), and may append.
    pub fn open(
        config: JournalConfig,
        on_sync: impl FnMut(SyncReport) + Send + 'static,
    ) -> Result<(Self, Recovered), OpenError> {
        config.validate()?;
        let lock = dir::prepare(&config.dir)?;
        let max_frame = usize::try_from(config.max_record_bytes).unwrap_or(usize::MAX);
        let replayed = recover::replay(&config.dir, max_frame, now_ms())?;
        let recovered = replayed.recovered;
        let next_lsn = recovered.last_lsn.next();
        let file_no = replayed.next_file_no;
        let header = Header {
            kind: SegmentKind::Log,
            base: next_lsn,
        };
        let path = segment::segment_path(&config.dir, file_no);
        let file =
            segment::create(&config.dir, file_no, header).map_err(|source| OpenError::Io {
                path: path.clone(),
                source,
            })?;
        let active = Segment {
            file_no,
            header,
            path,
            bytes: HEADER_LEN as u64,
        };
        let file_bytes = replayed.segments.iter().map(|s| s.bytes).sum::<u64>() + active.bytes;
        let state = State {
            next_lsn,
            pending: Batch::default(),
            queues: replayed.queues,
            index: replayed.index,
            counters: replayed.counters,
            durable: recovered.last_lsn,
            max_id: recovered.id_floor,
            file_bytes,
            closed: replayed.segments,
            failed: None,
            writer_idle: false,
            closing: false,
            crashing: false,
            compact_requested: false,
            compacting: false,
            disk_full: false,
        };
        let shared = Arc::new(Shared {
            config: config.clone(),
            state: Mutex::new(state),
            wake_writer: Condvar::new(),
            wake_compactor: Condvar::new(),
            durable: AtomicU64::new(recovered.last_lsn.get()),
            appended: AtomicBool::new(false),
            next_file_no: AtomicU64::new(file_no + 1),
            stats: Stats::default(),
            #[cfg(test)]
            gate: tests::support::Gate::default(),
        });
        let writer = writer::Writer::new(
            Arc::clone(&shared),
            config.dir.clone(),
            file,
            active,
            Box::new(on_sync),
        );
        let writer = std::thread::Builder::new()
            .name("eventbus-journal".to_owned())
            .spawn(move || writer.run())
            .map_err(|source| OpenError::Spawn {
                thread: "writer",
                source,
            })?;
        let for_compactor = Arc::clone(&shared);
        let mut journal = Self {
            shared,
            writer: Some(writer),
            compactor: None,
            _lock: lock,
        };
        let compactor = std::thread::Builder::new()
            .name("eventbus-compact".to_owned())
            .spawn(move || compact::run(for_compactor))
            .map_err(|source| OpenError::Spawn {
                thread: "compaction",
                source,
            })?;
        journal.compactor = Some(compactor);
        {
            let mut st = journal.shared.lock();
            journal.shared.maybe_compact(&mut st);
        }
        if !recovered.loss.is_empty() {
            tracing::warn!(
                bytes = recovered.loss.bytes,
                places = recovered.loss.damage.len(),
                skipped_records = recovered.loss.skipped_records,
                "journal opened with losses"
            );
        }
        Ok((journal, recovered))
    }

    /// The handle of the durable queue `key` (the same for the same key for
    /// the journal's life). Cheap after the first call for a key; keep it.
    pub fn queue(&self, key: &QueueKey) -> QueueRef {
        self.shared.intern(key)
    }

    /// The framed size `record` takes in the journal (what counts against
    /// `max_disk_bytes` for an `Accepted` or `ResultKept`).
    pub fn record_len(record: &Record<'_>) -> u64 {
        codec::encoded_len(record) as u64
    }

    /// Whether a new message or reply of `len` framed bytes
    /// ([`record_len`](Self::record_len)) fits under `max_disk_bytes` now:
    /// the broker can apply a queue's overflow policy (evict, then append)
    /// before its append would be refused with the same error.
    pub fn would_fit(&self, len: u64) -> Result<(), AppendError> {
        let live = self.shared.lock().index.live_bytes();
        let limit = self.shared.config.max_disk_bytes;
        if live + len > limit {
            return Err(AppendError::DiskBudget { live, len, limit });
        }
        Ok(())
    }

    /// Whether new messages of `len` framed bytes in all would be taken now:
    /// the journal has not failed and is not closing, its backlog has room,
    /// and they fit under `max_disk_bytes` (what [`append`](Self::append)
    /// checks, in one look, so a caller can refuse before it changes
    /// anything). A full disk is not checked: it fails a batch, and the next
    /// batch is tried again.
    pub fn admits(&self, len: u64) -> Result<(), AppendError> {
        let config = &self.shared.config;
        let st = self.shared.lock();
        if let Some(error) = &st.failed {
            return Err(AppendError::Failed(error.clone()));
        }
        if st.closing || st.crashing {
            return Err(AppendError::Closed);
        }
        let pending = st.pending.bytes.len() as u64;
        if pending + len > config.max_pending_bytes {
            return Err(AppendError::Backlog {
                pending,
                limit: config.max_pending_bytes,
            });
        }
        let live = st.index.live_bytes();
        if live + len > config.max_disk_bytes {
            return Err(AppendError::DiskBudget {
                live,
                len,
                limit: config.max_disk_bytes,
            });
        }
        Ok(())
    }

    /// Appends `record` and returns its LSN; the writer thread makes it
    /// durable and reports it. Never waits for I/O: it copies the record
    /// into the pending batch under a short lock.
    ///
    /// Refused (and never written) when the pending batch is full
    /// ([`AppendError::Backlog`]), when an `Accepted` or `ResultKept` would
    /// take the live bytes past `max_disk_bytes`
    /// ([`AppendError::DiskBudget`]), when it is too large, names a queue
    /// this journal did not issue, or the journal has stopped or is closing.
    pub fn append(&self, record: Record<'_>) -> Result<Lsn, AppendError> {
        let len = codec::encoded_len(&record);
        let config = &self.shared.config;
        if len as u64 > config.max_record_bytes {
            return Err(AppendError::TooLarge {
                len: len as u64,
                limit: config.max_record_bytes,
            });
        }
        let mut st = self.shared.lock();
        if let Some(error) = &st.failed {
            return Err(AppendError::Failed(error.clone()));
        }
        if st.closing || st.crashing {
            return Err(AppendError::Closed);
        }
        if let Some(queue) = record.queue()
            && queue.index() >= st.queues.len()
        {
            return Err(AppendError::UnknownQueue(queue.0));
        }
        let pending = st.pending.bytes.len() as u64;
        if pending + len as u64 > config.max_pending_bytes {
            return Err(AppendError::Backlog {
                pending,
                limit: config.max_pending_bytes,
            });
        }
        if matches!(record, Record::Accepted { .. } | Record::ResultKept { .. }) {
            let live = st.index.live_bytes();
            if live + len as u64 > config.max_disk_bytes {
                return Err(AppendError::DiskBudget {
                    live,
                    len: len as u64,
                    limit: config.max_disk_bytes,
                });
            }
        }
        let lsn = st.push(&record, len);
        self.shared.appended.store(true, Ordering::Release);
        let wake = std::mem::replace(&mut st.writer_idle, false);
        // Notified after the lock is released: a writer woken while the
        // lock is still held would only sleep again on the mutex (one more
        // wake-up of the writer thread per quiet-bus record).
        drop(st);
        if wake {
            self.shared.wake_writer.notify_one();
        }
        Ok(lsn)
    }

    /// Every record up to here has been reported (durable or failed).
    pub fn durable_lsn(&self) -> Lsn {
        Lsn::new(self.shared.durable.load(Ordering::Acquire))
    }

    /// Live bytes of `queue` (its unsettled messages, framed): compare with
    /// the queue's own bound before appending, to apply its overflow policy.
    pub fn queue_live_bytes(&self, queue: QueueRef) -> u64 {
        self.shared.lock().index.queue_live_bytes(queue)
    }

    /// The space the journal takes.
    pub fn usage(&self) -> Usage {
        let st = self.shared.lock();
        Usage {
            live_bytes: st.index.live_bytes(),
            file_bytes: st.file_bytes,
            pending_bytes: st.pending.bytes.len() as u64,
            disk_full: st.disk_full,
        }
    }

    /// What the journal has done since it was opened.
    pub fn stats(&self) -> JournalStats {
        let s = &self.shared.stats;
        JournalStats {
            syncs: s.syncs.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            records: s.records.load(Ordering::Relaxed),
            failed_records: s.failed_records.load(Ordering::Relaxed),
            compactions: s.compactions.load(Ordering::Relaxed),
        }
    }

    /// Writes and syncs everything appended, stops the threads, and releases
    /// the directory. Blocks until the last sync: call it from a blocking
    /// context. Dropping the journal does the same, ignoring errors.
    pub fn close(mut self) -> Result<(), CloseError> {
        self.stop(false)
    }

    /// Stops the threads; with `crash`, without writing what is pending.
    fn stop(&mut self, crash: bool) -> Result<(), CloseError> {
        {
            let mut st = self.shared.lock();
            st.closing = true;
            st.crashing |= crash;
            self.shared.wake_writer.notify_all();
            self.shared.wake_compactor.notify_all();
        }
        let mut result = Ok(());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            result = Err(CloseError::Panicked("writer"));
        }
        if let Some(compactor) = self.compactor.take()
            && compactor.join().is_err()
        {
            result = Err(CloseError::Panicked("compaction"));
        }
        result?;
        let st = self.shared.lock();
        match &st.failed {
            Some(error) if !crash => Err(CloseError::Unwritten {
                from: st.durable,
                error: error.clone(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
impl Journal {
    /// Stops as a crash would: what is pending is never written (a sync
    /// held at the test gate completes first).
    pub(crate) fn crash(mut self) {
        {
            let mut st = self.shared.lock();
            st.crashing = true;
        }
        self.shared.gate.open();
        self.stop(true).expect("threads stop");
    }

    /// Marks the disk full, as a failed write for lack of space does (what
    /// reads the flag is tested here; the write that sets it is tested in
    /// `tests/disk_full.rs`, in a child process under a file size limit).
    pub(crate) fn mark_disk_full(&self) {
        self.shared.lock().disk_full = true;
    }

    /// Runs one compaction on the caller's thread.
    pub(crate) fn compact_now(&self) {
        compact::compact(&self.shared).expect("compaction");
    }

    /// The writer's sync gate.
    pub(crate) fn gate(&self) -> &tests::support::Gate {
        &self.shared.gate
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.stop(false);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
