//! Why the broker says no: one enum per command family, why a connection
//! ends, and the one place where each becomes a wire [`ErrorCode`] with its
//! details.
//!
//! The client picks its typed errors from the code and the details (never
//! from the text), so the detail keys here are part of the protocol:
//! `topic`, `group`, `max_len`, `waited_ms`, `client_id`, `message_id`,
//! `delivery_id`, `reason`, `attempts`, `max_subscriptions`.

use std::time::Duration;

use super::ids::{CorrelationId, DeliveryId, MessageId, Seq, SubscriptionId};
use crate::codec::FrameError;
use crate::framed::ReadError;
use crate::names::NameError;
use crate::proto::{self, ErrorCode, Frame, frame::Kind};
use crate::topic::{Topic, TopicError, TopicFilterError};

/// Why a connection is refused before it is registered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeRefusal {
    #[error("connection limit of {max} reached")]
    ConnectionLimit { max: usize },
    /// Unix only: on Windows the pipe's DACL refuses other users before the
    /// broker sees them (`transport/pipe_security.rs`).
    #[cfg_attr(not(unix), allow(dead_code))]
    #[error("user id {uid:?} may not connect")]
    PermissionDenied { uid: Option<u32> },
    #[error("the first frame must be hello")]
    NotHello,
    #[error(
        "protocol version {got} is not supported (broker speaks {})",
        proto::PROTOCOL_VERSION
    )]
    UnsupportedVersion { got: u32 },
    #[error(transparent)]
    InvalidClientId(NameError),
    #[error("client id {0:?} is reserved for the broker")]
    ReservedClientId(String),
    #[error("hello field {field} is {len} bytes long; the limit is {max}")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{count} capabilities; the limit is {max}")]
    TooManyCapabilities { count: usize, max: usize },
    #[error("capability: {0}")]
    InvalidCapability(NameError),
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("identity {identity} may not use client id {client:?}")]
    ClientIdNotAllowed { client: String, identity: String },
    #[error(
        "client id {0:?} is in use by a live connection (reconnect with its resume token, or wait until it closes)"
    )]
    ClientIdInUse(String),
    #[error("broker is shutting down")]
    ShuttingDown,
}

/// A frame that decodes but is not a command a registered client may send.
/// The connection stays open: the frame is refused and reading goes on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProtocolRefusal {
    #[error("hello sent twice")]
    HelloTwice,
    #[error("frame {0} is not sent by clients")]
    NotFromClients(&'static str),
    #[error("publish mode {0} is not known")]
    UnknownPublishMode(i32),
    #[error("publish without a message")]
    PublishWithoutMessage,
    #[error("a publish or reply the broker cannot read")]
    Unreadable,
    #[error("a gather goes to subscribers, not to one client")]
    GatherWithTarget,
    #[error("only a queue-group member can be a fallback member")]
    FallbackWithoutGroup,
    #[error("gather scope {0} is not known")]
    UnknownGatherScope(i32),
}

