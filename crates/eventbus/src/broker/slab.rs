//! Large entries in one vector, found through small indexes.
//!
//! A hash map of large entries costs more than its size after a burst.
//! Each time its table grows or shrinks, the map allocates a new block and
//! frees the old one, and glibc's `malloc`, on freeing a block larger than
//! 128 KiB that it had mapped for the map, raises its mapping threshold to that
//! block's size and its heap-trimming threshold to twice that. After 10,000
//! requests in flight the pending-request table was a 2.4 MiB block; once it
//! was given back, up to 4.8 MiB of freed heap stayed resident instead of
//! going back to the system (`docs/performance.md`, "Memory after a
//! burst"). A `Vec` grows and shrinks in place (`realloc`, which glibc does
//! with `mremap` for a mapped block) and never moves the thresholds.
//!
//! So a [`Slab`] keeps the entries, named by their [`Slot`], and the maps
//! that find an entry by its keys hold only the slot: their tables stay
//! small.
//!
//! **Invariants:** `len` is the number of occupied slots; `vacant` holds
//! every vacant slot below `slots.len()`, each once, and nothing else.
//! Slots are stable until [`Slab::shrink_if_sparse`] compacts, which
//! reports every entry it moves so its indexes can follow.

use super::shrink::{is_sparse, room_for};

/// Where an entry lives in its [`Slab`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot(usize);

/// Entries in one vector, named by [`Slot`].
#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<Option<T>>,
    /// The vacant slots below `slots.len()`, reused last-freed first.
    vacant: Vec<Slot>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            vacant: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Room for entries without growing.
    #[cfg(test)]
    pub(crate) fn room(&self) -> usize {
        self.slots.capacity()
    }

    /// Stores `value` in a vacant slot, or a new one.
    pub(crate) fn insert(&mut self, value: T) -> Slot {
        self.len += 1;
        if let Some(slot) = self.vacant.pop() {
            self.slots[slot.0] = Some(value);
            return slot;
        }
        self.slots.push(Some(value));
        Slot(self.slots.len() - 1)
    }

    pub(crate) fn get(&self, slot: Slot) -> Option<&T> {
        self.slots.get(slot.0)?.as_ref()
    }

    /// Takes the entry out of `slot`, which becomes vacant.
    pub(crate) fn remove(&mut self, slot: Slot) -> Option<T> {
        let value = self.slots.get_mut(slot.0)?.take()?;
        self.len -= 1;
        self.vacant.push(slot);
        Some(value)
    }

    /// The entries, with their slots.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Slot, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((Slot(i), v.as_ref()?)))
    }

    /// Removes every entry `keep` says no to, handing each to `removed`.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool, mut removed: impl FnMut(T)) {
        for (i, entry) in self.slots.iter_mut().enumerate() {
            if entry.as_ref().is_some_and(|v| !keep(v))
                && let Some(value) = entry.take()
            {
                self.len -= 1;
                self.vacant.push(Slot(i));
                removed(value);
            }
        }
    }

    /// Gives back room once the slab is mostly vacant (the policy of
    /// `broker::shrink`): the entries are moved down to the lowest slots,
    /// keeping their order, and `moved` is told each entry's new slot. O(n),
    /// amortized O(1) per removal as for the other collections. Returns
    /// whether the room shrank.
    pub(crate) fn shrink_if_sparse(&mut self, mut moved: impl FnMut(&T, Slot)) -> bool {
        let room = self.slots.capacity();
        if !is_sparse(room, self.len) {
            return false;
        }
        let mut write = 0;
        for read in 0..self.slots.len() {
            if self.slots[read].is_none() {
                continue;
            }
            if read != write {
                // `write` is below `read` and every occupied slot below
                // `read` has been moved under `write`: it is vacant.
                self.slots.swap(read, write);
                if let Some(value) = &self.slots[write] {
                    moved(value, Slot(write));
                }
            }
            write += 1;
        }
        self.slots.truncate(write);
        self.vacant.clear();
        self.slots.shrink_to(room_for(self.len));
        self.vacant.shrink_to(room_for(0));
        self.slots.capacity() < room
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn entries_are_found_by_their_slot_and_slots_are_reused() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_eq!(
            (slab.get(a), slab.get(b), slab.len()),
            (Some(&"a"), Some(&"b"), 2)
        );
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.remove(a), None, "a vacant slot holds nothing");
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.get(Slot(99)), None, "a slot never handed out");
        let c = slab.insert("c");
        assert_eq!(c, a, "the freed slot is reused before the slab grows");
        assert_eq!(slab.iter().map(|(_, v)| *v).collect::<Vec<_>>(), ["c", "b"]);
        assert_eq!(slab.len(), 2);
    }

    #[test]
    fn retain_removes_what_it_is_told_and_frees_those_slots() {
        let mut slab = Slab::default();
        let slots: Vec<Slot> = (0..10).map(|i| slab.insert(i)).collect();
        let mut gone = Vec::new();
        slab.retain(|v| v % 3 != 0, |v| gone.push(v));
        assert_eq!(gone, [0, 3, 6, 9]);
        assert_eq!(slab.len(), 6);
        assert_eq!(slab.get(slots[3]), None);
        assert_eq!(slab.get(slots[4]), Some(&4));
        // The four freed slots are reused before a new one is made.
        let reused: Vec<Slot> = (0..4).map(|i| slab.insert(100 + i)).collect();
        assert!(reused.iter().all(|s| s.0 < 10), "{reused:?}");
        assert_eq!(slab.insert(200), Slot(10));
    }

    /// The slab's entries and an index that finds them, as `Requests` keeps
    /// them: after any shrink, the index still names each entry's slot.
    #[test]
    fn a_drained_burst_gives_its_room_back_and_moved_entries_stay_found() {
        let mut slab = Slab::default();
        let mut index: HashMap<u64, Slot> = HashMap::new();
        for key in 0..10_000u64 {
            index.insert(key, slab.insert(key));
        }
        let peak = slab.room();
        let mut shrinks = 0;
        // Drain all but every 97th, from the front, so the survivors move.
        for key in 0..10_000u64 {
            if key.is_multiple_of(97) {
                continue;
            }
            let slot = index.remove(&key).expect("indexed");
            assert_eq!(slab.remove(slot), Some(key));
            shrinks += usize::from(slab.shrink_if_sparse(|v, to| {
                *index.get_mut(v).expect("every entry is indexed") = to;
            }));
            assert!(!is_sparse(slab.room(), slab.len()));
        }
        assert!(shrinks >= 2, "{shrinks}");
        assert!(slab.room() < peak / 4, "{} of {peak}", slab.room());
        assert_eq!(slab.len(), index.len());
        for (key, slot) in &index {
            assert_eq!(slab.get(*slot), Some(key), "{key} is where its index says");
        }
        // Slots handed out after a compaction are fresh ones above the survivors.
        let before: Vec<Slot> = index.values().copied().collect();
        let new = slab.insert(u64::MAX);
        assert!(!before.contains(&new));
    }

    #[test]
    fn a_slab_still_in_use_keeps_its_slots() {
        let mut slab = Slab::default();
        let slots: Vec<Slot> = (0..1_000).map(|i| slab.insert(i)).collect();
        for slot in &slots[..600] {
            slab.remove(*slot);
            assert!(!slab.shrink_if_sparse(|_, _| panic!("nothing moves while it is in use")));
        }
        assert_eq!(slab.get(slots[999]), Some(&999));
    }
}
