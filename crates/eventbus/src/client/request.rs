//! Requests: one message out, one reply back, routed by correlation id.
//!
//! [`Client::request`] waits for the reply. [`Client::submit`] returns as soon as
//! the broker has accepted the request, with its message id, so the requester
//! can [`cancel`](Client::cancel) it while it waits in a queue or runs.
//!
//! A request (submitted or not) that entered a durable queue group survives
//! the loss of its connection: the broker keeps its reply by message id and
//! tells the requester that id, so after the client reconnects
//! [`PendingRequest::reply`] and [`Client::request`] ask for it
//! ([`Client::result`]'s `ResultRequest`) instead of failing.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;

use super::error::{PublishError, Refused, RequestError};
use super::result::result_request;
use super::{
    Answer, Body, CallFailure, Client, ConnectionEvent, Handle, Message, lock, publish_refusal,
};
use crate::codec::raw::{RawPublishOut, RawRequest};
use crate::framed::Outgoing;
use crate::names::{ClientId, IntoName};
use crate::proto::{self, ErrorCode, Frame, PublishMode, frame::Kind};
use crate::topic::Topic;

/// A request the broker accepted; [`reply`](Self::reply) waits for its answer.
#[derive(Debug)]
pub struct PendingRequest {
    message_id: u64,
    topic: Topic,
    reply: oneshot::Receiver<Answer>,
    deadline: Instant,
    timeout: Duration,
    /// The client to ask for the kept reply after a lost connection, when
    /// the broker keeps it (the request entered a durable queue group).
    /// Weak: a pending request does not keep its client open.
    resume: Option<Weak<Handle>>,
}

impl PendingRequest {
    /// The request's message id, for [`Client::cancel`] and [`Client::result`].
    pub fn message_id(&self) -> u64 {
        self.message_id
    }

    /// Whether the request entered a durable queue group, so the broker keeps
    /// its reply by [`message_id`](Self::message_id) (`queue.durable`;
    /// `docs/durability.md`): then [`reply`](Self::reply) survives a lost
    /// connection and a broker restart. False for a request that only
    /// in-memory queue groups or plain subscribers took.
    pub fn is_durable(&self) -> bool {
        self.resume.is_some()
    }

    /// Waits for the reply, until the timeout given to `submit` runs out.
    ///
    /// When the connection is lost before the reply came:
    ///
    /// - a [durable](Self::is_durable) request waits on: once the client has
    ///   reconnected (to the same broker or a restarted one) it asks the
    ///   broker for the reply by message id, waiting for the rest of the
    ///   timeout, and returns it whether it arrived while the client was
    ///   away or arrives later. Each reply is returned once: a reply that
    ///   reached the lost connection is returned as it is, and only one that
    ///   did not is asked for. A request cancelled or dead-lettered while
    ///   the client was away ends with [`RequestError::UnknownMessage`], one
    ///   that ends so while it asks with [`RequestError::Cancelled`] or
    ///   [`RequestError::DeadLettered`], and a kept reply that expired with
    ///   [`RequestError::Expired`]; it fails with
    ///   [`RequestError::Closed`] only once the client is closed for good
    ///   (or reconnection is disabled), and with
    ///   [`RequestError::Timeout`] at the deadline, connected or not.
    /// - any other request fails at once with [`RequestError::Closed`]: the
    ///   broker forgets a requester's in-memory requests with its connection.
    ///
    /// While it asks, it holds one entry among the client's pending calls
    /// and one of the broker's pending requests of this client (the
    /// `max_pending_requests` quota), in place of the request's own.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: it consumes the pending request, so a cancelled wait
    /// loses the reply (the request itself goes on; [`Client::cancel`] stops
    /// it). The reply to a [durable](Self::is_durable) request is still kept
    /// by the broker: [`Client::result`] with the
    /// [`message_id`](Self::message_id) fetches it.
    pub async fn reply(self) -> Result<Message, RequestError> {
        let Self {
            message_id,
            topic,
            reply,
            deadline,
            timeout,
            resume,
        } = self;
        let answer = match tokio::time::timeout_at(deadline, reply).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => match resume {
                Some(client) => {
                    let resumed = Resumed {
                        client,
                        message_id,
                        deadline,
                        timeout,
                    };
                    return resumed.reply(&topic).await;
                }
                None => Err(CallFailure::Closed),
            },
            Err(_) => Err(CallFailure::Timeout(timeout)),
        };
        request_outcome(&topic, answer)
    }
}

