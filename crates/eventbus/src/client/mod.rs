//! The client: a cheap, cloneable handle to one connection with a broker.
//!
//! Every operation pushes a frame into the connection's bounded outbound queue,
//! which one writer task drains; one reader task routes what the broker sends to
//! waiting calls (by `seq`) and to subscription streams (by subscription id).
//!
//! Map of the module: [`connection`](Client::connect) (connecting, the
//! handshake, the reader, writer and reconnecting supervisor), `publish`,
//! `request`, `subscription` (the calls, one module per kind),
//! [`Delivery`] (settling), [`Message`], [`Body`] and [`Headers`] (what
//! travels), [`BrokerStats`], [`ClientOptions`], and one error enum per
//! operation.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use eventbus::{Client, ClientOptions};
//! let client = Client::connect(ClientOptions::new("/tmp/eventbus/broker.sock")).await?;
//! let mut events = client.subscribe("events.#").await?;
//! client.publish("events.process.snapshot", "hello")?;
//! let hello = events.next().await;
//! # Ok(()) }
//! ```

mod body;
mod connection;
mod credentials;
mod delivery;
mod error;
mod gather;
mod headers;
mod mailbox;
mod message;
mod options;
mod publish;
mod request;
mod result;
mod session;
mod stats;
mod subscription;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

pub use body::Body;
pub use credentials::{CREDENTIALS_ENV, CREDENTIALS_FILE_ENV, Credentials, CredentialsError};
pub use delivery::Delivery;
#[cfg(feature = "serde")]
pub use error::JsonError;
pub use error::{
    AckError, CallError, ConnectError, PublishError, Refused, RequestError, SubscribeError,
};
pub use gather::{
    GATHER_GRACE, Gather, GatherError, GatherIncomplete, GatherOptions, GatherOutcome, GatherScope,
    Gathered, MissReason, Missed,
};
pub use headers::{HeaderError, Headers, MAX_HEADER_NAME_BYTES};
pub use message::Message;
pub use options::{ClientOptions, ReconnectPolicy};
pub use request::PendingRequest;
pub use result::{MAX_RESULT_WAIT, ResultError};
pub use stats::{
    BridgeStats, BrokerStats, ConnectionStats, JournalStats, MemberStats, QueueStats, QueueTotals,
    TopicStats,
};
pub use subscription::{QueueSubscription, Subscription};

use crate::framed::{Outbound, Outgoing, PushError};
use crate::names::ClientId;
use crate::proto::{self, ErrorCode, Frame, StatsResponse, frame::Kind};
use mailbox::Mailbox;
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
    /// `Ok` for a confirmed request that entered a durable queue group: the
    /// broker keeps its reply by this message id (`result_kept`).
    Kept(u64),
    Error(proto::Error),
    Reply(Message),
    Stats(StatsResponse),
}

/// Why a call got no answer.
#[derive(Debug)]
enum CallFailure {
    Closed,
    Timeout(Duration),
}

/// A table by call `seq`, looked up for every answer the broker sends:
/// a fast, seeded hasher.
type BySeq<V> = HashMap<u64, V, foldhash::fast::RandomState>;

#[derive(Debug)]
struct Inner {
    client_id: ClientId,
    options: ClientOptions,
    out: Arc<Outbound>,
    max_frame_bytes: AtomicUsize,
    next_seq: AtomicU64,
    /// Calls waiting for their answer, by `seq`.
    pending: Mutex<BySeq<oneshot::Sender<Answer>>>,
    /// Submitted requests waiting for the broker's acceptance (their final
    /// answer waits in `pending` under the same `seq`).
    accepts: Mutex<BySeq<oneshot::Sender<Answer>>>,
    /// Requests (`Client::request`) that entered a durable queue group:
    /// the message id the broker keeps each one's reply under, by `seq`.
    /// Kept across a lost link (that is what they are for); each entry is
    /// removed by its own request when it ends, so there are at most as
    /// many as requests waiting.
    kept: Mutex<BySeq<u64>>,
    /// Gathers in progress, by `seq`.
    gathers: Mutex<gather::GatherSinks>,
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

/// A connection to a broker. Cheap to clone; all clones share the connection,
/// which closes when the last clone is dropped (or on [`close`](Self::close)).
///
/// Every call that takes a topic, a filter, a group or a client id takes the
/// validated type or a string to validate ([`IntoName`](crate::IntoName));
/// every send takes a payload or a [`Body`] with headers.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use eventbus::{Client, ClientOptions};
/// let client = Client::connect(ClientOptions::new("/tmp/eventbus/broker.sock")).await?;
/// client.publish("events.agent.start", "")?;
/// let reply = client.request("control.collector.task.process", "{}", Duration::from_secs(5)).await?;
/// client.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

impl Client {
    fn inner(&self) -> &Inner {
        &self.handle.0
    }

    /// This client's id on the broker: the one set in
    /// [`ClientOptions::client_id`], else `client-<pid>-<n>`.
    ///
    /// ```no_run
    /// # fn demo(client: eventbus::Client) {
    /// println!("connected as {}", client.client_id());
    /// # }
    /// ```
    pub fn client_id(&self) -> &ClientId {
        &self.inner().client_id
    }

    /// Whether the client is closed for good: closed by the application, or its
    /// connection lost with reconnection disabled.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) {
    /// client.close().await;
    /// assert!(client.is_closed());
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner().closed.is_cancelled()
    }

    /// Completes when the client is closed for good (see [`is_closed`](Self::is_closed)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) {
    /// client.closed().await;
    /// eprintln!("lost the broker for good");
    /// # }
    /// ```
    pub async fn closed(&self) {
        self.inner().closed.cancelled().await;
    }

