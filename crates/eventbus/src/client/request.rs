//! Requests: one message out, one reply back, routed by correlation id.
//!
//! [`Client::request`] waits for the reply. [`Client::submit`] returns as soon as
//! the broker has accepted the request, with its message id, so the requester
//! can [`cancel`](Client::cancel) it while it waits in a queue or runs.

use std::time::Duration;

use tokio::sync::oneshot;

use super::error::{PublishError, Refused, RequestError};
use super::{Answer, Body, CallFailure, Client, Message, lock, publish_refusal};
use crate::names::{ClientId, IntoName};
use crate::proto::{self, ErrorCode, Frame, PublishMode, frame::Kind};
use crate::topic::Topic;

/// A request the broker accepted; [`reply`](Self::reply) waits for its answer.
#[derive(Debug)]
pub struct PendingRequest {
    message_id: u64,
    topic: Topic,
    reply: oneshot::Receiver<Answer>,
    deadline: tokio::time::Instant,
    timeout: Duration,
}

impl PendingRequest {
    /// The request's message id, for [`Client::cancel`].
    pub fn message_id(&self) -> u64 {
        self.message_id
    }

    /// Waits for the reply, until the timeout given to `submit` runs out.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: it consumes the pending request, so a cancelled wait
    /// loses the reply (the request itself goes on; [`Client::cancel`] stops it).
    pub async fn reply(self) -> Result<Message, RequestError> {
        let answer = match tokio::time::timeout_at(self.deadline, self.reply).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(CallFailure::Closed),
            Err(_) => Err(CallFailure::Timeout(self.timeout)),
        };
        request_outcome(&self.topic, answer)
    }
}

impl Client {
    /// Sends a request and waits up to `timeout` for one reply: from one
    /// member of a queue group on the topic, or from the first plain
    /// subscriber that answers.
    ///
    /// Fails at once with [`RequestError::NoResponders`] when nobody subscribes.
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
        let message = self.envelope(topic.as_str(), body)?;
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let answer = self
            .call(timeout, |seq| {
                Kind::Publish(proto::Publish {
                    seq,
                    mode: PublishMode::Request as i32,
                    message: Some(message),
                    target_client,
                    timeout_ms,
                    ..Default::default()
                })
            })
            .await;
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
        let deadline = tokio::time::Instant::now() + timeout;
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
            Ok(Ok(Answer::Ok(message_id))) => Ok(message_id),
            Ok(Ok(other)) => Err(request_outcome(&topic, Ok(other)).err()),
            Ok(Err(_)) => Err(Some(RequestError::Closed)),
            Err(_) => Err(Some(RequestError::Timeout(timeout))),
        };
        match accepted {
            Ok(message_id) => Ok(PendingRequest {
                message_id,
                topic,
                reply: reply_rx,
                deadline,
                timeout,
            }),
            Err(e) => {
                forget();
                Err(e.unwrap_or(RequestError::Closed))
            }
        }
    }
}

/// Maps the broker's answer to a request into its result.
fn request_outcome(
    topic: &Topic,
    answer: Result<Answer, CallFailure>,
) -> Result<Message, RequestError> {
    match answer {
        Ok(Answer::Reply(envelope)) => Ok(Message::new(envelope)),
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
