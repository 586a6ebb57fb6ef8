//! The journal's disk bounds, as the router applies them to a durable
//! publish: the total (`durability.max_disk_bytes`, which the journal
//! itself enforces on every append) and each queue's own
//! (`[queue] max_disk_bytes`, from the live bytes the journal reports per
//! queue). At either bound the queue's overflow policy decides: `reject`
//! and `block` refuse the publish before it is routed (a `Storage`
//! refusal), `drop-oldest` evicts the queue's oldest waiting messages until
//! the new one fits, `drop-incoming` drops the new one. Every refusal,
//! eviction and drop is counted as the queue's in-memory bounds count them.
//!
//! **Invariant:** a publish never takes a durable queue past its own bound
//! (what recovery or a lowered bound leaves above it stays, as a queue
//! recovered past `max_len` does, until it drains).

use super::Router;
use crate::broker::ids::GroupId;
use crate::broker::journal::{
    AppendError, Counter, Journal, MessageId as JournalId, Outcome, QueueRef, Record,
};
use crate::broker::queue::Queued;
use crate::broker::refusal::PublishRefusal;
use crate::framed::OverflowPolicy;

/// Why a durable queue cannot take one more message now.
#[derive(Debug)]
enum Full {
    /// The journal refuses it: failed, closing, backlog full, or the
    /// total disk bound.
    Journal(AppendError),
    /// The queue's own disk bound.
    Queue { live: u64, limit: u64 },
}

impl Router {
    /// Whether a message of `len` framed journal bytes fits into durable
    /// group `gid` (journal handle `queue`) under its own disk bound, and
    /// whether the journal admits `total` bytes (what the publish adds to
    /// every durable queue it goes to).
    fn disk_room(&self, gid: GroupId, queue: QueueRef, len: u64, total: u64) -> Result<(), Full> {
        let Some(d) = self.durable.as_ref() else {
            return Ok(());
        };
        let admitted = match d.journal.admits(total) {
            // Failed, closing or a full backlog: not a matter of room.
            Err(e) if !matches!(e, AppendError::DiskBudget { .. }) => {
                return Err(Full::Journal(e));
            }
            other => other,
        };
        let limit = self
            .queues
            .get(gid)
            .map_or(0, |g| g.policy().max_disk_bytes);
        if limit > 0 {
            let live = d.journal.queue_live_bytes(queue);
            if live + len > limit {
                return Err(Full::Queue { live, limit });
            }
        }
        admitted.map_err(Full::Journal)
    }

    /// Why `msg` must go to none of `targets` because of the journal: it
    /// has failed, is closing or its backlog is full, or a durable group
    /// that refuses when full (`reject`, `block`) would pass its own disk
    /// bound or take the journal past the total. Groups that drop make
    /// room in `enqueue`.
    pub(super) fn refusal_to_journal(
        &mut self,
        targets: &[super::Target],
        msg: &Queued,
    ) -> Option<PublishRefusal> {
        self.durable.as_ref()?;
        let len = accepted_len(msg);
        let mut durable = Vec::new();
        for target in targets {
            if let super::Target::Group(gid) = *target
                && let Some(queue) = self.durable_ref(gid)
            {
                durable.push((gid, queue));
            }
        }
        let total = len * durable.len() as u64;
        let mut refused = None;
        for &(gid, queue) in &durable {
            let refuses_when_full = self.queues.get(gid).is_some_and(|g| {
                matches!(
                    g.policy().overflow,
                    OverflowPolicy::Reject | OverflowPolicy::Block
                )
            });
            match self.disk_room(gid, queue, len, total) {
                Ok(()) => {}
                Err(Full::Queue { live, limit }) if refuses_when_full => {
                    // As a full queue in memory: that queue counts it.
                    let Some(g) = self.queues.get_mut(gid) else {
                        continue;
                    };
                    let (filter, group, _) = g.reject();
                    self.journal_counted(gid, Counter::Rejected);
                    return Some(PublishRefusal::Storage {
                        reason: format!(
                            "durable queue {filter} (group {group}) full: {live} bytes + {len} would pass its max_disk_bytes {limit}"
                        ),
                    });
                }
                Err(Full::Queue { .. }) => {}
                Err(Full::Journal(AppendError::DiskBudget { .. })) if !refuses_when_full => {}
                Err(Full::Journal(e)) => refused = Some(e.to_string()),
            }
            if refused.is_some() {
                break;
            }
        }
        let reason = refused?;
        // Refused by the journal for every durable group it was for: each
        // counts it.
        for &(gid, _) in &durable {
            if let Some(g) = self.queues.get_mut(gid) {
                g.reject();
            }
            self.journal_counted(gid, Counter::Rejected);
        }
        Some(PublishRefusal::Storage { reason })
    }

    /// Makes room in the journal for `msg` in durable group `gid`, under
    /// its own disk bound and the total, as its overflow policy says:
    /// `drop-oldest` evicts its oldest waiting messages until it fits;
    /// `drop-incoming` drops `msg` (false). A refusing policy was checked
    /// before routing.
    pub(super) fn make_disk_room(&mut self, gid: GroupId, msg: &Queued) -> bool {
        let Some(queue) = self.durable_ref(gid) else {
            return true;
        };
        let len = accepted_len(msg);
        loop {
            match self.disk_room(gid, queue, len, len) {
                Ok(()) => return true,
                Err(Full::Queue { .. } | Full::Journal(AppendError::DiskBudget { .. })) => {}
                // Not a matter of room: the append reports it.
                Err(Full::Journal(_)) => return true,
            }
            let Some(group) = self.queues.get_mut(gid) else {
                return true;
            };
            match group.policy().overflow {
                OverflowPolicy::DropOldest => {
                    let Some(oldest) = group.evict_oldest() else {
                        group.count_dropped();
                        self.journal_counted(gid, Counter::Dropped);
                        return false;
                    };
                    self.usage.remove(&oldest.message.source, oldest.size);
                    self.journal_settled(gid, oldest.message.id, Outcome::Evicted);
                }
                OverflowPolicy::DropIncoming => {
                    group.count_dropped();
                    self.journal_counted(gid, Counter::Dropped);
                    return false;
                }
                // Refused before routing; a second durable group of the
                // same publish finds the journal's refusal in `append`.
                OverflowPolicy::Reject | OverflowPolicy::Block => return true,
            }
        }
    }
}

/// The framed size of `msg`'s `Accepted` record.
fn accepted_len(msg: &Queued) -> u64 {
    let empty = Record::Accepted {
        queue: QueueRef(0),
        id: JournalId::new(0),
        attempt: 0,
        envelope: &[],
    };
    Journal::record_len(&empty) + msg.message.message_len() as u64 + 8
}
