//! Scatter-gather: one request to every recipient at once, each one's reply
//! as it comes, and an end the moment the last recipient answered.
//!
//! [`Client::gather`] returns once the broker has delivered the request and
//! named its recipients, so the caller knows how many replies to expect. The
//! returned [`Gather`] is a stream of replies, at most one per recipient,
//! followed by a [`GatherOutcome`] that names whoever did not answer and why.
//! The broker ends a gather when its last recipient answered, left or timed
//! out; nobody waits out the timeout when everyone answered.
//!
//! **Bounds:** the events of one gather are its `GatherStarted`, at most one
//! reply per recipient (the broker refuses a second, and so does
//! [`Gather`]), and its `GatherDone`; the number of recipients is bounded by
//! the broker's `max_gather_recipients`. So the channel between the reader
//! task and a [`Gather`] holds at most `recipients + 2` events, and nothing
//! after the gather is over or its [`Gather`] dropped.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::mpsc;

use super::error::{PublishError, Refused};
use super::{Body, Client, Message, lock, publish_refusal};
use crate::names::{ClientId, GroupName, IntoName};
use crate::proto::{self, ErrorCode, Frame, PublishMode, frame::Kind};
use crate::topic::Topic;

/// How long after a gather's timeout its [`Gather`] still waits for the
/// broker's own end of it before declaring the missing recipients timed out
/// itself (the broker ends it at the timeout; this covers a broker that is
/// stalled).
pub const GATHER_GRACE: Duration = Duration::from_millis(500);

/// Who a gather goes to, among the subscriptions its topic matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum GatherScope {
    /// Every plain subscriber and every member of every queue group.
    #[default]
    All,
    /// Plain subscribers only.
    Plain,
    /// The members of this queue group only.
    Group(GroupName),
}

/// How to run a gather: who gets it and how long to wait for answers.
///
/// ```
/// use std::time::Duration;
/// use eventbus::client::{GatherOptions, GatherScope};
/// let options = GatherOptions::new(Duration::from_secs(2))
///     .scope(GatherScope::Group("process".parse()?));
/// # Ok::<(), eventbus::names::NameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatherOptions {
    scope: GatherScope,
    timeout: Duration,
}

impl GatherOptions {
    /// Every recipient ([`GatherScope::All`]), answering within `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            scope: GatherScope::All,
            timeout,
        }
    }

    /// Who gets the gather.
    #[must_use]
    pub fn scope(mut self, scope: GatherScope) -> Self {
        self.scope = scope;
        self
    }

    /// How long recipients have to answer, from when the broker delivered it.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Why a recipient did not answer a gather.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MissReason {
    /// Its connection ended before it answered (reported at once, not at the
    /// deadline).
    Disconnected,
    /// No answer before the gather's timeout.
    TimedOut,
    /// Its buffer refused the request (a slow consumer).
    Refused,
    /// This client lost its own connection to the broker before the
    /// recipient answered, so whether it did is unknown.
    RequesterDisconnected,
}

impl std::fmt::Display for MissReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Disconnected => "disconnected",
            Self::TimedOut => "timed out",
            Self::Refused => "refused",
            Self::RequesterDisconnected => "requester disconnected",
        })
    }
}

impl MissReason {
    fn from_wire(reason: i32) -> Self {
        match proto::GatherMiss::try_from(reason) {
            Ok(proto::GatherMiss::Disconnected) => Self::Disconnected,
            Ok(proto::GatherMiss::Refused) => Self::Refused,
            // Unspecified or unknown (a newer broker): it did not answer in time.
            _ => Self::TimedOut,
        }
    }
}

/// A recipient that did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// Who.
    pub client_id: ClientId,
    /// Why.
    pub reason: MissReason,
}

/// How a gather ended: who answered and who did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatherOutcome {
    /// Every recipient, in the order the broker named them.
    pub recipients: Vec<ClientId>,
    /// The recipients that answered, in the order their replies came.
    pub answered: Vec<ClientId>,
    /// The recipients that did not, and why.
    pub missing: Vec<Missed>,
}

