//! Counters over the broker's life: totals and per-topic counts.
//!
//! **Invariant:** at most [`MAX_TRACKED_TOPICS`] topics are tracked; later
//! topics count in the totals only.

use super::Map;
use crate::topic::Topic;

/// Most distinct topics tracked in stats.
pub(crate) const MAX_TRACKED_TOPICS: usize = 4096;

/// Totals over the broker's lifetime.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    /// Publishes accepted.
    pub published: u64,
    /// Deliveries queued for a subscriber or handed to a queue member or a
    /// direct receiver.
    pub delivered: u64,
    /// Messages dropped by an overflow policy (subscribers' buffers and
    /// queues under `drop-incoming`).
    pub dropped: u64,
}

/// Publishes and deliveries on one topic.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicCount {
    pub published: u64,
    pub delivered: u64,
}

/// Per-topic counts.
#[derive(Debug, Default)]
pub(crate) struct TopicCounters {
    map: Map<Topic, TopicCount>,
}

impl TopicCounters {
    /// Adds `count` to `topic`'s: one hash lookup, and a new entry only while
    /// fewer than [`MAX_TRACKED_TOPICS`] are tracked.
    pub fn add(&mut self, topic: &Topic, count: TopicCount) {
        if let Some(c) = self.map.get_mut(topic) {
            c.published += count.published;
            c.delivered += count.delivered;
        } else if self.map.len() < MAX_TRACKED_TOPICS {
            self.map.insert(topic.clone(), count);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Topic, &TopicCount)> {
        self.map.iter()
    }
}
