//! What the journal stores: the domain records the broker appends, and the
//! names and counters they carry.
//!
//! A record says what happened to a message of a durable queue (accepted,
//! handed out, put back, gone for good), to a kept reply, or to a counter.
//! Records are absolute where they can be (a delivery says "now at attempt
//! N", not "one more"), so replaying one twice changes nothing.

use std::fmt;

use crate::names::GroupName;
use crate::topic::TopicFilter;

/// A log sequence number: the position of a record in the journal. Every
/// appended record gets the next one; they never repeat, also across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Lsn(u64);

impl Lsn {
    /// Before the first record.
    pub const ZERO: Self = Self(0);

    /// The highest LSN a journal gives a record: one a second for a
    /// billion years would not reach it, so a frame at a higher one was not
    /// written by a journal, and recovery skips it as damaged (the next
    /// record would have no LSN to take).
    pub const MAX: Self = Self(u64::MAX >> 1);

    /// The LSN with this number.
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// Its number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The LSN after this one.
    pub(crate) const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A message as the journal knows it: the broker's message id (the wire's
/// `Envelope.id`). One message published to several durable queues is one
/// id in each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MessageId(u64);

impl MessageId {
    /// The highest id a broker issues. Its ids (message, delivery and group
    /// ids alike) come from one counter starting at 1: at a million a
    /// second it would take 290,000 years to get here, so a journal record
    /// naming an id above it (or id 0) was not written by a broker, and
    /// recovery skips it as damaged (an id floor there would leave no id to
    /// issue).
    pub const MAX: MessageId = MessageId(u64::MAX >> 1);

    /// The message with this id.
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// Its number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A durable queue: a queue group's filter and name, as the router keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    /// The group's topic filter.
    pub filter: TopicFilter,
    /// The group's name.
    pub group: GroupName,
}

impl QueueKey {
    /// The queue of `group` on `filter`.
    pub fn new(filter: TopicFilter, group: GroupName) -> Self {
        Self { filter, group }
    }
}

impl fmt::Display for QueueKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.filter, self.group)
    }
}

/// A durable queue inside one open journal ([`Journal::queue`]): records name
/// their queue by this short handle instead of by its strings. Valid only
/// for the journal that issued it.
///
/// [`Journal::queue`]: super::Journal::queue
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueRef(pub(crate) u32);

impl QueueRef {
    /// Position in the journal's queue table.
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

/// How a message left its queue for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Acknowledged (or answered with a reply) by its holder.
    Acked,
    /// Sent to the dead-letter topic (too many attempts, or refused).
    DeadLettered,
    /// Withdrawn by `Cancel`.
    Cancelled,
    /// Dropped because its time to live or its request expired.
    Expired,
    /// Evicted from a full queue under `drop-oldest`.
    Evicted,
}

/// One of a durable queue's cumulative counters (see [`Counters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Counter {
    /// [`Counters::accepted`].
    Accepted,
    /// [`Counters::delivered`].
    Delivered,
    /// [`Counters::acked`].
    Acked,
    /// [`Counters::nacked`].
    Nacked,
    /// [`Counters::redelivered`].
    Redelivered,
    /// [`Counters::dropped`].
    Dropped,
    /// [`Counters::rejected`].
    Rejected,
    /// [`Counters::dead_lettered`].
    DeadLettered,
    /// [`Counters::cancelled`].
    Cancelled,
    /// [`Counters::evicted`].
    Evicted,
    /// [`Counters::expired`].
    Expired,
}

impl Counter {
    /// Every counter, in the order they are stored.
    pub const ALL: [Counter; 11] = [
        Counter::Accepted,
        Counter::Delivered,
        Counter::Acked,
        Counter::Nacked,
        Counter::Redelivered,
        Counter::Dropped,
        Counter::Rejected,
        Counter::DeadLettered,
        Counter::Cancelled,
        Counter::Evicted,
        Counter::Expired,
    ];
}

