//! What the `journal` fuzz target reaches (through `crate::fuzzing`):
//! segment files of any header and any frames, each frame sealed with a
//! good checksum so its body reaches the decoder, and the journal opened
//! as the broker opens it.

use std::path::Path;

use super::codec;
use super::record::Lsn;
use super::segment::{self, Header, SegmentKind};
use super::{Journal, JournalConfig, OpenError};

/// A segment file's header.
#[derive(Debug, Clone, Copy)]
pub enum SegmentHeader<'a> {
    /// A log segment based at `base`.
    Log {
        /// Its base LSN.
        base: u64,
    },
    /// A compacted segment based at `base`, replacing those based up to
    /// `covers`.
    Compacted {
        /// Its base LSN.
        base: u64,
        /// The last base it replaces.
        covers: u64,
    },
    /// These bytes instead of a header (torn, corrupt, another version).
    Raw(&'a [u8]),
}

/// A segment file.
#[derive(Debug, Clone)]
pub struct SegmentFile<'a> {
    /// Its header.
    pub header: SegmentHeader<'a>,
    /// Its frames: LSN, kind byte and body, each sealed with a good checksum.
    pub frames: Vec<(u64, u8, &'a [u8])>,
    /// Raw bytes after the frames (a torn or damaged end).
    pub tail: &'a [u8],
}

/// Writes `segments` as segment files 1, 2, … in `dir`.
pub fn write(dir: &Path, segments: &[SegmentFile<'_>]) -> std::io::Result<()> {
    for (file_no, s) in (1..).zip(segments) {
        let mut out = match s.header {
            SegmentHeader::Log { base } => Header {
                kind: SegmentKind::Log,
                base: Lsn::new(base),
            }
            .encode()
            .to_vec(),
            SegmentHeader::Compacted { base, covers } => Header {
                kind: SegmentKind::Compacted {
                    covers: Lsn::new(covers),
                },
                base: Lsn::new(base),
            }
            .encode()
            .to_vec(),
            SegmentHeader::Raw(bytes) => bytes.to_vec(),
        };
        for &(lsn, kind, body) in &s.frames {
            codec::encode_raw(&mut out, Lsn::new(lsn), kind, body);
        }
        out.extend_from_slice(s.tail);
        std::fs::write(segment::segment_path(dir, file_no), out)?;
    }
    Ok(())
}

/// What opening recovered, as plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// Each queue: its key, its messages (id, attempt, in flight, envelope
    /// length) in order, and its counters.
    pub queues: Vec<(String, Vec<(u64, u32, bool, usize)>, [u64; 11])>,
    /// Kept replies: id, expiry, length.
    pub results: Vec<(u64, u64, usize)>,
    /// The id floor.
    pub id_floor: u64,
    /// The last LSN read.
    pub last_lsn: u64,
    /// Bytes cut off or set aside.
    pub lost_bytes: u64,
    /// Places damaged.
    pub damaged: usize,
    /// Records skipped.
    pub skipped_records: u64,
}

/// Why opening failed.
#[derive(Debug)]
pub enum OpenFailure {
    /// A segment written by a newer format: refused, as it must be.
    NewerFormat,
    /// Anything else (a defect: the files are the fuzzer's, the directory
    /// is fine).
    Other(String),
}

/// Opens the journal in `dir` as the broker does (its threads and all),
/// at wall-clock time now, and closes it; with `compact`, after one
/// compaction of what it opened (on this thread: the compaction thread
/// runs only past the garbage thresholds, which a fuzz input never
/// reaches).
pub fn open(dir: &Path, compact: bool) -> Result<Opened, OpenFailure> {
    let (journal, recovered) =
        Journal::open(JournalConfig::new(dir), |_| {}).map_err(|e| match e {
            OpenError::NewerFormat { .. } => OpenFailure::NewerFormat,
            other => OpenFailure::Other(other.to_string()),
        })?;
    if compact {
        super::compact::compact(&journal.shared)
            .map_err(|e| OpenFailure::Other(format!("compaction: {e}")))?;
    }
    journal
        .close()
        .map_err(|e| OpenFailure::Other(format!("close: {e}")))?;
    Ok(Opened {
        queues: recovered
            .queues
            .iter()
            .map(|q| {
                let messages = q
                    .messages
                    .iter()
                    .map(|m| (m.id.get(), m.attempt, m.in_flight, m.envelope.len()))
                    .collect();
                let counters = super::Counter::ALL.map(|c| q.counters.get(c));
                (q.key.to_string(), messages, counters)
            })
            .collect(),
        results: recovered
            .results
            .iter()
            .map(|r| (r.id.get(), r.expires_at_ms, r.reply.len()))
            .collect(),
        id_floor: recovered.id_floor.get(),
        last_lsn: recovered.last_lsn.get(),
        lost_bytes: recovered.loss.bytes,
        damaged: recovered.loss.damage.len(),
        skipped_records: recovered.loss.skipped_records,
    })
}
