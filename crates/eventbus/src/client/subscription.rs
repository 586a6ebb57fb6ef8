//! Subscription streams, and deliveries that must be settled.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::error::AckError;
use super::mailbox::Inbox;
use super::{Body, Client, Message};
use crate::proto::{self, Frame, frame::Kind};

/// What the reader hands a subscription: the message and, for queue and direct
/// deliveries, the id to settle it with.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub delivery_id: u64,
    /// The connection it came on (see `session`).
    pub epoch: u64,
    pub message: Message,
}

impl super::mailbox::Weigh for Incoming {
    fn weight(&self) -> usize {
        64 + self.message.payload().len() + self.message.topic_len()
    }
}

/// A plain subscription: a `Stream` of every message matching its filter.
///
/// Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    pub(crate) sid: u64,
    pub(crate) inbox: Inbox<Incoming>,
    pub(crate) client: Client,
}

impl Subscription {
    /// Messages evicted because this subscription fell too far behind.
    pub fn dropped(&self) -> u64 {
        self.inbox.dropped()
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.inbox.poll_next(cx).map(|o| o.map(|i| i.message))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.client.forget_subscription(self.sid);
    }
}

/// A queue-group membership (or the direct-delivery inbox): a `Stream` of
/// [`Delivery`] values, each to be acked, nacked or replied to.
///
/// Dropping it leaves the group; unsettled deliveries go back to the queue.
#[derive(Debug)]
pub struct QueueSubscription {
    pub(crate) sid: u64,
    pub(crate) inbox: Inbox<Incoming>,
    pub(crate) client: Client,
}

impl Stream for QueueSubscription {
    type Item = Delivery;

    /// Skips deliveries whose connection is gone or stalled: the broker has
    /// taken them back (see `session`), so running them could duplicate work.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let this = self.get_mut();
        let client = &this.client;
        loop {
            match this.inbox.poll_next(cx) {
                Poll::Ready(Some(i)) if !client.holds(i.epoch) => {
                    tracing::debug!(
                        delivery_id = i.delivery_id,
                        "skipping a delivery of a connection the broker has dropped"
                    );
                }
                other => {
                    return other.map(|o| {
                        o.map(|i| Delivery {
                            delivery_id: i.delivery_id,
                            epoch: i.epoch,
                            message: i.message,
                            client: client.clone(),
                        })
                    });
                }
            }
        }
    }
}

impl Drop for QueueSubscription {
    fn drop(&mut self) {
        self.client.forget_subscription(self.sid);
    }
}

/// A message held by this client until it is settled.
///
/// Settle it with [`ack`](Self::ack), [`nack`](Self::nack) or
/// [`reply`](Self::reply) (a reply counts as an ack). Until then it counts against
/// the subscription's prefetch.
#[derive(Debug)]
pub struct Delivery {
    delivery_id: u64,
    epoch: u64,
    message: Message,
    client: Client,
}

impl Delivery {
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

    /// Acknowledges, without waiting for the broker.
    pub fn ack(&self) -> Result<(), AckError> {
        self.client
            .push_now(Frame {
                kind: Some(Kind::Ack(proto::Ack {
                    delivery_id: self.delivery_id,
                    seq: 0,
                })),
            })
            .map_err(|_| AckError::Closed)
    }

    /// Acknowledges and waits for the broker to confirm it still held the delivery.
    pub async fn ack_confirmed(&self) -> Result<(), AckError> {
        let delivery_id = self.delivery_id;
        self.client
            .settle_confirmed(delivery_id, |seq| {
                Kind::Ack(proto::Ack { delivery_id, seq })
            })
            .await
    }

    /// Hands the message back: requeued for another attempt, or discarded.
    pub async fn nack(&self, requeue: bool) -> Result<(), AckError> {
        let delivery_id = self.delivery_id;
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
    pub fn reply(&self, body: impl Into<Body>) -> Result<(), AckError> {
        self.client
            .send_reply(&self.message, self.delivery_id, body.into())
    }
}
