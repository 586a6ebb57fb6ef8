//! [`SharedStream`]: one connection, read by one task and written by another
//! (or inline by whoever queued a frame while the writer is idle).
//!
//! On Unix the socket leaves `interprocess`'s tokio wrapper once accepted or
//! connected: tokio registers a stream for readability *and* writability,
//! edge-triggered, so every time the peer reads, this process is woken for an
//! `EPOLLOUT` it does not need: a second wake-up per message on the hot path.
//! Here the socket is registered for readability only; a write that would
//! block registers a duplicate of the descriptor for writability until the
//! write goes through, so write readiness is watched only under backpressure.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::Stream;

/// A connection shared by its reader and writer tasks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedStream(Arc<imp::Conn>);

impl SharedStream {
    /// Takes over an accepted or connected stream.
    pub fn new(stream: Stream) -> io::Result<Self> {
        Ok(Self(Arc::new(imp::Conn::new(stream)?)))
    }
}

impl tokio::io::AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_shutdown(cx)
    }
}

impl crate::framed::InlineSink for SharedStream {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
}

#[cfg(unix)]
mod imp {
    use std::io::{self, Read, Write};
    use std::net::Shutdown;
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::unix::net::UnixStream;
    use std::sync::Mutex;
    use std::task::{Context, Poll, ready};

    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    use super::Stream;

    /// Registers an owned descriptor with the runtime for `interest`.
    ///
    /// tokio deprecates the safe `with_interest` because a general `AsRawFd`
    /// could hand out a descriptor that is closed or replaced while registered;
    /// its replacement is `unsafe`, which this crate forbids. `T` here is always
    /// an owned socket (`UnixStream`, `OwnedFd`) that lives inside the `AsyncFd`
    /// and is never swapped, which is exactly the condition tokio asks for.
    #[allow(deprecated)]
    fn register<T: std::os::fd::AsRawFd>(inner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
        AsyncFd::with_interest(inner, interest)
    }

    /// Bytes read from the socket per `read`, at most.
    const READ_CHUNK: usize = 64 * 1024;

    thread_local! {
        /// Initialised memory each `read` lands in before it is copied to
        /// the caller's buffer: reading safely into uninitialised memory
        /// means zeroing it first, and the callers' buffers (fresh spare
        /// capacity of a `BytesMut`) would be zeroed whole on every read,
        /// up to 64 KiB for a 100-byte frame. Copying what was read costs
        /// only what was read. One per thread, not per connection: it holds
        /// nothing between reads (what was read is copied out before
        /// `poll_read` returns), and 64 KiB per connection was most of what
        /// an idle connection cost a broker with many clients.
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// The socket, watched for readability only, and a watcher for
    /// writability that exists only while a write is blocked.
    #[derive(Debug)]
    pub struct Conn {
        socket: AsyncFd<UnixStream>,
        write_wait: Mutex<Option<AsyncFd<OwnedFd>>>,
    }

    impl Conn {
        pub fn new(stream: Stream) -> io::Result<Self> {
            let fd = match stream {
                Stream::UdSocket(s) => OwnedFd::try_from(s)?,
            };
            let socket = UnixStream::from(fd);
            socket.set_nonblocking(true)?;
            Ok(Self {
                socket: register(socket, Interest::READABLE)?,
                write_wait: Mutex::new(None),
            })
        }

        pub fn poll_read(
            &self,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            loop {
                let mut guard = ready!(self.socket.poll_read_ready(cx))?;
                let want = buf.remaining().min(READ_CHUNK);
                // Nothing else runs on this thread while it is borrowed.
                let read = SCRATCH.with_borrow_mut(|scratch| {
                    if scratch.is_empty() {
                        scratch.resize(READ_CHUNK, 0);
                    }
                    let read = guard.try_io(|s| s.get_ref().read(&mut scratch[..want]));
                    if let Ok(Ok(n)) = read {
                        buf.put_slice(&scratch[..n]);
                    }
                    read
                });
                match read {
                    Ok(Ok(n)) => {
                        // Epoll is edge-triggered: a read that filled less
                        // than it asked for drained the socket, so wait for
                        // the next edge instead of making a read that can
                        // only say `WouldBlock` (tokio's own streams do the
                        // same). A hang-up is never cleared.
                        #[cfg(any(target_os = "linux", target_os = "android"))]
                        if n > 0 && n < want {
                            guard.clear_ready();
                        }
                        // Elsewhere the next read finds out.
                        #[cfg(not(any(target_os = "linux", target_os = "android")))]
                        let _ = n;
                        return Poll::Ready(Ok(()));
                    }
                    Ok(Err(e)) => return Poll::Ready(Err(e)),
                    Err(_would_block) => continue,
                }
            }
        }

        pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
            loop {
                match self.socket.get_ref().write(buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => return other,
                }
            }
        }

        pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            loop {
                match self.try_write(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    done => {
                        // Stop watching writability: it would wake us on every peer read.
                        self.lock_wait().take();
                        return Poll::Ready(done);
                    }
                }
                let mut wait = self.lock_wait();
                if wait.is_none() {
                    let dup = self.socket.get_ref().as_fd().try_clone_to_owned()?;
                    *wait = Some(register(dup, Interest::WRITABLE)?);
                }
                let watcher = wait.as_ref().expect("just ensured");
                let mut guard = ready!(watcher.poll_write_ready(cx))?;
                guard.clear_ready();
            }
        }