/// A durable request whose connection was lost before its reply came.
struct Resumed {
    client: Weak<Handle>,
    message_id: u64,
    deadline: Instant,
    timeout: Duration,
}

impl Resumed {
    /// Asks for the kept reply on the next link, and again on the one after
    /// if that one is lost too, until it comes, the deadline passes, or the
    /// client is closed for good. The client is held only while an ask is
    /// queued, never across a wait.
    async fn reply(self, topic: &Topic) -> Result<Message, RequestError> {
        loop {
            let (closed, mut events, asked) = {
                let Some(handle) = self.client.upgrade() else {
                    return Err(RequestError::Closed);
                };
                let client = Client { handle };
                let inner = client.inner();
                if inner.out.is_closed() || !inner.options.reconnect.enabled {
                    return Err(RequestError::Closed);
                }
                let wait = self.deadline.saturating_duration_since(Instant::now());
                if wait.is_zero() {
                    return Err(RequestError::Timeout(self.timeout));
                }
                // Subscribed before asking, so a reconnection after an ask
                // that fails is never missed.
                let events = client.connection_events();
                // Queued even while disconnected: the outbound queue outlives
                // links, and the next link writes it after its handshake.
                let asked = client.start_call(|seq| result_request(seq, self.message_id, wait));
                (inner.closed.clone(), events, asked)
            };
            if let Ok((seq, answer)) = asked {
                match tokio::time::timeout_at(self.deadline, answer).await {
                    Ok(Ok(answer)) => return self.outcome(topic, answer),
                    // That link was lost too: ask on the next one.
                    Ok(Err(_)) => {}
                    Err(_) => {
                        if let Some(handle) = self.client.upgrade() {
                            Client { handle }.forget_call(seq);
                        }
                        return Err(RequestError::Timeout(self.timeout));
                    }
                }
            }
            // No link took the ask (the outbound queue was full, or the link
            // was lost before the answer): wait for the next reconnection.
            loop {
                tokio::select! {
                    () = closed.cancelled() => return Err(RequestError::Closed),
                    () = tokio::time::sleep_until(self.deadline) => {
                        return Err(RequestError::Timeout(self.timeout));
                    }
                    event = events.recv() => match event {
                        Ok(ConnectionEvent::Reconnected { .. })
                        | Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Ok(ConnectionEvent::Closed) | Err(broadcast::error::RecvError::Closed) => {
                            return Err(RequestError::Closed);
                        }
                        Ok(_) => {}
                    },
                }
            }
        }
    }

    /// The broker's answer to the `ResultRequest`, as the request's outcome.
    fn outcome(&self, topic: &Topic, answer: Answer) -> Result<Message, RequestError> {
        let Answer::Error(e) = answer else {
            return request_outcome(topic, Ok(answer));
        };
        match ErrorCode::try_from(e.code) {
            Ok(ErrorCode::UnknownMessage) => Err(RequestError::UnknownMessage {
                message_id: self.message_id,
            }),
            Ok(ErrorCode::Expired) => Err(RequestError::Expired {
                message_id: self.message_id,
            }),
            Ok(ErrorCode::Timeout) => Err(RequestError::Timeout(self.timeout)),
            _ => request_outcome(topic, Ok(Answer::Error(e))),
        }
    }
}

impl Client {
    /// Sends a request and waits up to `timeout` for one reply: from one
    /// member of a queue group on the topic, or from the first plain
    /// subscriber that answers.
    ///
    /// Fails at once with [`RequestError::NoResponders`] when nobody
    /// subscribes. When the connection drops before the reply, a request
    /// that entered a durable queue group (`queue.durable`) waits on, as
    /// [`PendingRequest::reply`] does: the broker told it the message id its
    /// reply is kept under, and once the client has reconnected (to the
    /// same broker or a restarted one) it asks for the reply by that id
    /// within the rest of the timeout. Any other request fails at once with
    /// [`RequestError::Closed`]. [`submit`](Self::submit) gives the message
    /// id up front, for [`cancel`](Self::cancel) and [`result`](Self::result).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: once polled, the request is on its way and may be
    /// worked on; a cancelled call only drops the reply.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let reply = client
    ///     .request("control.collector.task.process", "{}", Duration::from_secs(5))
    ///     .await?;
    /// println!("{} answered {:?}", reply.source(), reply.payload());
    /// # Ok(()) }
    /// ```
    pub async fn request(
        &self,
        topic: impl IntoName<Topic>,
        body: impl Into<Body>,
        timeout: Duration,
    ) -> Result<Message, RequestError> {
        let topic = topic.into_name().map_err(PublishError::from)?;
        self.request_to(&topic, body.into(), timeout, String::new())
            .await
    }

