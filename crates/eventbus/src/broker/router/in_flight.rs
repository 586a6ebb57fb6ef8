//! Deliveries handed out and not yet settled.
//!
//! **Invariants:** each delivery id is in flight to exactly one connection
//! and subscription; a message is in flight at most once (it is not also
//! waiting in a queue); `next_deadline` is never later than the earliest ack
//! deadline in the table (it may be earlier: the ticker then finds nothing and
//! recomputes it). The table gives back its room once mostly empty
//! (`broker::shrink`).

use std::time::Instant;

use super::Map;
use crate::broker::ids::{ConnId, DeliveryId, GroupId, MessageId, SubscriptionId};
use crate::broker::queue::Queued;
use crate::broker::shrink::Sparse as _;
use crate::broker::slab::{Slab, Slot};
use crate::codec::raw::Stamped;

/// A delivery awaiting its ack.
#[derive(Debug)]
pub(super) struct InFlight {
    pub conn: ConnId,
    pub sid: SubscriptionId,
    /// The queue group it came from; `None` for a direct send.
    pub group: Option<GroupId>,
    /// A direct send's sender, whose quota of unsettled direct messages it
    /// takes while in flight.
    pub sender: Option<ConnId>,
    pub message: Stamped,
    /// Its delivery frame's size (an upper bound).
    pub size: usize,
    /// When the ack timeout takes it back, if its group has one.
    pub deadline: Option<Instant>,
}

impl InFlight {
    pub fn message_id(&self) -> MessageId {
        MessageId::new(self.message.id)
    }

    /// The message, to queue again.
    pub fn into_queued(self) -> Queued {
        Queued {
            message: self.message,
            size: self.size,
        }
    }
}

/// A delivery in flight and its id.
#[derive(Debug)]
struct Held {
    id: DeliveryId,
    delivery: InFlight,
}

/// Every delivery in flight: the deliveries in a [`Slab`], found by id
/// through a map of slots (`broker::slab` says why).
#[derive(Debug, Default)]
pub(super) struct InFlightTable {
    entries: Slab<Held>,
    by_id: Map<DeliveryId, Slot>,
    /// The earliest ack deadline, so the ticker scans only when one is due.
    next_deadline: Option<Instant>,
}

impl InFlightTable {
    pub fn insert(&mut self, id: DeliveryId, delivery: InFlight) {
        if let Some(d) = delivery.deadline {
            self.next_deadline = Some(self.next_deadline.map_or(d, |n| n.min(d)));
        }
        let slot = self.entries.insert(Held { id, delivery });
        // Delivery ids are never issued twice; were one reused, the
        // delivery it named would not be left behind unindexed.
        if let Some(old) = self.by_id.insert(id, slot) {
            self.entries.remove(old);
        }
    }

    pub fn remove(&mut self, id: DeliveryId) -> Option<InFlight> {
        let delivery = self.take(id);
        self.shrink_if_sparse();
        delivery
    }

    /// Removes delivery `id`, leaving the room as it is.
    fn take(&mut self, id: DeliveryId) -> Option<InFlight> {
        let slot = self.by_id.remove(&id)?;
        Some(self.entries.remove(slot)?.delivery)
    }

    /// Gives back the room a burst of deliveries left (`broker::shrink`).
    fn shrink_if_sparse(&mut self) {
        self.by_id.shrink_if_sparse();
        let by_id = &mut self.by_id;
        self.entries.shrink_if_sparse(|held, slot| {
            by_id.insert(held.id, slot);
        });
    }

    fn get(&self, id: DeliveryId) -> Option<&InFlight> {
        let slot = self.by_id.get(&id)?;
        Some(&self.entries.get(*slot)?.delivery)
    }

    /// Delivery `id`, if `conn` holds it.
    pub fn get_held(&self, id: DeliveryId, conn: ConnId) -> Option<&InFlight> {
        self.get(id).filter(|f| f.conn == conn)
    }

    /// A delivery carrying message `id`, if one is in flight.
    pub fn find_message_ref(&self, id: MessageId) -> Option<&InFlight> {
        self.iter().map(|(_, f)| f).find(|f| f.message_id() == id)
    }

