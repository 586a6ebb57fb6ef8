//! Settling deliveries: acks, nacks, replies, cancellation, ack timeouts,
//! redelivery and dead letters.

use super::gather::GatherReplyError;
use super::in_flight::InFlight;
use super::{DEAD_LETTER_PREFIX, Router, ok};
use crate::broker::command::{Reply, Settlement};
use crate::broker::ids::{ConnId, DeliveryId, GroupId, MessageId, Seq};
use crate::broker::journal::{Counter, Outcome};
use crate::broker::monitor::AttemptEnd;
use crate::broker::queue::Queued;
use crate::broker::refusal::{CancelRefusal, Refusal, ReplyRefusal, RequestFailure, SettleRefusal};
use crate::codec::raw::{ReplyStamp, StampedReply};
use crate::framed::Outgoing;
use crate::proto::{self, Frame, frame::Kind};
use crate::topic::Topic;

impl Router {
    /// Settles delivery `delivery`, which `conn` must hold.
    pub(super) fn settle(
        &mut self,
        conn: ConnId,
        delivery: DeliveryId,
        how: Settlement,
    ) -> Result<(), SettleRefusal> {
        let f = self
            .in_flight
            .remove_held(delivery, conn)
            .ok_or(SettleRefusal::UnknownDelivery(delivery))?;
        self.release(&f);
        self.observe_settled(&f, how == Settlement::Ack, how == Settlement::Requeue);
        if how == Settlement::Ack
            && let Some(c) = self.conns.get_mut(conn)
        {
            c.counters.acked += 1;
        }
        let Some(gid) = f.group else {
            if how != Settlement::Ack {
                // A direct message handed back has nowhere else to go: its
                // requester, if any, learns it at once instead of waiting for
                // a timeout.
                let holder = self
                    .conns
                    .get(conn)
                    .map(|c| c.client_id.to_string())
                    .unwrap_or_default();
                self.fail_request(f.message_id(), RequestFailure::HandedBack { holder });
            }
            return Ok(());
        };
        if let Some(group) = self.queues.get_mut(gid) {
            group.settle(conn, f.sid, how == Settlement::Ack);
            match how {
                Settlement::Ack => {
                    self.usage.remove(&f.message.source, f.size);
                    self.journal_settled(gid, f.message.id, Outcome::Acked);
                }
                Settlement::Requeue => self.redeliver(gid, f.into_queued(), Taken::Nacked),
                Settlement::Reject => {
                    self.journal_counted(gid, Counter::Nacked);
                    self.dead_letter(gid, f.into_queued(), "rejected by the consumer");
                }
            }
            self.pump(gid);
        }
        Ok(())
    }

    /// Forwards a reply to its requester (settling the delivery it answers,
    /// if any); the first reply wins. Only a client the request was
    /// delivered to may answer it: the holder of the delivery it names, or a
    /// plain subscriber it was copied to.
    pub(super) fn reply(&mut self, conn: ConnId, r: Reply) -> Result<(), ReplyRefusal> {
        let token = r.correlation;
        if r.delivery.is_none() && self.gathers.contains(token) {
            return match self.gather_reply(conn, token, r.envelope) {
                Ok(()) => {
                    self.confirm(conn, r.seq);
                    Ok(())
                }
                Err(GatherReplyError::NotARecipient) => Err(ReplyRefusal::NotAResponder(token)),
                Err(GatherReplyError::NotAwaited) => Err(ReplyRefusal::NotAwaited(token)),
                Err(GatherReplyError::TooLarge { size, limit }) => {
                    Err(ReplyRefusal::TooLarge { size, limit })
                }
            };
        }
        // The request's id and requester, if its reply is kept (it came
        // through a durable group).
        let mut kept_for = None;
        match r.delivery {
            Some(delivery) => {
                let held = self
                    .in_flight
                    .get_held(delivery, conn)
                    .ok_or(SettleRefusal::UnknownDelivery(delivery))?;
                if held.message.correlation() != token.get() {
                    return Err(ReplyRefusal::NotAResponder(token));
                }
                if let (Some(gid), ReplyStamp::Request { to, .. }) =
                    (held.group, &held.message.reply)
                {
                    kept_for = Some((gid, held.message_id(), to.clone()));
                }
            }
            None => {
                let pending = self
                    .requests
                    .get(token)
                    .ok_or(ReplyRefusal::NotAwaited(token))?;
                if !pending.responders.contains(conn) {
                    return Err(ReplyRefusal::NotAResponder(token));
                }
            }
        }
        let source = self
            .conns
            .get(conn)
            .map(|c| c.client_id.clone())
            .expect("apply checked the connection");
        let mut reply = StampedReply {
            seq: 0,
            envelope: r.envelope,
            source,
            timestamp_us: self.clock.wall_us,
        };
        if let Some(requester) = self.requests.get(token) {
            reply.seq = requester.seq.get();
            let limit = self
                .conns
                .get(requester.conn)
                .map_or(usize::MAX, |c| c.max_frame);
            let size = reply.frame_len();
            if size > limit {
                return Err(ReplyRefusal::TooLarge { size, limit });
            }
        }
        // Kept before the delivery is settled, so the journal never has the
        // request acked without its result.
        let kept = match kept_for {
            Some((gid, id, requester)) if self.journaled(gid) => {
                self.keep_result(id, requester, &reply);
                true
            }
            _ => false,
        };
        if let Some(delivery) = r.delivery {
            self.settle(conn, delivery, Settlement::Ack)?;
        }
        match self.requests.take(token) {
            Some(pending) => {
                self.request_done(pending.conn);
                self.conns.send(pending.conn, Outgoing::Reply(reply));
            }
            // Its requester left, or the broker restarted: it asks for the
            // result by id.
            None if kept => {}
            None => return Err(ReplyRefusal::NotAwaited(token)),
        }
        self.confirm(conn, r.seq);
        Ok(())
    }

