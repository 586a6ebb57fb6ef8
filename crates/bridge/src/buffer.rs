//! The export buffer: messages on their way to NATS, bounded by
//! `nats.buffer_max_messages`, with the `nats.buffer_overflow` policy at the
//! bound. While NATS is unreachable it fills; the sender drains it in order
//! once NATS is back. While NATS is connected it only holds what the sender
//! has not handed to NATS yet, at most [`CONNECTED_MAX`]: an at-most-once
//! reader that finds that many then waits for room ([`ExportBuffer::try_push`],
//! [`ExportBuffer::room_made`]) instead of dropping, so a burst is not
//! mistaken for an outage (see `export`).
//!
//! An at-least-once export carries the local delivery it acknowledges once
//! JetStream stored it: it is never dropped (dropping it would be a loss the
//! local broker cannot see), so it always waits for room whatever the
//! policy, and the local queue keeps what does not fit.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::config::BufferOverflow;

/// The most exports the buffer holds for [`ExportBuffer::try_push`] (an
/// at-most-once reader while NATS is connected): a few of the sender's
/// batches. A longer backlog waits in the bridge's local subscription,
/// where a message costs less memory than a prepared export and the
/// subscription's own bound applies; the full `buffer_max_messages` is for
/// outages.
pub const CONNECTED_MAX: usize = 1024;

/// One message for NATS.
#[derive(Debug)]
pub struct Export {
    /// The NATS subject.
    pub subject: String,
    /// The NATS headers (origin, hops, the local message's own headers).
    pub headers: async_nats::HeaderMap,
    /// The payload.
    pub payload: Bytes,
    /// At-least-once: the JetStream stream's rule, and the local delivery
    /// to acknowledge once JetStream stored the message.
    pub confirm: Option<eventbus::Delivery>,
}

/// What [`ExportBuffer::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued, nothing dropped.
    Queued,
    /// Queued; the oldest waiting export was dropped for it.
    DroppedOldest,
    /// Not queued: the buffer is full and the policy is drop-incoming.
    DroppedIncoming,
}

impl Pushed {
    /// Whether a message was lost.
    pub fn dropped(self) -> bool {
        self != Self::Queued
    }
}

/// The bounded buffer between the local subscriptions and the NATS sender.
#[derive(Debug)]
pub struct ExportBuffer {
    queue: Mutex<VecDeque<Export>>,
    max: usize,
    /// `max`, or [`CONNECTED_MAX`] if smaller.
    connected_max: usize,
    policy: BufferOverflow,
    /// Woken when an export is queued.
    items: Notify,
    /// Woken (every waiter) when an export is taken from a buffer holding
    /// `connected_max` or more.
    room: Notify,
}