        pub fn poll_shutdown(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.lock_wait().take();
            match self.socket.get_ref().shutdown(Shutdown::Write) {
                Err(e) if e.kind() != io::ErrorKind::NotConnected => Poll::Ready(Err(e)),
                _ => Poll::Ready(Ok(())),
            }
        }

        fn lock_wait(&self) -> std::sync::MutexGuard<'_, Option<AsyncFd<OwnedFd>>> {
            self.write_wait.lock().unwrap_or_else(|p| p.into_inner())
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::Stream;

    /// Elsewhere `interprocess`'s tokio stream is used as it is.
    #[derive(Debug)]
    pub struct Conn(Stream);

    impl Conn {
        pub fn new(stream: Stream) -> io::Result<Self> {
            Ok(Self(stream))
        }

        pub fn poll_read(
            &self,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            tokio::io::AsyncRead::poll_read(Pin::new(&mut &self.0), cx, buf)
        }

        pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
            // Only called while the writer task is idle, so no task's waker for
            // write readiness is registered that this no-op one could replace.
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match tokio::io::AsyncWrite::poll_write(Pin::new(&mut &self.0), &mut cx, buf) {
                Poll::Ready(result) => result,
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            }
        }

        pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            tokio::io::AsyncWrite::poll_write(Pin::new(&mut &self.0), cx, buf)
        }

        pub fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut &self.0), cx)
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    use interprocess::local_socket::traits::tokio::Listener as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Reads once, failing the test if nothing comes within five seconds.
    async fn read(reader: &mut SharedStream, buf: &mut [u8]) -> usize {
        tokio::time::timeout(Duration::from_secs(5), reader.read(buf))
            .await
            .expect("the read completes")
            .unwrap()
    }

    /// A peer that writes and hangs up before the reader wakes: the short
    /// read that drains the data must not lose the end of the stream, and
    /// data written after a short read still wakes the reader.
    #[tokio::test]
    async fn short_reads_neither_miss_the_end_nor_later_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = super::super::bind(&path).unwrap();
        let client = super::super::connect(&path).await.unwrap();
        let mut reader = SharedStream::new(listener.accept().await.unwrap()).unwrap();
        let mut writer = SharedStream::new(client).unwrap();
        let mut buf = vec![0u8; 4096];

        writer.write_all(b"first").await.unwrap();
        assert_eq!(read(&mut reader, &mut buf).await, 5);
        writer.write_all(b"second").await.unwrap();
        assert_eq!(read(&mut reader, &mut buf).await, 6);

        writer.write_all(b"last").await.unwrap();
        writer.shutdown().await.unwrap();
        drop(writer);
        assert_eq!(read(&mut reader, &mut buf).await, 4);
        assert_eq!(read(&mut reader, &mut buf).await, 0, "the end is seen");
    }
}
