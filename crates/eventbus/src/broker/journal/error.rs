//! One error type per operation of the journal.

use std::io;
use std::path::PathBuf;

use super::record::Lsn;

/// Why [`Journal::open`](super::Journal::open) failed. A damaged tail is not
/// one of them: it is truncated and reported in the
/// [`LossReport`](super::LossReport).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A configuration value is out of range.
    #[error("invalid journal config: {field} = {value} ({rule})")]
    Config {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What it must be.
        rule: &'static str,
    },
    /// The data directory path names something that is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The data directory belongs to another user or is writable by group or
    /// others (Unix).
    #[error(
        "{path} is not private: owner uid {owner}, mode {mode:o} (want this user's, not group/world-writable)"
    )]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// Another journal (another broker) has the directory open.
    #[error("{path} is in use by another journal")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// A segment was written by a newer format than this build reads.
    #[error("{path} has journal format {found}; this build reads up to {supported}")]
    NewerFormat {
        /// The segment.
        path: PathBuf,
        /// Its format version.
        found: u16,
        /// The newest this build reads.
        supported: u16,
    },
    /// Reading, truncating or creating a file failed.
    #[error("journal I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The writer or compaction thread could not be started.
    #[error("starting the journal's {thread} thread: {source}")]
    Spawn {
        /// Which thread.
        thread: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Why [`Journal::append`](super::Journal::append) refused a record. A
/// refused record has no LSN and will never be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// Appended records waiting for the writer already fill
    /// `max_pending_bytes`: the disk is slower than the appends.
    #[error("journal backlog full: {pending} bytes waiting to be written (limit {limit})")]
    Backlog {
        /// Bytes waiting.
        pending: u64,
        /// `max_pending_bytes`.
        limit: u64,
    },
    /// Keeping this message or reply would take the live bytes past
    /// `max_disk_bytes`.
    #[error("journal full: {live} live bytes + {len} would pass max_disk_bytes {limit}")]
    DiskBudget {
        /// Live bytes now.
        live: u64,
        /// The record's size.
        len: u64,
        /// `max_disk_bytes`.
        limit: u64,
    },
    /// The record is larger than `max_record_bytes`.
    #[error("journal record of {len} bytes is over the limit of {limit}")]
    TooLarge {
        /// Its size.
        len: u64,
        /// `max_record_bytes`.
        limit: u64,
    },
    /// The record names a queue this journal did not issue.
    #[error("queue handle {0} was not issued by this journal")]
    UnknownQueue(u32),
    /// A sync failed in a way that leaves the disk's content unknown (the
    /// kernel may have dropped the dirty pages): the journal takes nothing
    /// more; restart to recover from what is on disk.
    #[error("the journal stopped after a failed sync: {0}")]
    Failed(DiskError),
    /// The journal is closing.
    #[error("the journal is closed")]
    Closed,
}

/// Why records could not be made durable (reported in a
/// [`SyncReport`](super::SyncReport)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiskError {
    /// No space: `ENOSPC`, a quota, or a file size limit (`EFBIG`). The
    /// journal goes on: later records are tried again as space comes back.
    #[error("disk full ({kind})")]
    Full {
        /// The error's kind.
        kind: io::ErrorKind,
    },
    /// Any other I/O error.
    #[error("disk error ({kind}): {message}")]
    Io {
        /// The error's kind.
        kind: io::ErrorKind,
        /// The error's text, for the log.
        message: String,
    },
}

impl DiskError {
    pub(crate) fn from_io(error: &io::Error) -> Self {
        match error.kind() {
            kind @ (io::ErrorKind::StorageFull
            | io::ErrorKind::FileTooLarge
            | io::ErrorKind::QuotaExceeded) => DiskError::Full { kind },
            kind => DiskError::Io {
                kind,
                message: error.to_string(),
            },
        }
    }

    /// Whether it is a lack of space.
    pub fn is_full(&self) -> bool {
        matches!(self, DiskError::Full { .. })
    }
}

/// Why [`Journal::close`](super::Journal::close) could not write everything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// Records from `from` on were not written.
    #[error("records from LSN {from} on were not written: {error}")]
    Unwritten {
        /// The first record not written.
        from: Lsn,
        /// Why.
        error: DiskError,
    },
    /// A journal thread panicked.
    #[error("the journal's {0} thread panicked")]
    Panicked(&'static str),
}
