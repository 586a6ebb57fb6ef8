//! The client: a cheap, cloneable handle to one connection with a broker.
//!
//! Every operation pushes a frame into the connection's bounded outbound queue,
//! which one writer task drains; one reader task routes what the broker sends to
//! waiting calls (by `seq`) and to subscription streams (by subscription id).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use eventbus::{Client, ClientOptions, Topic, TopicFilter};
//! use futures_core::Stream;
//! let client = Client::connect(ClientOptions::new("/tmp/eventbus/broker.sock")).await?;
//! let _events = client.subscribe(&TopicFilter::new("events.#")?).await?;
//! client.publish(&Topic::new("events.process.snapshot")?, "hello")?;
//! # Ok(()) }
//! ```

mod body;
mod connection;
mod credentials;
mod error;
mod headers;
mod mailbox;
mod message;
mod options;
mod request;
mod session;
mod subscription;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

pub use body::Body;
pub use credentials::{CREDENTIALS_ENV, CREDENTIALS_FILE_ENV, Credentials, CredentialsError};
pub use error::{
    AckError, CallError, ConnectError, PublishError, Refused, RequestError, SubscribeError,
};
pub use headers::{HeaderError, Headers, MAX_HEADER_NAME_BYTES};
pub use message::Message;
pub use options::{ClientOptions, ReconnectPolicy};
pub use request::PendingRequest;
pub use subscription::{Delivery, QueueSubscription, Subscription};

use crate::codec::raw::RawPublishOut;
use crate::framed::{Outbound, Outgoing, PushError};
use crate::names::{ClientId, GroupName};
use crate::proto::{self, ErrorCode, Frame, PublishMode, StatsResponse, frame::Kind};
use crate::topic::{Topic, TopicFilter};
use mailbox::{Inbox, Mailbox};
use subscription::Incoming;

/// Cancelled message ids remembered for [`Delivery::is_cancelled`].
const CANCELLED_MEMORY: usize = 4096;

/// Bytes of framing and envelope fields around a payload, used to refuse
/// oversized messages before they are queued.
const ENVELOPE_OVERHEAD: usize = 64;

/// The broker's answer to a call.
#[derive(Debug)]
enum Answer {
    Ok(u64),
    Error(proto::Error),
    Reply(Box<proto::Envelope>),
    Stats(StatsResponse),
}

/// Why a call got no answer.
#[derive(Debug)]
enum CallFailure {
    Closed,
    Timeout(Duration),
}

#[derive(Debug)]
struct Inner {
    client_id: ClientId,
    options: ClientOptions,
    out: Arc<Outbound>,
    max_frame_bytes: AtomicUsize,
    next_seq: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    /// Submitted requests waiting for the broker's acceptance (their final
    /// answer waits in `pending` under the same `seq`).
    accepts: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    /// Looked up for every delivery: a fast, seeded hasher.
    subs: Mutex<HashMap<u64, SubEntry, foldhash::fast::RandomState>>,
    /// Ids of held messages the broker cancelled, newest last, at most
    /// `CANCELLED_MEMORY` of them.
    cancelled: Mutex<std::collections::VecDeque<u64>>,
    /// The current connection's epoch, which queue deliveries are tied to.
    session: session::Session,
    /// Cancelled once the client is closed for good (not on a reconnectable loss).
    closed: CancellationToken,
    events: broadcast::Sender<ConnectionEvent>,
    /// The last `Welcome`'s resume token, presented when reconnecting.
    resume_token: Mutex<bytes::Bytes>,
}

/// A subscription's local end, and what to send to restore it after a reconnect.
#[derive(Debug)]
struct SubEntry {
    mailbox: Arc<Mailbox<Incoming>>,
    /// `None` for the direct inbox, which needs no broker-side subscription.
    restore: Option<proto::Subscribe>,
}

/// A change in the client's connection, see [`Client::connection_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The connection was lost; the client is reconnecting.
    Disconnected {
        /// Why, as far as the client knows.
        reason: String,
    },
    /// A new connection is up, the id re-registered and subscriptions restored.
    Reconnected {
        /// Connection attempts it took.
        attempts: u32,
    },
    /// The client is closed for good.
    Closed,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Closes the connection when the last [`Client`] clone is dropped.
#[derive(Debug)]
struct Handle(Arc<Inner>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.out.close();
    }
}

/// A connection to a broker. Cheap to clone; all clones share the connection.
#[derive(Debug, Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

impl Client {
    fn inner(&self) -> &Inner {
        &self.handle.0
    }

