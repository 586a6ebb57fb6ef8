//! The router's input: a client's frame, validated at the edge into a
//! [`Command`] whose fields are already typed.
//!
//! The connection task decodes each frame into a command (or a [`Rejected`]
//! frame, answered with a typed refusal in its turn) before it takes the
//! router's lock, so the router never sees an unchecked name or a raw id.
//!
//! The rule for bad input: bytes that are not a frame of a known kind
//! (framing, wire version, size, protobuf) are refused with `Protocol` or
//! `FrameTooLarge` and the connection is closed, since nothing after them can
//! be trusted to be in step. A frame that decodes but is not a valid command
//! (a second `Hello`, a frame only the broker sends, a field out of range) is
//! refused under its `seq` and the connection stays open.

use std::time::Duration;

use bytes::Bytes;

use super::ids::{CorrelationId, DeliveryId, MessageId, Seq, SubscriptionId};
use super::refusal::{ProtocolRefusal, PublishRefusal, Refusal, ReplyRefusal, SubscribeRefusal};
use crate::codec::FrameError;
use crate::codec::raw::{RawPublish, RawReply, scan_publish, scan_reply};
use crate::names::{ClientId, GroupName};
use crate::proto::{self, Frame, PublishMode, frame::Kind};
use crate::topic::{Topic, TopicFilter};

/// How long the broker keeps a request whose requester did not say.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One thing a registered client asks the broker to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// A publish, request or direct send, validated, its envelope kept
    /// encoded.
    Publish(Publish),
    /// A scatter-gather request.
    Gather(Gather),
    Subscribe(Subscribe),
    Unsubscribe {
        seq: Seq,
        sid: SubscriptionId,
    },
    /// An ack or nack.
    Settle {
        delivery: DeliveryId,
        how: Settlement,
        seq: Seq,
    },
    Reply(Reply),
    /// Cancel a queued or in-flight message.
    Cancel {
        message: MessageId,
        seq: Seq,
    },
    Stats {
        seq: Seq,
    },
    /// The kept reply to a durable request, now or within `wait`.
    Result {
        seq: Seq,
        message: MessageId,
        wait: Duration,
    },
    /// Proof of life; any frame counts as one, so there is nothing to do.
    Heartbeat,
    Goodbye,
}

/// A validated publish.
#[derive(Debug)]
pub(crate) struct Publish {
    pub seq: Seq,
    pub mode: Mode,
    /// A direct send's receiver; `None` routes by topic.
    pub target: Option<ClientId>,
    pub topic: Topic,
    /// The envelope's bytes as the publisher sent them (its topic is
    /// `topic`, its headers none of the broker's); the broker appends its
    /// stamps when it writes a delivery (`codec::raw::Stamped`).
    pub envelope: Bytes,
    /// The envelope sets a correlation id or reply-to, which the stamps
    /// must override.
    pub reply_fields: bool,
    /// The size of the publish frame's body: with [`STAMP_ALLOWANCE`], an
    /// upper bound of the size of its deliveries.
    pub wire_len: usize,
}

/// The most a delivery frame grows over the publish frame it came from: the
/// broker's stamps (id, source, time, attempt, a request's correlation and
/// reply-to) and the `Deliver` fields, with their keys and lengths.
pub(crate) const STAMP_ALLOWANCE: usize = 256;

/// The prefix of the topics only the broker publishes on.
pub(crate) const RESERVED_TOPIC_PREFIX: &str = "_sys";

/// Whether `topic` is the broker's own (`_sys` and below).
pub(crate) fn is_reserved_topic(topic: &str) -> bool {
    topic
        .strip_prefix(RESERVED_TOPIC_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// Whether `topic` is a bridge's status topic, `_sys.bridge.<name>` (at
/// least one segment below the prefix).
fn is_bridge_status_topic(topic: &str) -> bool {
    topic
        .strip_prefix(crate::topic::BRIDGE_STATUS_PREFIX)
        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.'))
}

/// A validated gather: delivered to every recipient `scope` names, each
/// one's reply forwarded, done when the last answered.
#[derive(Debug)]
pub(crate) struct Gather {
    pub seq: Seq,
    pub topic: Topic,
    /// The envelope's bytes as the publisher sent them.
    pub envelope: Bytes,
    pub scope: GatherScope,
    /// When the broker gives up on whoever has not answered.
    pub timeout: Duration,
}

/// Who a gather goes to, among the subscriptions its topic matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GatherScope {
    /// Every plain subscriber and every member of every queue group.
    All,
    /// Plain subscribers only.
    Plain,
    /// The members of one queue group.
    Group(GroupName),
}

/// What a publisher expects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Nothing; refusals are sent under `seq` 0 and counted.
    FireAndForget,
    /// `Ok` with the message id once accepted.
    Confirmed,
    /// One `Reply`; with `confirmed`, an `Ok` with the message id first. The
    /// broker forgets the request after `timeout`.
    Request { confirmed: bool, timeout: Duration },
}

