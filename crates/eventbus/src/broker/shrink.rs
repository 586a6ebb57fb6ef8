//! Giving back the room a burst left behind.
//!
//! A table or queue grows to the largest load it ever held and, left alone,
//! keeps that capacity for the broker's lifetime: after 10,000 requests in
//! flight the pending-request table and a group's queue held about 2 MiB
//! each, empty. [`Sparse::shrink_if_sparse`], called after each removal,
//! shrinks a collection once it is mostly empty.
//!
//! **Policy:** a collection with room for more than twice [`KEEP`] entries
//! whose length has fallen to a quarter of its room or less is shrunk to
//! twice its length (at least [`KEEP`]). The gap between the shrink point and the new
//! room makes the cost amortized O(1) per removal: after a shrink to `2n`,
//! the next one comes only after `n / 2` more removals, and the next growth
//! only after about `n` more inserts, so a load near the boundary does not
//! make it grow and shrink in turn.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};

/// The room a collection keeps however empty it gets (in entries): a
/// small table is not worth giving back.
pub(crate) const KEEP: usize = 128;

/// The fraction of its room a collection's length must fall to (or below)
/// before it is shrunk: one `SPARSE_DIVISOR`th.
const SPARSE_DIVISOR: usize = 4;

/// A collection that can give back room it no longer uses.
pub(crate) trait Sparse {
    fn room(&self) -> usize;
    fn entries(&self) -> usize;
    fn shrink_room_to(&mut self, room: usize);

    /// Shrinks to twice the length (at least [`KEEP`]) if the length has
    /// fallen to a quarter of the room or less and the room is above twice
    /// [`KEEP`]; returns whether it shrank.
    fn shrink_if_sparse(&mut self) -> bool {
        let room = self.room();
        if !is_sparse(room, self.entries()) {
            return false;
        }
        self.shrink_room_to(room_for(self.entries()));
        self.room() < room
    }
}

/// Whether a collection with `room` for entries, holding `entries`, is due
/// to shrink: the policy above, for collections that shrink their own way
/// (`broker::slab`).
pub(crate) fn is_sparse(room: usize, entries: usize) -> bool {
    room > 2 * KEEP && entries <= room / SPARSE_DIVISOR
}

/// The room a shrinking collection keeps for `entries`: twice that, at
/// least [`KEEP`].
pub(crate) fn room_for(entries: usize) -> usize {
    (2 * entries).max(KEEP)
}

impl<K: Eq + Hash, V, S: BuildHasher> Sparse for HashMap<K, V, S> {
    fn room(&self) -> usize {
        self.capacity()
    }
    fn entries(&self) -> usize {
        self.len()
    }
    fn shrink_room_to(&mut self, room: usize) {
        self.shrink_to(room);
    }
}

impl<T> Sparse for VecDeque<T> {
    fn room(&self) -> usize {
        self.capacity()
    }
    fn entries(&self) -> usize {
        self.len()
    }
    fn shrink_room_to(&mut self, room: usize) {
        self.shrink_to(room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_that_held_a_burst_gives_its_room_back_as_it_drains() {
        let mut q: VecDeque<u64> = (0..10_000).collect();
        let peak = q.capacity();
        while q.pop_front().is_some() {
            q.shrink_if_sparse();
            // Never below what it holds; small, or more than a quarter used.
            assert!(q.capacity() >= q.len());
            assert!(q.capacity() <= 2 * KEEP || q.len() > q.capacity() / SPARSE_DIVISOR);
        }
        assert!(peak >= 10_000);
        assert!(q.capacity() <= 2 * KEEP, "{}", q.capacity());
    }

    #[test]
    fn a_table_that_held_a_burst_gives_its_room_back_once_empty() {
        let mut m: HashMap<u64, [u8; 64]> = (0..10_000).map(|i| (i, [0; 64])).collect();
        for i in 0..10_000 {
            m.remove(&i);
            m.shrink_if_sparse();
        }
        assert!(m.capacity() <= 2 * KEEP, "{}", m.capacity());
    }

    #[test]
    fn a_small_collection_is_left_alone() {
        let mut q: VecDeque<u8> = VecDeque::with_capacity(KEEP);
        q.push_back(1);
        let room = q.capacity();
        assert!(!q.shrink_if_sparse());
        assert_eq!(q.capacity(), room);
    }

    #[test]
    fn a_collection_still_in_use_keeps_its_room() {
        let mut q: VecDeque<u64> = (0..1_000).collect();
        let room = q.capacity();
        // Three quarters gone leaves it at a quarter: the boundary shrinks,
        // anything above it does not.
        for _ in 0..(q.len() - room / SPARSE_DIVISOR - 1) {
            q.pop_front();
        }
        assert!(!q.shrink_if_sparse());
        assert_eq!(q.capacity(), room);
        q.pop_front();
        assert!(q.shrink_if_sparse());
        assert!(q.capacity() >= q.len() && q.capacity() < room);
    }

    #[test]
    fn alternating_at_the_boundary_does_not_shrink_each_time() {
        let mut q: VecDeque<u64> = (0..4_096).collect();
        while q.len() > 1_024 {
            q.pop_front();
            q.shrink_if_sparse();
        }
        let mut shrinks = 0;
        for i in 0..10_000 {
            if i % 2 == 0 {
                q.pop_front();
                shrinks += usize::from(q.shrink_if_sparse());
            } else {
                q.push_back(i);
            }
        }
        assert!(shrinks <= 1, "{shrinks} shrinks while the length held");
    }
}
