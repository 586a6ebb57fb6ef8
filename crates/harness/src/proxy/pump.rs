//! The pumps of one direction of one connection: a reader task that reads
//! whole frames into a bounded delay line, and a writer task that releases
//! them at their due time.
//!
//! The reader decides each frame's fate as it arrives (drop, duplicate, delay:
//! [`Shared::on_read`]) and stamps its release time, `max(previous release,
//! arrival + delay)`, so jitter never reorders. The writer waits for that time,
//! then while partitioned, then for the bandwidth, and writes. The end of the
//! source stream travels the same line, behind the frames read before it.
//!
//! **Invariant:** a delay line holds at most [`DELAY_LINE_FRAMES`] frames and
//! [`DELAY_LINE_BYTES`] bytes; at the bound the reader stops reading, and the
//! sender's socket fills up, as a full TCP window would.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, sleep_until};

use super::faults::{Flow, Release, Shared, Verdict};
use super::frame::{ReadFrame, read_frame};
use crate::rng::Rng;

/// Most frames waiting in one delay line.
pub const DELAY_LINE_FRAMES: usize = 4096;

/// Most bytes waiting in one delay line. A larger frame (up to
/// [`MAX_FRAME_BYTES`](super::MAX_FRAME_BYTES)) still passes, alone.
pub const DELAY_LINE_BYTES: usize = 8 * 1024 * 1024;

/// The reader's buffer: fewer system calls for runs of small frames.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How a pump task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// The reader queued the end of its stream; its writer passes it on.
    Reader,
    /// The connection must close now, both ways.
    Close,
}

/// What travels the line.
#[derive(Debug)]
enum Item {
    /// Bytes to write `copies` times; `whole` is false for the cut-off tail
    /// of a stream that ended mid-frame.
    Frame {
        bytes: Vec<u8>,
        copies: u8,
        whole: bool,
    },
    /// The source's end.
    End,
}

/// An item with its release time and its place in the line, given back
/// (and uncounted from `held`) when dropped, written or not.
#[derive(Debug)]
struct Queued {
    item: Item,
    release: Instant,
    _room: OwnedSemaphorePermit,
    _held: Held,
}

/// One frame counted in [`DirStats::held`](super::DirStats::held).
#[derive(Debug)]
struct Held {
    shared: Arc<Shared>,
    flow: Flow,
}

impl Held {
    fn new(shared: &Arc<Shared>, flow: Flow) -> Self {
        shared.add_held(flow, 1);
        Self {
            shared: shared.clone(),
            flow,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.shared.add_held(self.flow, -1);
    }
}

/// The reader's end of a delay line.
#[derive(Debug)]
pub(super) struct LineIn {
    tx: mpsc::Sender<Queued>,
    room: Arc<Semaphore>,
    shared: Arc<Shared>,
    flow: Flow,
    last_release: Instant,
}

/// The writer's end of a delay line.
#[derive(Debug)]
pub(super) struct LineOut {
    rx: mpsc::Receiver<Queued>,
    shared: Arc<Shared>,
    flow: Flow,
}

/// A new, empty delay line for `flow`.
pub(super) fn delay_line(shared: &Arc<Shared>, flow: Flow) -> (LineIn, LineOut) {
    let (tx, rx) = mpsc::channel(DELAY_LINE_FRAMES);
    let line_in = LineIn {
        tx,
        room: Arc::new(Semaphore::new(DELAY_LINE_BYTES)),
        shared: shared.clone(),
        flow,
        last_release: Instant::now(),
    };
    let line_out = LineOut {
        rx,
        shared: shared.clone(),
        flow,
    };
    (line_in, line_out)
}

impl LineIn {
    /// The reader task: reads frames from `src` into the line until the
    /// stream ends, then queues the end. Draws every random choice from `rng`.
    pub(super) async fn run(mut self, src: OwnedReadHalf, mut rng: Rng) -> Ended {
        let mut src = BufReader::with_capacity(READ_BUFFER_BYTES, src);
        loop {
            let read = read_frame(&mut src).await;
            let arrived = Instant::now();
            let alive = match read {
                ReadFrame::Frame(bytes) => match self.shared.on_read(self.flow, &mut rng) {
                    Verdict::Drop => true,
                    Verdict::Forward { delay, copies } => {
                        let frame = Item::Frame {
                            bytes,
                            copies,
                            whole: true,
                        };
                        self.push(frame, arrived + delay).await
                    }
                },
                ReadFrame::End { tail } => {
                    if !tail.is_empty() {
                        let tail = Item::Frame {
                            bytes: tail,
                            copies: 1,
                            whole: false,
                        };
                        self.push(tail, arrived).await;
                    }
                    self.push(Item::End, arrived).await;
                    return Ended::Reader;
                }
                ReadFrame::TooLarge(_) => return Ended::Close,
            };
            if !alive {
                // The writer is gone: the connection is closing.
                return Ended::Close;
            }
        }
    }

