//! Client errors: one enum per operation, each variant carrying the facts a
//! caller needs. Codes come from the broker's typed `Error` frames; no code here
//! ever looks at message text.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::names::NameError;
use crate::proto::{self, ErrorCode};
use crate::topic::{TopicError, TopicFilterError};

/// A value that could not be encoded as JSON, or a payload that could not be
/// decoded from it (the `serde` feature's `*_json` calls).
///
/// Compares by its message, so the errors that carry it stay `PartialEq`.
#[cfg(feature = "serde")]
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(#[source] std::sync::Arc<serde_json::Error>);

#[cfg(feature = "serde")]
impl JsonError {
    /// The underlying `serde_json` error.
    pub fn inner(&self) -> &serde_json::Error {
        &self.0
    }
}

#[cfg(feature = "serde")]
impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        Self(std::sync::Arc::new(e))
    }
}

#[cfg(feature = "serde")]
impl PartialEq for JsonError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

#[cfg(feature = "serde")]
impl Eq for JsonError {}

/// A typed refusal from the broker, for codes an operation has no variant for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broker refused ({code:?}): {message}")]
pub struct Refused {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// The broker's explanation.
    pub message: String,
    /// Facts attached by the broker (queue name, limit, ...).
    pub details: HashMap<String, String>,
}

impl From<proto::Error> for Refused {
    fn from(e: proto::Error) -> Self {
        Self {
            code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified),
            message: e.message,
            details: e.details,
        }
    }
}

impl Refused {
    pub(crate) fn detail(&self, key: &str) -> String {
        self.details.get(key).cloned().unwrap_or_default()
    }