impl ExportBuffer {
    /// An empty buffer for at most `max` exports (at least 1).
    pub fn new(max: usize, policy: BufferOverflow) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            max: max.max(1),
            connected_max: max.clamp(1, CONNECTED_MAX),
            policy,
            items: Notify::new(),
            room: Notify::new(),
        }
    }

    /// Exports waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Export>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `export` under the buffer's policy; with `block` (and for any
    /// at-least-once export) waits for room.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: cancelled while it waits, the export was not queued
    /// (and is dropped with the future: an at-least-once delivery then goes
    /// back to the local broker, unacknowledged).
    pub async fn push(&self, export: Export) -> Pushed {
        let must_wait = self.policy == BufferOverflow::Block || export.confirm.is_some();
        let mut export = Some(export);
        loop {
            let room = self.room.notified();
            {
                let mut queue = self.lock();
                if queue.len() < self.max {
                    queue.push_back(export.take().expect("pushed once"));
                    drop(queue);
                    self.items.notify_one();
                    return Pushed::Queued;
                }
                if !must_wait {
                    match self.policy {
                        BufferOverflow::DropIncoming => return Pushed::DroppedIncoming,
                        _ => {
                            // Drop the oldest that may be dropped: never an
                            // at-least-once export.
                            if let Some(at) = queue.iter().position(|e| e.confirm.is_none()) {
                                queue.remove(at);
                                queue.push_back(export.take().expect("pushed once"));
                                drop(queue);
                                self.items.notify_one();
                                return Pushed::DroppedOldest;
                            }
                        }
                    }
                }
            }
            room.await;
        }
    }

    /// Waits until an export is waiting (without taking it: the sender
    /// checks the link before it takes one, so nothing leaves the bound
    /// while NATS is away).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it takes nothing.
    pub async fn ready(&self) {
        loop {
            let items = self.items.notified();
            if !self.is_empty() {
                return;
            }
            items.await;
        }
    }

    /// Queues `export` if fewer than [`CONNECTED_MAX`] (or the bound, if
    /// smaller) wait; otherwise gives it back (`Some`). No policy applies:
    /// the caller decides whether to wait (see
    /// [`room_made`](Self::room_made)) or to [`push`](Self::push).
    #[must_use = "an export given back was not queued"]
    pub fn try_push(&self, export: Export) -> Option<Export> {
        let mut queue = self.lock();
        if queue.len() >= self.connected_max {
            return Some(export);
        }
        queue.push_back(export);
        drop(queue);
        self.items.notify_one();
        None
    }

    /// Completes the next time an export is taken from a buffer that
    /// [`try_push`](Self::try_push) (or [`push`](Self::push)) finds full.
    /// Made before [`try_push`](Self::try_push) finds the buffer full, it
    /// misses no take in between.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub fn room_made(&self) -> Notified<'_> {
        self.room.notified()
    }

    /// Takes the oldest export if there is one and `take` says so.
    pub fn try_pop_if(&self, take: impl FnOnce(&Export) -> bool) -> Option<Export> {
        let mut queue = self.lock();
        if !queue.front().is_some_and(take) {
            return None;
        }
        let was_full = queue.len() >= self.connected_max;
        let export = queue.pop_front();
        drop(queue);
        self.made_room(was_full);
        export
    }

    /// Takes the oldest export if there is one.
    pub fn try_pop(&self) -> Option<Export> {
        self.try_pop_if(|_| true)
    }

    /// Wakes whoever waits for room, but only when there may have been
    /// none: nobody waits below [`CONNECTED_MAX`], and the sender takes
    /// exports one by one at full speed. (A [`push`](Self::push) woken
    /// below its bound looks again and waits on.)
    fn made_room(&self, was_full: bool) {
        if was_full {
            self.room.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn export(n: u32) -> Export {
        Export {
            subject: format!("s.{n}"),
            headers: async_nats::HeaderMap::new(),
            payload: Bytes::from(n.to_string()),
            confirm: None,
        }
    }

    fn drain(buffer: &ExportBuffer) -> Vec<String> {
        std::iter::from_fn(|| buffer.try_pop().map(|e| e.subject)).collect()
    }

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest() {
        let buffer = ExportBuffer::new(2, BufferOverflow::DropOldest);
        assert_eq!(buffer.push(export(1)).await, Pushed::Queued);
        assert_eq!(buffer.push(export(2)).await, Pushed::Queued);
        assert_eq!(buffer.push(export(3)).await, Pushed::DroppedOldest);
        assert_eq!(buffer.len(), 2);
        assert_eq!(drain(&buffer), ["s.2", "s.3"]);
    }

    #[tokio::test]
    async fn drop_incoming_keeps_the_oldest() {
        let buffer = ExportBuffer::new(2, BufferOverflow::DropIncoming);
        buffer.push(export(1)).await;
        buffer.push(export(2)).await;
        assert_eq!(buffer.push(export(3)).await, Pushed::DroppedIncoming);
        assert!(Pushed::DroppedIncoming.dropped());
        assert_eq!(drain(&buffer), ["s.1", "s.2"]);
    }

    #[tokio::test]
    async fn block_waits_for_room_and_loses_nothing() {
        let buffer = std::sync::Arc::new(ExportBuffer::new(1, BufferOverflow::Block));
        buffer.push(export(1)).await;
        let pusher = {
            let buffer = buffer.clone();
            tokio::spawn(async move { buffer.push(export(2)).await })
        };
        // The pusher cannot finish while the buffer is full.
        tokio::task::yield_now().await;
        assert!(!pusher.is_finished());
        assert_eq!(buffer.try_pop().unwrap().subject, "s.1");
        let pushed = tokio::time::timeout(Duration::from_secs(10), pusher)
            .await
            .expect("room made")
            .unwrap();
        assert_eq!(pushed, Pushed::Queued);
        assert_eq!(drain(&buffer), ["s.2"]);
    }

    #[tokio::test]
    async fn a_cancelled_blocked_push_queues_nothing() {
        let buffer = ExportBuffer::new(1, BufferOverflow::Block);
        buffer.push(export(1)).await;
        let cancelled =
            tokio::time::timeout(Duration::from_millis(20), buffer.push(export(2))).await;
        assert!(cancelled.is_err());
        assert_eq!(drain(&buffer), ["s.1"]);
    }

    #[tokio::test]
    async fn try_pop_if_takes_only_what_it_is_asked_for() {
        let buffer = ExportBuffer::new(4, BufferOverflow::DropOldest);
        buffer.push(export(1)).await;
        buffer.push(export(2)).await;
        assert!(buffer.try_pop_if(|e| e.subject == "s.2").is_none());
        assert_eq!(
            buffer.try_pop_if(|e| e.subject == "s.1").unwrap().subject,
            "s.1"
        );
        assert_eq!(drain(&buffer), ["s.2"]);
        assert!(buffer.try_pop_if(|_| true).is_none());
    }

    #[tokio::test]
    async fn try_push_gives_back_what_does_not_fit_and_room_made_wakes_on_a_take() {
        let buffer = ExportBuffer::new(1, BufferOverflow::DropOldest);
        assert!(buffer.try_push(export(1)).is_none());
        let room = buffer.room_made();
        let back = buffer
            .try_push(export(2))
            .expect("full: given back, not dropped");
        assert_eq!(back.subject, "s.2");
        assert_eq!(drain(&buffer), ["s.1"]);
        // The take from the full buffer was after `room_made`: not missed.
        tokio::time::timeout(Duration::from_secs(10), room)
            .await
            .expect("woken by the take");
        assert!(buffer.try_push(back).is_none());
        assert_eq!(drain(&buffer), ["s.2"]);
    }

    #[tokio::test]
    async fn while_connected_the_backlog_is_capped_below_the_outage_bound() {
        let buffer = ExportBuffer::new(CONNECTED_MAX + 5, BufferOverflow::DropIncoming);
        for n in 0..CONNECTED_MAX {
            assert!(buffer.try_push(export(n as u32)).is_none());
        }
        assert!(buffer.try_push(export(0)).is_some());
        // The outage bound still holds the rest, under the policy.
        for n in 0..5 {
            assert_eq!(buffer.push(export(n)).await, Pushed::Queued);
        }
        assert_eq!(buffer.push(export(0)).await, Pushed::DroppedIncoming);
        assert_eq!(buffer.len(), CONNECTED_MAX + 5);
    }

    #[tokio::test]
    async fn ready_waits_for_a_push_and_takes_nothing() {
        let buffer = std::sync::Arc::new(ExportBuffer::new(4, BufferOverflow::DropOldest));
        let waiter = {
            let buffer = buffer.clone();
            tokio::spawn(async move { buffer.ready().await })
        };
        buffer.push(export(7)).await;
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(drain(&buffer), ["s.7"]);
    }
}
