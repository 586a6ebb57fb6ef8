//! The write side: a bounded queue of frames per connection, the writer
//! task that drains it, and the inline flush that lets the task that queued a
//! frame write it when the writer is idle (one "pen": only its holder writes,
//! which keeps frames in order). The answers to a burst the reader handed
//! over go out in one write (`burst`).

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::idle::{IDLE_TRIM, WriterBufs};
use super::{OverflowPolicy, READ_BUFFER_BYTES};
use crate::codec::raw::{RawPublishOut, StampedDeliver, StampedReply};
use crate::codec::{FrameCodec, FrameError};
use crate::proto::{Frame, frame::Kind};

/// The writer issues a write once this many bytes are encoded, so a large batch
/// is written in chunks from one bounded buffer instead of growing it.
const WRITE_CHUNK_BYTES: usize = 256 * 1024;

/// A fan-out delivery queued behind this many frames gets its own copy of
/// the bytes it shares with a read buffer (see [`Outbound::push_droppable`]).
pub const DETACH_AFTER: usize = 64;

/// The bounds of one outbound queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundLimits {
    /// Most droppable frames buffered before the policy applies.
    pub max_len: usize,
    /// Most bytes of droppable frames buffered before the policy applies.
    pub max_bytes: usize,
    /// What happens to a droppable frame at the bound.
    pub policy: OverflowPolicy,
    /// Most frames of any kind buffered before the peer counts as too slow.
    pub hard_cap: usize,
    /// Most bytes of frames of any kind buffered before the peer counts as too slow.
    pub hard_cap_bytes: usize,
}

/// What an outbound queue holds: a frame, encoded when it is written, or
/// one of the two hot frames kept as their parts and encoded by hand straight
/// into the write buffer (the broker's fan-out delivery, a client's
/// fire-and-forget publish).
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A frame to encode.
    Frame(Frame),
    /// A delivery: the publisher's envelope bytes and the broker's stamps.
    Deliver(StampedDeliver),
    /// A reply forwarded to its requester: the responder's envelope bytes
    /// and the broker's stamps.
    Reply(StampedReply),
    /// A fire-and-forget publish, encoded straight into the write buffer.
    Publish(RawPublishOut),
}

impl From<Frame> for Outgoing {
    fn from(frame: Frame) -> Self {
        Self::Frame(frame)
    }
}

impl Outgoing {
    /// Gives it its own copy of bytes it may share with a larger buffer (a
    /// delivery's envelope or payload, sliced from the read buffer it
    /// arrived in), so holding it holds only what it is.
    pub fn detach(&mut self) {
        match self {
            Self::Deliver(deliver) => deliver.detach(),
            Self::Frame(Frame {
                kind: Some(Kind::Deliver(d)),
            }) => {
                if let Some(m) = d.message.as_mut() {
                    m.payload = Bytes::copy_from_slice(&m.payload);
                }
            }
            Self::Frame(_) | Self::Publish(_) | Self::Reply(_) => {}
        }
    }

    /// Bytes it is counted as against the queue's byte bounds.
    pub fn weight(&self) -> usize {
        match self {
            Self::Frame(frame) => frame_weight(frame),
            Self::Deliver(deliver) => 4 + deliver.frame_len(),
            Self::Reply(reply) => 4 + reply.frame_len(),
            Self::Publish(publish) => 4 + publish.frame_len(),
        }
    }

    /// Appends its encoding to `dst`; on error (over the codec's limit) `dst`
    /// is left as it was.
    pub fn encode(&self, codec: &FrameCodec, dst: &mut BytesMut) -> Result<(), FrameError> {
        let max = codec.max_frame_bytes();
        let check = |len: usize| {
            if len > max {
                return Err(FrameError::TooLarge { len, max });
            }
            Ok(())
        };
        match self {
            Self::Frame(frame) => codec.encode(frame, dst),
            Self::Deliver(deliver) => {
                check(deliver.frame_len())?;
                deliver.encode(dst);
                Ok(())
            }
            Self::Reply(reply) => {
                check(reply.frame_len())?;
                reply.encode(dst);
                Ok(())
            }
            Self::Publish(publish) => {
                check(publish.frame_len())?;
                publish.encode(dst);
                Ok(())
            }
        }
    }
}

