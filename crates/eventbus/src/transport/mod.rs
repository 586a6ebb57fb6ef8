//! Transport: where the broker's socket lives, binding it safely, and connecting to it.
//!
//! Unix uses Unix domain sockets; Windows uses named pipes (through `interprocess`,
//! whose local sockets pick the right one). The rest of the crate sees only
//! [`SharedStream`].
//!
//! On Unix the socket file is created with mode 0600, inside a directory created with
//! mode 0700 when it does not exist yet, and each accepted peer's effective uid is
//! checked against the broker's own (plus any uids the configuration allows).
//! On Windows every pipe instance carries a security descriptor that admits only
//! the broker's own user (`pipe_security.rs`), so Windows refuses other users'
//! clients when they open the pipe.

use std::io;
use std::path::{Path, PathBuf};

use interprocess::local_socket::tokio::prelude::*;
pub use interprocess::local_socket::tokio::{Listener, Stream};

#[cfg(windows)]
mod pipe_security;
mod shared;
use interprocess::local_socket::{ConnectOptions, ListenerOptions, Name};
pub use shared::SharedStream;

/// Environment variable that overrides the default socket path for every binary.
pub const SOCKET_ENV: &str = "EVENTBUS_SOCKET";

/// Why the broker could not take its socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// A live broker already accepts connections on this path; it is left alone.
    #[error("another broker is listening on {path}")]
    AlreadyRunning {
        /// The contested socket path.
        path: PathBuf,
    },
    /// The path exists and is not a socket, so it is not ours to replace.
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket {
        /// The offending path.
        path: PathBuf,
    },
    /// The socket directory belongs to someone else, or (the `/tmp`
    /// fallback) others may write to it: whoever controls it could replace
    /// the socket with their own.
    #[error("socket directory {dir} is unsafe: {reason}")]
    UnsafeDirectory {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The pipe name is held by another process: a running broker, or any
    /// other program (Windows refuses a second first instance of a named pipe
    /// with "access denied"); it is left alone.
    #[error("the pipe {path} is already held by another process (a running broker?)")]
    NameTaken {
        /// The contested socket path, whose file name names the pipe.
        path: PathBuf,
    },
    /// The socket directory could not be created.
    #[error("cannot create socket directory {dir}")]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Any other I/O failure while binding.
    #[error("cannot listen on {path}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// The socket path every eventbus binary uses when none is given:
/// `$EVENTBUS_SOCKET`, else `$XDG_RUNTIME_DIR/eventbus/broker.sock`, else
/// `/tmp/eventbus-<uid>/broker.sock` (on Windows, a pipe named `eventbus-broker.sock`).
pub fn default_socket_path() -> PathBuf {
    if let Some(path) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(dir).join("eventbus").join("broker.sock");
    }
    fallback_socket_path()
}

#[cfg(unix)]
fn fallback_socket_path() -> PathBuf {
    let uid = rustix::process::getuid().as_raw();
    PathBuf::from(format!("/tmp/eventbus-{uid}/broker.sock"))
}

/// Why the directory of socket `path` may not be trusted, if it may not:
/// it must belong to this user (or root), and the `/tmp` fallback directory
/// (which anyone could have made first) must be this user's with mode 0700.
#[cfg(unix)]
pub fn socket_dir_problem(path: &Path) -> Option<(PathBuf, &'static str)> {
    dir_problem(path, fallback_socket_path().parent()?)
}

#[cfg(unix)]
fn dir_problem(path: &Path, fallback_dir: &Path) -> Option<(PathBuf, &'static str)> {
    use std::os::unix::fs::MetadataExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    let meta = std::fs::metadata(dir).ok()?;
    let own = current_uid();
    if dir == fallback_dir {
        if meta.uid() != own {
            return Some((
                dir.to_owned(),
                "the /tmp fallback directory belongs to another user",
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Some((
                dir.to_owned(),
                "the /tmp fallback directory must have mode 0700",
            ));
        }
    } else if meta.uid() != own && meta.uid() != 0 {
        return Some((dir.to_owned(), "it belongs to another user"));
    }
    None
}

/// Without Unix ownership, nothing to check here (see the pipe's access
/// control instead).
#[cfg(not(unix))]
pub fn socket_dir_problem(_path: &Path) -> Option<(PathBuf, &'static str)> {
    None
}

#[cfg(not(unix))]
fn fallback_socket_path() -> PathBuf {
    PathBuf::from("eventbus-broker.sock")
}

/// The uid this process runs as, which peers must share unless allowed otherwise.
#[cfg(unix)]
pub fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

#[cfg(unix)]
fn socket_name(path: &Path) -> io::Result<Name<'_>> {
    use interprocess::local_socket::GenericFilePath;
    path.to_fs_name::<GenericFilePath>()
}

#[cfg(windows)]
fn socket_name(path: &Path) -> io::Result<Name<'static>> {
    use interprocess::local_socket::GenericNamespaced;
    // Named pipes live in their own namespace: the path's file name names the pipe.
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "eventbus-broker.sock".to_owned());
    file.to_ns_name::<GenericNamespaced>()
        .map(|n| n.into_owned())
}