/// A durable queue's cumulative counters, since its first start. They are
/// kept by the journal itself from the records it writes (the rules are on
/// each field), so they agree with the messages it recovers, also after a
/// crash; what no message record implies is counted with
/// [`Record::Counted`]. The names are the router's (`queue.rs` `Counters`);
/// the "published" is `accepted`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages that entered the queue: one per [`Record::Accepted`].
    pub accepted: u64,
    /// Deliveries handed out: one per [`Record::Delivered`].
    pub delivered: u64,
    /// One per [`Record::Settled`] with [`Outcome::Acked`].
    pub acked: u64,
    /// One per [`Record::Requeued`] with `nacked`, and per `Counted(Nacked)`.
    pub nacked: u64,
    /// Messages put back for redelivery: one per [`Record::Requeued`].
    pub redelivered: u64,
    /// Messages an overflow policy dropped: one per [`Outcome::Evicted`];
    /// a message discarded under `drop-incoming` was never accepted, so it is
    /// counted with `Counted(Dropped)`.
    pub dropped: u64,
    /// Publishes refused at the bound: only `Counted(Rejected)`.
    pub rejected: u64,
    /// One per [`Outcome::DeadLettered`].
    pub dead_lettered: u64,
    /// One per [`Outcome::Cancelled`].
    pub cancelled: u64,
    /// One per [`Outcome::Evicted`] (also in `dropped`).
    pub evicted: u64,
    /// One per [`Outcome::Expired`].
    pub expired: u64,
}

impl Counters {
    /// The counter's value.
    pub fn get(&self, counter: Counter) -> u64 {
        *self.slot_ref(counter)
    }

    /// Adds `by` to `counter` (wrapping never: saturates).
    pub(crate) fn add(&mut self, counter: Counter, by: u64) {
        let slot = self.slot(counter);
        *slot = slot.saturating_add(by);
    }

    fn slot(&mut self, counter: Counter) -> &mut u64 {
        match counter {
            Counter::Accepted => &mut self.accepted,
            Counter::Delivered => &mut self.delivered,
            Counter::Acked => &mut self.acked,
            Counter::Nacked => &mut self.nacked,
            Counter::Redelivered => &mut self.redelivered,
            Counter::Dropped => &mut self.dropped,
            Counter::Rejected => &mut self.rejected,
            Counter::DeadLettered => &mut self.dead_lettered,
            Counter::Cancelled => &mut self.cancelled,
            Counter::Evicted => &mut self.evicted,
            Counter::Expired => &mut self.expired,
        }
    }

    fn slot_ref(&self, counter: Counter) -> &u64 {
        match counter {
            Counter::Accepted => &self.accepted,
            Counter::Delivered => &self.delivered,
            Counter::Acked => &self.acked,
            Counter::Nacked => &self.nacked,
            Counter::Redelivered => &self.redelivered,
            Counter::Dropped => &self.dropped,
            Counter::Rejected => &self.rejected,
            Counter::DeadLettered => &self.dead_lettered,
            Counter::Cancelled => &self.cancelled,
            Counter::Evicted => &self.evicted,
            Counter::Expired => &self.expired,
        }
    }

    /// Applies what `record` implies for its queue's counters.
    pub(crate) fn apply(&mut self, record: &Record<'_>) {
        match *record {
            Record::Accepted { .. } => self.add(Counter::Accepted, 1),
            Record::Delivered { .. } => self.add(Counter::Delivered, 1),
            Record::Requeued { nacked, .. } => {
                self.add(Counter::Redelivered, 1);
                if nacked {
                    self.add(Counter::Nacked, 1);
                }
            }
            Record::Settled { outcome, .. } => match outcome {
                Outcome::Acked => self.add(Counter::Acked, 1),
                Outcome::DeadLettered => self.add(Counter::DeadLettered, 1),
                Outcome::Cancelled => self.add(Counter::Cancelled, 1),
                Outcome::Expired => self.add(Counter::Expired, 1),
                Outcome::Evicted => {
                    self.add(Counter::Evicted, 1);
                    self.add(Counter::Dropped, 1);
                }
            },
            Record::Counted { counter, by, .. } => self.add(counter, by),
            Record::ResultKept { .. } | Record::ResultRemoved { .. } | Record::IdFloor { .. } => {}
        }
    }
}

