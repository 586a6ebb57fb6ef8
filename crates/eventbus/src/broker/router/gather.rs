//! Scatter-gather: one request delivered to every recipient its scope names
//! (plain subscribers, the members of queue groups), each recipient's reply
//! forwarded to the requester, and an end the moment the last recipient
//! answered, left, was refused, or the timeout passed.
//!
//! The requester is told at once who the recipients are (`GatherStarted`),
//! so it knows how many replies to expect; `GatherDone` names whoever did
//! not answer, and why. A recipient is a client: it gets the request once,
//! however many of its subscriptions match, and its first reply counts (a
//! second, from the same client id on any connection, is refused).
//!
//! **Invariants:** a gather is in `by_token` until it is done, and no frame
//! about it follows its `GatherDone`; its `pending` counts the recipients
//! in `Pending`; a connection's `gathers` counts the gathers it started.

use std::time::Instant;

use super::Map;
use super::{Router, Target};
use crate::broker::command::{Gather, GatherScope};
use crate::broker::ids::{ConnId, CorrelationId, MessageId, Seq};
use crate::broker::refusal::PublishRefusal;
use crate::codec::raw::{ReplyStamp, Stamped, StampedDeliver, StampedReply};
use crate::framed::{Outgoing, Pushed};
use crate::names::ClientId;
use crate::proto::{self, Frame, GatherMiss, frame::Kind};

/// One recipient of a gather.
#[derive(Debug, Clone)]
pub(super) struct Recipient {
    pub client: ClientId,
    pub conn: ConnId,
    pub state: RecipientState,
}

/// Where a recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecipientState {
    Pending,
    Answered,
    Missing(GatherMiss),
}

/// A gather in progress.
#[derive(Debug)]
pub(super) struct GatherState {
    pub requester: ConnId,
    pub seq: Seq,
    pub message: MessageId,
    pub deadline: Instant,
    pub recipients: Vec<Recipient>,
    /// Recipients still `Pending`.
    pub pending: usize,
}

impl GatherState {
    fn recipient_mut(&mut self, client: &ClientId) -> Option<&mut Recipient> {
        self.recipients.iter_mut().find(|r| r.client == *client)
    }

    /// Marks a pending recipient; returns whether it was pending.
    fn settle(&mut self, client: &ClientId, state: RecipientState) -> bool {
        let Some(r) = self.recipient_mut(client) else {
            return false;
        };
        if r.state != RecipientState::Pending {
            return false;
        }
        r.state = state;
        self.pending -= 1;
        true
    }
}

/// Every gather in progress.
#[derive(Debug, Default)]
pub(super) struct Gathers {
    by_token: Map<CorrelationId, GatherState>,
}

impl Gathers {
    pub fn get_mut(&mut self, token: CorrelationId) -> Option<&mut GatherState> {
        self.by_token.get_mut(&token)
    }

    pub fn contains(&self, token: CorrelationId) -> bool {
        self.by_token.contains_key(&token)
    }

    #[cfg(any(test, fuzzing))]
    pub fn iter(&self) -> impl Iterator<Item = (&CorrelationId, &GatherState)> {
        self.by_token.iter()
    }

    /// The earliest deadline of a gather in progress.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_token.values().map(|g| g.deadline).min()
    }
}

/// Why a reply to a gather was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GatherReplyError {
    /// The replier is not one of its recipients.
    NotARecipient,
    /// It answered already, or is no longer awaited.
    NotAwaited,
    /// The reply would not fit the requester's frame limit.
    TooLarge { size: usize, limit: usize },
}

