//! Publishing: a validated publish is checked against the broker's state,
//! stamped, routed (to plain subscribers, queue groups or one client),
//! counted, and confirmed — one step per function below.

use std::time::Duration;

use super::in_flight::InFlight;
use super::requests::PendingRequest;
use super::{Applied, Parked, Router, Target, ok};
use crate::broker::command::{Mode, Publish};
use crate::broker::ids::{ConnId, DeliveryId, GroupId, MessageId, SubscriptionId};
use crate::broker::queue::Enqueued;
use crate::broker::refusal::PublishRefusal;
use crate::framed::{Outgoing, OverflowPolicy, PushError, Pushed};
use crate::names::ClientId;
use crate::proto::{self, Frame, frame::Kind};
use crate::topic::Topic;

use super::counters::TopicCount;

impl Router {
    /// Publishes, telling the publisher if it is refused; a publish that must
    /// wait for room in a blocking queue is handed back to park.
    pub(super) fn publish_or_refuse(&mut self, conn: ConnId, p: Publish) -> Applied {
        let seq = p.seq;
        match self.publish(conn, p) {
            Ok(None) => Applied::Done,
            Ok(Some(parked)) => Applied::Parked(parked),
            Err(refusal) => {
                self.refuse(conn, seq, refusal.into());
                Applied::Done
            }
        }
    }

    /// A parked publish, after waiting `waited`: published if there is room
    /// now, refused with `BlockTimeout` once its timeout has passed, or
    /// parked again.
    pub fn retry_parked(&mut self, conn: ConnId, parked: Parked, waited: Duration) -> Applied {
        if waited < parked.timeout {
            return self.apply(
                conn,
                Ok(crate::broker::command::Command::Publish(parked.publish)),
            );
        }
        let p = parked.publish;
        let (group, max_len) = match self
            .blocking_group(&p.topic)
            .and_then(|(gid, _)| self.queues.get_mut(gid))
        {
            Some(g) => {
                g.counters.rejected += 1;
                (g.name.to_string(), g.policy().max_len)
            }
            None => (String::new(), 0),
        };
        let refusal = PublishRefusal::BlockTimeout {
            topic: p.topic,
            group,
            max_len,
            waited,
        };
        self.refuse(conn, p.seq, refusal.into());
        Applied::Done
    }

    /// The steps of a publish; `Ok(Some)` when it must wait for room.
    fn publish(&mut self, conn: ConnId, p: Publish) -> Result<Option<Parked>, PublishRefusal> {
        if self.draining {
            return Err(PublishRefusal::ShuttingDown);
        }
        if p.target.is_none()
            && self.queues.any_blocking()
            && let Some((_, timeout)) = self.blocking_group(&p.topic)
        {
            return Ok(Some(Parked {
                publish: p,
                timeout,
                space: self.queues.space(),
            }));
        }
        let max_requests = self.config.max_pending_requests;
        if p.mode.is_request() && self.requests.len() >= max_requests {
            return Err(PublishRefusal::TooManyRequests { max: max_requests });
        }
        let Publish {
            seq,
            mode,
            target,
            topic,
            message,
        } = p;
        let message = self.stamp(conn, message, mode);
        let id = MessageId::new(message.id);
        let delivered = match &target {
            Some(client) => self.direct(client, &topic, message).map(|()| 0),
            None => self.route(&topic, message),
        };
        let delivered = match delivered {
            Err(refusal) => return Err(refusal),
            Ok(0) if target.is_none() && mode.is_request() => {
                return Err(PublishRefusal::NoResponders { topic });
            }
            Ok(n) => n,
        };
        self.count_published(conn, &topic, delivered);
        if let Mode::Request { timeout, .. } = mode {
            let deadline = self.clock.now + timeout;
            self.requests.insert(
                id,
                PendingRequest {
                    conn,
                    seq,
                    deadline,
                },
            );
            self.schedule.due_by(deadline);
        }
        if mode.is_confirmed() {
            self.conns.send(conn, ok(seq, id.get()));
        }
        Ok(None)
    }

    /// Stamps what the broker vouches for: a new id, the publisher's client
    /// id, the time, the first attempt; a request's correlation id and
    /// reply-to.
    fn stamp(
        &mut self,
        conn: ConnId,
        mut message: Box<proto::Envelope>,
        mode: Mode,
    ) -> Box<proto::Envelope> {
        message.id = self.ids.message().get();
        message.source = self
            .conns
            .get(conn)
            .map(|c| c.client_id.as_str().to_owned())
            .unwrap_or_default();
        message.timestamp_us = self.clock.wall_us;
        message.attempt = 1;
        if mode.is_request() {
            message.correlation_id = message.id;
            message.reply_to = message.source.clone();
        }
        message
    }

