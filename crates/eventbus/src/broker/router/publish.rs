//! Publishing: a validated publish is checked against the broker's state,
//! stamped, routed (to plain subscribers, queue groups or one client),
//! counted, and confirmed — one step per function below.

use std::time::Duration;

use super::in_flight::InFlight;
use super::requests::{PendingRequest, Responders};
use super::{Applied, Parked, Router, Target, accepted};
use crate::broker::command::{Mode, Publish, STAMP_ALLOWANCE};
use crate::broker::ids::{ConnId, CorrelationId, DeliveryId, GroupId, MessageId, SubscriptionId};
use crate::broker::queue::{Enqueued, Queued};
use crate::broker::refusal::PublishRefusal;
use crate::codec::raw::{ReplyStamp, Stamped, StampedDeliver};
use crate::framed::{Outgoing, OverflowPolicy, PushError, Pushed};
use crate::names::ClientId;
use crate::topic::Topic;

use super::counters::TopicCount;
use crate::broker::journal::{Counter, Lsn, Outcome};

/// Where a delivery that must be settled comes from.
#[derive(Debug, Clone, Copy)]
pub(super) enum DeliveredFrom {
    /// A queue group; `record` is the `Delivered` record of a durable one,
    /// which the delivery waits for.
    Group { gid: GroupId, record: Option<Lsn> },
    /// A direct send by `sender`.
    Direct { sender: ConnId },
}

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
        let size = p.wire_len + STAMP_ALLOWANCE;
        let (group, max_len) = match self
            .blocking_group(&p.topic, size)
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
        self.durable_begin();
        if p.topic
            .as_str()
            .starts_with(crate::topic::BRIDGE_STATUS_PREFIX)
        {
            self.bridge_status(conn, &p);
        }
        if p.mode == Mode::FireAndForget && p.target.is_none() && self.fan_out(conn, &p) {
            return Ok(None);
        }
        if p.target.is_none()
            && self.queues.any_blocking()
            && let Some((_, timeout)) = self.blocking_group(&p.topic, p.wire_len + STAMP_ALLOWANCE)
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
        self.check_publisher(conn, &p)?;
        let (seq, mode, target) = (p.seq, p.mode, p.target.clone());
        let (message, token) = self.stamp(conn, p);
        let id = MessageId::new(message.id);
        let topic = message.topic.clone();
        let queued = Queued::new(message);
        self.recipients = Responders::None;
        let delivered = match &target {
            Some(client) => self.direct(conn, client, &topic, queued).map(|()| 0),
            None => self.route(&topic, queued, Some(conn)),
        };
        let delivered = match delivered {
            Err(refusal) => return Err(refusal),
            Ok(0) if target.is_none() && mode.is_request() => {
                return Err(PublishRefusal::NoResponders { topic });
            }
            Ok(n) => n,
        };
        self.count_published(conn, &topic, delivered);
        if let (Mode::Request { timeout, .. }, Some(token)) = (mode, token) {
            if let Some(c) = self.conns.get_mut(conn) {
                c.pending_requests += 1;
            }
            let deadline = self.clock.now + timeout;
            self.requests.insert(
                token,
                PendingRequest {
                    conn,
                    seq,
                    deadline,
                    message: id,
                    responders: std::mem::take(&mut self.recipients),
                },
            );
            self.schedule.due_by(deadline);
        }
        if mode.is_confirmed() {
            // A request in a durable group has its reply kept by id: the
            // requester may fetch it after losing its connection.
            let kept = mode.is_request() && self.durable.as_ref().is_some_and(|d| d.accepted);
            self.confirm_durable(conn, seq, accepted(seq, id.get(), kept));
        } else if mode.is_request() && target.is_none() {
            self.notice_kept(conn, seq, id.get());
        } else {
            self.durable_unconfirmed();
        }
        Ok(None)
    }

    /// What the publisher's identity allows, and its quotas of pending
    /// requests and unsettled direct messages.
    fn check_publisher(&self, conn: ConnId, p: &Publish) -> Result<(), PublishRefusal> {
        let Some(c) = self.conns.get(conn) else {
            return Ok(());
        };
        let principal = &c.principal;
        if !principal.perms.publish.allows_topic(&p.topic) {
            return Err(PublishRefusal::NotAllowed {
                topic: p.topic.clone(),
                identity: principal.name.clone(),
            });
        }
        if let Some(target) = &p.target {
            if !principal.perms.direct.allows(target.as_str()) {
                return Err(PublishRefusal::DirectNotAllowed {
                    client: target.to_string(),
                    identity: principal.name.clone(),
                });
            }
            let limit = principal.quotas.max_direct_unsettled;
            if c.direct_sent >= limit {
                return Err(PublishRefusal::Quota {
                    quota: "max_direct_unsettled",
                    limit,
                });
            }
        }
        let limit = principal.quotas.max_pending_requests;
        if p.mode.is_request() && c.pending_requests >= limit {
            return Err(PublishRefusal::Quota {
                quota: "max_pending_requests",
                limit,
            });
        }
        Ok(())
    }

    /// Stamps what the broker vouches for: a new id, the publisher's client
    /// id, the time, the first attempt; a request's unguessable correlation
    /// token (returned) and reply-to, which anything else does not carry.
    fn stamp(&mut self, conn: ConnId, p: Publish) -> (Stamped, Option<CorrelationId>) {
        let source = self
            .conns
            .get(conn)
            .map(|c| c.client_id.clone())
            .expect("apply checked the connection");
        let token = p.mode.is_request().then(|| self.tokens.next());
        let reply = match token {
            Some(token) => ReplyStamp::Request {
                correlation: token.get(),
                to: source.clone(),
            },
            None if p.reply_fields => ReplyStamp::Clear,
            None => ReplyStamp::None,
        };
        let message = Stamped {
            envelope: p.envelope,
            topic: p.topic,
            id: self.ids.message().get(),
            source,
            timestamp_us: self.clock.wall_us,
            attempt: 1,
            reply,
        };
        (message, token)
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
    pub(super) fn blocking_group(
        &mut self,
        topic: &Topic,
        size: usize,
    ) -> Option<(GroupId, Duration)> {
        let mut targets = std::mem::take(&mut self.scratch);
        self.index.extend_matches(topic, &mut targets);
        let found = targets.drain(..).find_map(|t| match t {
            Target::Group(gid) => self.queues.get(gid).and_then(|g| {
                let p = g.policy();
                (p.overflow == OverflowPolicy::Block && g.is_full_for(size))
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
    /// timed-out `block`), or whose delivery would not fit a receiver's frame
    /// limit, goes nowhere and is refused as a whole: a publisher told
    /// `QueueFull` knows no copy went out, and one told `Ok` knows every
    /// matching group holds its task. The plain subscribers a request is
    /// copied to are noted in `recipients`, as the ones who may answer it.
    pub(super) fn route(
        &mut self,
        topic: &Topic,
        msg: Queued,
        publisher: Option<ConnId>,
    ) -> Result<u64, PublishRefusal> {
        let mut targets = std::mem::take(&mut self.scratch);
        self.index.extend_matches(topic, &mut targets);
        if let Some(refusal) = self.refusal_before_routing(topic, &targets, &msg, publisher) {
            targets.clear();
            self.scratch = targets;
            return Err(refusal);
        }
        let mut msg = msg;
        if targets.iter().any(|t| matches!(t, Target::Group(_))) {
            msg.detach();
        }
        let request = msg.message.correlation() != 0;
        let mut delivered = 0;
        let mut refusal = None;
        for target in targets.drain(..) {
            match target {
                Target::Plain { conn, sid } => {
                    let deliver = StampedDeliver::new(sid.get(), 0, &msg.message);
                    match self.deliver_plain(conn, topic, Outgoing::Deliver(deliver)) {
                        Ok(true) => {
                            delivered += 1;
                            if request {
                                self.recipients.add(conn);
                            }
                        }
                        Ok(false) => {}
                        Err(r) => refusal = Some(r),
                    }
                }
                Target::Group(gid) => match self.enqueue(gid, topic, msg.clone()) {
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

    /// Why `msg` must go to none of `targets`: a full queue that refuses, a
    /// receiver whose frames it would not fit (a group: none of its
    /// members), and for a message into a queue group, the publisher's
    /// quotas or the broker's memory ceiling.
    fn refusal_before_routing(
        &mut self,
        topic: &Topic,
        targets: &[Target],
        msg: &Queued,
        publisher: Option<ConnId>,
    ) -> Option<PublishRefusal> {
        let size = msg.size;
        let groups = targets
            .iter()
            .filter(|t| matches!(t, Target::Group(_)))
            .count();
        if groups > 0
            && let Some(refusal) = self.refusal_to_hold(msg, groups, publisher)
        {
            return Some(refusal);
        }
        if groups > 0
            && let Some(refusal) = self.refusal_to_journal(targets, msg)
        {
            return Some(refusal);
        }
        for target in targets {
            let (limit, receiver) = match *target {
                Target::Plain { conn, .. } => match self.conns.get(conn) {
                    Some(c) => (c.max_frame, c.client_id.to_string()),
                    None => continue,
                },
                Target::Group(gid) => {
                    let g = self.queues.get_mut(gid)?;
                    let refuses = matches!(
                        g.policy().overflow,
                        OverflowPolicy::Reject | OverflowPolicy::Block
                    );
                    if refuses && g.is_full_for(size) {
                        // As `enqueue` would decide; counted as rejected.
                        let (filter, group, max_len) = g.reject();
                        self.journal_counted(gid, Counter::Rejected);
                        return Some(PublishRefusal::QueueFull {
                            topic: topic.clone(),
                            filter,
                            group,
                            max_len,
                        });
                    }
                    match g.largest_member_frame() {
                        Some(limit) => (limit, format!("group:{}", g.name)),
                        None => continue,
                    }
                }
            };
            if size > limit {
                return Some(PublishRefusal::TooLarge {
                    receiver,
                    size,
                    limit,
                });
            }
        }
        None
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
        message: Queued,
    ) -> Result<(), PublishRefusal> {
        let journaled = self.durable_ref(gid).is_some();
        if journaled && !self.make_disk_room(gid, &message) {
            self.totals.dropped += 1;
            return Ok(());
        }
        let accepted = journaled.then(|| message.clone());
        let group = self.queues.get_mut(gid).expect("indexed groups exist");
        let (source, size) = (message.message.source.clone(), message.size);
        let id = MessageId::new(message.message.id);
        match group.enqueue(message) {
            Enqueued::Queued => {
                self.usage.add(&source, size);
                self.observe_queued(gid, topic, id, &source, &[]);
            }
            Enqueued::EvictedOldest(evicted) => {
                self.usage.add(&source, size);
                for m in &evicted {
                    self.usage.remove(&m.message.source, m.size);
                    self.journal_settled(gid, m.message.id, Outcome::Evicted);
                }
                self.observe_queued(gid, topic, id, &source, &evicted);
            }
            Enqueued::DroppedIncoming => {
                self.totals.dropped += 1;
                self.journal_counted(gid, Counter::Dropped);
                return Ok(());
            }
            Enqueued::Rejected => {
                let refusal = PublishRefusal::QueueFull {
                    topic: topic.clone(),
                    filter: group.filter.to_string(),
                    group: group.name.to_string(),
                    max_len: group.policy().max_len,
                };
                self.journal_counted(gid, Counter::Rejected);
                return Err(refusal);
            }
        }
        if let Some(m) = accepted {
            self.journal_accepted(gid, &m, false);
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
            let record = self.journal_delivered(gid, message.message.id, message.message.attempt);
            self.send_delivery(
                conn,
                sid,
                delivery,
                message,
                DeliveredFrom::Group { gid, record },
            );
        }
        if dispatched {
            self.queues.made_room();
        }
    }

    /// Hands a delivery that must be settled to `conn` and records it in
    /// flight (with its group's ack deadline). A durable group's delivery
    /// leaves once its `Delivered` record is durable.
    pub(super) fn send_delivery(
        &mut self,
        conn: ConnId,
        sid: SubscriptionId,
        delivery: DeliveryId,
        queued: Queued,
        from: DeliveredFrom,
    ) {
        let (group, sender, record) = match from {
            DeliveredFrom::Group { gid, record } => (Some(gid), None, record),
            DeliveredFrom::Direct { sender } => (None, Some(sender), None),
        };
        self.totals.delivered += 1;
        let Queued { message, size } = queued;
        let frame = Outgoing::Deliver(StampedDeliver::new(sid.get(), delivery.get(), &message));
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
        self.observe_dispatched(conn, delivery, group, &message);
        self.in_flight.insert(
            delivery,
            InFlight {
                conn,
                sid,
                group,
                sender,
                message,
                size,
                deadline,
            },
        );
        self.send_after(conn, record, frame);
    }

    /// A direct send to `target`'s inbox, within its bound of unsettled
    /// direct messages.
    fn direct(
        &mut self,
        sender: ConnId,
        target: &ClientId,
        topic: &Topic,
        msg: Queued,
    ) -> Result<(), PublishRefusal> {
        let Some(c) = self
            .conns
            .by_client(target)
            .and_then(|conn| self.conns.get(conn))
        else {
            return Err(PublishRefusal::NoSuchClient {
                client: target.to_string(),
            });
        };
        let conn = self.conns.by_client(target).expect("just found");
        let max = self.config.max_direct_in_flight;
        if c.direct_in_flight >= max {
            return Err(PublishRefusal::DirectInboxFull {
                client: target.to_string(),
                topic: topic.to_string(),
                max,
            });
        }
        if msg.size > c.max_frame {
            return Err(PublishRefusal::TooLarge {
                receiver: target.to_string(),
                size: msg.size,
                limit: c.max_frame,
            });
        }
        let mut msg = msg;
        msg.detach();
        let delivery = self.ids.delivery();
        self.send_delivery(
            conn,
            SubscriptionId::DIRECT,
            delivery,
            msg,
            DeliveredFrom::Direct { sender },
        );
        if let Some(c) = self.conns.get_mut(sender) {
            c.direct_sent += 1;
        }
        Ok(())
    }

    /// Returns the credit a settled or withdrawn delivery held on its connection.
    /// And the quota slot a direct delivery held on its sender.
    pub(super) fn release(&mut self, f: &InFlight) {
        if let Some(c) = self.conns.get_mut(f.conn) {
            c.in_flight = c.in_flight.saturating_sub(1);
            if f.group.is_none() {
                c.direct_in_flight = c.direct_in_flight.saturating_sub(1);
            }
        }
        if let Some(c) = f.sender.and_then(|s| self.conns.get_mut(s)) {
            c.direct_sent = c.direct_sent.saturating_sub(1);
        }
    }

    /// Why a message must not enter `groups` queue groups now: its
    /// publisher's quotas of queued messages and bytes, or the broker's
    /// memory ceiling.
    fn refusal_to_hold(
        &self,
        msg: &Queued,
        groups: usize,
        publisher: Option<ConnId>,
    ) -> Option<PublishRefusal> {
        let bytes = msg.size * groups;
        let total = self.usage.total();
        let ceiling = self.config.memory.max_queued_bytes;
        if total.bytes + bytes > ceiling {
            return Some(PublishRefusal::MemoryPressure {
                what: format!("{} bytes queued, ceiling {ceiling}", total.bytes),
            });
        }
        if let Some(rss) = self.memory_alarm {
            return Some(PublishRefusal::MemoryPressure {
                what: format!("resident memory {rss} bytes over the high watermark"),
            });
        }
        let quotas = publisher.and_then(|p| self.conns.get(p))?.principal.quotas;
        let held = self.usage.of(&msg.message.source);
        if held.messages + groups > quotas.max_queued_messages {
            return Some(PublishRefusal::Quota {
                quota: "max_queued_messages",
                limit: quotas.max_queued_messages,
            });
        }
        if held.bytes + bytes > quotas.max_queued_bytes {
            return Some(PublishRefusal::Quota {
                quota: "max_queued_bytes",
                limit: quotas.max_queued_bytes,
            });
        }
        None
    }
}