impl GatherOutcome {
    /// Whether every recipient answered.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Everything a gather brought: the replies in arrival order and how it ended.
#[derive(Debug, Clone)]
pub struct Gathered {
    /// One reply per recipient that answered; [`Message::source`] names it.
    pub replies: Vec<Message>,
    /// Who answered and who did not.
    pub outcome: GatherOutcome,
}

/// Why a gather could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GatherError {
    /// The connection is closed, or was lost before the broker answered.
    #[error("connection closed")]
    Closed,
    /// The broker did not answer within the gather's timeout.
    #[error("no answer from the broker within {0:?}")]
    Timeout(Duration),
    /// Nobody in the scope subscribes to the topic.
    #[error("no responders for {topic}")]
    NoResponders {
        /// The gather's topic.
        topic: String,
    },
    /// More recipients match than the broker delivers one gather to.
    #[error("more recipients than the broker's limit of {limit} per gather")]
    TooManyRecipients {
        /// The broker's `max_gather_recipients`.
        limit: usize,
    },
    /// This client has as many gathers going as it may.
    #[error("too many gathers in progress (limit {limit})")]
    TooManyGathers {
        /// This client's `max_concurrent_gathers`.
        limit: usize,
    },
    /// The request could not be sent (bad topic, too large, not allowed, ...).
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// Fewer answers than an aggregation needed: what did come, and how the
/// gather ended.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{got} of {needed} answers needed ({} missing)", outcome.missing.len())]
pub struct GatherIncomplete {
    /// Answers needed.
    pub needed: usize,
    /// Answers that came.
    pub got: usize,
    /// The replies that came, in arrival order.
    pub replies: Vec<Message>,
    /// Who answered and who did not.
    pub outcome: GatherOutcome,
}

/// What the reader task hands a [`Gather`].
#[derive(Debug)]
pub(super) enum GatherEvent {
    Started(proto::GatherStarted),
    Reply(Message),
    Done(proto::GatherDone),
    Refused(proto::Error),
}

/// The reader task's ends of the gathers in progress, by `seq`.
#[derive(Debug, Default)]
pub(super) struct GatherSinks {
    by_seq: super::BySeq<mpsc::UnboundedSender<GatherEvent>>,
}

impl GatherSinks {
    /// Hands `event` to the gather `seq` belongs to, or gives it back when
    /// `seq` is no gather's. A gather whose [`Gather`] was dropped is
    /// forgotten here, and its later events are discarded.
    pub fn deliver(&mut self, seq: u64, event: GatherEvent) -> Result<(), GatherEvent> {
        let Some(sink) = self.by_seq.get(&seq) else {
            return Err(event);
        };
        let last = matches!(event, GatherEvent::Done(_) | GatherEvent::Refused(_));
        if sink.send(event).is_err() || last {
            self.by_seq.remove(&seq);
        }
        Ok(())
    }