    /// Counts an accepted publish on `topic` that made `delivered` deliveries.
    pub(super) fn count_published(&mut self, conn: ConnId, topic: &Topic, delivered: u64) {
        if let Some(c) = self.conns.get_mut(conn) {
            c.counters.published += 1;
        }
        self.totals.published += 1;
        self.topics.add(
            topic,
            TopicCount {
                published: 1,
                delivered,
            },
        );
    }

    /// A full queue group with the `block` policy that `topic` would go to, with
    /// its block timeout.
    pub(super) fn blocking_group(&mut self, topic: &Topic) -> Option<(GroupId, Duration)> {
        let mut targets = std::mem::take(&mut self.scratch);
        self.index.extend_matches(topic, &mut targets);
        let found = targets.drain(..).find_map(|t| match t {
            Target::Group(gid) => self.queues.get(gid).and_then(|g| {
                let p = g.policy();
                (p.overflow == OverflowPolicy::Block && g.is_full())
                    .then_some((gid, p.block_timeout))
            }),
            Target::Plain { .. } => None,
        });
        targets.clear();
        self.scratch = targets;
        found
    }

    /// Delivers `msg` to every matching target; returns how many took it.
    ///
    /// A message one of its queue groups would refuse (full, `reject` or a
    /// timed-out `block`) goes nowhere and is refused as a whole: a publisher
    /// told `QueueFull` knows no copy went out, and one told `Ok` knows every
    /// matching group holds its task.
    pub(super) fn route(
        &mut self,
        topic: &Topic,
        msg: Box<proto::Envelope>,
    ) -> Result<u64, PublishRefusal> {
        let mut targets = std::mem::take(&mut self.scratch);
        self.index.extend_matches(topic, &mut targets);
        let refusing = targets.iter().find_map(|t| match *t {
            Target::Group(gid) => self.queues.get(gid).and_then(|g| {
                let refuses = matches!(
                    g.policy().overflow,
                    OverflowPolicy::Reject | OverflowPolicy::Block
                );
                (refuses && g.is_full()).then_some(gid)
            }),
            Target::Plain { .. } => None,
        });
        if let Some(gid) = refusing {
            targets.clear();
            self.scratch = targets;
            // `enqueue` decides as checked above: this counts and returns the refusal.
            return self.enqueue(gid, topic, msg).map(|()| 1);
        }
        let mut delivered = 0;
        let mut refusal = None;
        let mut msg = Some(msg);
        let last = targets.len().saturating_sub(1);
        for (i, target) in targets.drain(..).enumerate() {
            let m = if i == last {
                msg.take().expect("taken once, at the last target")
            } else {
                msg.clone().expect("present until the last target")
            };
            match target {
                Target::Plain { conn, sid } => {
                    match self.deliver_plain(conn, topic, deliver(sid, m)) {
                        Ok(true) => delivered += 1,
                        Ok(false) => {}
                        Err(r) => refusal = Some(r),
                    }
                }
                Target::Group(gid) => match self.enqueue(gid, topic, m) {
                    Ok(()) => delivered += 1,
                    Err(r) => refusal = Some(r),
                },
            }
        }
        self.scratch = targets;
        match refusal {
            Some(r) if delivered == 0 => Err(r),
            _ => Ok(delivered),
        }
    }

    /// Queues a fan-out delivery (`item`: the `Deliver` frame, maybe already
    /// encoded) for `conn`, under its overflow policy; returns whether it was
    /// queued.
    pub(super) fn deliver_plain(
        &mut self,
        conn: ConnId,
        topic: &Topic,
        item: Outgoing,
    ) -> Result<bool, PublishRefusal> {
        let queued = match self.conns.push_droppable(conn, item) {
            Ok(None) | Err(PushError::Closed | PushError::TooSlow { .. }) => false,
            Ok(Some(Pushed::Queued)) => true,
            Ok(Some(Pushed::EvictedOldest)) => {
                self.note_slow_consumer(conn);
                true
            }
            Ok(Some(Pushed::DroppedIncoming)) => {
                self.note_slow_consumer(conn);
                false
            }
            Err(PushError::Full { max_len }) => {
                self.note_slow_consumer(conn);
                let client = self
                    .conns
                    .get(conn)
                    .map(|c| c.client_id.to_string())
                    .unwrap_or_default();
                return Err(PublishRefusal::SubscriberFull {
                    topic: topic.clone(),
                    client,
                    max_len,
                });
            }
        };
        if queued {
            if let Some(c) = self.conns.get_mut(conn) {
                c.counters.delivered += 1;
            }
            self.totals.delivered += 1;
        }
        Ok(queued)
    }

