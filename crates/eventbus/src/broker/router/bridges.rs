//! The bridges' last statuses, for `stats` and the monitor.
//!
//! A bridge (`eventbus-bridge`, a client of kind `bridge`) announces its
//! state every second on `_sys.bridge.<name>` (`docs/fleet.md`). The router
//! keeps the last announcement of each name, so `ebctl stats`,
//! `Client::stats` and the monitor page show every bridge's NATS link and
//! counters without subscribing. Only a bridge may publish there (the
//! command layer refuses anyone else, and an auth file narrows it further).
//!
//! **Bounds:** at most [`MAX_BRIDGES`] names, at most
//! [`MAX_NAMES_PER_CONNECTION`] of them from one connection (its own
//! stalest gives way to a new one), each status at most
//! [`MAX_STATUS_BYTES`] (a larger one is kept as empty, with its time). At
//! the bound a new name replaces the stalest entry whose bridge is gone;
//! while every entry's bridge is connected, a new name is not kept
//! (counted in [`Bridges::ignored`]). An entry of a bridge that disconnected
//! stays, marked, until a new name needs its place: the last thing a dead
//! bridge said is what an operator needs.

use std::time::Instant;

use bytes::Bytes;

use prost::Message as _;

use super::{ConnId, Router};
use crate::broker::command::Publish;
use crate::broker::monitor::BridgeInfo;
use crate::names::ClientId;
use crate::proto;

impl Router {
    /// Keeps `p`'s payload as its bridge's last status, if its publisher
    /// may publish there (the command layer let only a bridge through; an
    /// auth file may narrow it further, and the publish itself is then
    /// refused on its path, so nothing is kept).
    pub(super) fn bridge_status(&mut self, conn: ConnId, p: &Publish) {
        let Some(c) = self.conns.get(conn) else {
            return;
        };
        if !c.principal.perms.publish.allows_topic(&p.topic) {
            return;
        }
        let Ok(envelope) = proto::Envelope::decode(p.envelope.clone()) else {
            return;
        };
        let client_id = c.client_id.clone();
        let now = self.clock.now;
        self.bridges
            .announce(p.topic.as_str(), conn, &client_id, &envelope.payload, now);
    }
}

impl Router {
    /// The bridges' last statuses, for the monitor.
    pub(crate) fn monitor_bridges(&self) -> Vec<BridgeInfo> {
        self.bridges
            .stats(self.clock.now)
            .into_iter()
            .map(|b| BridgeInfo {
                name: b.name,
                client_id: b.client_id,
                connected: b.connected,
                age_ms: b.age_ms,
                status_json: b.status_json,
            })
            .collect()
    }
}

/// Most bridge names whose status is kept.
pub(crate) const MAX_BRIDGES: usize = 32;
/// Most names one connection's statuses hold at once.
pub(crate) const MAX_NAMES_PER_CONNECTION: usize = 4;
/// Largest status payload kept (the bridge's JSON is about 400 bytes).
pub(crate) const MAX_STATUS_BYTES: usize = 2048;

/// One bridge's last status.
#[derive(Debug)]
struct Entry {
    name: Box<str>,
    client_id: ClientId,
    /// The connection it came on; `None` once that connection ended.
    conn: Option<ConnId>,
    at: Instant,
    /// The payload, copied (not a slice of a read buffer); empty when over
    /// [`MAX_STATUS_BYTES`].
    status: Bytes,
}

/// The last status of each bridge, by name.
#[derive(Debug, Default)]
pub(crate) struct Bridges {
    entries: Vec<Entry>,
    /// Statuses of new names not kept because every place held a live
    /// bridge.
    pub ignored: u64,
}

impl Bridges {
    /// A status came on `topic` (`_sys.bridge.<name>`) from `conn`.
    pub fn announce(
        &mut self,
        topic: &str,
        conn: ConnId,
        client_id: &ClientId,
        payload: &[u8],
        now: Instant,
    ) {
        let Some(name) = topic
            .strip_prefix(crate::topic::BRIDGE_STATUS_PREFIX)
            .and_then(|rest| rest.strip_prefix('.'))
        else {
            return;
        };
        let status = if payload.len() <= MAX_STATUS_BYTES {
            Bytes::copy_from_slice(payload)
        } else {
            Bytes::new()
        };
        let entry = Entry {
            name: name.into(),
            client_id: client_id.clone(),
            conn: Some(conn),
            at: now,
            status,
        };
        if let Some(e) = self.entries.iter_mut().find(|e| *e.name == *name) {
            *e = entry;
            return;
        }
        // One connection holds at most a few names (a bridge has one): its
        // own stalest gives way, so no client can take every place.
        let own = self.entries.iter().filter(|e| e.conn == Some(conn)).count();
        if own >= MAX_NAMES_PER_CONNECTION {
            let stalest = self
                .entries
                .iter_mut()
                .filter(|e| e.conn == Some(conn))
                .min_by_key(|e| e.at)
                .expect("counted");
            *stalest = entry;
            return;
        }
        if self.entries.len() < MAX_BRIDGES {
            self.entries.push(entry);
            return;
        }
        let stalest_gone = self
            .entries
            .iter_mut()
            .filter(|e| e.conn.is_none())
            .min_by_key(|e| e.at);
        match stalest_gone {
            Some(e) => *e = entry,
            None => self.ignored += 1,
        }
    }