/// Why a publish (or request, or direct send) was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishRefusal {
    #[error("broker is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    InvalidTopic(#[from] TopicError),
    #[error("no connected client {client:?}")]
    NoSuchClient { client: String },
    #[error("topic {0} is reserved for the broker")]
    ReservedTopic(Topic),
    #[error("identity {identity} may not publish on {topic}")]
    NotAllowed { topic: Topic, identity: String },
    #[error("identity {identity} may not send direct messages to {client}")]
    DirectNotAllowed { client: String, identity: String },
    #[error("quota {quota} of {limit} reached")]
    Quota { quota: &'static str, limit: usize },
    #[error(
        "the broker is above its memory ceiling ({what}); queues take nothing until consumers drain them"
    )]
    MemoryPressure { what: String },
    /// A durable queue's journal could not take or keep the message.
    #[error("not stored: {reason}")]
    Storage { reason: String },
    #[error("header {0:?} is reserved for the broker (x- prefix)")]
    ReservedHeader(String),
    #[error("a delivery of {size} bytes would not fit the {limit}-byte frame limit of {receiver}")]
    TooLarge {
        /// A client id, or `group:<name>` when no member of a group takes it.
        receiver: String,
        size: usize,
        limit: usize,
    },
    #[error("direct inbox of {client} is full: {max} messages unsettled")]
    DirectInboxFull {
        client: String,
        topic: String,
        max: usize,
    },
    #[error("queue {filter} (group {group}) is full: {max_len} messages waiting; topic {topic}")]
    QueueFull {
        topic: Topic,
        filter: String,
        group: String,
        max_len: usize,
    },
    #[error("outbound buffer of subscriber {client} is full: {max_len} messages; topic {topic}")]
    SubscriberFull {
        topic: Topic,
        client: String,
        max_len: usize,
    },
    #[error("too many requests awaiting replies")]
    TooManyRequests { max: usize },
    #[error("no subscriber for topic {topic}")]
    NoResponders { topic: Topic },
    #[error("queue for {topic} (group {group}) stayed full ({max_len} messages) for {waited:?}")]
    BlockTimeout {
        topic: Topic,
        group: String,
        max_len: usize,
        waited: Duration,
    },
}

/// Why a subscribe or unsubscribe was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubscribeRefusal {
    #[error(transparent)]
    InvalidFilter(#[from] TopicFilterError),
    #[error(transparent)]
    InvalidGroup(NameError),
    #[error("subscription id {0} in use")]
    SidInUse(SubscriptionId),
    #[error("subscription id 0 is the direct inbox")]
    DirectInboxSid,
    #[error("subscription limit of {max} reached")]
    Limit { max: usize },
    #[error("no subscription {0}")]
    UnknownSubscription(SubscriptionId),
    #[error("identity {identity} may not subscribe to {filter}")]
    NotAllowed { filter: String, identity: String },
    #[error("identity {identity} may not join queue group {group}")]
    GroupNotAllowed { group: String, identity: String },
    #[error(
        "a queue group on {0} (starting with a wildcard) exists only where [[queue.overrides]] declares that filter"
    )]
    UndeclaredWildcardGroup(String),
    #[error("the broker keeps at most {max} durable queues (durability.max_queues)")]
    TooManyDurableQueues { max: usize },
}

/// Why a stats request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StatsRefusal {
    #[error("identity {0} may not read stats")]
    NotAllowed(String),
}

/// Why an ack, nack or the settling part of a reply was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SettleRefusal {
    #[error("delivery {0} is not in flight to this client")]
    UnknownDelivery(DeliveryId),
}

/// Why a reply was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplyRefusal {
    #[error(transparent)]
    Settle(#[from] SettleRefusal),
    #[error("request {0} is not awaiting a reply")]
    NotAwaited(CorrelationId),
    #[error("request {0} was not delivered to this client")]
    NotAResponder(CorrelationId),
    #[error("header {0:?} is reserved for the broker (x- prefix)")]
    ReservedHeader(String),
    #[error("a reply of {size} bytes would not fit the {limit}-byte frame limit of its requester")]
    TooLarge { size: usize, limit: usize },
}

/// Why a cancel was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CancelRefusal {
    #[error("message {0} is neither queued nor in flight")]
    UnknownMessage(MessageId),
    #[error("message {0} was published by another client")]
    NotPublisher(MessageId),
}

/// Why a result (the kept reply to a durable request) was not given.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResultRefusal {
    #[error("no result is kept or awaited for message {0} (not a durable request, or unknown)")]
    UnknownMessage(MessageId),
    #[error("the result of message {0} was kept and has expired")]
    Expired(MessageId),
    #[error("message {0} was requested by another client")]
    NotRequester(MessageId),
    #[error("no reply to message {id} within {waited:?}")]
    Timeout { id: MessageId, waited: Duration },
    #[error("waiting would pass the quota of {limit} pending requests")]
    Quota { limit: usize },
    #[error("the result of {size} bytes would not fit the {limit}-byte frame limit")]
    TooLarge { size: usize, limit: usize },
}

