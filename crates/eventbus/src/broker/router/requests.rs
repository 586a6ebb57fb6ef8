//! Requests awaiting their reply.
//!
//! A request is answered by the unguessable token its delivery carried
//! (`CorrelationId`), and only by a client it was delivered to: the holder
//! of its queue or direct delivery (which settles it), or one of the plain
//! subscribers it was copied to (its `responders`).
//!
//! **Invariants:** `by_token` and `by_message` name the same requests; a
//! request is pending until its reply, a failure told to its requester, its
//! deadline, or its requester's disconnect, whichever comes first; at most
//! `max_pending_requests` are pending; each request is in `entries` once,
//! and `by_token` and `by_message` name its slot. The tables give back
//! their room once mostly empty (`broker::shrink`).

use std::time::Instant;

use super::Map;
use crate::broker::ids::{ConnId, CorrelationId, MessageId, Seq};
use crate::broker::shrink::Sparse as _;
use crate::broker::slab::{Slab, Slot};

/// The plain subscribers a request was copied to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum Responders {
    /// Only a delivery's holder may answer (queue groups, direct sends).
    #[default]
    None,
    One(ConnId),
    Many(Vec<ConnId>),
}

impl Responders {
    pub fn add(&mut self, conn: ConnId) {
        *self = match std::mem::take(self) {
            Self::None => Self::One(conn),
            Self::One(first) => Self::Many(vec![first, conn]),
            Self::Many(mut all) => {
                all.push(conn);
                Self::Many(all)
            }
        };
    }

    pub fn contains(&self, conn: ConnId) -> bool {
        match self {
            Self::None => false,
            Self::One(c) => *c == conn,
            Self::Many(all) => all.contains(&conn),
        }
    }
}

/// A request awaiting its reply.
#[derive(Debug, Clone)]
pub(super) struct PendingRequest {
    /// The requester.
    pub conn: ConnId,
    /// What the requester's answer is correlated by.
    pub seq: Seq,
    pub deadline: Instant,
    /// The request's message id (what `Cancel` and failures name).
    pub message: MessageId,
    /// The plain subscribers that may answer without a delivery to settle.
    pub responders: Responders,
}

/// A pending request and the token that answers it.
#[derive(Debug)]
struct Entry {
    token: CorrelationId,
    pending: PendingRequest,
}

/// Every pending request: the requests in a [`Slab`], found by token and by
/// message id through two maps of slots (`broker::slab` says why).
#[derive(Debug, Default)]
pub(super) struct Requests {
    entries: Slab<Entry>,
    by_token: Map<CorrelationId, Slot>,
    by_message: Map<MessageId, Slot>,
}

impl Requests {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn insert(&mut self, token: CorrelationId, pending: PendingRequest) {
        let message = pending.message;
        let slot = self.entries.insert(Entry { token, pending });
        // Tokens and message ids are never issued twice; were one reused,
        // the request it named would be dropped whole rather than left
        // half-indexed.
        if let Some(old) = self.by_token.insert(token, slot)
            && let Some(old) = self.entries.remove(old)
        {
            self.by_message.remove(&old.pending.message);
        }
        if let Some(old) = self.by_message.insert(message, slot)
            && let Some(old) = self.entries.remove(old)
        {
            self.by_token.remove(&old.token);
        }
    }

    pub fn get(&self, token: CorrelationId) -> Option<&PendingRequest> {
        let slot = self.by_token.get(&token)?;
        Some(&self.entries.get(*slot)?.pending)
    }

    /// Takes request `token` off the table: it is answered.
    pub fn take(&mut self, token: CorrelationId) -> Option<PendingRequest> {
        let slot = self.by_token.remove(&token)?;
        let entry = self.entries.remove(slot)?;
        self.by_message.remove(&entry.pending.message);
        self.shrink_if_sparse();
        Some(entry.pending)
    }

    /// Takes the request of message `id` off the table: it failed.
    pub fn take_message(&mut self, id: MessageId) -> Option<PendingRequest> {
        let slot = self.by_message.remove(&id)?;
        let entry = self.entries.remove(slot)?;
        self.by_token.remove(&entry.token);
        self.shrink_if_sparse();
        Some(entry.pending)
    }

    /// The largest table's room (in entries), for tests.
    #[cfg(test)]
    pub fn room(&self) -> usize {
        self.entries
            .room()
            .max(self.by_token.capacity())
            .max(self.by_message.capacity())
    }

    /// Gives back the room a burst of requests left (`broker::shrink`).
    fn shrink_if_sparse(&mut self) {
        self.by_token.shrink_if_sparse();
        self.by_message.shrink_if_sparse();
        let (by_token, by_message) = (&mut self.by_token, &mut self.by_message);
        self.entries.shrink_if_sparse(|entry, slot| {
            by_token.insert(entry.token, slot);
            by_message.insert(entry.pending.message, slot);
        });
    }

    /// Takes off the table every request `keep` says no to, handing each to
    /// `removed`.
    fn retain(
        &mut self,
        mut keep: impl FnMut(&PendingRequest) -> bool,
        mut removed: impl FnMut(PendingRequest),
    ) {
        let (by_token, by_message) = (&mut self.by_token, &mut self.by_message);
        self.entries.retain(
            |entry| keep(&entry.pending),
            |entry| {
                by_token.remove(&entry.token);
                by_message.remove(&entry.pending.message);
                removed(entry.pending);
            },
        );
        self.shrink_if_sparse();
    }

