//! The router's invariants, checked over its whole state: the unit tests,
//! the property test and the fuzzer check them after every step.

use std::collections::{HashMap, HashSet};

use super::{Router, Target};
use crate::broker::ids::{ConnId, GroupId, SubscriptionId};

impl Router {
    /// Checks every invariant the parts of the router promise; the first one
    /// broken is described in the error.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        self.check_connections()?;
        self.check_in_flight()?;
        self.check_queues()?;
        if self.requests.len() > self.config.max_pending_requests {
            return Err(format!(
                "{} requests pending, over the bound {}",
                self.requests.len(),
                self.config.max_pending_requests
            ));
        }
        Ok(())
    }

    fn check_connections(&self) -> Result<(), String> {
        let plain: usize = self
            .conns
            .iter()
            .map(|(_, c)| c.subs.values().filter(|s| s.group.is_none()).count())
            .sum();
        let routed = plain + self.queues.iter().count();
        if self.index.len() != routed {
            return Err(format!(
                "the index holds {} targets for {plain} plain subscriptions and {} groups",
                self.index.len(),
                routed - plain
            ));
        }
        for (conn, c) in self.conns.iter() {
            if self.conns.by_client(&c.client_id) != Some(conn) {
                return Err(format!("{} is not registered under its id", c.client_id));
            }
            for (&sid, sub) in &c.subs {
                let indexed = match sub.group {
                    None => self
                        .index
                        .contains(&sub.filter, &Target::Plain { conn, sid }),
                    Some(gid) => self.queues.get(gid).is_some_and(|g| {
                        g.members().iter().any(|m| m.conn == conn && m.sid == sid)
                    }),
                };
                if !indexed {
                    return Err(format!("subscription {sid} of {conn} is not routed to"));
                }
            }
        }
        Ok(())
    }

    fn check_in_flight(&self) -> Result<(), String> {
        let mut per_conn: HashMap<ConnId, (u64, usize)> = HashMap::new();
        for (id, f) in self.in_flight.iter() {
            let Some(c) = self.conns.get(f.conn) else {
                return Err(format!("delivery {id} is held by a connection that left"));
            };
            let entry = per_conn.entry(f.conn).or_default();
            entry.0 += 1;
            match f.group {
                None => entry.1 += 1,
                Some(gid) => {
                    if c.subs.get(&f.sid).and_then(|s| s.group) != Some(gid) {
                        return Err(format!("delivery {id} is held by a non-member"));
                    }
                }
            }
        }
        for (conn, c) in self.conns.iter() {
            let (all, direct) = per_conn.get(&conn).copied().unwrap_or_default();
            if c.in_flight != all || c.direct_in_flight != direct {
                return Err(format!(
                    "{} counts {}/{} in flight (direct), holds {all}/{direct}",
                    c.client_id, c.in_flight, c.direct_in_flight
                ));
            }
            if direct > self.config.max_direct_in_flight {
                return Err(format!("{} holds {direct} direct messages", c.client_id));
            }
        }
        Ok(())
    }

    fn check_queues(&self) -> Result<(), String> {
        let mut held: HashMap<(GroupId, ConnId, SubscriptionId), u32> = HashMap::new();
        let mut messages = HashSet::new();
        // A message published to several groups is in each once.
        for (id, f) in self.in_flight.iter() {
            if let Some(gid) = f.group {
                *held.entry((gid, f.conn, f.sid)).or_default() += 1;
            }
            if !messages.insert((f.group, f.message.id)) {
                return Err(format!(
                    "message {} is in flight twice ({id})",
                    f.message.id
                ));
            }
        }
        for (gid, g) in self.queues.iter() {
            for m in g.waiting() {
                if !messages.insert((Some(gid), m.id)) {
                    return Err(format!("message {} is both waiting and elsewhere", m.id));
                }
            }
            let mut group_held = 0;
            for m in g.members() {
                let holds = held.get(&(gid, m.conn, m.sid)).copied().unwrap_or(0);
                if m.in_flight != holds {
                    return Err(format!(
                        "member {} of {} counts {} in flight, holds {holds}",
                        m.client_id, g.name, m.in_flight
                    ));
                }
                group_held += holds as usize;
            }
            if g.in_flight() != group_held {
                return Err(format!(
                    "group {} counts {} in flight, its members hold {group_held}",
                    g.name,
                    g.in_flight()
                ));
            }
            let c = g.counters;
            let placed = g.depth() as u64
                + g.in_flight() as u64
                + c.acked
                + c.dead_lettered
                + c.evicted
                + c.cancelled;
            if c.accepted != placed {
                return Err(format!(
                    "group {} accepted {} messages but accounts for {placed}: {c:?}, depth {}, in flight {}",
                    g.name,
                    c.accepted,
                    g.depth(),
                    g.in_flight()
                ));
            }
            if !self.index.contains(&g.filter, &Target::Group(gid)) {
                return Err(format!("group {} is not routed to", g.name));
            }
        }
        Ok(())
    }
}
