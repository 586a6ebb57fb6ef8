//! The journal's bounds, each with its default.

use std::path::PathBuf;

use super::codec::FRAME_HEADER;
use super::error::OpenError;
use super::segment::HEADER_LEN;

/// Where the journal lives and what it bounds.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JournalConfig {
    /// The data directory (created 0700 if missing).
    pub dir: PathBuf,
    /// A log segment is closed and a new one started once it reaches this
    /// size (default 64 MiB).
    pub segment_bytes: u64,
    /// Most live bytes (unsettled messages and kept replies, as framed on
    /// disk): beyond it, `Accepted` and `ResultKept` are refused with
    /// `AppendError::DiskBudget` (default 1 GiB). Settled records and
    /// garbage not yet compacted are on top; compaction keeps the garbage
    /// under `compact_garbage_ratio` of the files.
    pub max_disk_bytes: u64,
    /// Most bytes appended and not yet taken by the writer: beyond it,
    /// appends are refused with `AppendError::Backlog` (default 64 MiB). The
    /// writer holds at most one more batch of this size while it writes it.
    pub max_pending_bytes: u64,
    /// Largest record, framed (default 16 MiB). Also the largest frame a
    /// reader trusts: a length over it is damage.
    pub max_record_bytes: u64,
    /// Compaction runs when garbage (bytes of records no longer needed) is
    /// at least this share of the files' bytes (default 0.5) ...
    pub compact_garbage_ratio: f64,
    /// ... and at least this many bytes (default 16 MiB).
    pub compact_min_garbage_bytes: u64,
}

impl JournalConfig {
    /// The defaults, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            max_disk_bytes: 1 << 30,
            max_pending_bytes: 64 << 20,
            max_record_bytes: 16 << 20,
            compact_garbage_ratio: 0.5,
            compact_min_garbage_bytes: 16 << 20,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), OpenError> {
        let check = |field, value: u64, ok: bool, rule| {
            if ok {
                Ok(())
            } else {
                Err(OpenError::Config { field, value, rule })
            }
        };
        let min_record = (FRAME_HEADER + 64) as u64;
        check(
            "max_record_bytes",
            self.max_record_bytes,
            (min_record..=u64::from(u32::MAX)).contains(&self.max_record_bytes),
            "at least 81 and under 4 GiB",
        )?;
        check(
            "segment_bytes",
            self.segment_bytes,
            self.segment_bytes >= HEADER_LEN as u64 + self.max_record_bytes,
            "at least the header (32) + max_record_bytes",
        )?;
        check(
            "max_pending_bytes",
            self.max_pending_bytes,
            self.max_pending_bytes >= self.max_record_bytes,
            "at least max_record_bytes",
        )?;
        check(
            "max_disk_bytes",
            self.max_disk_bytes,
            self.max_disk_bytes > 0,
            "more than 0",
        )?;
        let ratio = self.compact_garbage_ratio;
        check(
            "compact_garbage_ratio (in thousandths)",
            (ratio * 1000.0) as u64,
            ratio > 0.0 && ratio < 1.0,
            "between 0 and 1, exclusive",
        )
    }
}