    /// Forgets the requests of a requester that left.
    pub fn forget_requester(&mut self, conn: ConnId) {
        self.retain(|p| p.conn != conn, drop);
    }

    /// Forgets requests whose deadline has passed, adding their requesters
    /// to `expired`; returns the earliest deadline left.
    pub fn expire(&mut self, now: Instant, expired: &mut Vec<ConnId>) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        self.retain(
            |p| {
                let pending = p.deadline > now;
                if pending {
                    next = Some(next.map_or(p.deadline, |n| n.min(p.deadline)));
                }
                pending
            },
            |p| expired.push(p.conn),
        );
        next
    }

    /// Requests pending per requester, for the invariant check.
    #[cfg(any(test, fuzzing))]
    pub fn per_requester(&self) -> std::collections::HashMap<ConnId, usize> {
        let mut counts = std::collections::HashMap::new();
        for (_, entry) in self.entries.iter() {
            *counts.entry(entry.pending.conn).or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responders_grow_from_none_to_many() {
        let mut r = Responders::default();
        assert!(!r.contains(ConnId::new(1)));
        r.add(ConnId::new(1));
        assert_eq!(r, Responders::One(ConnId::new(1)));
        r.add(ConnId::new(2));
        r.add(ConnId::new(3));
        assert!(r.contains(ConnId::new(1)) && r.contains(ConnId::new(3)));
        assert!(!r.contains(ConnId::new(4)));
    }

    fn request(n: u64, conn: u64, deadline: Instant) -> PendingRequest {
        PendingRequest {
            conn: ConnId::new(conn),
            seq: Seq::new(n),
            deadline,
            message: MessageId::new(n),
            responders: Responders::None,
        }
    }

    /// A token or message id issued twice (never, by construction) drops
    /// the request it named whole, rather than leaving half of it indexed.
    #[test]
    fn a_reused_key_drops_the_request_it_named_whole() {
        let now = Instant::now();
        let mut requests = Requests::default();
        requests.insert(CorrelationId::new(7), request(1, 1, now));
        requests.insert(CorrelationId::new(7), request(2, 1, now));
        assert_eq!(requests.len(), 1);
        assert!(
            requests.take_message(MessageId::new(1)).is_none(),
            "the first is gone"
        );
        assert_eq!(
            requests.get(CorrelationId::new(7)).map(|p| p.seq),
            Some(Seq::new(2))
        );
        requests.insert(CorrelationId::new(8), request(2, 1, now));
        assert_eq!(requests.len(), 1);
        assert!(
            requests.take(CorrelationId::new(7)).is_none(),
            "its token went with it"
        );
        assert_eq!(
            requests.take(CorrelationId::new(8)).map(|p| p.seq),
            Some(Seq::new(2))
        );
        assert_eq!(requests.len(), 0);
    }

    /// Draining a burst moves the requests left over to other slots: each
    /// stays answerable by its token, failable by its message id, and
    /// expirable, and nothing answered comes back.
    #[test]
    fn requests_left_after_a_drained_burst_are_found_every_way() {
        let now = Instant::now();
        let later = now + std::time::Duration::from_secs(60);
        let mut requests = Requests::default();
        let token = |n: u64| CorrelationId::new(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let due = |n: u64| {
            if (n / 100).is_multiple_of(2) {
                now
            } else {
                later
            }
        };
        for n in 1..=10_000 {
            requests.insert(token(n), request(n, n % 3, due(n)));
        }
        let peak = requests.room();
        // Answer all but every 100th, oldest first.
        for n in (1..=10_000u64).filter(|n| !n.is_multiple_of(100)) {
            assert_eq!(requests.take(token(n)).map(|p| p.seq), Some(Seq::new(n)));
        }
        assert!(requests.room() < peak / 4, "{} of {peak}", requests.room());
        assert_eq!(requests.len(), 100);
        for n in (100..=10_000).step_by(100) {
            assert_eq!(
                requests.get(token(n)).map(|p| p.message),
                Some(MessageId::new(n))
            );
        }
        assert!(
            requests.get(token(1)).is_none(),
            "an answered request stays answered"
        );
        assert!(requests.take_message(MessageId::new(1)).is_none());
        // By message id, by requester, by deadline.
        assert_eq!(
            requests.take_message(MessageId::new(300)).map(|p| p.seq),
            Some(Seq::new(300))
        );
        assert!(
            requests.get(token(300)).is_none(),
            "failed by id, it has no token either"
        );
        let left: Vec<u64> = (100..=10_000).step_by(100).filter(|&n| n != 300).collect();
        requests.forget_requester(ConnId::new(1));
        let left: Vec<u64> = left.into_iter().filter(|n| n % 3 != 1).collect();
        assert_eq!(requests.len(), left.len());
        let mut expired = Vec::new();
        assert_eq!(requests.expire(now, &mut expired), Some(later));
        let due_now = left.iter().filter(|&&n| due(n) == now).count();
        assert!(due_now > 0 && due_now < left.len());
        assert_eq!(expired.len(), due_now);
        assert!(requests.expire(later, &mut expired).is_none());
        assert_eq!(requests.len(), 0);
        assert_eq!(requests.per_requester().len(), 0);
    }
}