    /// Removes a message wherever it is, waiting or in flight (its holder is
    /// told), in every group it went to; its requester gets `Cancelled`.
    pub(super) fn cancel(
        &mut self,
        conn: ConnId,
        id: MessageId,
        seq: Seq,
    ) -> Result<(), CancelRefusal> {
        let publisher = self
            .queues
            .find_waiting(id)
            .or_else(|| self.in_flight.find_message_ref(id).map(|f| &f.message))
            .map(|m| m.source.clone())
            .ok_or(CancelRefusal::UnknownMessage(id))?;
        let caller = self.conns.get(conn);
        let allowed = caller.is_some_and(|c| c.principal.perms.admin || c.client_id == publisher);
        if !allowed {
            return Err(CancelRefusal::NotPublisher(id));
        }
        let mut found = false;
        while let Some((gid, removed)) = self.queues.remove_waiting(id) {
            found = true;
            self.usage.remove(&removed.message.source, removed.size);
            if let Some(group) = self.queues.get_mut(gid) {
                group.counters.cancelled += 1;
            }
            self.journal_settled(gid, id.get(), Outcome::Cancelled);
        }
        while let Some(delivery) = self.in_flight.find_message(id) {
            found = true;
            let f = self.in_flight.remove(delivery).expect("found above");
            if let Some(gid) = f.group
                && let Some(group) = self.queues.get_mut(gid)
            {
                group.settle(f.conn, f.sid, false);
                group.counters.cancelled += 1;
                self.usage.remove(&f.message.source, f.size);
                self.journal_settled(gid, id.get(), Outcome::Cancelled);
            }
            self.withdraw(&f);
            if let Some(gid) = f.group {
                self.pump(gid);
            }
        }
        if !found {
            return Err(CancelRefusal::UnknownMessage(id));
        }
        self.observe_cancelled(id);
        self.fail_request(id, RequestFailure::Cancelled(id));
        if seq.wants_answer() {
            self.confirm_durable(conn, seq, ok(seq, id.get()));
        }
        Ok(())
    }

    /// Tells the requester of `id`, if one waits, and everyone waiting for
    /// its result by id (a requester back after losing its connection),
    /// that no reply will come.
    pub(super) fn fail_request(&mut self, id: MessageId, failure: RequestFailure) {
        for w in self.results.take_waiters(id) {
            self.request_done(w.conn);
            let frame = Refusal::from(failure.clone()).into_frame(w.seq);
            self.conns.send(w.conn, frame);
        }
        if let Some(pending) = self.requests.take_message(id) {
            self.request_done(pending.conn);
            let frame = Refusal::from(failure).into_frame(pending.seq);
            self.conns.send(pending.conn, frame);
        }
    }

