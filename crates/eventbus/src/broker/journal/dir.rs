//! The data directory: made private, checked before use, locked while open,
//! and synced after its entries change.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::Path;

use super::error::OpenError;

/// The file whose lock says a journal has the directory open.
const LOCK_FILE: &str = "LOCK";

/// Creates `dir` (mode 0700 on Unix) if it is missing, refuses one that is
/// not private, and takes its lock; the returned file holds the lock until
/// it is dropped.
pub(crate) fn prepare(dir: &Path) -> Result<File, OpenError> {
    let io_err = |source| OpenError::Io {
        path: dir.to_path_buf(),
        source,
    };
    if !dir.exists() {
        create_private(dir).map_err(io_err)?;
    }
    let meta = fs::metadata(dir).map_err(io_err)?;
    if !meta.is_dir() {
        return Err(OpenError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    check_private(dir, &meta)?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| OpenError::Io {
            path: lock_path.clone(),
            source,
        })?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(OpenError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(source)) => Err(OpenError::Io {
            path: lock_path,
            source,
        }),
    }
}

#[cfg(unix)]
fn create_private(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// On Unix the directory must belong to this process's effective user and
/// be writable by nobody else: whoever can write it can forge the queues.
#[cfg(unix)]
fn check_private(dir: &Path, meta: &fs::Metadata) -> Result<(), OpenError> {
    use std::os::unix::fs::MetadataExt;
    let uid = rustix::process::geteuid().as_raw();
    let mode = meta.mode() & 0o7777;
    if meta.uid() != uid || mode & 0o022 != 0 {
        return Err(OpenError::UnsafeDir {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            mode,
        });
    }
    Ok(())
}

/// Windows: the directory's ACL is the user's business; nothing to compare.
#[cfg(not(unix))]
fn check_private(_dir: &Path, _meta: &fs::Metadata) -> Result<(), OpenError> {
    Ok(())
}

/// Makes the directory's entries (files created, renamed or removed)
/// durable.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows cannot open a directory as a file; NTFS journals its metadata.
#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}
