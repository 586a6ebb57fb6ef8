//! A queue group: members sharing one filter's messages, each message to exactly one.
//!
//! The group owns its bounded queue of waiting messages and its members' credit.
//! Dispatch is round robin in join order over members with free credit (prefetch
//! minus unacknowledged deliveries); a member without credit is skipped, and a
//! message no member can take waits in the queue, in publish order.
//!
//! **Invariant:** the queue holds at most `max_len` newly published messages;
//! redeliveries go back to the front even past the bound, because they were
//! accepted already and are themselves bounded by the members' credit.
//! The queue gives back its room once mostly empty (`broker::shrink`).

use std::collections::VecDeque;

use super::config::QueuePolicy;
use super::ids::{ConnId, MessageId, SubscriptionId};
use super::shrink::Sparse as _;
use crate::codec::raw::Stamped;
use crate::framed::OverflowPolicy;
use crate::names::{ClientId, GroupName};
use crate::proto::{MemberStats, QueueStats};
use crate::topic::TopicFilter;

/// A message a queue holds, with the size of its delivery frame (an upper
/// bound), checked against each member's frame limit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Queued {
    pub message: Stamped,
    pub size: usize,
}

impl Queued {
    /// `message`, sized by the largest delivery frame it makes.
    pub fn new(message: Stamped) -> Self {
        Self {
            size: message.frame_len_bound(),
            message,
        }
    }

    /// Gives the message its own copy of its envelope, which may be a slice
    /// of a larger read buffer: a message held in a queue (for as long as
    /// nobody takes it) holds only what it counts.
    pub fn detach(&mut self) {
        self.message.envelope = bytes::Bytes::copy_from_slice(&self.message.envelope);
    }
}

/// One member of a group: a subscription of one connection.
#[derive(Debug)]
pub(crate) struct Member {
    pub conn: ConnId,
    pub sid: SubscriptionId,
    pub client_id: ClientId,
    /// The largest frame its connection takes: a message whose delivery
    /// would not fit waits for a member it fits.
    pub max_frame: usize,
    pub prefetch: u32,
    /// Served only while the group has no other member (a bridge that
    /// forwards what nobody here serves).
    pub fallback: bool,
    pub in_flight: u32,
    pub delivered: u64,
    pub acked: u64,
}

/// What became of a published message.
#[derive(Debug, PartialEq)]
pub(crate) enum Enqueued {
    /// Waiting in the queue.
    Queued,
    /// Waiting, after the oldest waiting messages (returned) were evicted.
    EvictedOldest(Vec<Queued>),
    /// Discarded under `drop-incoming`.
    DroppedIncoming,
    /// Refused under `reject`.
    Rejected,
}

/// Counters reported in stats.
///
/// **Invariant:** every message the group accepted is in exactly one place:
/// `accepted` = waiting + in flight + `acked` + `dead_lettered` + `evicted` +
/// `cancelled`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    /// Messages that entered the queue: published into it, or a direct
    /// message handed over to it when its holder left.
    pub accepted: u64,
    /// Waiting messages evicted under `drop-oldest` (also in `dropped`).
    pub evicted: u64,
    pub delivered: u64,
    pub acked: u64,
    pub nacked: u64,
    pub redelivered: u64,
    pub dropped: u64,
    pub rejected: u64,
    pub dead_lettered: u64,
    pub cancelled: u64,
}

/// A queue group's state.
#[derive(Debug)]
pub(crate) struct QueueGroup {
    pub filter: TopicFilter,
    pub name: GroupName,
    members: Vec<Member>,
    cursor: usize,
    queue: VecDeque<Queued>,
    /// Bytes of the waiting messages' delivery frames.
    bytes: usize,
    in_flight: usize,
    policy: QueuePolicy,
    pub counters: Counters,
}

impl QueueGroup {
    pub fn new(filter: TopicFilter, name: GroupName, policy: QueuePolicy) -> Self {
        Self {
            filter,
            name,
            members: Vec::new(),
            cursor: 0,
            queue: VecDeque::new(),
            bytes: 0,
            in_flight: 0,
            policy,
            counters: Counters::default(),
        }
    }

