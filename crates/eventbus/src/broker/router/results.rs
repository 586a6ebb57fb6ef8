//! Replies to durable requests, kept by the request's message id, so a
//! requester whose broker restarted (or who reconnected) still gets its
//! answer (`ResultRequest`, `Client::result`); and the requesters waiting
//! for a reply that has not come yet.
//!
//! **Invariants:** at most `max_results` replies and `max_result_bytes`
//! bytes are kept, each for `result_ttl_ms` at most (the oldest go first);
//! a waiter is answered once — with the reply, `Timeout` at its deadline,
//! `Cancelled` or `DeadLettered` when its request ends so (`fail_request`),
//! or nothing if its connection left.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Map, Router};
use crate::broker::config::DurabilityConfig;
use crate::broker::ids::{ConnId, MessageId, Seq};
use crate::broker::journal::{KeptResult, MessageId as JournalId, Record};
use crate::broker::refusal::{Refusal, ResultRefusal};
use crate::codec::raw::{ReplyStamp, StampedReply};
use crate::framed::Outgoing;
use crate::names::ClientId;

/// How many ids of expired results are remembered, to answer `Expired`
/// rather than `UnknownMessage`.
const EXPIRED_REMEMBERED: usize = 16_384;

/// A kept reply.
#[derive(Debug, Clone)]
pub(super) struct Kept {
    /// The reply's envelope with the broker's stamps (its source and time).
    pub reply: Bytes,
    pub source: ClientId,
    /// When the broker took the reply (Unix µs).
    pub timestamp_us: u64,
    /// Who asked: the only client (besides an admin) it is given to.
    pub requester: ClientId,
    /// Unix ms after which it is forgotten.
    pub expires_at_ms: u64,
}

/// Someone waiting for a reply that has not come.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waiter {
    pub conn: ConnId,
    pub seq: Seq,
    pub deadline: Instant,
    /// How long it said it would wait.
    pub wait: Duration,
    /// The request it waits for (set by `wait`).
    pub id: MessageId,
}

/// The kept replies and the waiters.
#[derive(Debug)]
pub(super) struct Results {
    kept: Map<MessageId, Kept>,
    /// Ids in the order they were kept, for eviction.
    order: VecDeque<MessageId>,
    bytes: usize,
    expired: VecDeque<MessageId>,
    waiters: Map<MessageId, Vec<Waiter>>,
    max_results: usize,
    max_bytes: usize,
    pub ttl: Duration,
}

impl Results {
    pub fn new(config: &DurabilityConfig) -> Self {
        Self {
            kept: Map::default(),
            order: VecDeque::new(),
            bytes: 0,
            expired: VecDeque::new(),
            waiters: Map::default(),
            max_results: config.max_results,
            max_bytes: config.max_result_bytes,
            ttl: Duration::from_millis(config.result_ttl_ms),
        }
    }

    pub fn get(&self, id: MessageId) -> Option<&Kept> {
        self.kept.get(&id)
    }

    pub fn was_expired(&self, id: MessageId) -> bool {
        self.expired.contains(&id)
    }

    /// Keeps `kept` for `id`; returns the ids evicted to make room.
    pub fn keep(&mut self, id: MessageId, kept: Kept) -> Vec<MessageId> {
        if let Some(old) = self.kept.remove(&id) {
            self.bytes -= old.reply.len();
            self.order.retain(|&o| o != id);
        }
        self.bytes += kept.reply.len();
        self.kept.insert(id, kept);
        self.order.push_back(id);
        let mut evicted = Vec::new();
        while (self.kept.len() > self.max_results || self.bytes > self.max_bytes)
            && let Some(oldest) = self.order.pop_front()
        {
            if let Some(old) = self.kept.remove(&oldest) {
                self.bytes -= old.reply.len();
                evicted.push(oldest);
            }
        }
        evicted
    }

    /// A reply the journal kept, at recovery (without a requester check
    /// possible: its requester is taken from the stored reply's request).
    pub fn restore(&mut self, r: &KeptResult) {
        let Some(kept) = decode_kept(&r.reply, r.expires_at_ms) else {
            return;
        };
        self.keep(MessageId::new(r.id.get()), kept);
    }

    /// Forgets replies kept past their time; returns them.
    pub fn expire(&mut self, now_ms: u64) -> Vec<MessageId> {
        let mut gone = Vec::new();
        while let Some(&oldest) = self.order.front() {
            let due = self
                .kept
                .get(&oldest)
                .is_none_or(|k| k.expires_at_ms <= now_ms);
            if !due {
                break;
            }
            self.order.pop_front();
            if let Some(old) = self.kept.remove(&oldest) {
                self.bytes -= old.reply.len();
                if self.expired.len() == EXPIRED_REMEMBERED {
                    self.expired.pop_front();
                }
                self.expired.push_back(oldest);
                gone.push(oldest);
            }
        }
        gone
    }