/// Bytes a queued frame is counted as against the queue's byte bounds: its
/// whole encoding (headers and every field included) with the length prefix.
pub fn frame_weight(frame: &Frame) -> usize {
    4 + 1 + prost::Message::encoded_len(frame)
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The queue is closed; the connection is going away.
    #[error("connection closed")]
    Closed,
    /// A droppable frame met a full queue under the `Reject` policy.
    #[error("outbound buffer full ({max_len} messages)")]
    Full {
        /// The bound that was hit.
        max_len: usize,
    },
    /// The hard cap was reached: the peer does not read fast enough to keep.
    #[error("peer too slow: {hard_cap} frames waiting")]
    TooSlow {
        /// The cap.
        hard_cap: usize,
    },
}

/// Outcome of queueing a droppable frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued with room to spare.
    Queued,
    /// Queued after evicting the oldest droppable frame.
    EvictedOldest,
    /// Not queued: the new frame was discarded.
    DroppedIncoming,
}

#[derive(Debug)]
struct Entry {
    item: Outgoing,
    weight: usize,
    droppable: bool,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Entry>,
    bytes: usize,
    droppable: usize,
    droppable_bytes: usize,
    closed: bool,
    /// Someone holds the pen: the writer task mid-batch, or an inline flush.
    /// Only the holder writes to the socket, which keeps frames in order.
    writer_busy: bool,
    /// Bytes an inline flush encoded but could not write; the writer task
    /// writes them before anything else.
    pending: BytesMut,
    /// Where an inline flush may write without waiting, while a link is up.
    inline: Option<(Arc<dyn InlineSink>, FrameCodec)>,
    /// Buffers an inline flush reuses.
    spare_batch: VecDeque<Entry>,
    spare_buf: BytesMut,
    /// Batches taken so far, by the writer or inline: a quiet connection's
    /// count stands still (see [`idle`]).
    activity: u64,
    /// The writer waits with a deadline, to let oversized buffers go once
    /// the connection is quiet.
    trim_armed: bool,
    /// Frames the reader just handed over, whose answers go out in one
    /// write (see [`burst`]).
    burst: burst::Burst,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("frames", &self.frames.len())
            .field("bytes", &self.bytes)
            .field("closed", &self.closed)
            .field("writer_busy", &self.writer_busy)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// A socket that can take bytes without waiting: `Ok(0)`-free, `WouldBlock`
/// when full. Used to write from the task that queued a frame, saving the
/// wake-up of the connection's writer task when it has nothing else to do.
pub trait InlineSink: Send + Sync {
    /// Writes what fits now.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
}

impl State {
    fn over_hard_cap(&self, limits: &OutboundLimits, weight: usize) -> bool {
        self.frames.len() >= limits.hard_cap || self.bytes + weight > limits.hard_cap_bytes
    }

    fn enqueue(&mut self, item: Outgoing, weight: usize, droppable: bool) {
        self.bytes += weight;
        if droppable {
            self.droppable += 1;
            self.droppable_bytes += weight;
        }
        if self.frames.capacity() == 0 {
            // Room for exactly one: an idle connection's frames are written
            // as they come, one at a time, and a first push would otherwise
            // allocate four entries (each queue this connection rotates
            // through — the queue, the spare, the writer's batch — keeps
            // what it was given).
            self.frames.reserve_exact(1);
        }
        self.frames.push_back(Entry {
            item,
            weight,
            droppable,
        });
    }