    /// Queues `item` to be released at `due` or after the previous item,
    /// waiting for room; false if the writer is gone.
    async fn push(&mut self, item: Item, due: Instant) -> bool {
        let len = match &item {
            Item::Frame { bytes, .. } => bytes.len(),
            Item::End => 0,
        };
        let Ok(slot) = self.tx.reserve().await else {
            return false;
        };
        let permits = u32::try_from(len.clamp(1, DELAY_LINE_BYTES)).unwrap_or(u32::MAX);
        let Ok(room) = self.room.clone().acquire_many_owned(permits).await else {
            return false;
        };
        let release = self.last_release.max(due);
        self.last_release = release;
        slot.send(Queued {
            item,
            release,
            _room: room,
            _held: Held::new(&self.shared, self.flow),
        });
        true
    }
}

impl LineOut {
    /// The writer task: releases each item to `dst` in order, at its time,
    /// after any partition, paced by the bandwidth. Always ends the connection:
    /// after passing on the source's end, on a write error, or on a tear.
    pub(super) async fn run(mut self, mut dst: OwnedWriteHalf) -> Ended {
        let mut changes = self.shared.changes();
        // When the previous frame finished "transmitting" at the paced rate.
        let mut paced_until = Instant::now();
        while let Some(queued) = self.rx.recv().await {
            sleep_until(queued.release).await;
            self.shared.healed(self.flow, &mut changes).await;
            let Item::Frame {
                bytes,
                copies,
                whole,
            } = &queued.item
            else {
                let _ = dst.shutdown().await;
                return Ended::Close;
            };
            match self.shared.on_release(self.flow, *whole) {
                Release::Tear => {
                    // At least 1 byte, fewer than all: a frame has a 4-byte prefix.
                    let cut = (bytes.len() / 2).max(1);
                    let _ = dst.write_all(&bytes[..cut]).await;
                    let _ = dst.shutdown().await;
                    return Ended::Close;
                }
                Release::Write { bandwidth } => {
                    if let Some(rate) = bandwidth {
                        // Store and forward: a frame arrives once all its bytes
                        // have crossed the link, after the frames before it.
                        let total = bytes.len() * usize::from(*copies);
                        paced_until = paced_until.max(Instant::now()) + transmit_time(total, rate);
                        sleep_until(paced_until).await;
                        self.shared.healed(self.flow, &mut changes).await;
                    }
                    for _ in 0..*copies {
                        if dst.write_all(bytes).await.is_err() {
                            return Ended::Close;
                        }
                    }
                    self.shared.wrote(self.flow, *copies, bytes.len());
                }
            }
        }
        // The reader is gone without queuing an end: it asked to close.
        Ended::Close
    }
}

/// How long `bytes` take at `rate` bytes per second (a rate of 0 counts as 1).
fn transmit_time(bytes: usize, rate: u64) -> Duration {
    Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmit_time_is_bytes_over_rate() {
        assert_eq!(transmit_time(1024, 1024), Duration::from_secs(1));
        assert_eq!(transmit_time(512, 1024), Duration::from_millis(500));
        assert_eq!(transmit_time(3, 0), Duration::from_secs(3));
    }
}