    pub fn wait(&mut self, id: MessageId, waiter: Waiter) {
        self.waiters
            .entry(id)
            .or_default()
            .push(Waiter { id, ..waiter });
    }

    /// The waiters for `id`, now answered.
    pub fn take_waiters(&mut self, id: MessageId) -> Vec<Waiter> {
        self.waiters.remove(&id).unwrap_or_default()
    }

    /// Waiters whose deadline passed; returns them.
    pub fn expire_waiters(&mut self, now: Instant) -> Vec<Waiter> {
        let mut due = Vec::new();
        self.waiters.retain(|_, ws| {
            ws.retain(|w| {
                let late = w.deadline <= now;
                if late {
                    due.push(*w);
                }
                !late
            });
            !ws.is_empty()
        });
        due
    }

    /// The earliest waiter's deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiters.values().flatten().map(|w| w.deadline).min()
    }

    /// The connection of every waiter (one entry each).
    #[cfg(any(test, fuzzing))]
    pub fn waiting_conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.waiters.values().flatten().map(|w| w.conn)
    }

    /// Forgets the waiters of a connection that left.
    pub fn forget(&mut self, conn: ConnId) {
        self.waiters.retain(|_, ws| {
            ws.retain(|w| w.conn != conn);
            !ws.is_empty()
        });
    }
}

impl Router {
    /// Keeps `reply`, the answer to durable request `id` of `requester`:
    /// journaled, held for the requester's `result`, and given at once to
    /// whoever waits for it.
    pub(super) fn keep_result(&mut self, id: MessageId, requester: ClientId, reply: &StampedReply) {
        let expires_at_ms = self.clock.wall_us / 1000 + self.results.ttl.as_millis() as u64;
        let kept = Kept {
            reply: reply.envelope.clone(),
            source: reply.source.clone(),
            timestamp_us: reply.timestamp_us,
            requester,
            expires_at_ms,
        };
        if let Some(d) = self.durable.as_mut() {
            let record = Record::ResultKept {
                id: JournalId::new(id.get()),
                expires_at_ms,
                reply: &encode_kept(&kept),
            };
            if let Err(e) = d.journal.append(record) {
                tracing::warn!(message_id = %id, error = %e, "a durable request's result is kept in memory only");
            }
        }
        for w in self.results.take_waiters(id) {
            self.request_done(w.conn);
            if let Err(refusal) = self.send_kept(w.conn, w.seq, &kept) {
                self.refuse(w.conn, w.seq, refusal.into());
            }
        }
        for gone in self.results.keep(id, kept) {
            self.journal_result_removed(gone);
        }
    }

    /// Answers `ResultRequest`: the kept reply to durable request `id`, now;
    /// or, while the request is still queued or in flight, once it comes
    /// (within `wait`). Only its requester (or an admin) may have it.
    pub(super) fn result(
        &mut self,
        conn: ConnId,
        seq: Seq,
        id: MessageId,
        wait: Duration,
    ) -> Result<(), ResultRefusal> {
        let Some(c) = self.conns.get(conn) else {
            return Ok(());
        };
        let admin = c.principal.perms.admin;
        if let Some(kept) = self.results.get(id) {
            if kept.requester != c.client_id && !admin {
                return Err(ResultRefusal::NotRequester(id));
            }
            let kept = kept.clone();
            return self.send_kept(conn, seq, &kept);
        }
        if self.results.was_expired(id) {
            return Err(ResultRefusal::Expired(id));
        }
        let requester = self
            .pending_durable_request(id)
            .ok_or(ResultRefusal::UnknownMessage(id))?;
        let c = self.conns.get(conn).expect("checked above");
        if requester != c.client_id && !admin {
            return Err(ResultRefusal::NotRequester(id));
        }
        if wait.is_zero() {
            return Err(ResultRefusal::Timeout { id, waited: wait });
        }
        let limit = c.principal.quotas.max_pending_requests;
        if c.pending_requests >= limit {
            return Err(ResultRefusal::Quota { limit });
        }
        let deadline = self.clock.now + wait;
        self.results.wait(
            id,
            Waiter {
                conn,
                seq,
                deadline,
                wait,
                id,
            },
        );
        self.schedule.due_by(deadline);
        if let Some(c) = self.conns.get_mut(conn) {
            c.pending_requests += 1;
        }
        Ok(())
    }

    /// The requester of durable request `id` while it waits or is in flight
    /// in a durable group.
    fn pending_durable_request(&mut self, id: MessageId) -> Option<ClientId> {
        let (gid, message) = match self.queues.find_waiting_in(id) {
            Some((gid, m)) => (gid, m),
            None => {
                let f = self.in_flight.find_message_ref(id)?;
                (f.group?, &f.message)
            }
        };
        let ReplyStamp::Request { to, .. } = &message.reply else {
            return None;
        };
        let to = to.clone();
        self.journaled(gid).then_some(to)
    }

