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
//! `max_pending_requests` are pending. The tables give back their room
//! once mostly empty (`broker::shrink`).

use std::time::Instant;

use super::Map;
use crate::broker::ids::{ConnId, CorrelationId, MessageId, Seq};
use crate::broker::shrink::Sparse as _;

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

/// Every pending request.
#[derive(Debug, Default)]
pub(super) struct Requests {
    by_token: Map<CorrelationId, PendingRequest>,
    by_message: Map<MessageId, CorrelationId>,
}

impl Requests {
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    pub fn insert(&mut self, token: CorrelationId, pending: PendingRequest) {
        self.by_message.insert(pending.message, token);
        self.by_token.insert(token, pending);
    }

    pub fn get(&self, token: CorrelationId) -> Option<&PendingRequest> {
        self.by_token.get(&token)
    }

    /// Takes request `token` off the table: it is answered.
    pub fn take(&mut self, token: CorrelationId) -> Option<PendingRequest> {
        let pending = self.by_token.remove(&token)?;
        self.by_message.remove(&pending.message);
        self.shrink_if_sparse();
        Some(pending)
    }

    /// Takes the request of message `id` off the table: it failed.
    pub fn take_message(&mut self, id: MessageId) -> Option<PendingRequest> {
        let token = self.by_message.remove(&id)?;
        let pending = self.by_token.remove(&token);
        self.shrink_if_sparse();
        pending
    }

    /// The larger of the two tables' room (in entries), for tests.
    #[cfg(test)]
    pub fn room(&self) -> usize {
        self.by_token.capacity().max(self.by_message.capacity())
    }

    /// Gives back the room a burst of requests left (`broker::shrink`).
    fn shrink_if_sparse(&mut self) {
        self.by_token.shrink_if_sparse();
        self.by_message.shrink_if_sparse();
    }

    /// Forgets the requests of a requester that left.
    pub fn forget_requester(&mut self, conn: ConnId) {
        let by_message = &mut self.by_message;
        self.by_token.retain(|_, p| {
            let keep = p.conn != conn;
            if !keep {
                by_message.remove(&p.message);
            }
            keep
        });
        self.shrink_if_sparse();
    }

    /// Forgets requests whose deadline has passed, adding their requesters
    /// to `expired`; returns the earliest deadline left.
    pub fn expire(&mut self, now: Instant, expired: &mut Vec<ConnId>) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let by_message = &mut self.by_message;
        self.by_token.retain(|_, p| {
            let pending = p.deadline > now;
            if pending {
                next = Some(next.map_or(p.deadline, |n| n.min(p.deadline)));
            } else {
                by_message.remove(&p.message);
                expired.push(p.conn);
            }
            pending
        });
        self.shrink_if_sparse();
        next
    }

    /// Requests pending per requester, for the invariant check.
    #[cfg(any(test, fuzzing))]
    pub fn per_requester(&self) -> std::collections::HashMap<ConnId, usize> {
        let mut counts = std::collections::HashMap::new();
        for p in self.by_token.values() {
            *counts.entry(p.conn).or_default() += 1;
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
}