    /// Evicts the oldest droppable frame; returns whether there was one.
    fn evict_oldest_droppable(&mut self) -> bool {
        let Some(pos) = self.frames.iter().position(|e| e.droppable) else {
            return false;
        };
        let entry = self.frames.remove(pos).expect("position is in range");
        self.bytes -= entry.weight;
        self.droppable -= 1;
        self.droppable_bytes -= entry.weight;
        true
    }
}

/// A bounded queue of frames for one connection, drained by [`write_loop`].
#[derive(Debug)]
pub struct Outbound {
    state: Mutex<State>,
    notify: Notify,
    /// Woken each time the writer takes what was queued.
    drained: Notify,
    closed: CancellationToken,
    limits: OutboundLimits,
}

impl Outbound {
    /// An empty, open queue.
    pub fn new(limits: OutboundLimits) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            drained: Notify::new(),
            closed: CancellationToken::new(),
            limits,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only a queue of frames behind;
        // it is still consistent, so poisoning is not propagated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame that must not be dropped (a reply, control, or credit-bounded
    /// queue delivery), and wakes the writer task.
    pub fn push(&self, item: impl Into<Outgoing>) -> Result<(), PushError> {
        self.push_inner(item.into(), true)
    }

    /// Like [`push`](Self::push), without waking the writer task: the caller
    /// promises a [`try_flush`](Self::try_flush), which writes the frame or wakes
    /// the writer itself.
    pub fn push_quiet(&self, item: impl Into<Outgoing>) -> Result<(), PushError> {
        self.push_inner(item.into(), false)
    }