    /// The group's resolved settings.
    pub fn policy(&self) -> &QueuePolicy {
        &self.policy
    }

    /// Whether a newly published message of delivery size `size` would
    /// meet a bound (`max_len` messages or `max_bytes` bytes waiting).
    pub fn is_full_for(&self, size: usize) -> bool {
        self.queue.len() >= self.policy.max_len || self.bytes + size > self.policy.max_bytes
    }

    /// The queue's room (in messages), for tests.
    #[cfg(test)]
    pub fn room(&self) -> usize {
        self.queue.capacity()
    }

    /// Bytes of the messages waiting.
    #[cfg(any(test, fuzzing))]
    pub fn waiting_bytes(&self) -> usize {
        self.bytes
    }

    fn push_back(&mut self, message: Queued) {
        self.bytes += message.size;
        self.queue.push_back(message);
    }

    fn push_front(&mut self, message: Queued) {
        self.bytes += message.size;
        self.queue.push_front(message);
    }

    fn pop_front(&mut self) -> Option<Queued> {
        let message = self.queue.pop_front()?;
        self.queue.shrink_if_sparse();
        self.bytes -= message.size;
        Some(message)
    }

    pub fn join(&mut self, member: Member) {
        self.members.push(member);
    }

    /// Removes a member; returns whether it was one.
    pub fn leave(&mut self, conn: ConnId, sid: SubscriptionId) -> bool {
        let Some(pos) = self
            .members
            .iter()
            .position(|m| m.conn == conn && m.sid == sid)
        else {
            return false;
        };
        let member = self.members.remove(pos);
        self.in_flight -= member.in_flight as usize;
        if self.cursor > pos {
            self.cursor -= 1;
        }
        true
    }

    /// No members and nothing waiting: the group can be forgotten.
    pub fn is_idle(&self) -> bool {
        self.members.is_empty() && self.queue.is_empty()
    }

    pub fn enqueue(&mut self, message: Queued) -> Enqueued {
        let mut outcome = Enqueued::Queued;
        if self.is_full_for(message.size) {
            match self.policy.overflow {
                OverflowPolicy::DropIncoming => {
                    self.counters.dropped += 1;
                    return Enqueued::DroppedIncoming;
                }
                // A blocking publisher waits before it gets here; one that timed out
                // is refused like under `reject`.
                OverflowPolicy::Reject | OverflowPolicy::Block => {
                    self.counters.rejected += 1;
                    return Enqueued::Rejected;
                }
                OverflowPolicy::DropOldest => {
                    let mut evicted = Vec::new();
                    while self.is_full_for(message.size)
                        && let Some(oldest) = self.pop_front()
                    {
                        evicted.push(oldest);
                    }
                    self.counters.dropped += evicted.len() as u64;
                    self.counters.evicted += evicted.len() as u64;
                    if self.is_full_for(message.size) {
                        // Larger than the whole byte bound on its own.
                        self.counters.dropped += 1;
                        return Enqueued::DroppedIncoming;
                    }
                    outcome = Enqueued::EvictedOldest(evicted);
                }
            }
        }
        self.counters.accepted += 1;
        self.push_back(message);
        outcome
    }

    /// Puts a message that was in flight back at the front, for redelivery
    /// (even past the bounds: it was accepted already, and is counted in
    /// `depth` and the waiting bytes like any other).
    pub fn requeue_front(&mut self, mut message: Queued) {
        message.message.attempt = message.message.attempt.saturating_add(1);
        self.counters.redelivered += 1;
        self.push_front(message);
    }

    /// Evicts the oldest waiting message (to make room on disk under the
    /// `drop-oldest` policy), counted as dropped and evicted.
    pub fn evict_oldest(&mut self) -> Option<Queued> {
        let oldest = self.pop_front()?;
        self.counters.dropped += 1;
        self.counters.evicted += 1;
        Some(oldest)
    }

    /// Counts a message dropped for lack of room on disk (`drop-incoming`).
    pub fn count_dropped(&mut self) {
        self.counters.dropped += 1;
    }

    /// Puts back a message recovered from the journal, in its recovered
    /// order (past the bounds, like a redelivery: it was accepted before the
    /// restart). Counted as accepted, so the group accounts for it.
    pub fn restore(&mut self, message: Queued) {
        self.counters.accepted += 1;
        self.push_back(message);
    }