    pub(crate) fn detail_usize(&self, key: &str) -> usize {
        self.details
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Why [`Client::connect`](super::Client::connect) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The socket could not be reached.
    #[error("cannot connect to {path}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Connecting or the handshake took longer than the connect timeout.
    #[error("connecting to {path} timed out after {after:?}")]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// The timeout.
        after: Duration,
    },
    /// The broker refused the client (bad id, connection limit, other user, ...).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The broker answered with something other than a `Welcome`.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// `$EVENTBUS_CREDENTIALS` or the file `$EVENTBUS_CREDENTIALS_FILE`
    /// names is set but unusable.
    #[error(transparent)]
    Credentials(#[from] super::CredentialsError),
    /// The socket's directory belongs to another user, or is the `/tmp`
    /// fallback without mode 0700: someone else may control the socket.
    #[error("socket directory {dir} is unsafe: {reason}")]
    UnsafeSocketDirectory {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The socket's owner is neither this user, root, nor the configured
    /// broker uid: not this client's broker, so nothing was sent to it.
    #[error("the process behind {path} runs as uid {uid:?}, not a broker this client trusts")]
    UntrustedBroker {
        /// The socket path.
        path: PathBuf,
        /// The peer's user id, where the platform told it.
        uid: Option<u32>,
    },
}

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// The topic given as a string is not a valid [`Topic`](crate::Topic).
    #[error(transparent)]
    InvalidTopic(#[from] TopicError),
    /// The value given to `publish_json` could not be encoded as JSON.
    #[cfg(feature = "serde")]
    #[error("cannot encode the payload as JSON: {0}")]
    Json(JsonError),
    /// The message does not fit in one frame.
    #[error("message of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// Negotiated limit.
        max: usize,
    },
    /// The client's own outbound buffer is full: the broker is not keeping up.
    #[error("outbound buffer full ({capacity} frames)")]
    BufferFull {
        /// The buffer's bound.
        capacity: usize,
    },
    /// A queue the message was routed to is full and its policy is `reject`.
    #[error("queue {topic} (group {group}) is full: limit {max_len} messages")]
    QueueFull {
        /// Topic of the refused message.
        topic: String,
        /// The full queue group.
        group: String,
        /// The queue's bound.
        max_len: usize,
    },
    /// A queue the message goes to stayed full (policy `block`) for the whole
    /// block timeout.
    #[error("queue {topic} (group {group}) stayed full ({max_len} messages) for {waited_ms} ms")]
    BlockTimeout {
        /// Topic of the refused message.
        topic: String,
        /// The full queue group.
        group: String,
        /// The queue's bound.
        max_len: usize,
        /// How long the publish waited.
        waited_ms: usize,
    },
    /// This client's identity may not publish there: a topic its
    /// permissions in the broker's auth file leave out or a reserved `_sys.`
    /// topic (`topic` is set), or a direct send to a client it may not reach
    /// (`client_id` is set).
    #[error("not allowed to publish on {topic:?} (client {client_id:?})")]
    PermissionDenied {
        /// The refused topic, empty for a direct send.
        topic: String,
        /// The client a refused direct send was for, else empty.
        client_id: String,
    },
    /// The message sets a header whose name starts with `x-`: those are the
    /// broker's (`x-attempts`, `x-dead-letter-reason`, ...).
    #[error("header {name:?} is reserved for the broker")]
    ReservedHeader {
        /// The header's name.
        name: String,
    },
    /// A per-client limit of the broker was reached (parked requests,
    /// durable queues, ...): the broker names it as in its configuration.
    #[error("quota {quota} reached (limit {limit})")]
    QuotaExceeded {
        /// The limit's name, e.g. `limits.max_pending_requests`.
        quota: String,
        /// Its value.
        limit: usize,
    },
    /// The broker is over its memory ceiling and takes nothing new until
    /// it is below again; retry later.
    #[error("broker under memory pressure: {reason}")]
    MemoryPressure {
        /// What the broker says is over its bound.
        reason: String,
    },
    /// A durable queue's message could not be written to the broker's
    /// journal (the disk budget, a full disk or an I/O error): the message
    /// was not confirmed, so the publisher still owns it. It may still be
    /// delivered (at least once), but nothing promises it survives a crash.
    #[error("the broker could not store the message: {reason}")]
    Storage {
        /// What the journal reported.
        reason: String,
    },
    /// The broker did not confirm in time.
    #[error("no confirmation within {0:?}")]
    Timeout(Duration),
    /// Any other refusal.
    #[error(transparent)]
    Refused(Refused),
}

/// Why a subscribe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// The filter given as a string is not a valid [`TopicFilter`](crate::TopicFilter).
    #[error(transparent)]
    InvalidFilter(#[from] TopicFilterError),
    /// The group given as a string is not a valid [`GroupName`](crate::GroupName).
    #[error(transparent)]
    InvalidGroup(NameError),
    /// The client holds as many subscriptions as the broker allows.
    #[error("subscription limit of {max} reached")]
    Limit {
        /// The limit.
        max: usize,
    },
    /// The broker did not confirm in time.
    #[error("no confirmation within {0:?}")]
    Timeout(Duration),
    /// Any other refusal.
    #[error(transparent)]
    Refused(Refused),
}

/// Why a request, or a direct send, failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The connection is closed, or was lost before the reply came.
    #[error("connection closed")]
    Closed,
    /// Nobody subscribes to the topic: the request could not go anywhere.
    #[error("no responders for {topic}")]
    NoResponders {
        /// The request's topic.
        topic: String,
    },
    /// The addressed client is not connected.
    #[error("no connected client {client_id:?}")]
    NoSuchClient {
        /// The id asked for.
        client_id: String,
    },
    /// The target given as a string is not a valid [`ClientId`](crate::ClientId).
    #[error(transparent)]
    InvalidClientId(NameError),
    /// The reply to `request_json` could not be decoded from JSON (the
    /// request's own encoding failure is a [`PublishError::Json`]).
    #[cfg(feature = "serde")]
    #[error("cannot decode the reply from JSON: {0}")]
    Json(JsonError),
    /// No reply within the timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The request was cancelled before it was answered.
    #[error("request {message_id} was cancelled")]
    Cancelled {
        /// The cancelled message.
        message_id: u64,
    },
    /// The request used all its delivery attempts, or a consumer rejected it, and
    /// went to the dead-letter topic.
    #[error("request {message_id} was dead-lettered: {reason}")]
    DeadLettered {
        /// The message.
        message_id: u64,
        /// Why, as the broker recorded it.
        reason: String,
    },
    /// The request could not be sent.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The connection was lost while a durable request's reply was awaited
    /// ([`PendingRequest::is_durable`](super::PendingRequest::is_durable)),
    /// and the broker asked after the reconnection knows no such request:
    /// it was cancelled or dead-lettered before the ask (those outcomes are
    /// not kept; while the ask waits they are [`Cancelled`](Self::Cancelled)
    /// and [`DeadLettered`](Self::DeadLettered)), or the broker lost its
    /// record (a write that was never confirmed; see `docs/durability.md`).
    #[error("request {message_id} is unknown to the broker after the reconnection")]
    UnknownMessage {
        /// The request's message id.
        message_id: u64,
    },
    /// The connection was lost while a durable request's reply was awaited,
    /// and the reply the broker kept had expired (`durability.result_ttl_ms`)
    /// or was evicted by the bound on kept results before it was fetched.
    #[error("the reply to request {message_id} expired before it was fetched")]
    Expired {
        /// The request's message id.
        message_id: u64,
    },
}

/// Why an ack, nack or reply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// The broker no longer holds this delivery for this client (acked already,
    /// reassigned after a failure, or cancelled).
    #[error("delivery {delivery_id} is not in flight to this client")]
    UnknownDelivery {
        /// The delivery.
        delivery_id: u64,
    },
    /// The message was not a request, so there is nobody to reply to.
    #[error("message {message_id} expects no reply")]
    NotARequest {
        /// The message.
        message_id: u64,
    },
    /// The reply does not fit in one frame.
    #[error("reply of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// Negotiated limit.
        max: usize,
    },
    /// The broker did not confirm in time.
    #[error("no confirmation within {0:?}")]
    Timeout(Duration),
    /// Any other refusal.
    #[error(transparent)]
    Refused(Refused),
}

/// Why a stats or cancel call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// The broker did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The message to cancel is neither queued nor in flight.
    #[error("message {message_id} is neither queued nor in flight")]
    UnknownMessage {
        /// The message.
        message_id: u64,
    },
    /// Any other refusal.
    #[error(transparent)]
    Refused(Refused),
}