    /// Removes delivery `id` if `conn` holds it.
    pub fn remove_held(&mut self, id: DeliveryId, conn: ConnId) -> Option<InFlight> {
        if self.get(id)?.conn != conn {
            return None;
        }
        self.remove(id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The larger table's room (in entries), for tests.
    #[cfg(test)]
    pub fn room(&self) -> usize {
        self.entries.room().max(self.by_id.capacity())
    }

    pub fn iter(&self) -> impl Iterator<Item = (DeliveryId, &InFlight)> {
        self.entries
            .iter()
            .map(|(_, held)| (held.id, &held.delivery))
    }

    /// The delivery carrying message `id`, if it is in flight.
    pub fn find_message(&self, id: MessageId) -> Option<DeliveryId> {
        self.iter()
            .find(|(_, f)| f.message_id() == id)
            .map(|(d, _)| d)
    }

    /// Removes every delivery held by `conn` (on subscription `sid`, when
    /// given), newest first: put back at the front of their queue one by one,
    /// they are in the order they were handed out.
    pub fn take_held(&mut self, conn: ConnId, sid: Option<SubscriptionId>) -> Vec<InFlight> {
        let mut ids: Vec<DeliveryId> = self
            .iter()
            .filter(|(_, f)| f.conn == conn && sid.is_none_or(|s| f.sid == s))
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        let held = ids.into_iter().filter_map(|id| self.take(id)).collect();
        self.shrink_if_sparse();
        held
    }

    /// The earliest ack deadline, if any may be pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.next_deadline
    }

    /// Removes every delivery whose ack deadline is `now` or past, newest
    /// first (as `take_held`), and remembers the earliest deadline left.
    pub fn take_expired(&mut self, now: Instant) -> Vec<InFlight> {
        if self.next_deadline.is_none_or(|d| d > now) {
            return Vec::new();
        }
        let mut next: Option<Instant> = None;
        let mut expired: Vec<DeliveryId> = self
            .iter()
            .filter_map(|(id, f)| match f.deadline {
                Some(d) if d <= now => Some(id),
                Some(d) => {
                    next = Some(next.map_or(d, |n| n.min(d)));
                    None
                }
                None => None,
            })
            .collect();
        self.next_deadline = next;
        expired.sort_unstable_by(|a, b| b.cmp(a));
        let expired = expired.into_iter().filter_map(|id| self.take(id)).collect();
        self.shrink_if_sparse();
        expired
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::codec::raw::ReplyStamp;

    fn delivery(n: u64, conn: u64, deadline: Option<Instant>) -> InFlight {
        InFlight {
            conn: ConnId::new(conn),
            sid: SubscriptionId::new(1),
            group: Some(GroupId::new(1)),
            sender: None,
            message: Stamped {
                envelope: bytes::Bytes::new(),
                topic: crate::topic::Topic::new("a.b").expect("a topic"),
                id: n,
                source: crate::names::ClientId::new("p").expect("a client id"),
                timestamp_us: 0,
                attempt: 1,
                reply: ReplyStamp::None,
            },
            size: 64,
            deadline,
        }
    }

    /// A delivery id issued twice (never, by construction) leaves no
    /// delivery behind that nothing names.
    #[test]
    fn a_reused_delivery_id_replaces_the_delivery_it_named() {
        let mut table = InFlightTable::default();
        table.insert(DeliveryId::new(5), delivery(1, 1, None));
        table.insert(DeliveryId::new(5), delivery(2, 1, None));
        assert_eq!(table.len(), 1);
        assert_eq!(table.find_message(MessageId::new(1)), None);
        let taken = table.remove(DeliveryId::new(5)).map(|f| f.message.id);
        assert_eq!((taken, table.len()), (Some(2), 0));
    }

    /// Draining a burst moves the deliveries left over to other slots:
    /// each stays found by its id, by its message and by its holder, and
    /// expires on time.
    #[test]
    fn deliveries_left_after_a_drained_burst_are_found_every_way() {
        let now = Instant::now();
        let due = |n: u64| (n / 100).is_multiple_of(2).then_some(now);
        let mut table = InFlightTable::default();
        for n in 1..=10_000 {
            table.insert(DeliveryId::new(n), delivery(n, n % 3, due(n)));
        }
        let peak = table.room();
        for n in (1..=10_000u64).filter(|n| !n.is_multiple_of(100)) {
            assert!(table.remove(DeliveryId::new(n)).is_some());
        }
        assert!(table.room() < peak / 4, "{} of {peak}", table.room());
        for n in (100..=10_000u64).step_by(100) {
            let held = table.get_held(DeliveryId::new(n), ConnId::new(n % 3));
            assert_eq!(held.map(InFlight::message_id), Some(MessageId::new(n)));
            assert_eq!(
                table.find_message(MessageId::new(n)),
                Some(DeliveryId::new(n))
            );
        }
        assert!(table.get_held(DeliveryId::new(1), ConnId::new(1)).is_none());
        assert!(
            table
                .get_held(DeliveryId::new(200), ConnId::new(0))
                .is_none(),
            "not its holder"
        );
        let left: Vec<u64> = (100..=10_000).step_by(100).collect();
        let of_one: Vec<u64> = left.iter().copied().filter(|n| n % 3 == 1).collect();
        let taken = table.take_held(ConnId::new(1), None);
        let mut ids: Vec<u64> = taken.iter().map(|f| f.message.id).collect();
        assert!(ids.is_sorted_by(|a, b| a > b), "newest first");
        ids.reverse();
        assert_eq!(ids, of_one);
        let expired = table.take_expired(now + Duration::from_millis(1));
        let due_now = left
            .iter()
            .filter(|&&n| n % 3 != 1 && due(n).is_some())
            .count();
        assert_eq!(expired.len(), due_now);
        assert_eq!(table.len(), left.len() - of_one.len() - due_now);
        assert!(table.iter().all(|(_, f)| f.deadline.is_none()));
    }
}
