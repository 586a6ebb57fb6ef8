//! Messages as the application sees them, and queue deliveries that must be settled.

use std::collections::HashMap;

use bytes::Bytes;

use crate::proto::Envelope;

/// A message received from the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub(crate) envelope: Box<Envelope>,
}

impl Message {
    pub(crate) fn new(envelope: Box<Envelope>) -> Self {
        Self { envelope }
    }

    /// Broker-assigned id, unique within one broker run.
    pub fn id(&self) -> u64 {
        self.envelope.id
    }

    /// The topic it was published on.
    pub fn topic(&self) -> &str {
        &self.envelope.topic
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.envelope.payload
    }

    /// Headers set by the publisher or the broker.
    pub fn headers(&self) -> &HashMap<String, String> {
        &self.envelope.headers
    }

    /// Client id of the sender (for a reply: the responder).
    pub fn source(&self) -> &str {
        &self.envelope.source
    }

    /// Delivery attempt, 1 for the first.
    pub fn attempt(&self) -> u32 {
        self.envelope.attempt
    }

    /// When the broker accepted it, in microseconds since the Unix epoch.
    pub fn timestamp_us(&self) -> u64 {
        self.envelope.timestamp_us
    }

    /// Whether the sender waits for a reply.
    pub fn is_request(&self) -> bool {
        !self.envelope.reply_to.is_empty()
    }

    /// The underlying wire envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Takes the wire envelope.
    pub fn into_envelope(self) -> Envelope {
        *self.envelope
    }
}
