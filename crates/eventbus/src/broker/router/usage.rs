//! What the messages in queue groups (waiting or in flight) add up to: per
//! publishing client, for its queued-messages and queued-bytes quotas, and
//! in all, for the broker's memory ceiling.
//!
//! **Invariant:** a message is counted for its publisher (its `source`) from
//! the moment a group accepts it until it leaves that group for good
//! (acked, dead-lettered, evicted or cancelled); a message in two groups is
//! counted twice; `total` is the sum over publishers, and a publisher with
//! nothing held has no entry.

use super::Map;
use crate::names::ClientId;

/// Messages and bytes held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub messages: usize,
    pub bytes: usize,
}

/// What each publisher, and everyone, holds in queue groups.
#[derive(Debug, Default)]
pub(super) struct Usage {
    by_client: Map<ClientId, Held>,
    total: Held,
}

impl Usage {
    /// A group accepted a message of `size` bytes from `source`.
    pub fn add(&mut self, source: &ClientId, size: usize) {
        let held = self.by_client.entry(source.clone()).or_default();
        held.messages += 1;
        held.bytes += size;
        self.total.messages += 1;
        self.total.bytes += size;
    }

    /// A message of `size` bytes from `source` left its group for good.
    pub fn remove(&mut self, source: &ClientId, size: usize) {
        let Some(held) = self.by_client.get_mut(source) else {
            return;
        };
        held.messages -= 1;
        held.bytes -= size;
        self.total.messages -= 1;
        self.total.bytes -= size;
        if held.messages == 0 {
            self.by_client.remove(source);
        }
    }

    /// What `source` holds.
    pub fn of(&self, source: &ClientId) -> Held {
        self.by_client.get(source).copied().unwrap_or_default()
    }

    /// What everyone holds.
    pub fn total(&self) -> Held {
        self.total
    }

    #[cfg(any(test, fuzzing))]
    pub fn clients(&self) -> impl Iterator<Item = (&ClientId, Held)> {
        self.by_client.iter().map(|(k, v)| (k, *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_adds_up_and_forgets_who_holds_nothing() {
        let id = |s: &str| ClientId::new(s).unwrap();
        let mut u = Usage::default();
        u.add(&id("a"), 10);
        u.add(&id("a"), 5);
        u.add(&id("b"), 1);
        assert_eq!(
            u.of(&id("a")),
            Held {
                messages: 2,
                bytes: 15
            }
        );
        assert_eq!(
            u.total(),
            Held {
                messages: 3,
                bytes: 16
            }
        );
        u.remove(&id("a"), 10);
        u.remove(&id("a"), 5);
        assert_eq!(u.of(&id("a")), Held::default());
        assert_eq!(u.clients().count(), 1);
        u.remove(&id("nobody"), 3);
        assert_eq!(
            u.total(),
            Held {
                messages: 1,
                bytes: 1
            }
        );
    }
}
