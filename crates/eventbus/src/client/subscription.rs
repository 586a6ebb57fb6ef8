//! Subscribing: plain subscriptions (every matching message), queue-group
//! memberships and the direct inbox (one member gets each message, to settle).

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::delivery::Delivery;
use super::error::{Refused, SubscribeError};
use super::mailbox::{Inbox, Mailbox};
use super::{Answer, CallFailure, Client, Message, SubEntry, lock};
use crate::names::{GroupName, IntoName};
use crate::proto::{self, ErrorCode, Frame, frame::Kind};
use crate::topic::TopicFilter;

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

/// A plain subscription: every message matching its filter, from
/// [`next`](Self::next) or as a [`Stream`].
///
/// Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    sid: u64,
    inbox: Inbox<Incoming>,
    client: Client,
}

impl Subscription {
    /// The next message; `None` once the client is closed for good.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken only when this returns it, so using it
    /// in a `select!` loses nothing.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut events = client.subscribe("events.#").await?;
    /// while let Some(event) = events.next().await {
    ///     println!("{}: {:?}", event.topic(), event.payload());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<Message> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

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

/// A queue-group membership (or the direct-delivery inbox): [`Delivery`]
/// values, each to be acked, nacked or replied to, from [`next`](Self::next)
/// or as a [`Stream`].
///
/// Dropping it leaves the group; unsettled deliveries go back to the queue.
#[derive(Debug)]
pub struct QueueSubscription {
    sid: u64,
    inbox: Inbox<Incoming>,
    client: Client,
}

impl QueueSubscription {
    /// The next delivery; `None` once the client is closed for good.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`Subscription::next`].
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tasks = client.queue_subscribe("jobs.resize", "resizers", 4).await?;
    /// while let Some(task) = tasks.next().await {
    ///     // ... do the work ...
    ///     task.ack()?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<Delivery> {
        poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
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
                        o.map(|i| Delivery::new(i.delivery_id, i.epoch, i.message, client.clone()))
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

/// Forgets a subscription whose `subscribe` call did not complete (cancelled
/// or timed out), so it is neither kept locally nor restored after a
/// reconnect; the broker is told too, in case it registered it meanwhile.
struct PendingSubscription<'a> {
    client: &'a Client,
    sid: Option<u64>,
}

impl PendingSubscription<'_> {
    /// The subscription is registered, or was refused (nothing to undo on the
    /// broker): keep it, or forget it here only.
    fn settle(mut self) -> u64 {
        self.sid.take().expect("settled once")
    }
}

impl Drop for PendingSubscription<'_> {
    fn drop(&mut self) {
        if let Some(sid) = self.sid {
            self.client.forget_subscription(sid);
        }
    }
}