    /// This client's id on the broker.
    pub fn client_id(&self) -> &ClientId {
        &self.inner().client_id
    }

    /// Whether the client is closed for good: closed by the application, or its
    /// connection lost with reconnection disabled.
    pub fn is_closed(&self) -> bool {
        self.inner().closed.is_cancelled()
    }

    /// Completes when the client is closed for good (see [`is_closed`](Self::is_closed)).
    pub async fn closed(&self) {
        self.inner().closed.cancelled().await;
    }

    /// Connection changes from now on: disconnected, reconnected, closed.
    ///
    /// A receiver that falls more than 64 events behind skips the oldest.
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner().events.subscribe()
    }

    fn push(&self, frame: Frame) -> Result<(), PushError> {
        self.inner().out.push(frame)
    }

    /// Queues a frame someone waits on (a request, a reply, an ack) and writes it
    /// at once if the writer task is idle, sparing its wake-up. Fire-and-forget
    /// publishes use [`push`](Self::push) and are written in batches instead.
    fn push_now(&self, frame: Frame) -> Result<(), PushError> {
        self.inner().out.push_quiet(frame)?;
        self.inner().out.try_flush();
        Ok(())
    }

    fn next_seq(&self) -> u64 {
        self.inner().next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a frame built around a fresh `seq` and waits for the broker's answer.
    async fn call(
        &self,
        timeout: Duration,
        build: impl FnOnce(u64) -> Kind,
    ) -> Result<Answer, CallFailure> {
        let seq = self.next_seq();
        let (tx, rx) = oneshot::channel();
        lock(&self.inner().pending).insert(seq, tx);
        if self.is_closed()
            || self
                .push_now(Frame {
                    kind: Some(build(seq)),
                })
                .is_err()
        {
            lock(&self.inner().pending).remove(&seq);
            return Err(CallFailure::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(CallFailure::Closed),
            Err(_) => {
                lock(&self.inner().pending).remove(&seq);
                Err(CallFailure::Timeout(timeout))
            }
        }
    }

    /// Refuses a message that cannot fit in one frame, before it is queued.
    fn check_size(&self, topic: &str, body: &Body) -> Result<(), PublishError> {
        let len =
            body.payload.len() + body.headers.encoded_len_bound() + topic.len() + ENVELOPE_OVERHEAD;
        let max = self.inner().max_frame_bytes.load(Ordering::Relaxed);
        if len > max {
            return Err(PublishError::TooLarge { len, max });
        }
        Ok(())
    }

    fn envelope(&self, topic: &str, body: Body) -> Result<Box<proto::Envelope>, PublishError> {
        self.check_size(topic, &body)?;
        Ok(Box::new(proto::Envelope {
            topic: topic.to_owned(),
            payload: body.payload,
            headers: body.headers.into_wire(),
            ..Default::default()
        }))
    }

    /// Publishes without waiting: returns once the message is queued for the broker.
    pub fn publish(&self, topic: &Topic, body: impl Into<Body>) -> Result<(), PublishError> {
        let body = body.into();
        self.check_size(topic.as_str(), &body)?;
        let item = if body.headers.is_empty() {
            // Encoded by hand into the write buffer: the hottest call of a
            // publisher builds no `Frame` and no buffer of its own.
            Outgoing::Publish(RawPublishOut {
                topic: topic.clone(),
                payload: body.payload,
            })
        } else {
            Outgoing::Frame(Frame {
                kind: Some(Kind::Publish(proto::Publish {
                    seq: 0,
                    mode: PublishMode::FireAndForget as i32,
                    message: Some(self.envelope(topic.as_str(), body)?),
                    target_client: String::new(),
                    timeout_ms: 0,
                })),
            })
        };
        self.inner().out.push(item).map_err(|e| self.push_error(e))
    }

    fn push_error(&self, e: PushError) -> PublishError {
        match e {
            PushError::Closed => PublishError::Closed,
            PushError::Full { max_len: capacity } | PushError::TooSlow { hard_cap: capacity } => {
                PublishError::BufferFull { capacity }
            }
        }
    }

    /// Publishes, waiting while the outbound buffer is full (during an outage, or
    /// when the broker is slower than the publisher) instead of failing with
    /// `BufferFull` like [`publish`](Self::publish).
    pub async fn publish_wait(
        &self,
        topic: &Topic,
        body: impl Into<Body>,
    ) -> Result<(), PublishError> {
        let body = body.into();
        loop {
            match self.publish(topic, body.clone()) {
                Err(PublishError::BufferFull { .. }) => self.inner().out.drained().await,
                other => return other,
            }
        }
    }

    /// Whether the broker cancelled the message with this id while this client held it.
    fn was_cancelled(&self, message_id: u64) -> bool {
        lock(&self.inner().cancelled).contains(&message_id)
    }

    /// Whether a delivery that came on connection `epoch` can still be settled.
    fn holds(&self, epoch: u64) -> bool {
        self.inner().session.holds(epoch)
    }

    /// Publishes and waits until the broker has accepted the message; returns its id.
    pub async fn publish_confirmed(
        &self,
        topic: &Topic,
        body: impl Into<Body>,
    ) -> Result<u64, PublishError> {
        self.confirmed(topic.as_str(), body.into(), String::new())
            .await
    }

    /// Sends a message to one connected client, waiting for the broker to accept it.
    /// The receiver gets it through [`direct_deliveries`](Self::direct_deliveries).
    pub async fn send_direct(
        &self,
        target: &ClientId,
        topic: &Topic,
        body: impl Into<Body>,
    ) -> Result<u64, RequestError> {
        self.confirmed(topic.as_str(), body.into(), target.as_str().to_owned())
            .await
            .map_err(|e| match e {
                PublishError::Refused(r) if r.code == ErrorCode::NoSuchClient => {
                    RequestError::NoSuchClient {
                        client_id: target.as_str().to_owned(),
                    }
                }
                other => RequestError::Publish(other),
            })
    }

    async fn confirmed(
        &self,
        topic: &str,
        body: Body,
        target_client: String,
    ) -> Result<u64, PublishError> {
        let message = self.envelope(topic, body)?;
        let timeout = self.inner().options.request_timeout;
        let answer = self
            .call(timeout, |seq| {
                Kind::Publish(proto::Publish {
                    seq,
                    mode: PublishMode::Confirmed as i32,
                    message: Some(message),
                    target_client,
                    timeout_ms: 0,
                    ..Default::default()
                })
            })
            .await;
        match answer {
            Ok(Answer::Ok(id)) => Ok(id),
            Ok(Answer::Error(e)) => Err(publish_refusal(e.into())),
            Ok(_) => Err(PublishError::Closed),
            Err(CallFailure::Closed) => Err(PublishError::Closed),
            Err(CallFailure::Timeout(t)) => Err(PublishError::Timeout(t)),
        }
    }

    /// Replies to a request received on a plain subscription.
    pub fn reply(&self, request: &Message, body: impl Into<Body>) -> Result<(), AckError> {
        self.send_reply(request, 0, body.into())
    }

    /// Replies to `request`; a non-zero `delivery_id` also acks that delivery.
    fn send_reply(&self, request: &Message, delivery_id: u64, body: Body) -> Result<(), AckError> {
        if !request.is_request() {
            return Err(AckError::NotARequest {
                message_id: request.id(),
            });
        }
        self.push_now(Frame {
            kind: Some(Kind::Reply(proto::Reply {
                correlation_id: request.correlation_id(),
                delivery_id,
                message: Some(Box::new(proto::Envelope {
                    topic: request.topic().to_owned(),
                    payload: body.payload,
                    headers: body.headers.into_wire(),
                    ..Default::default()
                })),
                seq: 0,
            })),
        })
        .map_err(|_| AckError::Closed)
    }

    /// Subscribes to every message matching `filter`; the broker has registered the
    /// subscription when this returns.
    pub async fn subscribe(&self, filter: &TopicFilter) -> Result<Subscription, SubscribeError> {
        let (sid, mailbox) = self.open_subscription(filter, None, 0).await?;
        Ok(Subscription {
            sid,
            inbox: Inbox::new(mailbox),
            client: self.clone(),
        })
    }

    /// Joins queue group `group` on `filter`: each matching message goes to one
    /// member. At most `prefetch` deliveries are held unsettled at once.
    pub async fn queue_subscribe(
        &self,
        filter: &TopicFilter,
        group: &GroupName,
        prefetch: u32,
    ) -> Result<QueueSubscription, SubscribeError> {
        let (sid, mailbox) = self
            .open_subscription(filter, Some(group), prefetch)
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
        };
        let entry = SubEntry {
            mailbox: mailbox.clone(),
            restore: Some(spec.clone()),
        };
        lock(&self.inner().subs).insert(sid, entry);
        let timeout = self.inner().options.request_timeout;
        let answer = self
            .call(timeout, |seq| {
                Kind::Subscribe(proto::Subscribe { seq, ..spec })
            })
            .await;
        let result = match answer {
            Ok(Answer::Ok(_)) => return Ok((sid, mailbox)),
            Ok(Answer::Error(e)) => {
                let r = Refused::from(e);
                match r.code {
                    ErrorCode::SubscriptionLimit => SubscribeError::Limit {
                        max: r.detail_usize("max_subscriptions"),
                    },
                    _ => SubscribeError::Refused(r),
                }
            }
            Ok(_) | Err(CallFailure::Closed) => SubscribeError::Closed,
            Err(CallFailure::Timeout(t)) => SubscribeError::Timeout(t),
        };
        lock(&self.inner().subs).remove(&sid);
        Err(result)
    }

    /// Drops a subscription locally and tells the broker (without waiting).
    fn forget_subscription(&self, sid: u64) {
        if let Some(entry) = lock(&self.inner().subs).remove(&sid) {
            entry.mailbox.close();
        }
        if sid != 0 {
            let _ = self.push(Frame {
                kind: Some(Kind::Unsubscribe(proto::Unsubscribe { seq: 0, sid })),
            });
        }
    }

    async fn settle_confirmed(
        &self,
        delivery_id: u64,
        build: impl FnOnce(u64) -> Kind,
    ) -> Result<(), AckError> {
        let timeout = self.inner().options.request_timeout;
        match self.call(timeout, build).await {
            Ok(Answer::Ok(_)) => Ok(()),
            Ok(Answer::Error(e)) => {
                let r = Refused::from(e);
                Err(match r.code {
                    ErrorCode::UnknownDelivery => AckError::UnknownDelivery { delivery_id },
                    _ => AckError::Refused(r),
                })
            }
            Ok(_) | Err(CallFailure::Closed) => Err(AckError::Closed),
            Err(CallFailure::Timeout(t)) => Err(AckError::Timeout(t)),
        }
    }

    /// A snapshot of the broker's counters.
    pub async fn stats(&self) -> Result<StatsResponse, CallError> {
        let timeout = self.inner().options.request_timeout;
        match self
            .call(timeout, |seq| {
                Kind::StatsRequest(proto::StatsRequest { seq })
            })
            .await
        {
            Ok(Answer::Stats(s)) => Ok(s),
            Ok(Answer::Error(e)) => Err(CallError::Refused(e.into())),
            Ok(_) | Err(CallFailure::Closed) => Err(CallError::Closed),
            Err(CallFailure::Timeout(t)) => Err(CallError::Timeout(t)),
        }
    }

    /// Cancels a message by id: removed if still queued; if in flight, its holder
    /// is told and its result discarded. A requester waiting on it gets `Cancelled`.
    pub async fn cancel(&self, message_id: u64) -> Result<(), CallError> {
        let timeout = self.inner().options.request_timeout;
        match self
            .call(timeout, |seq| {
                Kind::Cancel(proto::Cancel { seq, message_id })
            })
            .await
        {
            Ok(Answer::Ok(_)) => Ok(()),
            Ok(Answer::Error(e)) => {
                let r = Refused::from(e);
                Err(match r.code {
                    ErrorCode::UnknownMessage => CallError::UnknownMessage { message_id },
                    _ => CallError::Refused(r),
                })
            }
            Ok(_) | Err(CallFailure::Closed) => Err(CallError::Closed),
            Err(CallFailure::Timeout(t)) => Err(CallError::Timeout(t)),
        }
    }

    /// Says goodbye and waits (up to the request timeout) for everything queued
    /// toward the broker to be written.
    pub async fn close(&self) {
        let _ = self.push(Frame {
            kind: Some(Kind::Goodbye(proto::Goodbye {
                reason: "client closed".to_owned(),
            })),
        });
        self.inner().out.close();
        let _ = tokio::time::timeout(self.inner().options.request_timeout, self.closed()).await;
    }
}

pub(crate) fn publish_refusal(r: Refused) -> PublishError {
    match r.code {
        ErrorCode::QueueFull => PublishError::QueueFull {
            topic: r.detail("topic"),
            group: r.detail("group"),
            max_len: r.detail_usize("max_len"),
        },
        ErrorCode::BlockTimeout => PublishError::BlockTimeout {
            topic: r.detail("topic"),
            group: r.detail("group"),
            max_len: r.detail_usize("max_len"),
            waited_ms: r.detail_usize("waited_ms"),
        },
        _ => PublishError::Refused(r),
    }
}