    /// The connection is gone: every gather on it ends.
    pub fn clear(&mut self) {
        self.by_seq.clear();
    }
}

/// A gather in progress: a stream of replies, at most one per recipient,
/// that ends when the broker ends the gather; then
/// [`outcome`](Self::outcome) says who did not answer.
///
/// Dropping it stops listening: later replies are discarded on arrival.
#[derive(Debug)]
pub struct Gather {
    message_id: u64,
    recipients: Vec<ClientId>,
    answered: Vec<ClientId>,
    seen: HashSet<ClientId>,
    events: mpsc::UnboundedReceiver<GatherEvent>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    outcome: Option<GatherOutcome>,
}

impl Client {
    /// Delivers a request to every recipient `options` names among the
    /// subscriptions matching `topic` — each client once, however many of
    /// its subscriptions match — and returns as soon as the broker has
    /// delivered it, with the recipients named.
    ///
    /// Fails at once with [`GatherError::NoResponders`] when nobody in the
    /// scope subscribes.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: once polled, the request is on its way and may be
    /// answered; a cancelled call only drops the answers.
    ///
    /// ```no_run
    /// # async fn demo(client: eventbus::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use eventbus::client::GatherOptions;
    /// let gather = client
    ///     .gather("control.collector.snapshot", "{}", GatherOptions::new(Duration::from_secs(2)))
    ///     .await?;
    /// println!("asked {} collectors", gather.recipients().len());
    /// let all = gather.collect().await;
    /// for reply in &all.replies {
    ///     println!("{}: {} bytes", reply.source(), reply.payload().len());
    /// }
    /// for missed in &all.outcome.missing {
    ///     println!("{} did not answer: {}", missed.client_id, missed.reason);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn gather(
        &self,
        topic: impl IntoName<Topic>,
        body: impl Into<Body>,
        options: GatherOptions,
    ) -> Result<Gather, GatherError> {
        let topic = topic.into_name().map_err(PublishError::from)?;
        let message = self.envelope(topic.as_str(), body.into())?;
        let (scope, group) = match &options.scope {
            GatherScope::All => (proto::GatherScope::All, String::new()),
            GatherScope::Plain => (proto::GatherScope::Plain, String::new()),
            GatherScope::Group(name) => (proto::GatherScope::Group, name.as_str().to_owned()),
        };
        let timeout = options.timeout;
        let deadline = tokio::time::Instant::now() + timeout + GATHER_GRACE;
        let seq = self.next_seq();
        let (tx, mut events) = mpsc::unbounded_channel();
        lock(&self.inner().gathers).by_seq.insert(seq, tx);
        let frame = Frame {
            kind: Some(Kind::Publish(proto::Publish {
                seq,
                mode: PublishMode::Gather as i32,
                message: Some(message),
                timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
                gather_scope: scope as i32,
                gather_group: group,
                ..Default::default()
            })),
        };
        if self.is_closed() || self.push_now(frame).is_err() {
            lock(&self.inner().gathers).by_seq.remove(&seq);
            return Err(GatherError::Closed);
        }
        let started = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(GatherEvent::Started(s))) => s,
            Ok(Some(GatherEvent::Refused(e))) => return Err(gather_refusal(&topic, e.into())),
            Ok(Some(_) | None) => return Err(GatherError::Closed),
            Err(_) => {
                lock(&self.inner().gathers).by_seq.remove(&seq);
                return Err(GatherError::Timeout(timeout));
            }
        };
        let recipients: Vec<ClientId> = started
            .recipients
            .iter()
            .filter_map(|id| ClientId::new(id).ok())
            .collect();
        Ok(Gather {
            message_id: started.message_id,
            seen: HashSet::with_capacity(recipients.len()),
            answered: Vec::with_capacity(recipients.len()),
            recipients,
            events,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            outcome: None,
        })
    }
}

/// Maps the broker's refusal of a gather to its error.
fn gather_refusal(topic: &Topic, r: Refused) -> GatherError {
    match r.code {
        ErrorCode::NoResponders => GatherError::NoResponders {
            topic: topic.as_str().to_owned(),
        },
        ErrorCode::QuotaExceeded if r.detail("quota") == "max_gather_recipients" => {
            GatherError::TooManyRecipients {
                limit: r.detail_usize("limit"),
            }
        }
        ErrorCode::QuotaExceeded if r.detail("quota") == "max_concurrent_gathers" => {
            GatherError::TooManyGathers {
                limit: r.detail_usize("limit"),
            }
        }
        _ => GatherError::Publish(publish_refusal(r)),
    }
}

impl Gather {
    /// The request's message id.
    pub fn message_id(&self) -> u64 {
        self.message_id
    }

    /// Who the broker delivered the request to, each client once.
    pub fn recipients(&self) -> &[ClientId] {
        &self.recipients
    }

    /// The recipients that answered so far, in the order they did.
    pub fn answered(&self) -> &[ClientId] {
        &self.answered
    }

    /// How the gather ended, once the stream has ended; `None` before.
    pub fn outcome(&self) -> Option<&GatherOutcome> {
        self.outcome.as_ref()
    }