impl Mode {
    pub(crate) fn is_request(self) -> bool {
        matches!(self, Self::Request { .. })
    }

    /// Whether an `Ok` with the message id answers the publish.
    pub(crate) fn is_confirmed(self) -> bool {
        matches!(
            self,
            Self::Confirmed
                | Self::Request {
                    confirmed: true,
                    ..
                }
        )
    }
}

/// A validated subscribe.
#[derive(Debug)]
pub(crate) struct Subscribe {
    pub seq: Seq,
    pub sid: SubscriptionId,
    pub filter: TopicFilter,
    /// A queue group to join, with the prefetch asked for (0: the default).
    pub group: Option<(GroupName, u32)>,
    /// A fallback member of that group (`proto::Subscribe::fallback`).
    pub fallback: bool,
}

/// A validated reply.
#[derive(Debug)]
pub(crate) struct Reply {
    pub seq: Seq,
    /// The request answered, by the token its delivery carried.
    pub correlation: CorrelationId,
    /// The delivery it settles, if it came as one.
    pub delivery: Option<DeliveryId>,
    /// The reply's envelope bytes, with none of the broker's headers.
    pub envelope: Bytes,
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settlement {
    /// Processed.
    Ack,
    /// Not processed; back to the front of its queue.
    Requeue,
    /// Not processed and never will be; to the dead-letter topic.
    Reject,
}

/// A frame that decodes but is not a valid command, with the `seq` its
/// refusal answers.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub seq: Seq,
    pub refusal: Refusal,
}

impl Rejected {
    fn new(seq: u64, refusal: impl Into<Refusal>) -> Self {
        Self {
            seq: Seq::new(seq),
            refusal: refusal.into(),
        }
    }
}

/// What the edge hands the router for one frame.
pub(crate) type Inbound = Result<Command, Rejected>;

/// What the edge keeps per connection: the last topic it published on
/// (publishers repeat topics, so the next one with the same bytes is the
/// same `Topic`, validated once), and whether it is a bridge, which may
/// publish its status below `_sys.bridge`.
#[derive(Debug, Default)]
pub(crate) struct TopicCache {
    last: Option<Topic>,
    bridge: bool,
}

impl TopicCache {
    /// The cache of a connection that said `kind` in its `Hello`.
    pub(crate) fn for_kind(kind: &str) -> Self {
        Self {
            last: None,
            bridge: kind == crate::topic::BRIDGE_KIND,
        }
    }

    /// Whether this connection may not publish on `topic`: the broker's
    /// own, except a bridge's status topics for a bridge.
    fn refuses(&self, topic: &Topic) -> bool {
        is_reserved_topic(topic.as_str())
            && !(self.bridge && is_bridge_status_topic(topic.as_str()))
    }

    fn topic(&mut self, text: &str) -> Result<Topic, crate::topic::TopicError> {
        if let Some(topic) = &self.last
            && topic.as_str() == text
        {
            return Ok(topic.clone());
        }
        let topic = Topic::new(text)?;
        self.last = Some(topic.clone());
        Ok(topic)
    }
}

/// Cuts a frame body into a command: a publish or a reply is checked and
/// kept encoded; anything else is decoded and validated. Errs only for bytes
/// that are not a frame (which close the connection).
pub(crate) fn decode(body: Bytes, topics: &mut TopicCache) -> Result<Inbound, FrameError> {
    let wire_len = body.len();
    let body = match scan_publish(body) {
        Ok(raw) => return Ok(Publish::validate(raw, wire_len, topics)),
        Err(body) => body,
    };
    let body = match scan_reply(body) {
        Ok(raw) => return Ok(Reply::validate(raw).map(Command::Reply)),
        Err(body) => body,
    };
    crate::codec::decode_body(body).map(|frame| Command::from_frame(frame, wire_len, topics))
}