/// Why an accepted request will get no reply, told to its requester.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestFailure {
    #[error("message {id} dead-lettered: {reason}")]
    DeadLettered {
        id: MessageId,
        reason: String,
        attempts: u32,
    },
    #[error("client {holder} handed the direct message back")]
    HandedBack { holder: String },
    #[error("the holder of direct message {id} left ({reason}) and no group can take it")]
    HolderLeft {
        id: MessageId,
        reason: String,
        topic: String,
    },
    #[error("request {0} was cancelled")]
    Cancelled(MessageId),
}

/// Bytes that are not a frame: refused, then the connection is closed,
/// since nothing after them can be trusted to be in step.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unreadable(pub String);

impl From<&ReadError> for Unreadable {
    fn from(e: &ReadError) -> Self {
        Self(e.to_string())
    }
}

/// Everything the broker may refuse, sent to the client as an `Error` frame.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error(transparent)]
    Handshake(#[from] HandshakeRefusal),
    #[error(transparent)]
    Protocol(#[from] ProtocolRefusal),
    #[error(transparent)]
    Publish(#[from] PublishRefusal),
    #[error(transparent)]
    Subscribe(#[from] SubscribeRefusal),
    #[error(transparent)]
    Settle(#[from] SettleRefusal),
    #[error(transparent)]
    Reply(#[from] ReplyRefusal),
    #[error(transparent)]
    Cancel(#[from] CancelRefusal),
    #[error(transparent)]
    Stats(#[from] StatsRefusal),
    #[error(transparent)]
    Result(#[from] ResultRefusal),
    #[error(transparent)]
    Request(#[from] RequestFailure),
    /// Not a frame of a known kind.
    #[error(transparent)]
    Unreadable(Unreadable),
    /// A frame over the size limit.
    #[error(transparent)]
    TooLarge(Unreadable),
}

impl Refusal {
    /// A refusal of input that is not a frame.
    pub(crate) fn unreadable(e: &ReadError) -> Self {
        match e {
            ReadError::Frame(FrameError::TooLarge { .. }) => Self::TooLarge(e.into()),
            _ => Self::Unreadable(e.into()),
        }
    }

    /// The wire code: the only place a refusal becomes one.
    pub(crate) fn code(&self) -> ErrorCode {
        use ErrorCode as C;
        match self {
            Self::Handshake(r) => match r {
                HandshakeRefusal::ConnectionLimit { .. } => C::ConnectionLimit,
                HandshakeRefusal::PermissionDenied { .. } => C::PermissionDenied,
                HandshakeRefusal::NotHello => C::Protocol,
                HandshakeRefusal::UnsupportedVersion { .. } => C::UnsupportedVersion,
                HandshakeRefusal::InvalidClientId(_) | HandshakeRefusal::ReservedClientId(_) => {
                    C::InvalidClientId
                }
                HandshakeRefusal::FieldTooLong { .. }
                | HandshakeRefusal::TooManyCapabilities { .. }
                | HandshakeRefusal::InvalidCapability(_) => C::InvalidArgument,
                HandshakeRefusal::AuthenticationFailed
                | HandshakeRefusal::ClientIdNotAllowed { .. } => C::PermissionDenied,
                HandshakeRefusal::ClientIdInUse(_) => C::DuplicateClientId,
                HandshakeRefusal::ShuttingDown => C::ShuttingDown,
            },
            Self::Protocol(r) => match r {
                ProtocolRefusal::PublishWithoutMessage
                | ProtocolRefusal::UnknownPublishMode(_)
                | ProtocolRefusal::Unreadable
                | ProtocolRefusal::GatherWithTarget
                | ProtocolRefusal::FallbackWithoutGroup
                | ProtocolRefusal::UnknownGatherScope(_) => C::InvalidArgument,
                ProtocolRefusal::HelloTwice | ProtocolRefusal::NotFromClients(_) => C::Protocol,
            },
            Self::Publish(r) => match r {
                PublishRefusal::ShuttingDown => C::ShuttingDown,
                PublishRefusal::InvalidTopic(_) => C::InvalidTopic,
                PublishRefusal::NoSuchClient { .. } => C::NoSuchClient,
                PublishRefusal::ReservedTopic(_)
                | PublishRefusal::ReservedHeader(_)
                | PublishRefusal::NotAllowed { .. }
                | PublishRefusal::DirectNotAllowed { .. } => C::PermissionDenied,
                PublishRefusal::Quota { .. } => C::QuotaExceeded,
                PublishRefusal::MemoryPressure { .. } => C::MemoryPressure,
                PublishRefusal::Storage { .. } => C::Storage,
                PublishRefusal::TooLarge { .. } => C::FrameTooLarge,
                PublishRefusal::DirectInboxFull { .. }
                | PublishRefusal::QueueFull { .. }
                | PublishRefusal::SubscriberFull { .. }
                | PublishRefusal::TooManyRequests { .. } => C::QueueFull,
                PublishRefusal::NoResponders { .. } => C::NoResponders,
                PublishRefusal::BlockTimeout { .. } => C::BlockTimeout,
            },
            Self::Subscribe(r) => match r {
                SubscribeRefusal::InvalidFilter(_) => C::InvalidFilter,
                SubscribeRefusal::InvalidGroup(_)
                | SubscribeRefusal::SidInUse(_)
                | SubscribeRefusal::DirectInboxSid => C::InvalidArgument,
                SubscribeRefusal::Limit { .. } => C::SubscriptionLimit,
                SubscribeRefusal::TooManyDurableQueues { .. } => C::QuotaExceeded,
                SubscribeRefusal::UnknownSubscription(_) => C::UnknownSubscription,
                SubscribeRefusal::NotAllowed { .. }
                | SubscribeRefusal::GroupNotAllowed { .. }
                | SubscribeRefusal::UndeclaredWildcardGroup(_) => C::PermissionDenied,
            },
            Self::Settle(SettleRefusal::UnknownDelivery(_))
            | Self::Reply(ReplyRefusal::Settle(SettleRefusal::UnknownDelivery(_))) => {
                C::UnknownDelivery
            }
            Self::Reply(ReplyRefusal::NotAwaited(_)) => C::UnknownMessage,
            Self::Reply(ReplyRefusal::NotAResponder(_) | ReplyRefusal::ReservedHeader(_)) => {
                C::PermissionDenied
            }
            Self::Reply(ReplyRefusal::TooLarge { .. }) => C::FrameTooLarge,
            Self::Cancel(CancelRefusal::UnknownMessage(_)) => C::UnknownMessage,
            Self::Cancel(CancelRefusal::NotPublisher(_)) => C::PermissionDenied,
            Self::Stats(StatsRefusal::NotAllowed(_)) => C::PermissionDenied,
            Self::Result(r) => match r {
                ResultRefusal::UnknownMessage(_) => C::UnknownMessage,
                ResultRefusal::Expired(_) => C::Expired,
                ResultRefusal::NotRequester(_) => C::PermissionDenied,
                ResultRefusal::Timeout { .. } => C::Timeout,
                ResultRefusal::Quota { .. } => C::QuotaExceeded,
                ResultRefusal::TooLarge { .. } => C::FrameTooLarge,
            },
            Self::Request(r) => match r {
                RequestFailure::DeadLettered { .. } => C::DeadLettered,
                RequestFailure::HandedBack { .. } | RequestFailure::HolderLeft { .. } => {
                    C::NoResponders
                }
                RequestFailure::Cancelled(_) => C::Cancelled,
            },
            Self::Unreadable(_) => C::Protocol,
            Self::TooLarge(_) => C::FrameTooLarge,
        }
    }

    /// The facts a program needs, keyed as the client reads them.
    fn details(&self) -> Vec<(&'static str, String)> {
        fn of<const N: usize>(pairs: [(&'static str, String); N]) -> Vec<(&'static str, String)> {
            pairs.into()
        }
        match self {
            Self::Publish(r) => match r {
                PublishRefusal::NoSuchClient { client } => of([("client_id", client.clone())]),
                PublishRefusal::DirectInboxFull { client, topic, max } => of([
                    ("topic", topic.clone()),
                    ("group", format!("direct:{client}")),
                    ("max_len", max.to_string()),
                ]),
                PublishRefusal::QueueFull {
                    topic,
                    group,
                    max_len,
                    ..
                } => of([
                    ("topic", topic.to_string()),
                    ("group", group.clone()),
                    ("max_len", max_len.to_string()),
                ]),
                PublishRefusal::SubscriberFull {
                    topic,
                    client,
                    max_len,
                } => of([
                    ("topic", topic.to_string()),
                    ("group", format!("subscriber:{client}")),
                    ("max_len", max_len.to_string()),
                ]),
                PublishRefusal::TooManyRequests { max } => of([("max_len", max.to_string())]),
                PublishRefusal::NoResponders { topic } => of([("topic", topic.to_string())]),
                PublishRefusal::BlockTimeout {
                    topic,
                    group,
                    max_len,
                    waited,
                } => of([
                    ("topic", topic.to_string()),
                    ("group", group.clone()),
                    ("max_len", max_len.to_string()),
                    ("waited_ms", waited.as_millis().to_string()),
                ]),
                PublishRefusal::TooLarge {
                    receiver,
                    size,
                    limit,
                } => of([
                    ("receiver", receiver.clone()),
                    ("size", size.to_string()),
                    ("limit", limit.to_string()),
                ]),
                PublishRefusal::ReservedTopic(topic) | PublishRefusal::NotAllowed { topic, .. } => {
                    of([("topic", topic.to_string())])
                }
                PublishRefusal::DirectNotAllowed { client, .. } => {
                    of([("client_id", client.clone())])
                }
                PublishRefusal::Quota { quota, limit } => {
                    of([("quota", (*quota).to_owned()), ("limit", limit.to_string())])
                }
                PublishRefusal::MemoryPressure { what } => of([("reason", what.clone())]),
                PublishRefusal::Storage { reason } => of([("reason", reason.clone())]),
                PublishRefusal::ReservedHeader(name) => of([("header", name.clone())]),
                PublishRefusal::ShuttingDown | PublishRefusal::InvalidTopic(_) => Vec::new(),
            },
            Self::Subscribe(SubscribeRefusal::Limit { max }) => {
                of([("max_subscriptions", max.to_string())])
            }
            Self::Subscribe(SubscribeRefusal::TooManyDurableQueues { max }) => of([
                ("quota", "durability.max_queues".to_owned()),
                ("limit", max.to_string()),
            ]),
            Self::Settle(SettleRefusal::UnknownDelivery(id))
            | Self::Reply(ReplyRefusal::Settle(SettleRefusal::UnknownDelivery(id))) => {
                of([("delivery_id", id.to_string())])
            }
            Self::Cancel(CancelRefusal::UnknownMessage(id) | CancelRefusal::NotPublisher(id)) => {
                of([("message_id", id.to_string())])
            }
            Self::Result(r) => match r {
                ResultRefusal::UnknownMessage(id)
                | ResultRefusal::Expired(id)
                | ResultRefusal::NotRequester(id) => of([("message_id", id.to_string())]),
                ResultRefusal::Timeout { id, waited } => of([
                    ("message_id", id.to_string()),
                    ("waited_ms", waited.as_millis().to_string()),
                ]),
                ResultRefusal::Quota { limit } => of([
                    ("quota", "max_pending_requests".to_owned()),
                    ("limit", limit.to_string()),
                ]),
                ResultRefusal::TooLarge { size, limit } => {
                    of([("size", size.to_string()), ("limit", limit.to_string())])
                }
            },
            Self::Request(r) => match r {
                RequestFailure::DeadLettered {
                    id,
                    reason,
                    attempts,
                } => of([
                    ("message_id", id.to_string()),
                    ("reason", reason.clone()),
                    ("attempts", attempts.to_string()),
                ]),
                RequestFailure::HandedBack { holder } => of([("client_id", holder.clone())]),
                RequestFailure::HolderLeft { topic, .. } => of([("topic", topic.clone())]),
                RequestFailure::Cancelled(id) => of([("message_id", id.to_string())]),
            },
            Self::Handshake(_)
            | Self::Protocol(_)
            | Self::Stats(_)
            | Self::Subscribe(_)
            | Self::Reply(
                ReplyRefusal::NotAwaited(_)
                | ReplyRefusal::NotAResponder(_)
                | ReplyRefusal::ReservedHeader(_)
                | ReplyRefusal::TooLarge { .. },
            )
            | Self::Unreadable(_)
            | Self::TooLarge(_) => Vec::new(),
        }
    }

    /// The `Error` frame answering `seq` ([`Seq::NONE`]: a frame that asked
    /// for no answer, or the connection itself).
    pub(crate) fn into_frame(self, seq: Seq) -> Frame {
        let code = self.code();
        let details = self
            .details()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        Frame {
            kind: Some(Kind::Error(proto::Error {
                seq: seq.get(),
                code: code as i32,
                message: self.to_string(),
                details,
            })),
        }
    }
}

/// Why a connection ended; its text goes to the client in `Goodbye`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DisconnectReason {
    #[error("client closed the connection")]
    ClientClosed,
    #[error("client said goodbye")]
    Goodbye,
    #[error("unreadable input")]
    Unreadable,
    #[error("replaced by a newer connection with the same client id")]
    Replaced,
    #[error("internal error while handling its frames")]
    InternalError,
    #[error("heartbeats missed")]
    HeartbeatsMissed,
    #[error("too slow: outbound buffer at its hard cap")]
    TooSlow,
    #[error("closed by the broker")]
    ClosedByBroker,
    #[error("broker shutting down")]
    ShuttingDown,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(frame: &Frame, key: &str) -> Option<String> {
        match &frame.kind {
            Some(Kind::Error(e)) => e.details.get(key).cloned(),
            _ => None,
        }
    }

    #[test]
    fn a_refusal_becomes_its_code_text_and_details() {
        let topic = Topic::new("a.b").unwrap();
        let frame = Refusal::from(PublishRefusal::QueueFull {
            topic: topic.clone(),
            filter: "a.#".into(),
            group: "g".into(),
            max_len: 3,
        })
        .into_frame(Seq::new(9));
        let Some(Kind::Error(e)) = &frame.kind else {
            panic!("an error frame")
        };
        assert_eq!((e.seq, e.code), (9, ErrorCode::QueueFull as i32));
        assert_eq!(
            e.message,
            "queue a.# (group g) is full: 3 messages waiting; topic a.b"
        );
        assert_eq!(detail(&frame, "group").as_deref(), Some("g"));
        assert_eq!(detail(&frame, "max_len").as_deref(), Some("3"));

        let frame = Refusal::from(PublishRefusal::SubscriberFull {
            topic,
            client: "c".into(),
            max_len: 1,
        })
        .into_frame(Seq::NONE);
        assert_eq!(detail(&frame, "group").as_deref(), Some("subscriber:c"));
        let refusal = Refusal::from(ReplyRefusal::from(SettleRefusal::UnknownDelivery(
            DeliveryId::new(4),
        )));
        assert_eq!(refusal.code(), ErrorCode::UnknownDelivery);
        let frame = refusal.into_frame(Seq::new(1));
        assert_eq!(detail(&frame, "delivery_id").as_deref(), Some("4"));
    }

    #[test]
    fn frames_over_the_limit_are_told_apart_from_garbage() {
        let too_large = ReadError::Frame(FrameError::TooLarge { len: 9, max: 8 });
        assert_eq!(
            Refusal::unreadable(&too_large).code(),
            ErrorCode::FrameTooLarge
        );
        let garbage = ReadError::Frame(FrameError::UnknownVersion { version: 7 });
        assert_eq!(Refusal::unreadable(&garbage).code(), ErrorCode::Protocol);
    }
}