impl Client {
    /// Subscribes to every message matching `filter` (`+` one segment, `#`
    /// trailing segments); the broker has registered the subscription when
    /// this returns, so nothing published after it is missed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: cancelled before it returns, the subscription is dropped
    /// on both sides and not restored after a reconnect.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut starts = client.subscribe("events.+.start").await?;
    /// if let Some(message) = starts.next().await {
    ///     println!("{} from {}", message.topic(), message.source());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(
        &self,
        filter: impl IntoName<TopicFilter>,
    ) -> Result<Subscription, SubscribeError> {
        let filter = filter.into_name()?;
        let (sid, mailbox) = self.open_subscription(&filter, None, 0, false).await?;
        Ok(Subscription {
            sid,
            inbox: Inbox::new(mailbox),
            client: self.clone(),
        })
    }

    /// Joins queue group `group` on `filter`: each matching message goes to one
    /// member, which settles it ([`Delivery::ack`], [`Delivery::nack`],
    /// [`Delivery::reply`]). At most `prefetch` deliveries are held unsettled
    /// at once (0: the broker's default).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`subscribe`](Self::subscribe).
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tasks = client.queue_subscribe("control.collector.task.process", "process", 4).await?;
    /// while let Some(task) = tasks.next().await {
    ///     task.reply("done")?; // a reply also acks
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn queue_subscribe(
        &self,
        filter: impl IntoName<TopicFilter>,
        group: impl IntoName<GroupName>,
        prefetch: u32,
    ) -> Result<QueueSubscription, SubscribeError> {
        let filter = filter.into_name()?;
        let group = group.into_name().map_err(SubscribeError::InvalidGroup)?;
        let (sid, mailbox) = self
            .open_subscription(&filter, Some(&group), prefetch, false)
            .await?;
        Ok(QueueSubscription {
            sid,
            inbox: Inbox::new(mailbox),
            client: self.clone(),
        })
    }

    /// Joins queue group `group` on `filter` as a *fallback* member: it gets
    /// deliveries only while the group has no other member, like
    /// [`queue_subscribe`](Self::queue_subscribe) otherwise. For a client
    /// that takes what nobody else serves (a bridge forwarding requests to
    /// another host): a request goes to it instead of failing with
    /// `NoResponders`, and a member that joins takes over at once.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`subscribe`](Self::subscribe).
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut unserved = client
    ///     .queue_subscribe_fallback("control.collector.task.process", "process", 16)
    ///     .await?;
    /// while let Some(task) = unserved.next().await {
    ///     task.nack(false)?; // nobody here serves it: dead-letter it
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn queue_subscribe_fallback(
        &self,
        filter: impl IntoName<TopicFilter>,
        group: impl IntoName<GroupName>,
        prefetch: u32,
    ) -> Result<QueueSubscription, SubscribeError> {
        let filter = filter.into_name()?;
        let group = group.into_name().map_err(SubscribeError::InvalidGroup)?;
        let (sid, mailbox) = self
            .open_subscription(&filter, Some(&group), prefetch, true)
            .await?;
        Ok(QueueSubscription {
            sid,
            inbox: Inbox::new(mailbox),
            client: self.clone(),
        })
    }

    /// The stream of messages sent directly to this client. Only one may be open;
    /// without one, direct sends are handed back to the broker (nacked) and a
    /// requester waiting on one gets `NoResponders` at once. At most
    /// `max_direct_in_flight` (broker config) direct messages are unsettled at once.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut inbox = client.direct_deliveries();
    /// while let Some(delivery) = inbox.next().await {
    ///     if delivery.message().is_request() {
    ///         delivery.reply("pong")?;
    ///     } else {
    ///         delivery.ack()?;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn direct_deliveries(&self) -> QueueSubscription {
        let options = &self.inner().options;
        let mailbox = Arc::new(Mailbox::new(options.subscription_capacity, usize::MAX));
        let entry = SubEntry {
            mailbox: mailbox.clone(),
            restore: None,
        };
        if let Some(old) = lock(&self.inner().subs).insert(0, entry) {
            old.mailbox.close();
        }
        QueueSubscription {
            sid: 0,
            inbox: Inbox::new(mailbox),
            client: self.clone(),
        }
    }

    async fn open_subscription(
        &self,
        filter: &TopicFilter,
        group: Option<&GroupName>,
        prefetch: u32,
        fallback: bool,
    ) -> Result<(u64, Arc<Mailbox<Incoming>>), SubscribeError> {
        let sid = self.next_seq();
        let capacity = match group {
            // Credit bounds queue deliveries; leave room for the whole window.
            Some(_) if prefetch > 0 => prefetch as usize + 1,
            // The broker grants its default prefetch, unknown here: size for the most.
            Some(_) => self.inner().options.subscription_capacity,
            None => self.inner().options.subscription_capacity,
        };
        let max_bytes = match group {
            // Credit bounds queue deliveries; their bytes are bounded by the frame size.
            Some(_) => usize::MAX,
            None => self.inner().options.subscription_bytes,
        };
        let mailbox = Arc::new(Mailbox::new(capacity, max_bytes));
        let spec = proto::Subscribe {
            seq: 0,
            sid,
            filter: filter.as_str().to_owned(),
            group: group.map(|g| g.as_str().to_owned()).unwrap_or_default(),
            prefetch,
            fallback,
        };
        let entry = SubEntry {
            mailbox: mailbox.clone(),
            restore: Some(spec.clone()),
        };
        lock(&self.inner().subs).insert(sid, entry);
        let pending = PendingSubscription {
            client: self,
            sid: Some(sid),
        };
        let timeout = self.inner().options.request_timeout;
        let answer = self
            .call(timeout, |seq| {
                Kind::Subscribe(proto::Subscribe { seq, ..spec })
            })
            .await;
        let refusal = match answer {
            Ok(Answer::Ok(_)) => {
                pending.settle();
                return Ok((sid, mailbox));
            }
            Ok(Answer::Error(e)) => Refused::from(e),
            // Timed out or lost: the broker may still register it; `pending`
            // unsubscribes when dropped.
            Ok(_) | Err(CallFailure::Closed) => return Err(SubscribeError::Closed),
            Err(CallFailure::Timeout(t)) => return Err(SubscribeError::Timeout(t)),
        };
        // Refused: nothing registered on the broker, forget it here only.
        pending.settle();
        lock(&self.inner().subs).remove(&sid);
        Err(match refusal.code {
            ErrorCode::SubscriptionLimit => SubscribeError::Limit {
                max: refusal.detail_usize("max_subscriptions"),
            },
            _ => SubscribeError::Refused(refusal),
        })
    }

    /// Drops a subscription locally and tells the broker (without waiting).
    pub(super) fn forget_subscription(&self, sid: u64) {
        if let Some(entry) = lock(&self.inner().subs).remove(&sid) {
            entry.mailbox.close();
        }
        if sid != 0 {
            let _ = self.push(Frame {
                kind: Some(Kind::Unsubscribe(proto::Unsubscribe { seq: 0, sid })),
            });
        }
    }
}
