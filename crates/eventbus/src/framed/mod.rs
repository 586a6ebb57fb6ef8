//! Frames over a stream: a reader that batches decoded frames
//! ([`reader`](self::FrameReader)), and a bounded outbound queue drained by one
//! writer task per connection ([`Outbound`]).
//!
//! Both broker and client use these. The writer takes everything queued at each
//! wake-up, encodes it into one buffer and issues one write, so a burst of small
//! messages costs one system call, not one per message.
//!
//! **Invariant:** the outbound queue is bounded. Frames marked droppable (fan-out
//! deliveries) obey the configured [`OverflowPolicy`]; the rest (replies, control,
//! credit-bounded queue deliveries) may exceed it only up to a hard cap, past which
//! the peer is too slow to keep and the push fails so the caller can close it.

mod outbound;
mod reader;

pub use outbound::{
    InlineSink, Outbound, OutboundLimits, Outgoing, PushError, Pushed, frame_weight, write_loop,
};
pub use reader::{FrameReader, ReadError};

/// Read buffer start size; it grows to hold the largest frame seen.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// What happens when a bounded buffer is full and one more message arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    any(feature = "serde", feature = "broker"),
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Evict the oldest buffered message to make room; counted as dropped.
    #[default]
    DropOldest,
    /// Discard the new message; counted as dropped.
    DropIncoming,
    /// Refuse the new message; a confirmed publish fails with `QueueFull`.
    Reject,
    /// Queue groups only: the publisher waits for space, up to the queue's
    /// `block_timeout_ms`, while every other client carries on.
    Block,
}