/// Connects to the broker socket at `path`. On Windows the pipe's server must
/// run as this user (`PermissionDenied` otherwise).
///
/// # Cancel safety
///
/// Cancel safe: cancelled, the half-made connection is dropped.
pub async fn connect(path: &Path) -> io::Result<Stream> {
    let name = socket_name(path)?;
    let stream = ConnectOptions::new().name(name).connect_tokio().await?;
    #[cfg(windows)]
    pipe_security::check_server(&stream)?;
    Ok(stream)
}

/// Binds the broker's listener at `path`, replacing a stale socket file left by a
/// dead broker but never one a live broker still listens on.
pub fn bind(path: &Path) -> Result<Listener, BindError> {
    prepare_directory(path)?;
    if let Some((dir, reason)) = socket_dir_problem(path) {
        return Err(BindError::UnsafeDirectory { dir, reason });
    }
    match create_listener(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            reclaim_if_stale(path)?;
            create_listener(path)
        }
        Err(e) if cfg!(windows) && e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(BindError::NameTaken {
                path: path.to_owned(),
            });
        }
        other => other,
    }
    .map_err(|source| BindError::Io {
        path: path.to_owned(),
        source,
    })
}

fn create_listener(path: &Path) -> io::Result<Listener> {
    let options = ListenerOptions::new()
        .name(socket_name(path)?)
        .reclaim_name(true)
        .try_overwrite(false);
    #[cfg(unix)]
    let options = {
        use interprocess::os::unix::local_socket::ListenerOptionsExt;
        options.mode(0o600)
    };
    #[cfg(windows)]
    let options = {
        use interprocess::os::windows::local_socket::ListenerOptionsExt;
        options.security_descriptor(pipe_security::owner_only()?)
    };
    options.create_tokio()
}

#[cfg(unix)]
fn prepare_directory(path: &Path) -> Result<(), BindError> {
    use std::os::unix::fs::DirBuilderExt;
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| BindError::Directory {
            dir: dir.to_owned(),
            source,
        })
}

#[cfg(not(unix))]
fn prepare_directory(_path: &Path) -> Result<(), BindError> {
    Ok(())
}

/// Called when the path is taken: a socket nobody answers on is a dead broker's and
/// is removed; anything else is refused.
#[cfg(unix)]
fn reclaim_if_stale(path: &Path) -> Result<(), BindError> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::symlink_metadata(path).map_err(|source| BindError::Io {
        path: path.to_owned(),
        source,
    })?;
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket {
            path: path.to_owned(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(BindError::AlreadyRunning {
            path: path.to_owned(),
        }),
        Err(_) => std::fs::remove_file(path).map_err(|source| BindError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(not(unix))]
fn reclaim_if_stale(path: &Path) -> Result<(), BindError> {
    Err(BindError::AlreadyRunning {
        path: path.to_owned(),
    })
}

/// The effective uid of the process at the other end of `stream`, where the
/// platform reports one.
#[cfg(unix)]
pub fn peer_uid(stream: &Stream) -> Option<u32> {
    stream.peer_creds().ok().and_then(|c| c.euid())
}

/// The process id at the other end of `stream`, where the platform reports one.
pub fn peer_pid(stream: &Stream) -> Option<u32> {
    stream
        .peer_creds()
        .ok()
        .and_then(|c| c.pid())
        .and_then(|p| u32::try_from(i64::from(p)).ok())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_fallback_directory_must_be_ours_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("eventbus-test");
        std::fs::create_dir(&dir).unwrap();
        let socket = dir.join("broker.sock");
        let mode =
            |m: u32| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).unwrap();
        mode(0o700);
        assert_eq!(dir_problem(&socket, &dir), None);
        mode(0o755);
        assert!(dir_problem(&socket, &dir).is_some_and(|(_, r)| r.contains("0700")));
        // Any other directory only has to be ours (or root's).
        assert_eq!(dir_problem(&socket, Path::new("/elsewhere")), None);
        if current_uid() == 0 {
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            mode(0o700);
            assert!(dir_problem(&socket, &dir).is_some_and(|(_, r)| r.contains("another user")));
            assert!(
                dir_problem(&socket, Path::new("/elsewhere"))
                    .is_some_and(|(_, r)| r.contains("another user"))
            );
        }
    }
}
