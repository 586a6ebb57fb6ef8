//! Subscriptions and queue-group membership.

use super::*;

impl Router {
    pub(super) fn subscribe(
        &mut self,
        conn: ConnId,
        s: proto::Subscribe,
    ) -> Result<(), (u64, Refusal)> {
        let seq = s.seq;
        let filter = TopicFilter::new(&s.filter)
            .map_err(|e| (seq, Refusal::new(ErrorCode::InvalidFilter, e.to_string())))?;
        let group = match s.group.as_str() {
            "" => None,
            name => Some(
                GroupName::new(name)
                    .map_err(|e| (seq, Refusal::new(ErrorCode::InvalidArgument, e.to_string())))?,
            ),
        };
        let max_subs = self.config.max_subscriptions_per_client;
        let queue = self.config.queue.clone();
        let c = self.conns.get_mut(&conn).expect("checked by handle");
        if c.subs.contains_key(&s.sid) {
            return Err((
                seq,
                Refusal::new(
                    ErrorCode::InvalidArgument,
                    format!("subscription id {} in use", s.sid),
                ),
            ));
        }
        if c.subs.len() >= max_subs {
            return Err((
                seq,
                Refusal::new(
                    ErrorCode::SubscriptionLimit,
                    format!("subscription limit of {max_subs} reached"),
                )
                .detail("max_subscriptions", max_subs),
            ));
        }
        let client_id = c.client_id.clone();
        let gid = match group {
            None => {
                self.index
                    .insert(&filter, Target::Plain { conn, sid: s.sid });
                None
            }
            Some(name) => {
                let key = (filter.clone(), name.clone());
                let gid = match self.group_ids.get(&key) {
                    Some(&gid) => gid,
                    None => {
                        let gid = self.next_id();
                        self.group_ids.insert(key, gid);
                        let policy = queue.policy_for(&filter);
                        if policy.overflow == OverflowPolicy::Block {
                            self.blocking_groups += 1;
                        }
                        self.groups
                            .insert(gid, QueueGroup::new(filter.clone(), name, policy));
                        self.index.insert(&filter, Target::Group(gid));
                        gid
                    }
                };
                let prefetch = match s.prefetch {
                    0 => queue.default_prefetch,
                    n => n.min(queue.max_prefetch),
                };
                self.groups
                    .get_mut(&gid)
                    .expect("just ensured")
                    .join(Member {
                        conn,
                        sid: s.sid,
                        client_id,
                        prefetch,
                        in_flight: 0,
                        delivered: 0,
                        acked: 0,
                    });
                Some(gid)
            }
        };
        let c = self.conns.get_mut(&conn).expect("checked by handle");
        c.subs.insert(s.sid, Sub { filter, group: gid });
        self.send(conn, ok(seq, 0));
        if let Some(gid) = gid {
            self.pump(gid);
        }
        Ok(())
    }

    pub(super) fn unsubscribe(
        &mut self,
        conn: ConnId,
        u: proto::Unsubscribe,
    ) -> Result<(), (u64, Refusal)> {
        if self.drop_sub(conn, u.sid) {
            self.send(conn, ok(u.seq, 0));
            Ok(())
        } else {
            Err((
                u.seq,
                Refusal::new(
                    ErrorCode::UnknownSubscription,
                    format!("no subscription {}", u.sid),
                ),
            ))
        }
    }

    /// Removes one subscription; its queue deliveries in flight go back to the queue.
    pub(super) fn drop_sub(&mut self, conn: ConnId, sid: u64) -> bool {
        let Some(sub) = self.conns.get_mut(&conn).and_then(|c| c.subs.remove(&sid)) else {
            return false;
        };
        match sub.group {
            None => {
                self.index.remove(&sub.filter, &Target::Plain { conn, sid });
            }
            Some(gid) => {
                let returned: Vec<u64> = self
                    .in_flight
                    .iter()
                    .filter(|(_, f)| f.conn == conn && f.sid == sid)
                    .map(|(&id, _)| id)
                    .collect();
                if let Some(group) = self.groups.get_mut(&gid) {
                    group.leave(conn, sid);
                }
                for id in returned {
                    let f = self.in_flight.remove(&id).expect("collected above");
                    self.release(&f);
                    self.redeliver(gid, f.message, "consumer left");
                }
                self.pump(gid);
                self.forget_group_if_idle(gid);
            }
        }
        true
    }

    pub(super) fn forget_group_if_idle(&mut self, gid: u64) {
        if self.groups.get(&gid).is_some_and(QueueGroup::is_idle) {
            let group = self.groups.remove(&gid).expect("checked");
            if group.policy().overflow == OverflowPolicy::Block {
                self.blocking_groups -= 1;
                self.space.notify_waiters();
            }
            self.index.remove(&group.filter, &Target::Group(gid));
            self.group_ids.remove(&(group.filter, group.name));
        }
    }
}
