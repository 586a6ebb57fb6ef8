//! Requests awaiting their reply.
//!
//! **Invariants:** a request is keyed by its message id (the correlation id
//! its responder answers) and is pending until its reply, a failure told to
//! its requester, its deadline, or its requester's disconnect, whichever
//! comes first; at most `max_pending_requests` are pending.

use std::time::Instant;

use super::Map;
use crate::broker::ids::{ConnId, MessageId, Seq};

/// A request awaiting its reply.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingRequest {
    /// The requester.
    pub conn: ConnId,
    /// What the requester's answer is correlated by.
    pub seq: Seq,
    pub deadline: Instant,
}

/// Every pending request.
#[derive(Debug, Default)]
pub(super) struct Requests {
    map: Map<MessageId, PendingRequest>,
}

impl Requests {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn insert(&mut self, id: MessageId, pending: PendingRequest) {
        self.map.insert(id, pending);
    }

    /// Takes request `id` off the table: it is answered or failed.
    pub fn take(&mut self, id: MessageId) -> Option<PendingRequest> {
        self.map.remove(&id)
    }

    /// Forgets the requests of a requester that left.
    pub fn forget_requester(&mut self, conn: ConnId) {
        self.map.retain(|_, p| p.conn != conn);
    }

    /// Forgets requests whose deadline has passed; returns the earliest
    /// deadline left.
    pub fn expire(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        self.map.retain(|_, p| {
            let pending = p.deadline > now;
            if pending {
                next = Some(next.map_or(p.deadline, |n| n.min(p.deadline)));
            }
            pending
        });
        next
    }
}
