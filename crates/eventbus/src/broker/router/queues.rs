//! The queue groups, by id and by what identifies them (filter and name).
//!
//! **Invariants:** `by_key` and `groups` name the same groups, one id each; a
//! group is forgotten only when idle (no members, nothing waiting), so no
//! accepted message goes with it; `blocking` counts the groups whose
//! overflow policy is `block`.

use std::sync::Arc;

use tokio::sync::Notify;

use super::Map;
use crate::broker::config::QueuePolicy;
use crate::broker::ids::{GroupId, MessageId};
use crate::broker::queue::{QueueGroup, Queued};
use crate::framed::OverflowPolicy;
use crate::names::GroupName;
use crate::topic::TopicFilter;

/// What identifies a queue group: subscribers with the same filter and name
/// share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct GroupKey {
    pub filter: TopicFilter,
    pub name: GroupName,
}

/// Every queue group.
#[derive(Debug)]
pub(super) struct Queues {
    groups: Map<GroupId, QueueGroup>,
    by_key: Map<GroupKey, GroupId>,
    /// Groups with the `block` policy; publishes look for a full one only
    /// while there is any.
    blocking: usize,
    /// Woken when a blocking group's queue makes room, or such a group goes.
    space: Arc<Notify>,
}

impl Default for Queues {
    fn default() -> Self {
        Self {
            groups: Map::default(),
            by_key: Map::default(),
            blocking: 0,
            space: Arc::new(Notify::new()),
        }
    }
}

impl Queues {
    pub fn get(&self, gid: GroupId) -> Option<&QueueGroup> {
        self.groups.get(&gid)
    }

    pub fn get_mut(&mut self, gid: GroupId) -> Option<&mut QueueGroup> {
        self.groups.get_mut(&gid)
    }

    pub fn find(&self, key: &GroupKey) -> Option<GroupId> {
        self.by_key.get(key).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (GroupId, &QueueGroup)> {
        self.groups.iter().map(|(&id, g)| (id, g))
    }

    /// Creates group `gid` for `key`.
    pub fn create(&mut self, gid: GroupId, key: GroupKey, policy: QueuePolicy) {
        if policy.overflow == OverflowPolicy::Block {
            self.blocking += 1;
        }
        self.groups.insert(
            gid,
            QueueGroup::new(key.filter.clone(), key.name.clone(), policy),
        );
        self.by_key.insert(key, gid);
    }

    /// Forgets group `gid` if it is idle; returns it if so.
    pub fn remove_if_idle(&mut self, gid: GroupId) -> Option<QueueGroup> {
        if !self.groups.get(&gid).is_some_and(QueueGroup::is_idle) {
            return None;
        }
        let group = self.groups.remove(&gid)?;
        if group.policy().overflow == OverflowPolicy::Block {
            self.blocking -= 1;
            // A publisher blocked on it must look again.
            self.space.notify_waiters();
        }
        self.by_key.remove(&GroupKey {
            filter: group.filter.clone(),
            name: group.name.clone(),
        });
        Some(group)
    }

    /// Whether any group has the `block` policy.
    pub fn any_blocking(&self) -> bool {
        self.blocking > 0
    }

    /// Wakes publishers blocked on a full queue: a group handed out messages.
    pub fn made_room(&self) {
        if self.blocking > 0 {
            self.space.notify_waiters();
        }
    }

    /// What a blocked publisher waits on.
    pub fn space(&self) -> Arc<Notify> {
        self.space.clone()
    }

    /// Message `id`, if it waits in a queue.
    pub fn find_waiting(&self, id: MessageId) -> Option<&crate::codec::raw::Stamped> {
        self.groups.values().find_map(|g| g.find_waiting(id))
    }

    /// Message `id` and its group, if it waits in a queue.
    pub fn find_waiting_in(&self, id: MessageId) -> Option<(GroupId, &crate::codec::raw::Stamped)> {
        self.groups
            .iter()
            .find_map(|(&gid, g)| g.find_waiting(id).map(|m| (gid, m)))
    }

    /// Removes message `id` from a queue it waits in, if any; returns the
    /// group and the message.
    pub fn remove_waiting(&mut self, id: MessageId) -> Option<(GroupId, Queued)> {
        self.groups
            .iter_mut()
            .find_map(|(&gid, g)| g.remove_waiting(id).map(|m| (gid, m)))
    }
}