    /// The next reply, or `None` once the gather is over (then
    /// [`outcome`](Self::outcome) is set).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a reply is taken only when it is returned.
    pub async fn next(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Waits for the end and returns every reply with the outcome.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: it consumes the gather.
    pub async fn collect(self) -> Gathered {
        self.fold(Vec::new(), |mut replies, m| {
            replies.push(m);
            replies
        })
        .await
        .into()
    }

    /// Returns every recipient's reply, or [`GatherIncomplete`] with what
    /// came if anyone did not answer.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: it consumes the gather.
    pub async fn all(self) -> Result<Vec<Message>, GatherIncomplete> {
        let needed = self.recipients.len();
        let gathered = self.collect().await;
        if gathered.outcome.is_complete() {
            Ok(gathered.replies)
        } else {
            Err(GatherIncomplete {
                needed,
                got: gathered.replies.len(),
                replies: gathered.replies,
                outcome: gathered.outcome,
            })
        }
    }

    /// Returns as soon as `n` recipients answered, with their replies (the
    /// rest are discarded as they come); [`GatherIncomplete`] if the gather
    /// ends first. `n` of 0 returns at once.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: it consumes the gather.
    pub async fn first(mut self, n: usize) -> Result<Vec<Message>, GatherIncomplete> {
        let mut replies = Vec::with_capacity(n.min(self.recipients.len()));
        while replies.len() < n {
            match self.next().await {
                Some(m) => replies.push(m),
                None => {
                    return Err(GatherIncomplete {
                        needed: n,
                        got: replies.len(),
                        replies,
                        outcome: self.into_outcome(),
                    });
                }
            }
        }
        Ok(replies)
    }

    /// Returns as soon as a majority of the recipients (more than half)
    /// answered; see [`first`](Self::first).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: it consumes the gather.
    pub async fn quorum(self) -> Result<Vec<Message>, GatherIncomplete> {
        let n = self.recipients.len() / 2 + 1;
        self.first(n).await
    }

    /// Folds every reply into `init` as it comes; returns the result and
    /// the outcome once the gather is over.
    ///
    /// ```no_run
    /// # async fn demo(gather: eventbus::client::Gather) {
    /// let (bytes, outcome) = gather.fold(0, |sum, m| sum + m.payload().len()).await;
    /// println!("{bytes} bytes from {} collectors", outcome.answered.len());
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: it consumes the gather.
    pub async fn fold<T>(
        mut self,
        init: T,
        mut f: impl FnMut(T, Message) -> T,
    ) -> (T, GatherOutcome) {
        let mut acc = init;
        while let Some(m) = self.next().await {
            acc = f(acc, m);
        }
        (acc, self.into_outcome())
    }

    /// The outcome of a gather whose stream has ended.
    fn into_outcome(self) -> GatherOutcome {
        self.outcome
            .expect("a gather's stream ends only once its outcome is set")
    }

    /// Ends the gather here: everyone still awaited is missing for `reason`.
    fn end_locally(&mut self, reason: MissReason) {
        let missing = self
            .recipients
            .iter()
            .filter(|r| !self.seen.contains(*r))
            .map(|r| Missed {
                client_id: r.clone(),
                reason,
            })
            .collect();
        self.finish(missing);
    }

    fn finish(&mut self, missing: Vec<Missed>) {
        self.events.close();
        self.outcome = Some(GatherOutcome {
            recipients: self.recipients.clone(),
            answered: self.answered.clone(),
            missing,
        });
    }

    /// The broker's end of the gather.
    fn end(&mut self, done: &proto::GatherDone) {
        let mut missing: Vec<Missed> = done
            .missing
            .iter()
            .filter_map(|m| {
                let client_id = ClientId::new(&m.client_id).ok()?;
                (!self.seen.contains(&client_id)).then(|| Missed {
                    client_id,
                    reason: MissReason::from_wire(m.reason),
                })
            })
            .collect();
        // A recipient the broker counts as answered whose reply this side
        // never saw (it cannot happen on one ordered connection, but the
        // outcome must add up): missing, as far as this caller knows.
        for r in &self.recipients {
            if !self.seen.contains(r) && !missing.iter().any(|m| m.client_id == *r) {
                missing.push(Missed {
                    client_id: r.clone(),
                    reason: MissReason::TimedOut,
                });
            }
        }
        self.finish(missing);
    }
}

impl From<(Vec<Message>, GatherOutcome)> for Gathered {
    fn from((replies, outcome): (Vec<Message>, GatherOutcome)) -> Self {
        Self { replies, outcome }
    }
}

impl Stream for Gather {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = &mut *self;
        loop {
            if this.outcome.is_some() {
                return Poll::Ready(None);
            }
            match this.events.poll_recv(cx) {
                Poll::Ready(Some(GatherEvent::Reply(message))) => {
                    let Ok(source) = ClientId::new(message.source()) else {
                        continue;
                    };
                    // One answer per recipient: a second (a recipient that
                    // reconnected and answered again) is dropped.
                    if !this.recipients.contains(&source) || !this.seen.insert(source.clone()) {
                        continue;
                    }
                    this.answered.push(source);
                    return Poll::Ready(Some(message));
                }
                Poll::Ready(Some(GatherEvent::Done(done))) => {
                    this.end(&done);
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(GatherEvent::Started(_) | GatherEvent::Refused(_))) => continue,
                Poll::Ready(None) => {
                    this.end_locally(MissReason::RequesterDisconnected);
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                this.end_locally(MissReason::TimedOut);
                return Poll::Ready(None);
            }
            return Poll::Pending;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_from(source: &str, payload: &str) -> GatherEvent {
        GatherEvent::Reply(Message::new(Box::new(proto::Envelope {
            source: source.into(),
            payload: bytes::Bytes::copy_from_slice(payload.as_bytes()),
            ..Default::default()
        })))
    }

    fn gather_of(recipients: &[&str]) -> (mpsc::UnboundedSender<GatherEvent>, Gather) {
        let (tx, events) = mpsc::unbounded_channel();
        let recipients: Vec<ClientId> = recipients
            .iter()
            .map(|r| ClientId::new(r).unwrap())
            .collect();
        let gather = Gather {
            message_id: 7,
            seen: HashSet::new(),
            answered: Vec::new(),
            recipients,
            events,
            deadline: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
            outcome: None,
        };
        (tx, gather)
    }

    #[tokio::test]
    async fn a_second_reply_from_one_recipient_and_a_reply_from_a_stranger_are_dropped() {
        let (tx, mut gather) = gather_of(&["a", "b"]);
        tx.send(reply_from("a", "1")).unwrap();
        tx.send(reply_from("a", "again")).unwrap();
        tx.send(reply_from("mallory", "x")).unwrap();
        tx.send(GatherEvent::Done(proto::GatherDone {
            seq: 1,
            answered: 2,
            missing: vec![],
        }))
        .unwrap();
        let first = gather.next().await.unwrap();
        assert_eq!((first.source(), &first.payload()[..]), ("a", &b"1"[..]));
        assert!(gather.next().await.is_none());
        assert!(gather.next().await.is_none(), "the stream stays ended");
        let outcome = gather.outcome().unwrap();
        assert_eq!(outcome.answered, vec![ClientId::new("a").unwrap()]);
        // The broker counted `b` as answered, but its reply never came here.
        assert_eq!(
            outcome.missing,
            vec![Missed {
                client_id: ClientId::new("b").unwrap(),
                reason: MissReason::TimedOut,
            }]
        );
    }

    #[tokio::test]
    async fn the_brokers_missing_list_names_the_reasons() {
        let (tx, gather) = gather_of(&["a", "b", "c"]);
        tx.send(reply_from("c", "ok")).unwrap();
        tx.send(GatherEvent::Done(proto::GatherDone {
            seq: 1,
            answered: 1,
            missing: vec![
                proto::GatherMissing {
                    client_id: "a".into(),
                    reason: proto::GatherMiss::Disconnected as i32,
                },
                proto::GatherMissing {
                    client_id: "b".into(),
                    reason: proto::GatherMiss::Refused as i32,
                },
            ],
        }))
        .unwrap();
        let all = gather.collect().await;
        assert_eq!(all.replies.len(), 1);
        let reasons: Vec<_> = all.outcome.missing.iter().map(|m| m.reason).collect();
        assert_eq!(reasons, vec![MissReason::Disconnected, MissReason::Refused]);
        assert!(!all.outcome.is_complete());
    }

    #[tokio::test(start_paused = true)]
    async fn a_broker_that_never_ends_the_gather_is_timed_out_here() {
        let (tx, mut gather) = gather_of(&["a"]);
        gather.deadline = Box::pin(tokio::time::sleep(Duration::from_millis(50)));
        assert!(gather.next().await.is_none());
        assert_eq!(
            gather.outcome().unwrap().missing[0].reason,
            MissReason::TimedOut
        );
        drop(tx);
    }

    #[test]
    fn events_of_a_dropped_gather_are_discarded_and_its_entry_forgotten() {
        let mut sinks = GatherSinks::default();
        let (tx, rx) = mpsc::unbounded_channel();
        sinks.by_seq.insert(5, tx);
        drop(rx);
        assert!(sinks.deliver(5, reply_from("a", "")).is_ok());
        assert!(sinks.by_seq.is_empty());
        // Not a gather's seq: handed back for the ordinary calls.
        assert!(matches!(
            sinks.deliver(6, reply_from("a", "")),
            Err(GatherEvent::Reply(_))
        ));
    }
}