    /// Takes over a message that was in flight elsewhere (a direct send whose
    /// holder left): accepted, and first in line for redelivery.
    pub fn adopt(&mut self, message: Queued) {
        self.counters.accepted += 1;
        self.requeue_front(message);
    }

    /// Counts a publish refused because the queue is full; returns what the
    /// refusal names: its filter, its name and its bound.
    pub fn reject(&mut self) -> (String, String, usize) {
        self.counters.rejected += 1;
        (
            self.filter.to_string(),
            self.name.to_string(),
            self.policy.max_len,
        )
    }

    /// Counts a message that was in flight to a member and is now settled
    /// for good by dead-lettering (the caller publishes it elsewhere).
    pub fn count_dead_lettered(&mut self) {
        self.counters.dead_lettered += 1;
    }

    /// The next (member, message) to deliver, if any member has credit and
    /// takes frames of its size.
    ///
    /// Marks the delivery in flight; the caller sends it.
    pub fn next_dispatch(&mut self) -> Option<(ConnId, SubscriptionId, Queued)> {
        let limit = self.policy.concurrency as usize;
        let size = self.queue.front()?.size;
        if self.members.is_empty() || (limit > 0 && self.in_flight >= limit) {
            return None;
        }
        let n = self.members.len();
        let start = self.cursor % n;
        // Fallback members only while there is no other member at all (one
        // without credit keeps its messages waiting for it).
        let fallback_only = self.members.iter().all(|m| m.fallback);
        let idx = (0..n).map(|i| (start + i) % n).find(|&i| {
            let m = &self.members[i];
            m.fallback == fallback_only && m.in_flight < m.prefetch && size <= m.max_frame
        })?;
        let message = self.pop_front()?;
        let member = &mut self.members[idx];
        member.in_flight += 1;
        member.delivered += 1;
        self.in_flight += 1;
        self.counters.delivered += 1;
        self.cursor = idx + 1;
        Some((member.conn, member.sid, message))
    }

    /// A delivery to (`conn`, `sid`) is finished; returns whether the member exists.
    pub fn settle(&mut self, conn: ConnId, sid: SubscriptionId, acked: bool) -> bool {
        let Some(m) = self.release(conn, sid) else {
            return false;
        };
        if acked {
            m.acked += 1;
        }
        if acked {
            self.counters.acked += 1;
        } else {
            self.counters.nacked += 1;
        }
        true
    }

    /// Frees the credit a delivery to (`conn`, `sid`) held, counting nothing.
    pub fn release(&mut self, conn: ConnId, sid: SubscriptionId) -> Option<&mut Member> {
        let m = self
            .members
            .iter_mut()
            .find(|m| m.conn == conn && m.sid == sid)?;
        m.in_flight = m.in_flight.saturating_sub(1);
        self.in_flight = self.in_flight.saturating_sub(1);
        Some(m)
    }

    /// Removes a waiting message by id; returns it if it was waiting.
    pub fn remove_waiting(&mut self, message_id: MessageId) -> Option<Queued> {
        let pos = self
            .queue
            .iter()
            .position(|m| m.message.id == message_id.get())?;
        let message = self.queue.remove(pos)?;
        self.queue.shrink_if_sparse();
        self.bytes -= message.size;
        Some(message)
    }

    /// A waiting message, by id.
    pub fn find_waiting(&self, message_id: MessageId) -> Option<&Stamped> {
        self.queue
            .iter()
            .map(|m| &m.message)
            .find(|m| m.id == message_id.get())
    }

    /// The largest frame any member takes (`None` without members): a
    /// message larger than that cannot be delivered by this group now.
    pub fn largest_member_frame(&self) -> Option<usize> {
        self.members.iter().map(|m| m.max_frame).max()
    }

    /// Messages waiting.
    pub fn depth(&self) -> usize {
        self.queue.len()
    }

    /// When the first message in line was published (microseconds since
    /// the Unix epoch), if one waits.
    pub fn oldest_waiting_us(&self) -> Option<u64> {
        self.queue.front().map(|m| m.message.timestamp_us)
    }

