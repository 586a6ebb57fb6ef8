//! The filesystem collector: a bounded walk of one directory.
//!
//! The walk never follows symbolic links (they are counted, not entered), stops
//! descending below `max_depth` and stops altogether after `max_entries`
//! entries; either bound sets `truncated`. Memory is bounded by `max_entries`.
//! Unreadable entries are counted in `errors` and skipped.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::CollectError;
use super::fnv::{Fnv1a64, fnv1a64};

/// Files up to this size are hashed when a task asks for hashes.
pub const HASH_MAX_FILE_BYTES: u64 = 64 * 1024;

/// How far a walk may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkLimits {
    /// Deepest level listed; the entries of the root are level 1.
    pub max_depth: u32,
    /// Most entries visited.
    pub max_entries: u64,
    /// Whether to hash files of at most [`HASH_MAX_FILE_BYTES`].
    pub hash_small_files: bool,
}

/// What a filesystem task reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FsUsage {
    /// The directory walked, as given.
    pub path: PathBuf,
    /// Regular files seen.
    pub files: u64,
    /// Directories seen below the root (the root itself is not counted).
    pub dirs: u64,
    /// Symbolic links seen (never followed).
    pub symlinks: u64,
    /// Other entries: sockets, fifos, devices.
    pub others: u64,
    /// Total size of the regular files, in bytes.
    pub bytes: u64,
    /// Entries or directories that could not be read.
    pub errors: u64,
    /// Whether a bound (`max_depth` or `max_entries`) cut the walk short.
    pub truncated: bool,
    /// FNV-1a 64 over the sorted (relative path, file hash) pairs of every hashed
    /// file, as 16 hex digits; null unless hashes were asked for.
    pub content_hash: Option<String>,
    /// Files that went into `content_hash`.
    pub hashed_files: u64,
}

/// Walks `root` within `limits`.
pub fn walk(root: &Path, limits: WalkLimits) -> Result<FsUsage, CollectError> {
    let meta = std::fs::metadata(root).map_err(|source| CollectError::Io {
        path: root.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(CollectError::NotADirectory {
            path: root.to_owned(),
        });
    }
    let mut usage = FsUsage {
        path: root.to_owned(),
        ..FsUsage::default()
    };
    let mut hashes: Vec<(PathBuf, u64)> = Vec::new();
    let mut seen = 0u64;
    let mut pending = vec![(root.to_owned(), 0u32)];
    'walk: while let Some((dir, depth)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if dir == root => {
                return Err(CollectError::Io {
                    path: dir,
                    source: e,
                });
            }
            Err(_) => {
                usage.errors += 1;
                continue;
            }
        };
        for entry in entries {
            let Ok(entry) = entry else {
                usage.errors += 1;
                continue;
            };
            if seen >= limits.max_entries {
                usage.truncated = true;
                break 'walk;
            }
            seen += 1;
            // `DirEntry::metadata` does not follow symbolic links.
            let Ok(meta) = entry.metadata() else {
                usage.errors += 1;
                continue;
            };
            let kind = meta.file_type();
            let path = entry.path();
            if kind.is_symlink() {
                usage.symlinks += 1;
            } else if kind.is_file() {
                usage.files += 1;
                usage.bytes += meta.len();
                if limits.hash_small_files && meta.len() <= HASH_MAX_FILE_BYTES {
                    match hash_file(&path) {
                        Some(h) => hashes.push((relative(root, &path), h)),
                        None => usage.errors += 1,
                    }
                }
            } else if kind.is_dir() {
                usage.dirs += 1;
                if depth + 1 < limits.max_depth {
                    pending.push((path, depth + 1));
                } else if has_entries(&path) {
                    usage.truncated = true;
                }
            } else {
                usage.others += 1;
            }
        }
    }
    if limits.hash_small_files {
        usage.hashed_files = hashes.len() as u64;
        usage.content_hash = Some(format!("{:016x}", combine(hashes)));
    }
    Ok(usage)
}

/// Hashes a file of at most [`HASH_MAX_FILE_BYTES`]; `None` if it cannot be read
/// or grew past the bound meanwhile.
fn hash_file(path: &Path) -> Option<u64> {
    let file = std::fs::File::open(path).ok()?;
    let mut content = Vec::new();
    file.take(HASH_MAX_FILE_BYTES + 1)
        .read_to_end(&mut content)
        .ok()?;
    (content.len() as u64 <= HASH_MAX_FILE_BYTES).then(|| fnv1a64(&content))
}

fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_owned()
}

fn has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// One hash over all file hashes, independent of the order the walk saw them in.
fn combine(mut hashes: Vec<(PathBuf, u64)>) -> u64 {
    hashes.sort_unstable();
    let mut h = Fnv1a64::default();
    for (path, file_hash) in hashes {
        h.write(path.to_string_lossy().as_bytes());
        h.write(&[0]);
        h.write(&file_hash.to_le_bytes());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_depth: u32, max_entries: u64) -> WalkLimits {
        WalkLimits {
            max_depth,
            max_entries,
            hash_small_files: true,
        }
    }

    /// `a`(10 B), `sub/b`(20 B), `sub/deeper/c`(30 B), and a link to `sub`.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix("mcfs")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("a"), [1u8; 10]).unwrap();
        std::fs::write(root.join("sub/b"), [2u8; 20]).unwrap();
        std::fs::write(root.join("sub/deeper/c"), [3u8; 30]).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("sub"), root.join("link")).unwrap();
        dir
    }

    #[test]
    fn counts_files_dirs_and_bytes_without_following_links() {
        let dir = tree();
        let u = walk(dir.path(), limits(8, 100)).unwrap();
        assert_eq!(
            (u.files, u.dirs, u.bytes, u.truncated),
            (3, 2, 60, false),
            "{u:?}"
        );
        #[cfg(unix)]
        assert_eq!(u.symlinks, 1);
        assert_eq!(u.hashed_files, 3);
        let again = walk(dir.path(), limits(8, 100)).unwrap();
        assert_eq!(u.content_hash, again.content_hash);
        std::fs::write(dir.path().join("sub/b"), [9u8; 20]).unwrap();
        let changed = walk(dir.path(), limits(8, 100)).unwrap();
        assert_ne!(u.content_hash, changed.content_hash);
    }

    #[test]
    fn bounds_truncate_the_walk() {
        let dir = tree();
        let shallow = walk(dir.path(), limits(1, 100)).unwrap();
        assert_eq!(
            (shallow.files, shallow.dirs, shallow.truncated),
            (1, 1, true),
            "{shallow:?}"
        );
        let few = walk(dir.path(), limits(8, 2)).unwrap();
        assert!(
            few.truncated && few.files + few.dirs + few.symlinks == 2,
            "{few:?}"
        );
    }

    #[test]
    fn a_missing_root_or_a_file_root_is_an_error() {
        let dir = tree();
        assert!(matches!(
            walk(&dir.path().join("nope"), limits(4, 10)),
            Err(CollectError::Io { .. })
        ));
        assert!(matches!(
            walk(&dir.path().join("a"), limits(4, 10)),
            Err(CollectError::NotADirectory { .. })
        ));
    }
}