impl Router {
    /// Starts a gather: finds its recipients, delivers the request to each,
    /// tells the requester who they are.
    pub(super) fn gather(&mut self, conn: ConnId, g: Gather) -> Result<(), PublishRefusal> {
        if self.draining {
            return Err(PublishRefusal::ShuttingDown);
        }
        let Some(c) = self.conns.get(conn) else {
            return Ok(());
        };
        let principal = c.principal.clone();
        if !principal.perms.publish.allows_topic(&g.topic) {
            return Err(PublishRefusal::NotAllowed {
                topic: g.topic,
                identity: principal.name.clone(),
            });
        }
        if c.gathers >= principal.quotas.max_concurrent_gathers {
            return Err(PublishRefusal::Quota {
                quota: "max_concurrent_gathers",
                limit: principal.quotas.max_concurrent_gathers,
            });
        }
        let requester_id = c.client_id.clone();
        let max = self.config.max_gather_recipients;
        let Some(targets) = self.gather_targets(&g, max) else {
            return Err(PublishRefusal::Quota {
                quota: "max_gather_recipients",
                limit: max,
            });
        };
        if targets.is_empty() {
            return Err(PublishRefusal::NoResponders { topic: g.topic });
        }
        let token = self.tokens.next();
        let message = Stamped {
            envelope: g.envelope,
            topic: g.topic.clone(),
            id: self.ids.message().get(),
            source: requester_id.clone(),
            timestamp_us: self.clock.wall_us,
            attempt: 1,
            reply: ReplyStamp::Request {
                correlation: token.get(),
                to: requester_id,
            },
        };
        let mut state = GatherState {
            requester: conn,
            seq: g.seq,
            message: MessageId::new(message.id),
            deadline: self.clock.now + g.timeout,
            recipients: Vec::with_capacity(targets.len()),
            pending: 0,
        };
        for (to, sid, client) in targets {
            let deliver = StampedDeliver::new(sid, 0, &message);
            let delivered = match self.conns.push_droppable(to, Outgoing::Deliver(deliver)) {
                Ok(Some(Pushed::Queued | Pushed::EvictedOldest)) => true,
                Ok(Some(Pushed::DroppedIncoming) | None) | Err(_) => false,
            };
            if delivered {
                self.totals.delivered += 1;
                if let Some(c) = self.conns.get_mut(to) {
                    c.counters.delivered += 1;
                }
            }
            state.pending += usize::from(delivered);
            state.recipients.push(Recipient {
                client,
                conn: to,
                state: if delivered {
                    RecipientState::Pending
                } else {
                    RecipientState::Missing(GatherMiss::Refused)
                },
            });
        }
        self.count_published(conn, &g.topic, state.pending as u64);
        let started = proto::GatherStarted {
            seq: g.seq.get(),
            message_id: state.message.get(),
            recipients: state
                .recipients
                .iter()
                .map(|r| r.client.to_string())
                .collect(),
        };
        self.conns.send(
            conn,
            Frame {
                kind: Some(Kind::GatherStarted(started)),
            },
        );
        if let Some(c) = self.conns.get_mut(conn) {
            c.gathers += 1;
        }
        self.schedule.due_by(state.deadline);
        self.gathers.by_token.insert(token, state);
        self.finish_gather_if_done(token);
        Ok(())
    }

