//! [`Delivery`]: a queue-group or direct message this client holds until it
//! settles it: ack, nack or reply; dropped unsettled, it is nacked.

use std::sync::atomic::{AtomicBool, Ordering};

use super::body::Body;
use super::error::AckError;
use super::{Client, Message};
use crate::proto::{self, Frame, frame::Kind};

/// A message held by this client until it is settled.
///
/// Settle it once, with [`ack`](Self::ack), [`nack`](Self::nack) or
/// [`reply`](Self::reply) (a reply counts as an ack); each has a variant
/// that waits for the broker to confirm ([`ack_confirmed`](Self::ack_confirmed),
/// [`nack_confirmed`](Self::nack_confirmed)). Until then it counts against
/// the subscription's prefetch.
///
/// **Dropped unsettled** (say, a handler returned early with `?`), it is
/// nacked with requeue, so its prefetch slot is free at once instead of after
/// the broker's ack timeout, and another attempt runs (counted against the
/// queue's `max_attempts`). A direct delivery handed back that way fails
/// its requester at once with `NoResponders`, as any nacked direct message
/// does. The drop is logged at `debug`. A delivery the broker has already
/// taken back (see [`is_cancelled`](Self::is_cancelled)) is not nacked.
///
/// ```no_run
/// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tasks = client.queue_subscribe("jobs.resize", "resizers", 1).await?;
/// while let Some(task) = tasks.next().await {
///     match std::str::from_utf8(task.message().payload()) {
///         Ok(name) if !name.is_empty() => task.ack()?,
///         Ok(_) => task.nack(false)?, // a bad task: dead-letter it
///         Err(_) => continue,         // dropped: nacked with requeue
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Delivery {
    delivery_id: u64,
    epoch: u64,
    message: Message,
    client: Client,
    /// Set once a settling frame is queued: a drop then does nothing.
    settled: AtomicBool,
}

impl Delivery {
    pub(super) fn new(delivery_id: u64, epoch: u64, message: Message, client: Client) -> Self {
        Self {
            delivery_id,
            epoch,
            message,
            client,
            settled: AtomicBool::new(false),
        }
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Whether the broker cancelled this message, took it back after its ack
    /// timeout, or took it back because the connection it came on ended (or
    /// this client went silent past the heartbeat limit): its result will be
    /// discarded, so the work may stop.
    pub fn is_cancelled(&self) -> bool {
        !self.client.holds(self.epoch) || self.client.was_cancelled(self.message.id())
    }

    /// The broker's id for this delivery.
    pub fn delivery_id(&self) -> u64 {
        self.delivery_id
    }

    /// Whether it has been settled (acked, nacked or replied to) by this client.
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Relaxed)
    }

    /// Queues a settling frame and marks the delivery settled.
    fn settle(&self, kind: Kind) -> Result<(), AckError> {
        self.client
            .push_now(Frame { kind: Some(kind) })
            .map_err(|_| AckError::Closed)?;
        self.settled.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Acknowledges, without waiting for the broker.
    ///
    /// ```no_run
    /// # async fn demo(task: eventbus::Delivery) -> Result<(), Box<dyn std::error::Error>> {
    /// task.ack()?;
    /// # Ok(()) }
    /// ```
    pub fn ack(&self) -> Result<(), AckError> {
        self.settle(Kind::Ack(proto::Ack {
            delivery_id: self.delivery_id,
            seq: 0,
        }))
    }

    /// Acknowledges and waits for the broker to confirm it still held the
    /// delivery ([`AckError::UnknownDelivery`] if it was taken back).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: once polled, the ack is on its way; cancelled, it
    /// counts as settled and the delivery is not nacked on drop.
    ///
    /// ```no_run
    /// # async fn demo(task: eventbus::Delivery) -> Result<(), Box<dyn std::error::Error>> {
    /// task.ack_confirmed().await?;
    /// # Ok(()) }
    /// ```
    pub async fn ack_confirmed(&self) -> Result<(), AckError> {
        let delivery_id = self.delivery_id;
        self.settled.store(true, Ordering::Relaxed);
        self.client
            .settle_confirmed(delivery_id, |seq| {
                Kind::Ack(proto::Ack { delivery_id, seq })
            })
            .await
    }

    /// Hands the message back without waiting for the broker: requeued for
    /// another attempt (`requeue`), or dead-lettered.
    ///
    /// ```no_run
    /// # async fn demo(task: eventbus::Delivery) -> Result<(), Box<dyn std::error::Error>> {
    /// task.nack(true)?; // someone else may take it
    /// # Ok(()) }
    /// ```
    pub fn nack(&self, requeue: bool) -> Result<(), AckError> {
        self.settle(Kind::Nack(proto::Nack {
            delivery_id: self.delivery_id,
            requeue,
            seq: 0,
        }))
    }

    /// Like [`nack`](Self::nack), waiting for the broker to confirm it still
    /// held the delivery.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, like [`ack_confirmed`](Self::ack_confirmed).
    ///
    /// ```no_run
    /// # async fn demo(task: eventbus::Delivery) -> Result<(), Box<dyn std::error::Error>> {
    /// task.nack_confirmed(false).await?;
    /// # Ok(()) }
    /// ```
    pub async fn nack_confirmed(&self, requeue: bool) -> Result<(), AckError> {
        let delivery_id = self.delivery_id;
        self.settled.store(true, Ordering::Relaxed);
        self.client
            .settle_confirmed(delivery_id, |seq| {
                Kind::Nack(proto::Nack {
                    delivery_id,
                    requeue,
                    seq,
                })
            })
            .await
    }

    /// Replies to a request, which also acknowledges the delivery.
    ///
    /// ```no_run
    /// # async fn demo(task: eventbus::Delivery) -> Result<(), Box<dyn std::error::Error>> {
    /// use eventbus::Body;
    /// task.reply(Body::new(r#"{"ok":true}"#).header("content-type", "application/json")?)?;
    /// # Ok(()) }
    /// ```
    pub fn reply(&self, body: impl Into<Body>) -> Result<(), AckError> {
        self.client
            .send_reply(&self.message, self.delivery_id, body.into())?;
        self.settled.store(true, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if self.is_settled() || self.is_cancelled() {
            return;
        }
        tracing::debug!(
            delivery_id = self.delivery_id,
            message_id = self.message.id(),
            topic = self.message.topic(),
            "delivery dropped unsettled: nacked with requeue"
        );
        // A closed client cannot nack; the broker takes the delivery back
        // when the connection ends anyway.
        let _ = self.nack(true);
    }
}