impl Command {
    /// Validates a decoded frame whose body was `wire_len` bytes. A publish
    /// or reply the readers of `codec::raw` did not take is encoded again
    /// (canonically) and read by them, so both kinds have one path.
    pub(crate) fn from_frame(frame: Frame, wire_len: usize, topics: &mut TopicCache) -> Inbound {
        let Some(kind) = frame.kind else {
            // `decode_body` refuses frames without a kind; a caller that
            // built one by hand gets the same answer.
            return Err(Rejected::new(0, ProtocolRefusal::NotFromClients("(none)")));
        };
        Ok(match kind {
            Kind::Publish(p) => {
                if p.message.is_none() {
                    return Err(Rejected::new(p.seq, ProtocolRefusal::PublishWithoutMessage));
                }
                let seq = p.seq;
                match scan_publish(canonical(Kind::Publish(p))) {
                    Ok(raw) => Publish::validate(raw, wire_len, topics)?,
                    Err(_) => return Err(Rejected::new(seq, ProtocolRefusal::Unreadable)),
                }
            }
            Kind::Subscribe(s) => Self::Subscribe(Subscribe::validate(s)?),
            Kind::Unsubscribe(u) => Self::Unsubscribe {
                seq: Seq::new(u.seq),
                sid: SubscriptionId::new(u.sid),
            },
            Kind::Ack(a) => Self::Settle {
                delivery: DeliveryId::new(a.delivery_id),
                how: Settlement::Ack,
                seq: Seq::new(a.seq),
            },
            Kind::Nack(n) => Self::Settle {
                delivery: DeliveryId::new(n.delivery_id),
                how: if n.requeue {
                    Settlement::Requeue
                } else {
                    Settlement::Reject
                },
                seq: Seq::new(n.seq),
            },
            Kind::Reply(r) => {
                let seq = r.seq;
                match scan_reply(canonical(Kind::Reply(r))) {
                    Ok(raw) => Self::Reply(Reply::validate(raw)?),
                    Err(_) => return Err(Rejected::new(seq, ProtocolRefusal::Unreadable)),
                }
            }
            Kind::Cancel(c) => Self::Cancel {
                message: MessageId::new(c.message_id),
                seq: Seq::new(c.seq),
            },
            Kind::StatsRequest(s) => Self::Stats {
                seq: Seq::new(s.seq),
            },
            Kind::ResultRequest(r) => Self::Result {
                seq: Seq::new(r.seq),
                message: MessageId::new(r.message_id),
                wait: Duration::from_millis(u64::from(r.timeout_ms)),
            },
            Kind::Heartbeat(_) => Self::Heartbeat,
            Kind::Goodbye(_) => Self::Goodbye,
            Kind::Hello(_) => return Err(Rejected::new(0, ProtocolRefusal::HelloTwice)),
            other => {
                return Err(Rejected::new(
                    0,
                    ProtocolRefusal::NotFromClients(kind_name(&other)),
                ));
            }
        })
    }
}

/// A frame's body as prost encodes it: canonical, so the readers of
/// `codec::raw` take it.
fn canonical(kind: Kind) -> Bytes {
    use prost::Message as _;
    Frame { kind: Some(kind) }.encode_to_vec().into()
}

impl Publish {
    /// A publish, or a gather (a publish in mode `Gather`).
    fn validate(raw: RawPublish, wire_len: usize, topics: &mut TopicCache) -> Inbound {
        let seq = raw.seq;
        let reject = |r: Refusal| Rejected::new(seq, r);
        // An enum is an `int32`: prost keeps the varint's low 32 bits.
        let mode = match PublishMode::try_from(raw.mode as i32) {
            Ok(PublishMode::Gather) => return Gather::validate(raw, topics).map(Command::Gather),
            Ok(PublishMode::FireAndForget) => Mode::FireAndForget,
            Ok(PublishMode::Confirmed) => Mode::Confirmed,
            Ok(request @ (PublishMode::Request | PublishMode::RequestConfirmed)) => Mode::Request {
                confirmed: request == PublishMode::RequestConfirmed,
                timeout: match raw.timeout_ms {
                    0 => DEFAULT_REQUEST_TIMEOUT,
                    ms => Duration::from_millis(u64::from(ms)),
                },
            },
            Err(_) => {
                return Err(reject(
                    ProtocolRefusal::UnknownPublishMode(raw.mode as i32).into(),
                ));
            }
        };
        let topic = topics
            .topic(raw.topic())
            .map_err(|e| reject(PublishRefusal::from(e).into()))?;
        if topics.refuses(&topic) {
            return Err(reject(PublishRefusal::ReservedTopic(topic).into()));
        }
        if let Some(name) = raw.reserved_header() {
            return Err(reject(
                PublishRefusal::ReservedHeader(name.to_owned()).into(),
            ));
        }
        let target = match raw.target() {
            None => None,
            // No such id can be connected.
            Some(name) => Some(ClientId::new(name).map_err(|_| {
                reject(
                    PublishRefusal::NoSuchClient {
                        client: name.to_owned(),
                    }
                    .into(),
                )
            })?),
        };
        Ok(Command::Publish(Self {
            seq: Seq::new(seq),
            mode,
            target,
            topic,
            envelope: raw.envelope(),
            reply_fields: raw.reply_fields,
            wire_len,
        }))
    }
}

