//! Memory given back when a connection goes quiet.
//!
//! A burst grows a connection's outbound buffers (the queue, the batch the
//! writer or an inline flush takes, the bytes they encode into) to what the
//! burst needed, and they are reused while traffic keeps coming. Once the
//! connection has been quiet for [`IDLE_TRIM`], whatever is larger than
//! the `KEEP_*` bounds is let go, so a broker with many clients holds, per
//! idle client, about what an idle client needs rather than the largest
//! burst it ever had.
//!
//! The writer task keeps the watch: it waits with a deadline only while
//! something is oversized (`trim_armed`), so an idle connection with small
//! buffers costs no timer; an inline flush that leaves oversized spares
//! wakes the writer once to arm it. `activity` counts the batches taken, so
//! a deadline that passes while traffic flows trims nothing.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;

use super::{Entry, State};

/// How long a connection must be quiet before its oversized buffers go.
pub(super) const IDLE_TRIM: Duration = Duration::from_secs(1);
/// Byte buffers up to this capacity are kept across quiet periods.
const KEEP_BUF_BYTES: usize = 16 * 1024;
/// Queues of entries up to this capacity are kept across quiet periods.
const KEEP_ENTRIES: usize = 4;

/// The writer task's own buffers, reused from batch to batch.
#[derive(Default)]
pub(super) struct WriterBufs {
    /// The entries taken from the queue.
    pub(super) batch: VecDeque<Entry>,
    /// Bytes an inline flush could not write, taken with the batch.
    pub(super) pending: BytesMut,
    /// What the batch encodes into.
    pub(super) buf: BytesMut,
}

impl WriterBufs {
    fn oversized(&self) -> bool {
        self.batch.capacity() > KEEP_ENTRIES
            || self.pending.capacity() > KEEP_BUF_BYTES
            || self.buf.capacity() > KEEP_BUF_BYTES
    }

    fn trim(&mut self) {
        self.batch.shrink_to(KEEP_ENTRIES);
        trim_bytes(&mut self.pending);
        trim_bytes(&mut self.buf);
    }
}

impl State {
    fn spares_oversized(&self) -> bool {
        self.frames.capacity() > KEEP_ENTRIES
            || self.spare_batch.capacity() > KEEP_ENTRIES
            || self.spare_buf.capacity() > KEEP_BUF_BYTES
            || self.pending.capacity() > KEEP_BUF_BYTES
    }

    /// Whether the writer should watch for a quiet period (arming it when
    /// anything, its own buffers included, is oversized).
    pub(super) fn arm_trim(&mut self, writer: Option<&WriterBufs>) -> bool {
        if !self.trim_armed && (self.spares_oversized() || writer.is_some_and(|w| w.oversized())) {
            self.trim_armed = true;
            return true;
        }
        false
    }

    /// Lets oversized buffers go if nothing was taken since `seen`.
    pub(super) fn trim_if_quiet(&mut self, seen: u64, writer: &mut WriterBufs) {
        if self.activity != seen || self.writer_busy {
            return;
        }
        self.frames.shrink_to(KEEP_ENTRIES);
        self.spare_batch.shrink_to(KEEP_ENTRIES);
        trim_bytes(&mut self.spare_buf);
        trim_bytes(&mut self.pending);
        writer.trim();
        self.trim_armed = false;
    }
}

/// A connection's queues are shrunk in place before they go: freed whole,
/// a burst's queue (a block of a megabyte or more after 10,000 answers)
/// would make glibc's `malloc` keep up to twice its size of freed heap from
/// then on; shrunk first, it is given back by `mremap` and the block freed
/// after is small (`broker::slab` says more).
impl Drop for State {
    fn drop(&mut self) {
        self.frames.shrink_to(KEEP_ENTRIES);
        self.spare_batch.shrink_to(KEEP_ENTRIES);
    }
}

/// As for [`State`]: shrunk in place before it goes.
impl Drop for WriterBufs {
    fn drop(&mut self) {
        self.batch.shrink_to(KEEP_ENTRIES);
    }
}

/// Replaces an empty buffer larger than [`KEEP_BUF_BYTES`] with nothing.
fn trim_bytes(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > KEEP_BUF_BYTES {
        *buf = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_trims_only_what_is_oversized_and_only_when_nothing_moved() {
        let mut st = State::default();
        let mut writer = WriterBufs::default();
        assert!(!st.arm_trim(Some(&writer)), "small buffers need no watch");
        writer.buf.reserve(256 * 1024);
        st.spare_batch.reserve(1000);
        assert!(st.arm_trim(Some(&writer)));
        assert!(!st.arm_trim(Some(&writer)), "armed once");
        let seen = st.activity;
        st.activity += 1;
        st.trim_if_quiet(seen, &mut writer);
        assert!(
            writer.buf.capacity() > KEEP_BUF_BYTES,
            "traffic since: kept"
        );
        st.trim_if_quiet(st.activity, &mut writer);
        assert_eq!(writer.buf.capacity(), 0);
        assert!(st.spare_batch.capacity() <= KEEP_ENTRIES);
        assert!(!st.trim_armed);
    }
}
