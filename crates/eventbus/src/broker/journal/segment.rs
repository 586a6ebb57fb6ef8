//! Segment files: their header, their names, and how they are listed.
//!
//! ```text
//! offset 0   magic     8 bytes  "EVBJRNL\0"
//! offset 8   version   u16 LE   FORMAT_VERSION; a newer one is refused
//! offset 10  kind      u8       1 = log (appended), 2 = compacted (rewritten)
//! offset 11  reserved  u8       0
//! offset 12  crc       u32 LE   CRC32C of bytes 0..12 and 16..32
//! offset 16  base      u64 LE   log: LSN of its first record; compacted: the
//!                               base of the first segment it replaces
//! offset 24  covers    u64 LE   compacted: the base of the last segment it
//!                               replaces; log: 0
//! offset 32  frames (codec.rs)
//! ```
//!
//! A file is named by its file number, `{:016x}.seg`, numbers only growing
//! (`.tmp` while compaction writes it). Replay goes by base LSN, so a
//! compacted file, newer than the segments after the ones it replaced, is
//! read before them.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::record::Lsn;

/// The format this code writes and the newest it reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of a segment's header.
pub(crate) const HEADER_LEN: usize = 32;
const MAGIC: &[u8; 8] = b"EVBJRNL\0";
const SEGMENT_EXT: &str = "seg";
const TEMP_EXT: &str = "tmp";

/// What wrote a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentKind {
    /// Appended by the writer, one batch after another.
    Log,
    /// Written whole by compaction, replacing the segments whose bases are
    /// in `base..=covers`.
    Compacted { covers: Lsn },
}

/// A segment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: SegmentKind,
    pub base: Lsn,
}

/// Why a segment's header could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Shorter than a header: the file was being created when the process
    /// died.
    Short,
    /// Not a journal segment, or a damaged header.
    Corrupt,
    /// Written by a newer format.
    Newer(u16),
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let (kind, covers) = match self.kind {
            SegmentKind::Log => (1, 0),
            SegmentKind::Compacted { covers } => (2, covers.get()),
        };
        out[10] = kind;
        out[16..24].copy_from_slice(&self.base.get().to_le_bytes());
        out[24..32].copy_from_slice(&covers.to_le_bytes());
        let crc = header_crc(&out);
        out[12..16].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self, HeaderError> {
        let Some(buf) = buf.get(..HEADER_LEN) else {
            return Err(HeaderError::Short);
        };
        if &buf[0..8] != MAGIC {
            return Err(HeaderError::Corrupt);
        }
        // The version before the checksum: a newer format may check its
        // header differently, and must be refused, not called corrupt.
        let version = u16::from_le_bytes([buf[8], buf[9]]);
        if version > FORMAT_VERSION {
            return Err(HeaderError::Newer(version));
        }
        let crc = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes"));
        if version == 0 || crc != header_crc(buf) || buf[11] != 0 {
            return Err(HeaderError::Corrupt);
        }
        let base = Lsn::new(u64::from_le_bytes(buf[16..24].try_into().expect("8")));
        let covers = Lsn::new(u64::from_le_bytes(buf[24..32].try_into().expect("8")));
        let kind = match buf[10] {
            1 if covers == Lsn::ZERO => SegmentKind::Log,
            2 if covers >= base => SegmentKind::Compacted { covers },
            _ => return Err(HeaderError::Corrupt),
        };
        Ok(Self { kind, base })
    }
}

fn header_crc(buf: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&buf[0..12]), &buf[16..32])
}

/// A segment file in the data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Its number, from its name; newer files have larger ones.
    pub file_no: u64,
    pub header: Header,
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The path of segment `file_no` in `dir`.
pub(crate) fn segment_path(dir: &Path, file_no: u64) -> PathBuf {
    dir.join(format!("{file_no:016x}.{SEGMENT_EXT}"))
}

/// The path compaction writes segment `file_no` to before it is complete.
pub(crate) fn temp_path(dir: &Path, file_no: u64) -> PathBuf {
    dir.join(format!("{file_no:016x}.{TEMP_EXT}"))
}

/// A file in the data dir, by what its name says it is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DirEntry {
    /// A segment, with its file number.
    Segment(u64, PathBuf),
    /// A compaction output that was never completed.
    Temp(u64, PathBuf),
}

/// The segment and temporary files in `dir` by file number (other files are
/// left alone).
pub(crate) fn list(dir: &Path) -> io::Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        let Ok(file_no) = u64::from_str_radix(stem, 16) else {
            continue;
        };
        if stem.len() != 16 {
            continue;
        }
        match ext {
            SEGMENT_EXT => out.push(DirEntry::Segment(file_no, path)),
            TEMP_EXT => out.push(DirEntry::Temp(file_no, path)),
            _ => {}
        }
    }
    out.sort_by_key(|entry| match entry {
        DirEntry::Segment(no, _) | DirEntry::Temp(no, _) => *no,
    });
    Ok(out)
}

/// Creates segment `file_no` with `header`, durably (file and directory
/// entry), and returns it open for writing, positioned after the header.
pub(crate) fn create(dir: &Path, file_no: u64, header: Header) -> io::Result<File> {
    let path = segment_path(dir, file_no);
    let result = (|| {
        // Written at the file's position rather than in append mode: a
        // failed write is cut back with `set_len`, which Windows refuses on
        // a handle opened for appending.
        let mut file = fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        file.write_all(&header.encode())?;
        file.sync_data()?;
        super::dir::sync_dir(dir)?;
        Ok(file)
    })();
    if result.is_err() {
        // Best effort: a half-made file is also ignored at the next open.
        let _ = fs::remove_file(&path);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_damage_is_told_apart_from_a_newer_format() {
        for kind in [
            SegmentKind::Log,
            SegmentKind::Compacted {
                covers: Lsn::new(90),
            },
        ] {
            let header = Header {
                kind,
                base: Lsn::new(7),
            };
            let bytes = header.encode();
            assert_eq!(Header::decode(&bytes), Ok(header));
            assert_eq!(
                Header::decode(&bytes[..HEADER_LEN - 1]),
                Err(HeaderError::Short)
            );
            for at in (0..HEADER_LEN).filter(|at| !(8..10).contains(at)) {
                let mut bad = bytes;
                bad[at] ^= 1;
                assert_eq!(Header::decode(&bad), Err(HeaderError::Corrupt), "byte {at}");
            }
            let mut newer = bytes;
            newer[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
            assert_eq!(
                Header::decode(&newer),
                Err(HeaderError::Newer(FORMAT_VERSION + 1))
            );
        }
    }
}