    /// Offers `message` to group `gid` under its overflow policy, and hands
    /// out what members can take.
    pub(super) fn enqueue(
        &mut self,
        gid: GroupId,
        topic: &Topic,
        message: Box<proto::Envelope>,
    ) -> Result<(), PublishRefusal> {
        let group = self.queues.get_mut(gid).expect("indexed groups exist");
        match group.enqueue(message) {
            Enqueued::Queued | Enqueued::EvictedOldest => {}
            Enqueued::DroppedIncoming => {
                self.totals.dropped += 1;
                return Ok(());
            }
            Enqueued::Rejected => {
                return Err(PublishRefusal::QueueFull {
                    topic: topic.clone(),
                    filter: group.filter.to_string(),
                    group: group.name.to_string(),
                    max_len: group.policy().max_len,
                });
            }
        }
        self.pump(gid);
        Ok(())
    }

    /// Hands waiting messages of a group to members with credit.
    pub(super) fn pump(&mut self, gid: GroupId) {
        let mut dispatched = false;
        while let Some(group) = self.queues.get_mut(gid) {
            let Some((conn, sid, message)) = group.next_dispatch() else {
                break;
            };
            dispatched = true;
            let delivery = self.ids.delivery();
            self.send_delivery(conn, sid, delivery, Some(gid), message);
        }
        if dispatched {
            self.queues.made_room();
        }
    }

    /// Hands a delivery that must be settled to `conn` and records it in
    /// flight (with its group's ack deadline).
    pub(super) fn send_delivery(
        &mut self,
        conn: ConnId,
        sid: SubscriptionId,
        delivery: DeliveryId,
        group: Option<GroupId>,
        message: Box<proto::Envelope>,
    ) {
        self.totals.delivered += 1;
        let frame = Frame {
            kind: Some(Kind::Deliver(proto::Deliver {
                sid: sid.get(),
                delivery_id: delivery.get(),
                message: Some(message.clone()),
            })),
        };
        if let Some(c) = self.conns.get_mut(conn) {
            c.counters.delivered += 1;
            c.in_flight += 1;
            if group.is_none() {
                c.direct_in_flight += 1;
            }
        }
        let deadline = group
            .and_then(|gid| self.queues.get(gid))
            .and_then(|g| g.policy().ack_timeout)
            .map(|t| self.clock.now + t);
        if let Some(d) = deadline {
            self.schedule.due_by(d);
        }
        self.in_flight.insert(
            delivery,
            InFlight {
                conn,
                sid,
                group,
                message,
                deadline,
            },
        );
        self.conns.send(conn, frame);
    }

    /// A direct send to `target`'s inbox, within its bound of unsettled
    /// direct messages.
    fn direct(
        &mut self,
        target: &ClientId,
        topic: &Topic,
        msg: Box<proto::Envelope>,
    ) -> Result<(), PublishRefusal> {
        let Some(conn) = self.conns.by_client(target) else {
            return Err(PublishRefusal::NoSuchClient {
                client: target.to_string(),
            });
        };
        let max = self.config.max_direct_in_flight;
        if self
            .conns
            .get(conn)
            .is_some_and(|c| c.direct_in_flight >= max)
        {
            return Err(PublishRefusal::DirectInboxFull {
                client: target.to_string(),
                topic: topic.to_string(),
                max,
            });
        }
        let delivery = self.ids.delivery();
        self.send_delivery(conn, SubscriptionId::DIRECT, delivery, None, msg);
        Ok(())
    }

    /// Returns the credit a settled or withdrawn delivery held on its connection.
    pub(super) fn release(&mut self, f: &InFlight) {
        if let Some(c) = self.conns.get_mut(f.conn) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if f.group.is_none() {
                c.direct_in_flight = c.direct_in_flight.saturating_sub(1);
            }
        }
    }
}

/// The `Deliver` frame of a fan-out delivery on plain subscription `sid`.
fn deliver(sid: SubscriptionId, message: Box<proto::Envelope>) -> Outgoing {
    Outgoing::Frame(Frame {
        kind: Some(Kind::Deliver(proto::Deliver {
            sid: sid.get(),
            delivery_id: 0,
            message: Some(message),
        })),
    })
}