    /// Connection `conn` ended: its bridges' entries stay, marked.
    pub fn disconnected(&mut self, conn: ConnId) {
        for e in &mut self.entries {
            if e.conn == Some(conn) {
                e.conn = None;
            }
        }
    }

    /// Every entry, by name.
    pub fn stats(&self, now: Instant) -> Vec<proto::BridgeStats> {
        let mut out: Vec<proto::BridgeStats> = self
            .entries
            .iter()
            .map(|e| proto::BridgeStats {
                name: e.name.to_string(),
                client_id: e.client_id.as_str().to_owned(),
                connected: e.conn.is_some(),
                age_ms: now.saturating_duration_since(e.at).as_millis() as u64,
                status_json: String::from_utf8_lossy(&e.status).into_owned(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(s: &str) -> ClientId {
        ClientId::new(s).unwrap()
    }

    #[test]
    fn the_last_status_of_each_name_is_kept_and_a_gone_bridge_stays_marked() {
        let mut b = Bridges::default();
        let t0 = Instant::now();
        b.announce(
            "_sys.bridge.node-1",
            ConnId::new(1),
            &id("br-1"),
            b"{\"a\":1}",
            t0,
        );
        b.announce("_sys.bridge.node-2", ConnId::new(2), &id("br-2"), b"{}", t0);
        let later = t0 + Duration::from_millis(5);
        b.announce(
            "_sys.bridge.node-1",
            ConnId::new(1),
            &id("br-1"),
            b"{\"a\":2}",
            later,
        );
        b.disconnected(ConnId::new(2));
        let stats = b.stats(later + Duration::from_millis(10));
        assert_eq!(stats.len(), 2);
        assert_eq!(
            (stats[0].name.as_str(), stats[0].status_json.as_str()),
            ("node-1", "{\"a\":2}")
        );
        assert!(stats[0].connected);
        assert_eq!(stats[0].age_ms, 10);
        assert_eq!(stats[1].name, "node-2");
        assert!(!stats[1].connected, "a bridge that left stays, marked");
    }

    #[test]
    fn a_status_over_the_bound_is_kept_empty_and_the_topic_must_name_a_bridge() {
        let mut b = Bridges::default();
        let now = Instant::now();
        let big = vec![b'x'; MAX_STATUS_BYTES + 1];
        b.announce("_sys.bridge.node-1", ConnId::new(1), &id("br"), &big, now);
        b.announce("_sys.bridgeX", ConnId::new(1), &id("br"), b"{}", now);
        let stats = b.stats(now);
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].status_json, "");
    }

    #[test]
    fn at_the_bound_a_new_name_takes_the_place_of_the_stalest_gone_bridge_only() {
        let mut b = Bridges::default();
        let t0 = Instant::now();
        for i in 0..MAX_BRIDGES {
            let at = t0 + Duration::from_millis(i as u64);
            b.announce(
                &format!("_sys.bridge.n{i}"),
                ConnId::new(i as u64),
                &id("br"),
                b"{}",
                at,
            );
        }
        // Every bridge is connected: a new name is not kept.
        b.announce("_sys.bridge.new", ConnId::new(99), &id("br"), b"{}", t0);
        assert_eq!(b.ignored, 1);
        assert!(!b.stats(t0).iter().any(|s| s.name == "new"));
        // Two leave; the new name takes the stalest one's place.
        b.disconnected(ConnId::new(3));
        b.disconnected(ConnId::new(7));
        b.announce("_sys.bridge.new", ConnId::new(99), &id("br"), b"{}", t0);
        let names: Vec<String> = b.stats(t0).into_iter().map(|s| s.name).collect();
        assert_eq!(names.len(), MAX_BRIDGES);
        assert!(names.contains(&"new".to_owned()));
        assert!(!names.contains(&"n3".to_owned()));
        assert!(names.contains(&"n7".to_owned()));
    }

    #[test]
    fn one_connection_cannot_take_every_place() {
        let mut b = Bridges::default();
        let t0 = Instant::now();
        for i in 0..100u64 {
            let at = t0 + Duration::from_millis(i);
            b.announce(
                &format!("_sys.bridge.x{i}"),
                ConnId::new(1),
                &id("hog"),
                b"{}",
                at,
            );
        }
        let names: Vec<String> = b.stats(t0).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["x96", "x97", "x98", "x99"], "its newest four");
        b.announce("_sys.bridge.real", ConnId::new(2), &id("br"), b"{}", t0);
        assert!(b.stats(t0).iter().any(|s| s.name == "real"));
        assert_eq!(b.ignored, 0);
    }
}