    /// Sends `request` encoded as JSON and decodes the reply's JSON payload,
    /// like [`request`](Self::request).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, like [`request`](Self::request).
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// #[derive(serde::Serialize)]
    /// struct Resize<'a> { image: &'a str, width: u32 }
    /// #[derive(serde::Deserialize)]
    /// struct Resized { bytes: u64 }
    /// let done: Resized = client
    ///     .request_json("jobs.resize", &Resize { image: "a.png", width: 64 }, Duration::from_secs(5))
    ///     .await?;
    /// println!("{} bytes", done.bytes);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "serde")]
    pub async fn request_json<Req, Resp>(
        &self,
        topic: impl IntoName<Topic>,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RequestError>
    where
        Req: serde::Serialize + ?Sized,
        Resp: serde::de::DeserializeOwned,
    {
        let topic = topic.into_name().map_err(PublishError::from)?;
        let body = Body::json(request).map_err(|e| PublishError::Json(e.into()))?;
        let reply = self
            .request_to(&topic, body, timeout, String::new())
            .await?;
        reply.json().map_err(|e| RequestError::Json(e.into()))
    }

    /// Sends a request to one connected client and waits up to `timeout` for
    /// its reply; the client answers it from its
    /// [`direct_deliveries`](Self::direct_deliveries).
    ///
    /// A direct request goes through no queue, durable or not, so it fails
    /// with [`RequestError::Closed`] when the connection drops before the
    /// reply.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, like [`request`](Self::request).
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let pong = client
    ///     .request_direct("procmond-1", "control.ping", "", Duration::from_secs(1))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn request_direct(
        &self,
        target: impl IntoName<ClientId>,
        topic: impl IntoName<Topic>,
        body: impl Into<Body>,
        timeout: Duration,
    ) -> Result<Message, RequestError> {
        let target = target.into_name().map_err(RequestError::InvalidClientId)?;
        let topic = topic.into_name().map_err(PublishError::from)?;
        self.request_to(&topic, body.into(), timeout, target.as_str().to_owned())
            .await
    }

    async fn request_to(
        &self,
        topic: &Topic,
        body: Body,
        timeout: Duration,
        target_client: String,
    ) -> Result<Message, RequestError> {
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let deadline = Instant::now() + timeout;
        let started = if body.headers.is_empty() && target_client.is_empty() {
            // Encoded by hand into the write buffer, as `publish` does: the
            // collectors' hottest call builds no `Frame` and no envelope.
            self.check_size(topic.as_str(), &body)?;
            self.start_call_with(|seq| {
                Outgoing::Publish(RawPublishOut {
                    topic: topic.clone(),
                    payload: body.payload,
                    request: Some(RawRequest { seq, timeout_ms }),
                })
            })
        } else {
            let message = self.envelope(topic.as_str(), body)?;
            self.start_call(|seq| {
                Kind::Publish(proto::Publish {
                    seq,
                    mode: PublishMode::Request as i32,
                    message: Some(message),
                    target_client,
                    timeout_ms,
                    ..Default::default()
                })
            })
        };
        let (seq, reply) = started.map_err(|_| RequestError::Closed)?;
        // Whatever ends this call forgets the id its reply may be kept under.
        let mut waiting = Waiting {
            client: self,
            seq,
            reply: Some(reply),
        };
        let reply = waiting.reply.as_mut().expect("held until dropped");
        let answer = match tokio::time::timeout_at(deadline, reply).await {
            Ok(Ok(answer)) => Ok(answer),
            // The link was lost. A request that entered a durable group has
            // its reply kept under the id the broker told: ask for it on
            // the next link, within what is left of the timeout.
            Ok(Err(_)) => match self.kept_id(seq) {
                Some(message_id) => {
                    let resumed = Resumed {
                        client: std::sync::Arc::downgrade(&self.handle),
                        message_id,
                        deadline,
                        timeout,
                    };
                    return resumed.reply(topic).await;
                }
                None => Err(CallFailure::Closed),
            },
            Err(_) => {
                self.forget_call(seq);
                Err(CallFailure::Timeout(timeout))
            }
        };
        request_outcome(topic, answer)
    }