    fn push_inner(&self, item: Outgoing, wake: bool) -> Result<(), PushError> {
        let mut st = self.lock();
        if st.closed {
            return Err(PushError::Closed);
        }
        let weight = item.weight();
        if st.over_hard_cap(&self.limits, weight) {
            return Err(PushError::TooSlow {
                hard_cap: self.limits.hard_cap,
            });
        }
        let was_empty = st.frames.is_empty();
        st.enqueue(item, weight, false);
        drop(st);
        if was_empty && wake {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Queues a fan-out delivery, applying the overflow policy at `max_len`.
    /// Like [`push_quiet`](Self::push_quiet), it leaves waking the writer to the
    /// caller's [`try_flush`](Self::try_flush).
    ///
    /// A delivery that has to wait behind `DETACH_AFTER` others gets its
    /// own copy of the bytes it shares with the read buffer it came from, so
    /// a slow subscriber's backlog holds what it counts, not the read buffers
    /// around it.
    pub fn push_droppable(&self, item: impl Into<Outgoing>) -> Result<Pushed, PushError> {
        let mut item = item.into();
        let mut st = self.lock();
        if st.closed {
            return Err(PushError::Closed);
        }
        if st.frames.len() >= DETACH_AFTER {
            item.detach();
        }
        let mut outcome = Pushed::Queued;
        let weight = item.weight();
        let limits = &self.limits;
        let full = |st: &State| {
            st.droppable >= limits.max_len || st.droppable_bytes + weight > limits.max_bytes
        };
        if full(&st) {
            match self.limits.policy {
                OverflowPolicy::DropIncoming => return Ok(Pushed::DroppedIncoming),
                // Configuration refuses `Block` for outbound buffers; should one get
                // here anyway, refusing is the safe reading.
                OverflowPolicy::Reject | OverflowPolicy::Block => {
                    return Err(PushError::Full {
                        max_len: self.limits.max_len,
                    });
                }
                OverflowPolicy::DropOldest => {
                    while full(&st) && st.evict_oldest_droppable() {
                        outcome = Pushed::EvictedOldest;
                    }
                    if full(&st) {
                        // A single frame larger than the whole byte bound.
                        return Ok(Pushed::DroppedIncoming);
                    }
                }
            }
        }
        if st.over_hard_cap(&self.limits, weight) {
            return Err(PushError::TooSlow {
                hard_cap: self.limits.hard_cap,
            });
        }
        st.enqueue(item, weight, true);
        Ok(outcome)
    }

    /// Frames waiting to be written.
    pub fn depth(&self) -> usize {
        self.lock().frames.len()
    }

    /// Takes what is queued, as a writer would, for tests that read what a
    /// connection was sent without a socket.
    #[cfg(any(test, all(fuzzing, feature = "broker")))]
    pub(crate) fn take_queued(&self) -> Vec<Outgoing> {
        let mut st = self.lock();
        st.bytes = 0;
        st.droppable = 0;
        st.droppable_bytes = 0;
        st.frames.drain(..).map(|e| e.item).collect()
    }

    /// Refuses further frames; the writer flushes what is queued, then stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.closed.cancel();
        self.notify.notify_one();
    }

    /// Completes the next time the writer takes the queued frames (or at close),
    /// for a producer waiting for room.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits; call it again to wait again.
    pub async fn drained(&self) {
        let drained = self.drained.notified();
        tokio::pin!(drained);
        // Registered before the check, so a drain in between is not missed.
        drained.as_mut().enable();
        if self.is_closed() {
            return;
        }
        tokio::select! {
            () = drained => {}
            () = self.closed.cancelled() => {}
        }
    }

    /// Completes once [`close`](Self::close) has been called.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub async fn closed_wait(&self) {
        self.closed.cancelled().await;
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Lets [`try_flush`](Self::try_flush) write to `sink` (until
    /// [`detach_inline`](Self::detach_inline)).
    pub fn attach_inline(&self, sink: Arc<dyn InlineSink>, codec: FrameCodec) {
        self.lock().inline = Some((sink, codec));
    }

    /// Announces that the reader just handed over `frames` frames, whose
    /// answers may be queued back to back: they go out in one write (see
    /// [`burst`]). Fewer than two announce nothing.
    pub fn expect_burst(&self, frames: usize) {
        self.lock().burst.open(frames, std::time::Instant::now());
    }

    /// Stops inline writes, e.g. when the link they went to is gone.
    pub fn detach_inline(&self) {
        self.lock().inline = None;
    }

    /// Writes what is queued right now from the calling task, if the writer
    /// task is idle and a sink is attached; what does not fit is left to the
    /// writer task. Never waits.
    pub fn try_flush(&self) {
        let mut st = self.lock();
        // A busy writer looks at the queue again when it is done.
        if st.writer_busy || st.frames.is_empty() {
            return;
        }
        // Part of a burst: the burst's last frame, or the writer, writes it.
        if st.burst.defers(std::time::Instant::now) {
            drop(st);
            self.notify.notify_one();
            return;
        }
        let inline = st.inline.clone().filter(|_| st.pending.is_empty());
        let Some((sink, codec)) = inline else {
            drop(st);
            self.notify.notify_one();
            return;
        };
        let mut batch = std::mem::take(&mut st.spare_batch);
        std::mem::swap(&mut st.frames, &mut batch);
        st.bytes = 0;
        st.droppable = 0;
        st.droppable_bytes = 0;
        st.writer_busy = true;
        let mut buf = std::mem::take(&mut st.spare_buf);
        drop(st);
        for entry in batch.drain(..) {
            if let Err(e) = entry.item.encode(&codec, &mut buf) {
                tracing::warn!(error = %e, "dropping an outbound frame the codec refused");
            }
        }
        let mut written = 0;
        while written < buf.len() {
            match sink.try_write(&buf[written..]) {
                Ok(n) if n > 0 => written += n,
                // Full, closed or failed: the writer task takes over and sees why.
                _ => break,
            }
        }
        let mut st = self.lock();
        st.pending.extend_from_slice(&buf[written..]);
        buf.clear();
        if buf.capacity() <= WRITE_CHUNK_BYTES {
            st.spare_buf = buf;
        }
        st.spare_batch = batch;
        st.writer_busy = false;
        st.activity += 1;
        // Spares a burst grew: the writer watches for the quiet that lets them go.
        let arm = st.arm_trim(None);
        let wake = !st.frames.is_empty() || !st.pending.is_empty() || st.closed || arm;
        drop(st);
        self.drained.notify_waiters();
        if wake {
            self.notify.notify_one();
        }
    }

    /// Takes the pen and everything queued (and bytes an inline flush left), or
    /// waits for something to take. Returns `false` once the queue is closed and
    /// empty. The caller gives the pen back with [`put_down`](Self::put_down).
    ///
    /// While any buffer is oversized, it waits at most [`IDLE_TRIM`] at a time,
    /// and lets them go after a wait in which nothing was taken.
    async fn take(&self, bufs: &mut WriterBufs) -> bool {
        loop {
            let watch = {
                let mut st = self.lock();
                if !st.writer_busy && (!st.frames.is_empty() || !st.pending.is_empty()) {
                    std::mem::swap(&mut st.frames, &mut bufs.batch);
                    std::mem::swap(&mut st.pending, &mut bufs.pending);
                    st.bytes = 0;
                    st.droppable = 0;
                    st.droppable_bytes = 0;
                    st.writer_busy = true;
                    st.activity += 1;
                    // What the burst queued goes now; later frames write at once.
                    st.burst.close();
                    drop(st);
                    self.drained.notify_waiters();
                    return true;
                }
                if st.closed && !st.writer_busy && st.frames.is_empty() && st.pending.is_empty() {
                    return false;
                }
                st.arm_trim(Some(bufs));
                st.trim_armed.then_some(st.activity)
            };
            match watch {
                None => self.notify.notified().await,
                Some(seen) => tokio::select! {
                    () = self.notify.notified() => {}
                    () = tokio::time::sleep(IDLE_TRIM) => self.lock().trim_if_quiet(seen, bufs),
                },
            }
        }
    }

    fn put_down(&self) {
        self.lock().writer_busy = false;
    }
}

/// Returns the pen when dropped.
struct PutDown<'a>(&'a Outbound);

impl Drop for PutDown<'_> {
    fn drop(&mut self) {
        self.0.put_down();
    }
}

/// Drains `out` into `io` until the queue is closed and flushed, or the write fails.
///
/// One wake-up: take every queued frame, encode them into one buffer, one write.
/// A frame the codec refuses (over the negotiated size) is skipped and logged; the
/// router checks sizes before queueing, so this is a last line of defence.
///
/// # Cancel safety
///
/// Not cancel safe: frames taken from the queue and not yet written when
/// it is dropped are lost (and a frame may be cut in half on the stream).
/// It is meant to run as the connection's own task until `out` is closed.
pub async fn write_loop<W: AsyncWrite + Unpin>(
    out: Arc<Outbound>,
    mut io: W,
    codec: FrameCodec,
) -> io::Result<()> {
    // Buffers grow with what the connection sends (a quiet one needs little)
    // and are let go once it is quiet again (see `idle`).
    let mut bufs = WriterBufs::default();
    while out.take(&mut bufs).await {
        // Give the pen back however this batch ends, or nothing writes again.
        let _pen = PutDown(&out);
        let WriterBufs {
            batch,
            pending,
            buf,
        } = &mut bufs;
        if !pending.is_empty() {
            io.write_all(pending).await?;
            pending.clear();
        }
        let bytes: usize = batch.iter().map(|e| e.weight).sum();
        buf.reserve(bytes.min(WRITE_CHUNK_BYTES + READ_BUFFER_BYTES));
        for entry in batch.drain(..) {
            if let Err(e) = entry.item.encode(&codec, buf) {
                tracing::warn!(error = %e, "dropping an outbound frame the codec refused");
            }
            if buf.len() >= WRITE_CHUNK_BYTES {
                io.write_all(buf).await?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            io.write_all(buf).await?;
            buf.clear();
        }
    }
    io.shutdown().await
}

mod burst;
mod idle;
#[cfg(test)]
mod tests;