    /// The recipients of `g`, one per client: `(connection, subscription
    /// id, client id)`; `None` as soon as there are more than `max` (so a
    /// gather over a huge fleet costs no more than `max` recipients' work
    /// to refuse).
    fn gather_targets(&mut self, g: &Gather, max: usize) -> Option<Vec<(ConnId, u64, ClientId)>> {
        let mut targets = std::mem::take(&mut self.scratch);
        self.index.extend_matches(&g.topic, &mut targets);
        let mut found: Vec<(ConnId, u64, ClientId)> = Vec::new();
        let mut seen: Map<ConnId, ()> = Map::default();
        let mut add = |found: &mut Vec<(ConnId, u64, ClientId)>, conn: ConnId, sid: u64| {
            if seen.insert(conn, ()).is_some() {
                return true;
            }
            if let Some(c) = self.conns.get(conn) {
                found.push((conn, sid, c.client_id.clone()));
            }
            found.len() <= max
        };
        let mut within = true;
        'targets: for target in &targets {
            match (*target, &g.scope) {
                (Target::Plain { conn, sid }, GatherScope::All | GatherScope::Plain)
                    if !add(&mut found, conn, sid.get()) =>
                {
                    within = false;
                    break 'targets;
                }
                (Target::Group(gid), GatherScope::All | GatherScope::Group(_)) => {
                    let Some(group) = self.queues.get(gid) else {
                        continue;
                    };
                    if let GatherScope::Group(name) = &g.scope
                        && group.name != *name
                    {
                        continue;
                    }
                    for m in group.members() {
                        if !add(&mut found, m.conn, m.sid.get()) {
                            within = false;
                            break 'targets;
                        }
                    }
                }
                _ => {}
            }
        }
        targets.clear();
        self.scratch = targets;
        within.then_some(found)
    }

    /// A recipient's reply to gather `token`: forwarded to the requester.
    pub(super) fn gather_reply(
        &mut self,
        conn: ConnId,
        token: CorrelationId,
        envelope: bytes::Bytes,
    ) -> Result<(), GatherReplyError> {
        let Some(client) = self.conns.get(conn).map(|c| c.client_id.clone()) else {
            return Ok(());
        };
        let Some(gather) = self.gathers.get_mut(token) else {
            return Err(GatherReplyError::NotAwaited);
        };
        let Some(recipient) = gather.recipient_mut(&client) else {
            return Err(GatherReplyError::NotARecipient);
        };
        if recipient.state != RecipientState::Pending {
            return Err(GatherReplyError::NotAwaited);
        }
        let (requester, seq) = (gather.requester, gather.seq);
        let reply = StampedReply {
            seq: seq.get(),
            envelope,
            source: client.clone(),
            timestamp_us: self.clock.wall_us,
        };
        let limit = self
            .conns
            .get(requester)
            .map_or(usize::MAX, |c| c.max_frame);
        let size = reply.frame_len();
        if size > limit {
            return Err(GatherReplyError::TooLarge { size, limit });
        }
        if let Some(gather) = self.gathers.get_mut(token) {
            gather.settle(&client, RecipientState::Answered);
        }
        self.conns.send(requester, Outgoing::Reply(reply));
        self.finish_gather_if_done(token);
        Ok(())
    }

    /// A connection left: it is missing from the gathers it was a
    /// recipient of, and the gathers it started are dropped.
    pub(super) fn gathers_on_disconnect(&mut self, conn: ConnId) {
        let tokens: Vec<CorrelationId> = self.gathers.by_token.keys().copied().collect();
        for token in tokens {
            let Some(g) = self.gathers.get_mut(token) else {
                continue;
            };
            if g.requester == conn {
                self.gathers.by_token.remove(&token);
                continue;
            }
            let gone: Vec<ClientId> = g
                .recipients
                .iter()
                .filter(|r| r.conn == conn && r.state == RecipientState::Pending)
                .map(|r| r.client.clone())
                .collect();
            for client in &gone {
                g.settle(client, RecipientState::Missing(GatherMiss::Disconnected));
            }
            self.finish_gather_if_done(token);
        }
    }

    /// Ends the gathers whose deadline has passed: whoever has not answered
    /// timed out.
    pub(super) fn expire_gathers(&mut self) {
        let now = self.clock.now;
        let due: Vec<CorrelationId> = self
            .gathers
            .by_token
            .iter()
            .filter(|(_, g)| g.deadline <= now)
            .map(|(&t, _)| t)
            .collect();
        for token in due {
            if let Some(g) = self.gathers.get_mut(token) {
                for r in &mut g.recipients {
                    if r.state == RecipientState::Pending {
                        r.state = RecipientState::Missing(GatherMiss::TimedOut);
                    }
                }
                g.pending = 0;
            }
            self.finish_gather_if_done(token);
        }
    }

    /// Tells the requester `GatherDone` once nobody is pending, and forgets
    /// the gather.
    fn finish_gather_if_done(&mut self, token: CorrelationId) {
        if self.gathers.get_mut(token).is_none_or(|g| g.pending > 0) {
            return;
        }
        let g = self.gathers.by_token.remove(&token).expect("checked");
        if let Some(c) = self.conns.get_mut(g.requester) {
            c.gathers = c.gathers.saturating_sub(1);
        }
        let answered = g
            .recipients
            .iter()
            .filter(|r| r.state == RecipientState::Answered)
            .count() as u32;
        let missing = g
            .recipients
            .iter()
            .filter_map(|r| match r.state {
                RecipientState::Missing(reason) => Some(proto::GatherMissing {
                    client_id: r.client.to_string(),
                    reason: reason as i32,
                }),
                _ => None,
            })
            .collect();
        self.conns.send(
            g.requester,
            Frame {
                kind: Some(Kind::GatherDone(proto::GatherDone {
                    seq: g.seq.get(),
                    answered,
                    missing,
                })),
            },
        );
    }
}