    /// A request of `requester` left the table: its quota slot is free.
    pub(super) fn request_done(&mut self, requester: ConnId) {
        if let Some(c) = self.conns.get_mut(requester) {
            c.pending_requests = c.pending_requests.saturating_sub(1);
        }
    }

    /// Takes a delivery back from its holder: its credit is returned and the
    /// holder is told (`Cancel`), so its late ack or reply will be refused.
    fn withdraw(&mut self, f: &InFlight) {
        self.release(f);
        self.conns.send(
            f.conn,
            Frame {
                kind: Some(Kind::Cancel(proto::Cancel {
                    seq: 0,
                    message_id: f.message.id,
                })),
            },
        );
    }

    /// Puts a message taken back from its holder at the front of its group's queue
    /// with the attempt count raised, or dead-letters it after `max_attempts`.
    /// The caller pumps the group.
    pub(super) fn redeliver(&mut self, gid: GroupId, message: Queued, why: Taken) {
        let Some(group) = self.queues.get_mut(gid) else {
            return;
        };
        let max = group.policy().max_attempts;
        let (id, attempt) = (message.message.id, message.message.attempt);
        if max > 0 && attempt >= max {
            if why == Taken::Nacked {
                self.journal_counted(gid, Counter::Nacked);
            }
            self.dead_letter(gid, message, &format!("{why}; {max} attempts used"));
        } else {
            group.requeue_front(message);
            self.journal_requeued(gid, id, attempt.saturating_add(1), why == Taken::Nacked);
        }
    }

    /// Publishes a message that cannot be processed on `_sys.dead-letter.<group>`,
    /// with the reason and attempt count in its headers; a requester waiting on it
    /// gets `DeadLettered` at once.
    pub(super) fn dead_letter(&mut self, gid: GroupId, queued: Queued, reason: &str) {
        self.usage.remove(&queued.message.source, queued.size);
        self.journal_settled(gid, queued.message.id, Outcome::DeadLettered);
        let Some(group) = self.queues.get_mut(gid) else {
            return;
        };
        group.count_dead_lettered();
        let group_name = group.name.to_string();
        let message = queued.message;
        self.observe_dead_letter(gid, &message, &group_name, reason);
        let id = MessageId::new(message.id);
        self.fail_request(
            id,
            RequestFailure::DeadLettered {
                id,
                reason: reason.to_owned(),
                attempts: message.attempt,
            },
        );
        tracing::info!(message_id = %id, group = %group_name, reason, "dead-lettering");
        let Ok(topic) = Topic::new(format!("{DEAD_LETTER_PREFIX}.{group_name}")) else {
            return;
        };
        let attempts = message.attempt.to_string();
        let original_id = id.to_string();
        let mut dead = message.republished(
            topic.clone(),
            &[
                ("x-dead-letter-reason", reason),
                ("x-attempts", &attempts),
                ("x-original-topic", message.topic.as_str()),
                ("x-original-id", &original_id),
                ("x-group", &group_name),
            ],
        );
        // A message of its own: a group that takes both (`#`) holds two
        // messages, not one twice, and a cancel of the original leaves it.
        dead.id = self.ids.message().get();
        let _ = self.route(&topic, Queued::new(dead), None);
    }

    /// Takes back every group delivery whose ack timeout has passed, tells its
    /// holder, and redelivers it.
    pub(super) fn expire_deliveries(&mut self) {
        for f in self.in_flight.take_expired(self.clock.now) {
            self.observe_taken_back(&f, AttemptEnd::TimedOut);
            self.withdraw(&f);
            if let Some(gid) = f.group {
                if let Some(group) = self.queues.get_mut(gid) {
                    group.release(f.conn, f.sid);
                }
                self.redeliver(gid, f.into_queued(), Taken::AckTimeout);
                self.pump(gid);
            }
        }
    }
}

/// Why a delivery was taken back from its holder to be redelivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Taken {
    /// Its holder nacked it with requeue.
    Nacked,
    /// Its ack deadline passed.
    AckTimeout,
    /// Its holder unsubscribed or left.
    ConsumerLeft,
}

impl std::fmt::Display for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Nacked => "nacked",
            Self::AckTimeout => "ack timeout",
            Self::ConsumerLeft => "consumer left",
        })
    }
}
