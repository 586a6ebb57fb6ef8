//! Messages as the application sees them, and queue deliveries that must be settled.

use std::fmt;

use bytes::Bytes;

use super::headers::Headers;
use crate::codec::raw::WireEnvelope;
use crate::proto::Envelope;

/// A message received from the bus.
///
/// Cheap to clone: the payload and strings are shared with the bytes the
/// message was read from.
#[derive(Clone)]
pub struct Message {
    repr: Repr,
}

/// A delivery without headers (the common case) stays in its frame's bytes;
/// anything else was decoded into an owned envelope.
#[derive(Clone)]
enum Repr {
    Wire(WireEnvelope),
    /// A decoded envelope, its headers taken out into [`Headers`] (the
    /// envelope's own map left empty).
    Decoded {
        envelope: Box<Envelope>,
        headers: Headers,
    },
}

/// What [`Message::headers`] returns for a message that carries none.
static NO_HEADERS: Headers = Headers::new();

impl Message {
    pub(crate) fn new(mut envelope: Box<Envelope>) -> Self {
        let headers = Headers::from_wire(std::mem::take(&mut envelope.headers));
        Self {
            repr: Repr::Decoded { envelope, headers },
        }
    }

    pub(crate) fn from_wire(envelope: WireEnvelope) -> Self {
        Self {
            repr: Repr::Wire(envelope),
        }
    }

    /// Broker-assigned id, unique within one broker run.
    pub fn id(&self) -> u64 {
        match &self.repr {
            Repr::Wire(w) => w.id(),
            Repr::Decoded { envelope, .. } => envelope.id,
        }
    }

    /// The topic it was published on.
    pub fn topic(&self) -> &str {
        match &self.repr {
            Repr::Wire(w) => w.topic(),
            Repr::Decoded { envelope, .. } => &envelope.topic,
        }
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        match &self.repr {
            Repr::Wire(w) => w.payload(),
            Repr::Decoded { envelope, .. } => &envelope.payload,
        }
    }

    /// Headers set by the sender (see [`Body`](super::Body)) or the broker
    /// (`x-` names, on dead letters).
    pub fn headers(&self) -> &Headers {
        match &self.repr {
            Repr::Wire(_) => &NO_HEADERS,
            Repr::Decoded { headers, .. } => headers,
        }
    }

    /// Client id of the sender (for a reply: the responder).
    pub fn source(&self) -> &str {
        match &self.repr {
            Repr::Wire(w) => w.source(),
            Repr::Decoded { envelope, .. } => &envelope.source,
        }
    }

    /// Delivery attempt, 1 for the first.
    pub fn attempt(&self) -> u32 {
        match &self.repr {
            Repr::Wire(w) => w.attempt(),
            Repr::Decoded { envelope, .. } => envelope.attempt,
        }
    }

    /// When the broker accepted it, in microseconds since the Unix epoch.
    pub fn timestamp_us(&self) -> u64 {
        match &self.repr {
            Repr::Wire(w) => w.timestamp_us(),
            Repr::Decoded { envelope, .. } => envelope.timestamp_us,
        }
    }

    /// The payload decoded from JSON.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// #[derive(serde::Deserialize)]
    /// struct Started { pid: u32 }
    /// let mut starts = client.subscribe("events.process.start").await?;
    /// while let Some(message) = starts.next().await {
    ///     match message.json::<Started>() {
    ///         Ok(started) => println!("pid {}", started.pid),
    ///         Err(e) => eprintln!("not a start event: {e}"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "serde")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.payload())
    }

    /// Whether the sender waits for a reply.
    pub fn is_request(&self) -> bool {
        !self.reply_to().is_empty()
    }

    /// Correlates a reply with its request; 0 when unused.
    pub(crate) fn correlation_id(&self) -> u64 {
        match &self.repr {
            Repr::Wire(w) => w.correlation_id(),
            Repr::Decoded { envelope, .. } => envelope.correlation_id,
        }
    }

    /// Bytes of the topic, without checking them again.
    pub(crate) fn topic_len(&self) -> usize {
        match &self.repr {
            Repr::Wire(w) => w.topic_len(),
            Repr::Decoded { envelope, .. } => envelope.topic.len(),
        }
    }

    fn reply_to(&self) -> &str {
        match &self.repr {
            Repr::Wire(w) => w.reply_to(),
            Repr::Decoded { envelope, .. } => &envelope.reply_to,
        }
    }

    /// The message as its wire envelope (an owned copy of its strings).
    pub fn into_envelope(self) -> Envelope {
        match self.repr {
            Repr::Wire(w) => w.to_envelope(),
            Repr::Decoded {
                mut envelope,
                headers,
            } => {
                envelope.headers = headers.into_wire();
                *envelope
            }
        }
    }
}

impl PartialEq for Message {
    /// Equal when every field is, however each was read.
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
            && self.topic() == other.topic()
            && self.payload() == other.payload()
            && self.headers() == other.headers()
            && self.correlation_id() == other.correlation_id()
            && self.reply_to() == other.reply_to()
            && self.source() == other.source()
            && self.timestamp_us() == other.timestamp_us()
            && self.attempt() == other.attempt()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id())
            .field("topic", &self.topic())
            .field("payload", self.payload())
            .field("headers", self.headers())
            .field("correlation_id", &self.correlation_id())
            .field("reply_to", &self.reply_to())
            .field("source", &self.source())
            .field("timestamp_us", &self.timestamp_us())
            .field("attempt", &self.attempt())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::raw::decode_deliver;
    use crate::proto::{self, Frame, frame::Kind};
    use prost::Message as _;

    /// A message read by hand and the same message decoded by prost look
    /// and compare the same.
    #[test]
    fn a_wire_message_equals_its_decoded_twin() {
        let envelope = Envelope {
            id: 9,
            topic: "proc.start".into(),
            payload: Bytes::from_static(b"pid=1"),
            correlation_id: 4,
            reply_to: "req-1".into(),
            source: "collector-1".into(),
            timestamp_us: 77,
            attempt: 2,
            ..Default::default()
        };
        let body: Bytes = Frame {
            kind: Some(Kind::Deliver(proto::Deliver {
                sid: 1,
                delivery_id: 0,
                message: Some(Box::new(envelope.clone())),
            })),
        }
        .encode_to_vec()
        .into();
        let wire = Message::from_wire(decode_deliver(body).unwrap().envelope);
        let decoded = Message::new(Box::new(envelope.clone()));
        assert_eq!(wire, decoded);
        assert_eq!(format!("{wire:?}"), format!("{decoded:?}"));
        assert!(wire.is_request());
        assert!(wire.headers().is_empty());
        assert_eq!(wire.clone().into_envelope(), envelope);
    }
}
