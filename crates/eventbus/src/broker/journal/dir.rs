//! The data directory: made private, checked before use, locked while open,
//! and synced after its entries change.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::error::OpenError;

/// The file whose lock says a journal has the directory open.
const LOCK_FILE: &str = "LOCK";

/// How long opening waits for the lock before it reports the directory in
/// use. The lock belongs to the open file, and a process spawned while it
/// was open (an agent embedding the broker starts a collector; a test
/// runner starts a child) holds a copy of it until the new program starts,
/// a moment after the journal that took it closed. A journal open in
/// another process keeps it, and is reported after this wait.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// How often the lock is tried again within [`LOCK_WAIT`].
const LOCK_RETRY: Duration = Duration::from_millis(5);

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
    let start = Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(LOCK_RETRY);
            }
            Err(TryLockError::WouldBlock) => {
                return Err(OpenError::Locked {
                    path: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(OpenError::Io {
                    path: lock_path,
                    source,
                });
            }
        }
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_copy_of_the_lock_that_goes_away_is_waited_for() {
        let tmp = crate::broker::journal::tests::support::temp_dir();
        let dir = tmp.path().join("data");
        let lock = prepare(&dir).expect("first open");
        // What a process spawned while the journal was open holds until it
        // runs its program: the same open file, so the same lock.
        let copy = lock.try_clone().expect("a copy");
        drop(lock);
        let exec = std::thread::spawn(move || {
            std::thread::sleep(LOCK_WAIT / 10);
            drop(copy);
        });
        prepare(&dir).expect("opened once the copy is gone");
        exec.join().expect("the copy's thread");
    }
}