    /// Sends a kept reply to `conn` as the `Reply` answering `seq`.
    fn send_kept(&mut self, conn: ConnId, seq: Seq, kept: &Kept) -> Result<(), ResultRefusal> {
        let reply = StampedReply {
            seq: seq.get(),
            envelope: kept.reply.clone(),
            source: kept.source.clone(),
            timestamp_us: kept.timestamp_us,
        };
        let limit = self.conns.get(conn).map_or(usize::MAX, |c| c.max_frame);
        let size = reply.frame_len();
        if size > limit {
            return Err(ResultRefusal::TooLarge { size, limit });
        }
        self.conns.send(conn, Outgoing::Reply(reply));
        Ok(())
    }

    fn journal_result_removed(&mut self, id: MessageId) {
        if let Some(d) = self.durable.as_mut() {
            let _ = d.journal.append(Record::ResultRemoved {
                id: JournalId::new(id.get()),
            });
        }
    }

    /// Forgets results kept past their time, and answers `Timeout` to
    /// waiters whose deadline passed; returns the next waiter's deadline.
    pub(super) fn expire_results(&mut self) -> Option<Instant> {
        for gone in self.results.expire(self.clock.wall_us / 1000) {
            self.journal_result_removed(gone);
        }
        for w in self.results.expire_waiters(self.clock.now) {
            self.request_done(w.conn);
            let refusal: Refusal = ResultRefusal::Timeout {
                id: w.id,
                waited: w.wait,
            }
            .into();
            self.conns.send(w.conn, refusal.into_frame(w.seq));
        }
        self.results.next_deadline()
    }
}

/// What the journal keeps for a reply: the time it was taken (8 bytes),
/// then the responder's envelope, its client id and the requester's (three
/// length-prefixed parts).
pub(super) fn encode_kept(kept: &Kept) -> Vec<u8> {
    let mut out = Vec::with_capacity(kept.reply.len() + 80);
    out.extend_from_slice(&kept.timestamp_us.to_le_bytes());
    for part in [
        kept.reply.as_ref(),
        kept.source.as_str().as_bytes(),
        kept.requester.as_str().as_bytes(),
    ] {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    }
    out
}

fn decode_kept(bytes: &Bytes, expires_at_ms: u64) -> Option<Kept> {
    let timestamp_us = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let mut parts = Vec::with_capacity(3);
    let mut at = 8;
    for _ in 0..3 {
        let len = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        at += 4;
        parts.push(bytes.get(at..at + len)?.to_vec());
        at += len;
    }
    let requester = ClientId::new(std::str::from_utf8(&parts.pop()?).ok()?).ok()?;
    let source = ClientId::new(std::str::from_utf8(&parts.pop()?).ok()?).ok()?;
    Some(Kept {
        reply: Bytes::from(parts.pop()?),
        source,
        timestamp_us,
        requester,
        expires_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(len: usize, expires_at_ms: u64) -> Kept {
        Kept {
            reply: Bytes::from(vec![1; len]),
            source: ClientId::new("w").unwrap(),
            timestamp_us: 5,
            requester: ClientId::new("r").unwrap(),
            expires_at_ms,
        }
    }

    #[test]
    fn results_are_bounded_by_count_bytes_and_age() {
        let mut r = Results::new(&DurabilityConfig {
            max_results: 2,
            max_result_bytes: 25,
            ..DurabilityConfig::default()
        });
        let id = MessageId::new;
        assert!(r.keep(id(1), kept(10, 100)).is_empty());
        assert!(r.keep(id(2), kept(10, 200)).is_empty());
        assert_eq!(r.keep(id(3), kept(10, 300)), [id(1)], "at most two");
        assert_eq!(
            r.keep(id(4), kept(20, 400)),
            [id(2), id(3)],
            "at most 25 bytes"
        );
        assert_eq!(r.expire(399), []);
        assert_eq!(r.expire(400), [id(4)]);
        assert!(r.was_expired(id(4)) && !r.was_expired(id(1)));
        assert!(r.get(id(4)).is_none());
    }

    #[test]
    fn a_kept_reply_round_trips_through_the_journal_encoding() {
        let k = kept(7, 9);
        let back = decode_kept(&Bytes::from(encode_kept(&k)), 9).unwrap();
        assert_eq!(
            (back.reply, back.source, back.requester, back.timestamp_us),
            (k.reply, k.source, k.requester, 5)
        );
        let encoded = encode_kept(&kept(7, 9));
        for cut in 0..encoded.len() {
            let torn = Bytes::copy_from_slice(&encoded[..cut]);
            assert!(decode_kept(&torn, 9).is_none(), "cut at {cut}");
        }
    }
}