    /// Connection changes from now on: disconnected, reconnected, closed.
    ///
    /// A receiver that falls more than 64 events behind skips the oldest.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) {
    /// use eventbus::ConnectionEvent;
    /// let mut events = client.connection_events();
    /// while let Ok(event) = events.recv().await {
    ///     if let ConnectionEvent::Reconnected { attempts } = event {
    ///         eprintln!("back after {attempts} attempts");
    ///     }
    /// }
    /// # }
    /// ```
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner().events.subscribe()
    }

    fn push(&self, frame: Frame) -> Result<(), PushError> {
        self.inner().out.push(frame)
    }

    /// Queues a frame someone waits on (a request, a reply, an ack) and writes it
    /// at once if the writer task is idle, sparing its wake-up. Fire-and-forget
    /// publishes use [`push`](Self::push) and are written in batches instead.
    fn push_now(&self, item: impl Into<Outgoing>) -> Result<(), PushError> {
        self.inner().out.push_quiet(item)?;
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
        let (seq, rx) = self.start_call(build)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(CallFailure::Closed),
            Err(_) => {
                self.forget_call(seq);
                Err(CallFailure::Timeout(timeout))
            }
        }
    }

    /// The first half of [`call`](Self::call): registers a waiter under a
    /// fresh `seq` and queues the frame `build` makes. The answer comes on
    /// the receiver; it fails when the link is lost first. A caller that
    /// stops waiting calls [`forget_call`](Self::forget_call).
    fn start_call(
        &self,
        build: impl FnOnce(u64) -> Kind,
    ) -> Result<(u64, oneshot::Receiver<Answer>), CallFailure> {
        self.start_call_with(|seq| {
            Outgoing::Frame(Frame {
                kind: Some(build(seq)),
            })
        })
    }

    /// [`start_call`](Self::start_call) with whatever `build` queues: a
    /// frame, or a request encoded by hand (`RawPublishOut`).
    fn start_call_with(
        &self,
        build: impl FnOnce(u64) -> Outgoing,
    ) -> Result<(u64, oneshot::Receiver<Answer>), CallFailure> {
        let seq = self.next_seq();
        let (tx, rx) = oneshot::channel();
        lock(&self.inner().pending).insert(seq, tx);
        if self.is_closed() || self.push_now(build(seq)).is_err() {
            self.forget_call(seq);
            return Err(CallFailure::Closed);
        }
        Ok((seq, rx))
    }

    /// Stops waiting for the answer to `seq` (a late one is dropped).
    fn forget_call(&self, seq: u64) {
        lock(&self.inner().pending).remove(&seq);
    }

    /// Whether the broker cancelled the message with this id while this client held it.
    fn was_cancelled(&self, message_id: u64) -> bool {
        lock(&self.inner().cancelled).contains(&message_id)
    }

    /// Whether a delivery that came on connection `epoch` can still be settled.
    fn holds(&self, epoch: u64) -> bool {
        self.inner().session.holds(epoch)
    }

    /// Replies to a request received on a plain subscription (a queue
    /// member replies with [`Delivery::reply`], which also acks).
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut pings = client.subscribe("control.ping").await?;
    /// while let Some(ping) = pings.next().await {
    ///     if ping.is_request() {
    ///         client.reply(&ping, "pong")?;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
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
        let message = self.envelope(request.topic(), body).map_err(|e| match e {
            PublishError::TooLarge { len, max } => AckError::TooLarge { len, max },
            _ => AckError::Closed,
        })?;
        self.push_now(Frame {
            kind: Some(Kind::Reply(proto::Reply {
                correlation_id: request.correlation_id(),
                delivery_id,
                message: Some(message),
                seq: 0,
            })),
        })
        .map_err(|_| AckError::Closed)
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
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let stats = client.stats().await?;
    /// for queue in &stats.queues {
    ///     println!("{} / {}: {} waiting", queue.topic, queue.group, queue.depth);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stats(&self) -> Result<BrokerStats, CallError> {
        let timeout = self.inner().options.request_timeout;
        match self
            .call(timeout, |seq| {
                Kind::StatsRequest(proto::StatsRequest { seq })
            })
            .await
        {
            Ok(Answer::Stats(s)) => Ok(s.into()),
            Ok(Answer::Error(e)) => Err(CallError::Refused(e.into())),
            Ok(_) | Err(CallFailure::Closed) => Err(CallError::Closed),
            Err(CallFailure::Timeout(t)) => Err(CallError::Timeout(t)),
        }
    }

    /// Cancels a message by id: removed if still queued; if in flight, its holder
    /// is told and its result discarded. A requester waiting on it gets `Cancelled`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: once polled, the cancel is on its way.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let id = client.publish_confirmed("jobs.scan", "/home").await?;
    /// client.cancel(id).await?;
    /// # Ok(()) }
    /// ```
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
    /// toward the broker to be written. Every clone is closed with it.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the client is closed at the first poll; cancelling only
    /// stops the wait for the flush.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// client.publish("events.agent.stop", "")?;
    /// client.close().await; // the publish is written before the goodbye
    /// # Ok(()) }
    /// ```
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
        ErrorCode::PermissionDenied if r.details.contains_key("header") => {
            PublishError::ReservedHeader {
                name: r.detail("header"),
            }
        }
        ErrorCode::PermissionDenied => PublishError::PermissionDenied {
            topic: r.detail("topic"),
            client_id: r.detail("client_id"),
        },
        ErrorCode::QuotaExceeded => PublishError::QuotaExceeded {
            quota: r.detail("quota"),
            limit: r.detail_usize("limit"),
        },
        ErrorCode::MemoryPressure => PublishError::MemoryPressure {
            reason: r.detail("reason"),
        },
        ErrorCode::Storage => PublishError::Storage {
            reason: r.detail("reason"),
        },
        _ => PublishError::Refused(r),
    }
}
