//! Publishing: fire-and-forget, waiting for room, confirmed by the broker, and
//! direct sends to one client.

use std::sync::atomic::Ordering;

use super::body::Body;
use super::error::{PublishError, RequestError};
use super::{Answer, CallFailure, Client, ENVELOPE_OVERHEAD, publish_refusal};
use crate::codec::raw::RawPublishOut;
use crate::framed::{Outgoing, PushError};
use crate::names::{ClientId, IntoName};
use crate::proto::{self, ErrorCode, Frame, PublishMode, frame::Kind};
use crate::topic::Topic;

impl Client {
    /// Publishes without waiting: returns once the message is queued for the
    /// broker, which delivers it to every matching subscription and queue group.
    ///
    /// Fails at once with [`PublishError::BufferFull`] when the outbound buffer
    /// is full (the broker is slower than the publisher, or unreachable while
    /// reconnecting); [`publish_wait`](Self::publish_wait) waits for room
    /// instead. Nothing tells the publisher whether anyone got the message:
    /// [`publish_confirmed`](Self::publish_confirmed) waits for the broker.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use eventbus::{Body, Topic};
    /// client.publish("events.process.start", "pid 42")?;
    /// let topic = Topic::new("events.process.exit")?; // validated once, reused
    /// client.publish(&topic, Body::new("pid 42").header("trace-id", "7f3a")?)?;
    /// # Ok(()) }
    /// ```
    pub fn publish(
        &self,
        topic: impl IntoName<Topic>,
        body: impl Into<Body>,
    ) -> Result<(), PublishError> {
        let topic = topic.into_name()?;
        self.publish_topic(topic, body.into())
    }

    fn publish_topic(&self, topic: Topic, body: Body) -> Result<(), PublishError> {
        let item = if body.headers.is_empty() {
            self.check_size(topic.as_str(), &body)?;
            // Encoded by hand into the write buffer: the hottest call of a
            // publisher builds no `Frame` and no buffer of its own.
            Outgoing::Publish(RawPublishOut {
                topic,
                payload: body.payload,
                request: None,
            })
        } else {
            Outgoing::Frame(Frame {
                kind: Some(Kind::Publish(proto::Publish {
                    seq: 0,
                    mode: PublishMode::FireAndForget as i32,
                    message: Some(self.envelope(topic.as_str(), body)?),
                    target_client: String::new(),
                    timeout_ms: 0,
                    ..Default::default()
                })),
            })
        };
        self.inner().out.push(item).map_err(push_error)
    }

    /// Publishes `value` encoded as JSON, like [`publish`](Self::publish).
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// #[derive(serde::Serialize)]
    /// struct Started { pid: u32 }
    /// client.publish_json("events.process.start", &Started { pid: 42 })?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "serde")]
    pub fn publish_json<T: serde::Serialize + ?Sized>(
        &self,
        topic: impl IntoName<Topic>,
        value: &T,
    ) -> Result<(), PublishError> {
        let topic = topic.into_name()?;
        let body = Body::json(value).map_err(|e| PublishError::Json(e.into()))?;
        self.publish_topic(topic, body)
    }

    /// Publishes, waiting while the outbound buffer is full (during an outage, or
    /// when the broker is slower than the publisher) instead of failing with
    /// `BufferFull` like [`publish`](Self::publish).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: cancelled while it waits, the message was not queued.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// for n in 0..1_000_000u32 {
    ///     client.publish_wait("metrics.tick", n.to_be_bytes().to_vec()).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn publish_wait(
        &self,
        topic: impl IntoName<Topic>,
        body: impl Into<Body>,
    ) -> Result<(), PublishError> {
        let topic = topic.into_name()?;
        let body = body.into();
        loop {
            match self.publish_topic(topic.clone(), body.clone()) {
                Err(PublishError::BufferFull { .. }) => self.inner().out.drained().await,
                other => return other,
            }
        }
    }

    /// Publishes and waits until the broker has accepted the message; returns
    /// its id (for [`cancel`](Self::cancel)). A full queue with the `reject`
    /// policy fails it with [`PublishError::QueueFull`]; with the `block`
    /// policy it waits for room, up to the queue's block timeout.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: once polled, the message is on its way and the broker
    /// may accept it even if the call is cancelled.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let id = client.publish_confirmed("jobs.resize", "image-7.png").await?;
    /// println!("accepted as message {id}");
    /// # Ok(()) }
    /// ```
    pub async fn publish_confirmed(
        &self,
        topic: impl IntoName<Topic>,
        body: impl Into<Body>,
    ) -> Result<u64, PublishError> {
        let topic = topic.into_name()?;
        self.confirmed(topic.as_str(), body.into(), String::new())
            .await
    }

    /// Sends a message to one connected client, waiting for the broker to accept it.
    /// The receiver gets it through [`direct_deliveries`](Self::direct_deliveries).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, like [`publish_confirmed`](Self::publish_confirmed).
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// client.send_direct("procmond-1", "control.reload", "{}").await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_direct(
        &self,
        target: impl IntoName<ClientId>,
        topic: impl IntoName<Topic>,
        body: impl Into<Body>,
    ) -> Result<u64, RequestError> {
        let target = target.into_name().map_err(RequestError::InvalidClientId)?;
        let topic = topic.into_name().map_err(PublishError::from)?;
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

    /// Refuses a message that cannot fit in one frame, before it is queued.
    pub(super) fn check_size(&self, topic: &str, body: &Body) -> Result<(), PublishError> {
        let len =
            body.payload.len() + body.headers.encoded_len_bound() + topic.len() + ENVELOPE_OVERHEAD;
        let max = self.inner().max_frame_bytes.load(Ordering::Relaxed);
        if len > max {
            return Err(PublishError::TooLarge { len, max });
        }
        Ok(())
    }

    /// The envelope of a message to send, once it is known to fit in a frame.
    pub(super) fn envelope(
        &self,
        topic: &str,
        body: Body,
    ) -> Result<Box<proto::Envelope>, PublishError> {
        self.check_size(topic, &body)?;
        Ok(Box::new(proto::Envelope {
            topic: topic.to_owned(),
            payload: body.payload,
            headers: body.headers.into_wire(),
            ..Default::default()
        }))
    }
}

fn push_error(e: PushError) -> PublishError {
    match e {
        PushError::Closed => PublishError::Closed,
        PushError::Full { max_len: capacity } | PushError::TooSlow { hard_cap: capacity } => {
            PublishError::BufferFull { capacity }
        }
    }
}
