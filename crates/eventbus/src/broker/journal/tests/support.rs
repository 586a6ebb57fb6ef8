//! Test support: a gate the writer passes before each sync, so a test can
//! hold a sync open while others append.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::broker::journal::{
    Journal, JournalConfig, Lsn, MessageId, QueueKey, QueueRef, Record, Recovered, RecoveredQueue,
    SyncReport,
};
use crate::names::GroupName;
use crate::topic::TopicFilter;

/// Holds the writer before its syncs while closed.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    closed: bool,
    /// Syncs that reached the gate.
    arrived: u64,
}

impl Gate {
    /// Called by the writer before each sync.
    pub(crate) fn before_sync(&self) {
        let mut st = self.state.lock().unwrap();
        st.arrived += 1;
        self.changed.notify_all();
        while st.closed {
            st = self.changed.wait(st).unwrap();
        }
    }
}

impl Gate {
    /// Holds every sync from now on.
    pub(crate) fn close(&self) {
        self.state.lock().unwrap().closed = true;
    }

    /// Lets syncs go.
    pub(crate) fn open(&self) {
        self.state.lock().unwrap().closed = false;
        self.changed.notify_all();
    }

    /// Syncs that reached the gate so far.
    pub(crate) fn arrived(&self) -> u64 {
        self.state.lock().unwrap().arrived
    }

    /// Waits until `n` syncs have reached the gate in all.
    pub(crate) fn wait_arrived(&self, n: u64) {
        let deadline = Instant::now() + DEADLINE;
        let mut st = self.state.lock().unwrap();
        while st.arrived < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for sync {n} to start");
            st = self.changed.wait_timeout(st, left).unwrap().0;
        }
    }
}

/// How long any wait in a test may take before it counts as a failure.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// A config for tests: small segments so records roll over, no compaction
/// unless a test asks for it.
pub(crate) fn config(dir: &Path) -> JournalConfig {
    let mut config = JournalConfig::new(dir.join("data"));
    config.segment_bytes = 4096;
    config.max_record_bytes = 1024;
    config.max_pending_bytes = 1 << 20;
    config.compact_min_garbage_bytes = u64::MAX;
    config
}

/// A private temp dir.
pub(crate) fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ebj")
        .tempdir()
        .expect("temp dir")
}

/// Every report the writer made.
pub(crate) type Reports = Arc<Mutex<Vec<SyncReport>>>;

/// Opens `config`, collecting the reports.
pub(crate) fn open(config: &JournalConfig) -> (Journal, Recovered, Reports) {
    let reports: Reports = Arc::default();
    let sink = Arc::clone(&reports);
    let (journal, recovered) = Journal::open(config.clone(), move |report| {
        sink.lock().unwrap().push(report);
    })
    .expect("open");
    (journal, recovered, reports)
}

/// Reopens `config` and returns what it recovered.
pub(crate) fn reopen(config: &JournalConfig) -> Recovered {
    let (journal, recovered, _) = open(config);
    journal.close().expect("close");
    recovered
}

/// Waits until every record up to `lsn` has been reported.
pub(crate) fn wait_durable(journal: &Journal, lsn: Lsn) {
    let deadline = Instant::now() + DEADLINE;
    while journal.durable_lsn() < lsn {
        assert!(Instant::now() < deadline, "timed out waiting for LSN {lsn}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The queue `filter`/`group`.
pub(crate) fn key(filter: &str, group: &str) -> QueueKey {
    QueueKey::new(
        TopicFilter::new(filter).unwrap(),
        GroupName::new(group).unwrap(),
    )
}

/// The recovered queue `key`.
pub(crate) fn queue<'a>(recovered: &'a Recovered, key: &QueueKey) -> &'a RecoveredQueue {
    recovered
        .queues
        .iter()
        .find(|q| &q.key == key)
        .unwrap_or_else(|| panic!("queue {key} not recovered"))
}

/// The ids of a recovered queue's messages, in order.
pub(crate) fn ids(queue: &RecoveredQueue) -> Vec<u64> {
    queue.messages.iter().map(|m| m.id.get()).collect()
}

/// The segment files in `dir`, sorted by name.
pub(crate) fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}

/// An `Accepted` record of message `id` with `envelope`.
pub(crate) fn accepted(queue: QueueRef, id: u64, envelope: &[u8]) -> Record<'_> {
    Record::Accepted {
        queue,
        id: MessageId::new(id),
        attempt: 1,
        envelope,
    }
}

/// A frame as [`write_segment`] writes it, whatever it says: a record about
/// any queue number, a queue definition of any text, a checkpoint of any
/// counters.
#[derive(Debug, Clone)]
pub(crate) enum RawEntry<'a> {
    /// A record; its queue is the number a `Def` gave in the same segment.
    Record(Record<'a>),
    /// Names queue number `queue` for the rest of the segment.
    Def {
        queue: u32,
        filter: &'a str,
        group: &'a str,
    },
    /// Counters and an id floor as of `as_of`.
    Checkpoint {
        as_of: u64,
        id_floor: u64,
        counters: Vec<(u32, crate::broker::journal::Counters)>,
    },
}

/// Writes segment `file_no` in `dir` (the journal's own directory) holding
/// `frames` at their LSNs, each with a good checksum: a journal a bug, an
/// older broker or a hand could have written. `covers` makes it a
/// compacted segment replacing the segments based up to it.
pub(crate) fn write_segment(
    dir: &Path,
    file_no: u64,
    base: u64,
    covers: Option<u64>,
    frames: &[(u64, RawEntry<'_>)],
) {
    use crate::broker::journal::codec::{self, Entry};
    use crate::broker::journal::segment::{self, Header, SegmentKind};
    let kind = match covers {
        Some(covers) => SegmentKind::Compacted {
            covers: Lsn::new(covers),
        },
        None => SegmentKind::Log,
    };
    let mut out = Header {
        kind,
        base: Lsn::new(base),
    }
    .encode()
    .to_vec();
    for (lsn, raw) in frames {
        let entry = match raw {
            RawEntry::Record(record) => Entry::Record(*record),
            RawEntry::Def {
                queue,
                filter,
                group,
            } => Entry::QueueDef {
                queue: *queue,
                filter,
                group,
            },
            RawEntry::Checkpoint {
                as_of,
                id_floor,
                counters,
            } => Entry::Checkpoint {
                as_of: Lsn::new(*as_of),
                id_floor: MessageId::new(*id_floor),
                counters: counters.clone(),
            },
        };
        codec::encode(&mut out, Lsn::new(*lsn), &entry);
    }
    std::fs::write(segment::segment_path(dir, file_no), out).expect("segment written");
}