    /// Deliveries in flight to members.
    #[cfg(any(test, fuzzing))]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The waiting messages with their sizes, first in line first.
    #[cfg(any(test, fuzzing))]
    pub fn waiting_queued(&self) -> impl Iterator<Item = &Queued> {
        self.queue.iter()
    }

    /// The waiting messages, first in line first.
    #[cfg(any(test, fuzzing))]
    pub fn waiting(&self) -> impl Iterator<Item = &Stamped> {
        self.queue.iter().map(|m| &m.message)
    }

    pub fn stats(&self) -> QueueStats {
        let c = self.counters;
        QueueStats {
            topic: self.filter.as_str().to_owned(),
            group: self.name.as_str().to_owned(),
            depth: self.queue.len() as u64,
            bytes: self.bytes as u64,
            in_flight: self.in_flight as u64,
            delivered: c.delivered,
            acked: c.acked,
            nacked: c.nacked,
            redelivered: c.redelivered,
            dropped: c.dropped,
            rejected: c.rejected,
            dead_lettered: c.dead_lettered,
            cancelled: c.cancelled,
            members: self
                .members
                .iter()
                .map(|m| MemberStats {
                    client_id: m.client_id.as_str().to_owned(),
                    delivered: m.delivered,
                    acked: m.acked,
                    in_flight: u64::from(m.in_flight),
                    prefetch: m.prefetch,
                })
                .collect(),
            // Set by the router for a durable queue.
            durable: false,
            totals: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: SubscriptionId = SubscriptionId::new(1);

    fn group(max_len: usize, overflow: OverflowPolicy) -> QueueGroup {
        let mut policy =
            crate::broker::QueueConfig::default().policy_for(&TopicFilter::new("x").unwrap());
        policy.max_len = max_len;
        policy.overflow = overflow;
        QueueGroup::new(
            TopicFilter::new("control.task").unwrap(),
            GroupName::new("g").unwrap(),
            policy,
        )
    }

    fn member(conn: u64, prefetch: u32) -> Member {
        Member {
            conn: ConnId::new(conn),
            sid: SID,
            client_id: ClientId::new(format!("c{conn}")).unwrap(),
            max_frame: 1 << 20,
            prefetch,
            fallback: false,
            in_flight: 0,
            delivered: 0,
            acked: 0,
        }
    }

    fn msg(id: u64) -> Queued {
        Queued {
            message: Stamped {
                envelope: bytes::Bytes::new(),
                topic: crate::topic::Topic::new("control.task").unwrap(),
                id,
                source: ClientId::new("p").unwrap(),
                timestamp_us: 0,
                attempt: 0,
                reply: crate::codec::raw::ReplyStamp::None,
            },
            size: 100,
        }
    }

    #[test]
    fn nine_messages_to_three_idle_members_split_three_ways() {
        let mut g = group(100, OverflowPolicy::Reject);
        for c in 1..=3 {
            g.join(member(c, 10));
        }
        for id in 0..9 {
            g.enqueue(msg(id));
        }
        let mut counts = [0; 4];
        while let Some((conn, _, _)) = g.next_dispatch() {
            counts[conn.get() as usize] += 1;
        }
        assert_eq!(counts[1..], [3, 3, 3]);
    }

    #[test]
    fn members_without_credit_are_skipped_and_messages_wait() {
        let mut g = group(100, OverflowPolicy::Reject);
        g.join(member(1, 1));
        g.join(member(2, 2));
        for id in 0..5 {
            g.enqueue(msg(id));
        }
        let got: Vec<_> = std::iter::from_fn(|| g.next_dispatch())
            .map(|(c, _, m)| (c.get(), m.message.id))
            .collect();
        assert_eq!(got, [(1, 0), (2, 1), (2, 2)]);
        assert_eq!(g.depth(), 2);
        assert!(g.settle(ConnId::new(1), SID, true));
        assert_eq!(
            g.next_dispatch().map(|(c, _, m)| (c.get(), m.message.id)),
            Some((1, 3))
        );
    }

    #[test]
    fn overflow_policies() {
        let mut g = group(2, OverflowPolicy::DropOldest);
        for id in 0..4 {
            g.enqueue(msg(id));
        }
        assert_eq!(g.counters.dropped, 2);
        assert_eq!((g.counters.accepted, g.counters.evicted), (4, 2));
        assert_eq!(
            g.remove_waiting(MessageId::new(2)).map(|m| m.message.id),
            Some(2)
        );

        let mut g = group(1, OverflowPolicy::DropIncoming);
        assert_eq!(g.enqueue(msg(0)), Enqueued::Queued);
        assert_eq!(g.enqueue(msg(1)), Enqueued::DroppedIncoming);
        assert_eq!(g.waiting_bytes(), 100);

        let mut g = group(1, OverflowPolicy::Reject);
        g.enqueue(msg(0));
        assert_eq!(g.enqueue(msg(1)), Enqueued::Rejected);
        assert_eq!(g.counters.rejected, 1);
    }

    #[test]
    fn the_byte_bound_applies_like_the_length_bound() {
        let mut g = group(100, OverflowPolicy::DropOldest);
        g.policy.max_bytes = 250;
        assert_eq!(g.enqueue(msg(0)), Enqueued::Queued);
        assert_eq!(g.enqueue(msg(1)), Enqueued::Queued);
        let Enqueued::EvictedOldest(evicted) = g.enqueue(msg(2)) else {
            panic!("the oldest makes room")
        };
        assert_eq!(
            evicted.iter().map(|m| m.message.id).collect::<Vec<_>>(),
            [0]
        );
        assert_eq!(g.waiting_bytes(), 200);
        let mut huge = msg(3);
        huge.size = 300;
        assert_eq!(g.enqueue(huge), Enqueued::DroppedIncoming);
        assert_eq!(g.depth(), 0, "all evicted, and it still did not fit");
        assert_eq!((g.counters.dropped, g.counters.evicted), (4, 3));
        let mut g = group(100, OverflowPolicy::Reject);
        g.policy.max_bytes = 150;
        g.enqueue(msg(0));
        assert!(g.is_full_for(100) && !g.is_full_for(50));
        assert_eq!(g.enqueue(msg(1)), Enqueued::Rejected);
    }

    #[test]
    fn a_message_waits_for_a_member_whose_frames_it_fits() {
        let mut g = group(10, OverflowPolicy::Reject);
        let mut small = member(1, 5);
        small.max_frame = 1000;
        g.join(small);
        let mut big = msg(0);
        big.size = 2000;
        g.enqueue(big);
        assert!(g.next_dispatch().is_none(), "too big for the only member");
        assert_eq!(g.largest_member_frame(), Some(1000));
        g.join(member(2, 5));
        let (conn, _, m) = g.next_dispatch().unwrap();
        assert_eq!((conn.get(), m.size), (2, 2000));
    }

    #[test]
    fn leaving_returns_credit_and_requeue_goes_first() {
        let mut g = group(10, OverflowPolicy::Reject);
        g.join(member(1, 5));
        g.enqueue(msg(0));
        g.enqueue(msg(1));
        let (_, _, first) = g.next_dispatch().unwrap();
        assert!(g.leave(ConnId::new(1), SID));
        g.requeue_front(first);
        g.join(member(2, 5));
        let (conn, _, m) = g.next_dispatch().unwrap();
        assert_eq!((conn.get(), m.message.id, m.message.attempt), (2, 0, 1));
    }

    #[test]
    fn a_fallback_member_is_served_only_while_it_is_alone() {
        let mut g = group(10, OverflowPolicy::Reject);
        g.join(Member {
            fallback: true,
            ..member(1, 5)
        });
        g.enqueue(msg(0));
        assert_eq!(g.next_dispatch().unwrap().0.get(), 1, "alone: it serves");
        g.join(member(2, 1));
        for id in 1..4 {
            g.enqueue(msg(id));
        }
        // The regular member takes what it has credit for; the rest waits
        // for it, never for the fallback.
        assert_eq!(g.next_dispatch().unwrap().0.get(), 2);
        assert!(g.next_dispatch().is_none());
        assert!(g.leave(ConnId::new(2), SID));
        assert_eq!(g.next_dispatch().unwrap().0.get(), 1, "alone again");
    }
}
