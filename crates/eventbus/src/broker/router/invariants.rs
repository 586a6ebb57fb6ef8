//! The router's invariants, checked over its whole state: the unit tests,
//! the property test and the fuzzer check them after every step.

use std::collections::{HashMap, HashSet};

use super::gather::RecipientState;
use super::usage::Held;
use super::{Router, Target};
use crate::broker::ids::{ConnId, GroupId, SubscriptionId};
use crate::names::ClientId;

impl Router {
    /// Checks every invariant the parts of the router promise; the first one
    /// broken is described in the error.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        self.check_connections()?;
        self.check_in_flight()?;
        self.check_queues()?;
        self.check_quotas()?;
        self.check_gathers()?;
        self.check_observer();
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

    /// Quota counters agree with what they count.
    fn check_quotas(&self) -> Result<(), String> {
        let mut requests = self.requests.per_requester();
        // Result waiters count as pending requests.
        for conn in self.results.waiting_conns() {
            *requests.entry(conn).or_default() += 1;
        }
        let mut direct: HashMap<ConnId, usize> = HashMap::new();
        let mut held: HashMap<ClientId, Held> = HashMap::new();
        for (_, f) in self.in_flight.iter() {
            if let Some(sender) = f.sender {
                *direct.entry(sender).or_default() += 1;
            }
            if f.group.is_some() {
                let h = held.entry(f.message.source.clone()).or_default();
                h.messages += 1;
                h.bytes += f.size;
            }
        }
        for (conn, c) in self.conns.iter() {
            let pending = requests.get(&conn).copied().unwrap_or(0);
            if c.pending_requests != pending {
                return Err(format!(
                    "{} counts {} pending requests, has {pending}",
                    c.client_id, c.pending_requests
                ));
            }
            let sent = direct.get(&conn).copied().unwrap_or(0);
            if c.direct_sent != sent {
                return Err(format!(
                    "{} counts {} direct messages unsettled, has {sent}",
                    c.client_id, c.direct_sent
                ));
            }
        }
        for (_, g) in self.queues.iter() {
            let mut bytes = 0;
            for m in g.waiting_queued() {
                let h = held.entry(m.message.source.clone()).or_default();
                h.messages += 1;
                h.bytes += m.size;
                bytes += m.size;
            }
            if g.waiting_bytes() != bytes {
                return Err(format!(
                    "group {} counts {} bytes waiting, holds {bytes}",
                    g.name,
                    g.waiting_bytes()
                ));
            }
        }
        let counted: HashMap<ClientId, Held> =
            self.usage.clients().map(|(k, v)| (k.clone(), v)).collect();
        if counted != held {
            return Err(format!("usage counts {counted:?}, queues hold {held:?}"));
        }
        let total = held.values().fold(Held::default(), |t, h| Held {
            messages: t.messages + h.messages,
            bytes: t.bytes + h.bytes,
        });
        if self.usage.total() != total {
            return Err(format!(
                "usage total {:?}, queues hold {total:?}",
                self.usage.total()
            ));
        }
        Ok(())
    }

    fn check_gathers(&self) -> Result<(), String> {
        let mut started: HashMap<ConnId, usize> = HashMap::new();
        for (token, g) in self.gathers.iter() {
            *started.entry(g.requester).or_default() += 1;
            let pending = g
                .recipients
                .iter()
                .filter(|r| r.state == RecipientState::Pending)
                .count();
            if pending != g.pending || pending == 0 {
                return Err(format!(
                    "gather {token} counts {} pending, has {pending} (a done gather is gone)",
                    g.pending
                ));
            }
            if self.conns.get(g.requester).is_none() {
                return Err(format!("gather {token} outlived its requester"));
            }
        }
        for (conn, c) in self.conns.iter() {
            let n = started.get(&conn).copied().unwrap_or(0);
            if c.gathers != n {
                return Err(format!(
                    "{} counts {} gathers, has {n}",
                    c.client_id, c.gathers
                ));
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