impl Gather {
    fn validate(raw: RawPublish, topics: &mut TopicCache) -> Result<Self, Rejected> {
        let reject = |r: Refusal| Rejected::new(raw.seq, r);
        let topic = topics
            .topic(raw.topic())
            .map_err(|e| reject(PublishRefusal::from(e).into()))?;
        if is_reserved_topic(topic.as_str()) {
            return Err(reject(PublishRefusal::ReservedTopic(topic).into()));
        }
        if let Some(name) = raw.reserved_header() {
            return Err(reject(
                PublishRefusal::ReservedHeader(name.to_owned()).into(),
            ));
        }
        if raw.target().is_some() {
            return Err(reject(ProtocolRefusal::GatherWithTarget.into()));
        }
        let scope = match proto::GatherScope::try_from(raw.gather_scope as i32) {
            Ok(proto::GatherScope::All) => GatherScope::All,
            Ok(proto::GatherScope::Plain) => GatherScope::Plain,
            Ok(proto::GatherScope::Group) => GatherScope::Group(
                GroupName::new(raw.gather_group())
                    .map_err(|e| reject(SubscribeRefusal::InvalidGroup(e).into()))?,
            ),
            Err(_) => {
                return Err(reject(
                    ProtocolRefusal::UnknownGatherScope(raw.gather_scope as i32).into(),
                ));
            }
        };
        Ok(Self {
            seq: Seq::new(raw.seq),
            topic,
            envelope: raw.envelope(),
            scope,
            timeout: match raw.timeout_ms {
                0 => DEFAULT_REQUEST_TIMEOUT,
                ms => Duration::from_millis(u64::from(ms)),
            },
        })
    }
}

impl Reply {
    fn validate(raw: RawReply) -> Result<Self, Rejected> {
        if let Some(name) = raw.reserved_header() {
            return Err(Rejected::new(
                raw.seq,
                ReplyRefusal::ReservedHeader(name.to_owned()),
            ));
        }
        Ok(Self {
            seq: Seq::new(raw.seq),
            correlation: CorrelationId::new(raw.correlation_id),
            delivery: (raw.delivery_id != 0).then(|| DeliveryId::new(raw.delivery_id)),
            envelope: raw.envelope(),
        })
    }
}

impl Subscribe {
    fn validate(s: proto::Subscribe) -> Result<Self, Rejected> {
        let reject = |r: SubscribeRefusal| Rejected::new(s.seq, r);
        let sid = SubscriptionId::new(s.sid);
        if sid == SubscriptionId::DIRECT {
            return Err(reject(SubscribeRefusal::DirectInboxSid));
        }
        let filter = TopicFilter::new(&s.filter).map_err(|e| reject(e.into()))?;
        let group = match s.group.as_str() {
            "" => None,
            name => Some((
                GroupName::new(name).map_err(|e| reject(SubscribeRefusal::InvalidGroup(e)))?,
                s.prefetch,
            )),
        };
        if s.fallback && group.is_none() {
            return Err(Rejected::new(s.seq, ProtocolRefusal::FallbackWithoutGroup));
        }
        Ok(Self {
            seq: Seq::new(s.seq),
            sid,
            filter,
            group,
            fallback: s.fallback,
        })
    }
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Hello(_) => "hello",
        Kind::Welcome(_) => "welcome",
        Kind::Publish(_) => "publish",
        Kind::Subscribe(_) => "subscribe",
        Kind::Unsubscribe(_) => "unsubscribe",
        Kind::Deliver(_) => "deliver",
        Kind::Ack(_) => "ack",
        Kind::Nack(_) => "nack",
        Kind::Reply(_) => "reply",
        Kind::Heartbeat(_) => "heartbeat",
        Kind::Cancel(_) => "cancel",
        Kind::StatsRequest(_) => "stats request",
        Kind::StatsResponse(_) => "stats response",
        Kind::Ok(_) => "ok",
        Kind::Error(_) => "error",
        Kind::Goodbye(_) => "goodbye",
        Kind::GatherStarted(_) => "gather started",
        Kind::ResultRequest(_) => "result request",
        Kind::GatherDone(_) => "gather done",
    }
}

#[cfg(test)]
mod tests;