    /// Sends a request and returns once the broker has accepted it, with its
    /// message id; the reply is awaited with [`PendingRequest::reply`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: once polled, the request is on its way.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// let pending = client.submit("jobs.scan", "/home", Duration::from_secs(60)).await?;
    /// let id = pending.message_id();
    /// // ... the user changed their mind:
    /// client.cancel(id).await?;
    /// assert!(pending.reply().await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn submit(
        &self,
        topic: impl IntoName<Topic>,
        body: impl Into<Body>,
        timeout: Duration,
    ) -> Result<PendingRequest, RequestError> {
        let topic = topic.into_name().map_err(PublishError::from)?;
        let message = self.envelope(topic.as_str(), body.into())?;
        let deadline = Instant::now() + timeout;
        let seq = self.next_seq();
        let (accept_tx, accept_rx) = oneshot::channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        lock(&self.inner().accepts).insert(seq, accept_tx);
        lock(&self.inner().pending).insert(seq, reply_tx);
        let forget = || {
            lock(&self.inner().accepts).remove(&seq);
            lock(&self.inner().pending).remove(&seq);
        };
        let frame = Frame {
            kind: Some(Kind::Publish(proto::Publish {
                seq,
                mode: PublishMode::RequestConfirmed as i32,
                message: Some(message),
                target_client: String::new(),
                timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
                ..Default::default()
            })),
        };
        if self.is_closed() || self.push_now(frame).is_err() {
            forget();
            return Err(RequestError::Closed);
        }
        let accepted = match tokio::time::timeout_at(deadline, accept_rx).await {
            Ok(Ok(Answer::Ok(message_id))) => Ok((message_id, None)),
            Ok(Ok(Answer::Kept(message_id))) => {
                Ok((message_id, Some(std::sync::Arc::downgrade(&self.handle))))
            }
            Ok(Ok(other)) => Err(request_outcome(&topic, Ok(other)).err()),
            Ok(Err(_)) => Err(Some(RequestError::Closed)),
            Err(_) => Err(Some(RequestError::Timeout(timeout))),
        };
        match accepted {
            Ok((message_id, resume)) => Ok(PendingRequest {
                message_id,
                topic,
                reply: reply_rx,
                deadline,
                timeout,
                resume,
            }),
            Err(e) => {
                forget();
                Err(e.unwrap_or(RequestError::Closed))
            }
        }
    }
}

impl Client {
    /// The id the reply to request `seq` is kept under, if the broker said.
    fn kept_id(&self, seq: u64) -> Option<u64> {
        lock(&self.inner().kept).remove(&seq)
    }
}

/// A request's wait for its reply. However the request ends (dropped
/// included), the receiver goes first, then its entry in `Inner::kept`:
/// the reader keeps an id only for a receiver still open (under the same
/// lock), so no entry outlives its request.
struct Waiting<'a> {
    client: &'a Client,
    seq: u64,
    reply: Option<oneshot::Receiver<Answer>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        drop(self.reply.take());
        let mut kept = lock(&self.client.inner().kept);
        if !kept.is_empty() {
            kept.remove(&self.seq);
        }
    }
}

/// Maps the broker's answer to a request into its result.
fn request_outcome(
    topic: &Topic,
    answer: Result<Answer, CallFailure>,
) -> Result<Message, RequestError> {
    match answer {
        Ok(Answer::Reply(message)) => Ok(message),
        Ok(Answer::Error(e)) => {
            let r = Refused::from(e);
            Err(match r.code {
                ErrorCode::NoResponders => RequestError::NoResponders {
                    topic: topic.as_str().to_owned(),
                },
                ErrorCode::NoSuchClient => RequestError::NoSuchClient {
                    client_id: r.detail("client_id"),
                },
                ErrorCode::Cancelled => RequestError::Cancelled {
                    message_id: r.detail_usize("message_id") as u64,
                },
                ErrorCode::DeadLettered => RequestError::DeadLettered {
                    message_id: r.detail_usize("message_id") as u64,
                    reason: r.detail("reason"),
                },
                _ => RequestError::Publish(publish_refusal(r)),
            })
        }
        Ok(_) | Err(CallFailure::Closed) => Err(RequestError::Closed),
        Err(CallFailure::Timeout(t)) => Err(RequestError::Timeout(t)),
    }
}
