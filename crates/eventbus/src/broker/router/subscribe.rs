//! Subscriptions and queue-group membership.

use super::connections::Sub;
use super::queues::GroupKey;
use super::settle::Taken;
use super::{Router, Target};
use crate::broker::command::Subscribe;
use crate::broker::ids::{ConnId, GroupId, Seq, SubscriptionId};
use crate::broker::monitor::AttemptEnd;
use crate::broker::queue::Member;
use crate::broker::refusal::{Refusal, SubscribeRefusal};
use crate::names::GroupName;
use crate::topic::TopicFilter;

impl Router {
    /// Adds a plain subscription or a queue-group membership, confirmed with
    /// `Ok`; a new member is handed what waits at once.
    pub(super) fn subscribe(&mut self, conn: ConnId, s: Subscribe) -> Result<(), SubscribeRefusal> {
        let Some(c) = self.conns.get(conn) else {
            return Ok(());
        };
        let principal = &c.principal;
        let max = principal.quotas.max_subscriptions;
        if c.subs.contains_key(&s.sid) {
            return Err(SubscribeRefusal::SidInUse(s.sid));
        }
        if c.subs.len() >= max {
            return Err(SubscribeRefusal::Limit { max });
        }
        if !principal.perms.subscribe.allows_filter(&s.filter) {
            return Err(SubscribeRefusal::NotAllowed {
                filter: s.filter.to_string(),
                identity: principal.name.clone(),
            });
        }
        if let Some((name, _)) = &s.group {
            if !principal.perms.groups.allows(name.as_str()) {
                return Err(SubscribeRefusal::GroupNotAllowed {
                    group: name.to_string(),
                    identity: principal.name.clone(),
                });
            }
            if starts_with_wildcard(&s.filter) && !self.config.queue.declares(&s.filter) {
                return Err(SubscribeRefusal::UndeclaredWildcardGroup(
                    s.filter.to_string(),
                ));
            }
        }
        if let Some((name, _)) = &s.group {
            self.durable_room_for(&GroupKey {
                filter: s.filter.clone(),
                name: name.clone(),
            })?;
        }
        let group = s
            .group
            .map(|(name, prefetch)| self.join(conn, s.sid, &s.filter, name, prefetch, s.fallback));
        if group.is_none() {
            self.index
                .insert(&s.filter, Target::Plain { conn, sid: s.sid });
        }
        if let Some(c) = self.conns.get_mut(conn) {
            c.subs.insert(
                s.sid,
                Sub {
                    filter: s.filter,
                    group,
                },
            );
        }
        self.confirm(conn, s.seq);
        if let Some(gid) = group {
            self.pump(gid);
        }
        Ok(())
    }

    /// Makes subscription `sid` of `conn` a member of the group `name` on
    /// `filter`, creating the group with the settings for its filter.
    fn join(
        &mut self,
        conn: ConnId,
        sid: SubscriptionId,
        filter: &TopicFilter,
        name: GroupName,
        prefetch: u32,
        fallback: bool,
    ) -> GroupId {
        let gid = self.group_for(&GroupKey {
            filter: filter.clone(),
            name,
        });
        let queue = &self.config.queue;
        let prefetch = match prefetch {
            0 => queue.default_prefetch,
            n => n.min(queue.max_prefetch),
        };
        let (client_id, max_frame) = self
            .conns
            .get(conn)
            .map(|c| (c.client_id.clone(), c.max_frame))
            .expect("the caller checked the connection");
        self.queues
            .get_mut(gid)
            .expect("just ensured")
            .join(Member {
                conn,
                sid,
                client_id,
                max_frame,
                prefetch,
                fallback,
                in_flight: 0,
                delivered: 0,
                acked: 0,
            });
        gid
    }

    /// The group `key`, created with the settings for its filter if it does
    /// not exist.
    pub(super) fn group_for(&mut self, key: &GroupKey) -> GroupId {
        if let Some(gid) = self.queues.find(key) {
            return gid;
        }
        let gid = self.ids.group();
        let policy = self.config.queue.policy_for(&key.filter);
        self.queues.create(gid, key.clone(), policy);
        self.index.insert(&key.filter, Target::Group(gid));
        gid
    }

    pub(super) fn unsubscribe(
        &mut self,
        conn: ConnId,
        seq: Seq,
        sid: SubscriptionId,
    ) -> Result<(), Refusal> {
        if !self.drop_sub(conn, sid) {
            return Err(SubscribeRefusal::UnknownSubscription(sid).into());
        }
        self.confirm(conn, seq);
        Ok(())
    }

    /// Removes one subscription; its queue deliveries in flight go back to
    /// the front of the queue.
    pub(super) fn drop_sub(&mut self, conn: ConnId, sid: SubscriptionId) -> bool {
        let Some(sub) = self.conns.get_mut(conn).and_then(|c| c.subs.remove(&sid)) else {
            return false;
        };
        match sub.group {
            None => {
                self.index.remove(&sub.filter, &Target::Plain { conn, sid });
            }
            Some(gid) => {
                let returned = self.in_flight.take_held(conn, Some(sid));
                if let Some(group) = self.queues.get_mut(gid) {
                    group.leave(conn, sid);
                }
                for f in returned {
                    self.observe_taken_back(&f, AttemptEnd::HolderLeft);
                    self.release(&f);
                    self.redeliver(gid, f.into_queued(), Taken::ConsumerLeft);
                }
                self.pump(gid);
                // A durable queue outlives its members: what is published
                // while none is connected waits for the next.
                if !self.outlives_members(gid)
                    && let Some(group) = self.queues.remove_if_idle(gid)
                {
                    self.index.remove(&group.filter, &Target::Group(gid));
                    self.forget_durable(gid);
                }
            }
        }
        true
    }
}

/// Whether the filter's first segment is a wildcard: a queue group on it
/// would take (and could fill up with) every message of the bus or most of
/// it, so it must be declared.
fn starts_with_wildcard(filter: &TopicFilter) -> bool {
    matches!(filter.segments().next(), Some("+" | "#"))
}