/// One thing that happened, as the broker appends it
/// ([`Journal::append`](super::Journal::append)).
///
/// Borrowed, so appending copies the bytes once, into the journal's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record<'a> {
    /// A message entered a durable queue (published into it, or handed over
    /// to it), at `attempt` (1 for a new message).
    Accepted {
        /// Its queue.
        queue: QueueRef,
        /// The message.
        id: MessageId,
        /// Its attempt number when it entered.
        attempt: u32,
        /// The message's encoded protobuf `Envelope`, opaque to the journal.
        envelope: &'a [u8],
    },
    /// A delivery of the message was handed out; it is now at `attempt`.
    /// A message whose last record this is was in flight.
    Delivered {
        /// Its queue.
        queue: QueueRef,
        /// The message.
        id: MessageId,
        /// The attempt this delivery is.
        attempt: u32,
    },
    /// The message went back to its queue to wait, at `attempt` (the one its
    /// next delivery will be).
    Requeued {
        /// Its queue.
        queue: QueueRef,
        /// The message.
        id: MessageId,
        /// Its attempt number now.
        attempt: u32,
        /// Whether its holder nacked it (else it was taken back: the holder
        /// left, or its ack deadline passed).
        nacked: bool,
    },
    /// The message left its queue for good.
    Settled {
        /// Its queue.
        queue: QueueRef,
        /// The message.
        id: MessageId,
        /// How.
        outcome: Outcome,
    },
    /// A reply kept for the request `id` until `expires_at_ms` (Unix time in
    /// milliseconds); a second one for the same id replaces the first.
    ResultKept {
        /// The request's message id.
        id: MessageId,
        /// When it may be forgotten.
        expires_at_ms: u64,
        /// The reply's encoded bytes, opaque to the journal.
        reply: &'a [u8],
    },
    /// The reply kept for `id` is gone (fetched for good, evicted, expired).
    ResultRemoved {
        /// The request's message id.
        id: MessageId,
    },
    /// A counter moved with no message record to imply it (a publish
    /// refused at the bound, one dropped under `drop-incoming`, a nack that
    /// dead-lettered).
    Counted {
        /// Its queue.
        queue: QueueRef,
        /// Which counter.
        counter: Counter,
        /// By how much.
        by: u64,
    },
    /// Message ids up to `id` may have been issued: a restarted broker issues
    /// ids above the recovered [`id_floor`](super::Recovered::id_floor).
    IdFloor {
        /// The highest id that may have been issued.
        id: MessageId,
    },
}

impl Record<'_> {
    /// The queue the record is about, if any.
    pub fn queue(&self) -> Option<QueueRef> {
        match *self {
            Record::Accepted { queue, .. }
            | Record::Delivered { queue, .. }
            | Record::Requeued { queue, .. }
            | Record::Settled { queue, .. }
            | Record::Counted { queue, .. } => Some(queue),
            Record::ResultKept { .. } | Record::ResultRemoved { .. } | Record::IdFloor { .. } => {
                None
            }
        }
    }

    /// The largest message id the record names, for the id floor.
    pub(crate) fn max_id(&self) -> Option<MessageId> {
        match *self {
            Record::Accepted { id, .. }
            | Record::Delivered { id, .. }
            | Record::Requeued { id, .. }
            | Record::Settled { id, .. }
            | Record::ResultKept { id, .. }
            | Record::ResultRemoved { id }
            | Record::IdFloor { id } => Some(id),
            Record::Counted { .. } => None,
        }
    }
}
