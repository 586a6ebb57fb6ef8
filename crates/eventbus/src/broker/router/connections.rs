//! The registered connections: who is connected under which client id, what
//! each holds, and the frames queued for them.
//!
//! **Invariants:** `by_client` maps each client id to the one live connection
//! registered under it; a connection is in `touched` at most once (its
//! `touched` flag says so), and only while frames pushed for it wait for the
//! caller's flush; a doomed connection is disconnected by the next `reap`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Map;
use crate::broker::auth::Principal;
use crate::broker::ids::{ConnId, ConnIds, GroupId, SubscriptionId};
use crate::broker::refusal::DisconnectReason;
use crate::framed::{Outbound, Outgoing, PushError, Pushed};
use crate::names::{ClientId, GroupName};
use crate::proto::{self, Frame};
use crate::topic::TopicFilter;

/// A subscription held by a connection.
#[derive(Debug)]
pub(super) struct Sub {
    pub filter: TopicFilter,
    /// The queue group it is a member of; `None` for a plain subscription.
    pub group: Option<GroupId>,
}

/// Per-connection counters.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ConnCounters {
    pub published: u64,
    pub delivered: u64,
    pub acked: u64,
    pub dropped: u64,
    pub slow_consumer_events: u64,
}

/// Liveness: when the peer was last heard from and when it is sent the next
/// heartbeat.
#[derive(Debug, Clone, Copy)]
pub(super) struct Liveness {
    pub last_seen: Instant,
    pub next_heartbeat: Instant,
    pub interval: Duration,
    pub misses: u32,
}

impl Liveness {
    /// Past this instant without a frame, the peer is dead.
    pub fn limit(&self) -> Instant {
        self.last_seen + self.interval * self.misses
    }
}

/// A registered connection.
#[derive(Debug)]
pub(super) struct Conn {
    pub client_id: ClientId,
    pub kind: String,
    pub pid: u32,
    /// Capabilities from `Hello`: a direct message its holder leaves unsettled
    /// goes to the queue group named after one of them.
    pub capabilities: Vec<GroupName>,
    pub out: Arc<Outbound>,
    pub cancel: CancellationToken,
    /// The largest frame it takes (negotiated in `Welcome`).
    pub max_frame: usize,
    /// Who it is: permissions and quotas.
    pub principal: Arc<Principal>,
    /// What lets a new link of the same client take this one's id over.
    pub resume_token: ResumeToken,
    pub subs: Map<SubscriptionId, Sub>,
    pub liveness: Liveness,
    pub counters: ConnCounters,
    /// When this client was last announced as a slow consumer.
    pub last_slow_announce: Option<Instant>,
    /// Listed in `Connections::touched` since the last flush.
    touched: bool,
    /// Deliveries in flight to it (queue and direct).
    pub in_flight: u64,
    /// Direct deliveries not yet settled; bounded by `max_direct_in_flight`.
    pub direct_in_flight: usize,
    /// Its requests awaiting replies (quota `max_pending_requests`).
    pub pending_requests: usize,
    /// Direct messages it sent that are not settled (quota
    /// `max_direct_unsettled`).
    pub direct_sent: usize,
    /// Gathers it started that are not done (quota
    /// `max_concurrent_gathers`).
    pub gathers: usize,
}

/// A client id's resume token (see `Hello.resume_token`).
pub(super) type ResumeToken = [u8; 16];

/// What a new connection brings.
#[derive(Debug)]
pub(super) struct NewConn {
    pub client_id: ClientId,
    pub kind: String,
    pub pid: u32,
    pub capabilities: Vec<GroupName>,
    pub out: Arc<Outbound>,
    pub cancel: CancellationToken,
    pub max_frame: usize,
    pub principal: Arc<Principal>,
    pub resume_token: ResumeToken,
    pub liveness: Liveness,
}

/// Every registered connection.
#[derive(Debug, Default)]
pub(super) struct Connections {
    map: Map<ConnId, Conn>,
    by_client: Map<ClientId, ConnId>,
    ids: ConnIds,
    /// Connections with frames pushed since the last `take_touched`.
    touched: Vec<ConnId>,
    /// Connections found too slow or dead, closed by the next `reap`.
    doomed: Vec<(ConnId, DisconnectReason)>,
}

impl Connections {
    /// Registers a connection under its client id (the caller has closed any
    /// older one holding it).
    pub fn insert(&mut self, new: NewConn) -> ConnId {
        let id = self.ids.next();
        self.by_client.insert(new.client_id.clone(), id);
        self.map.insert(
            id,
            Conn {
                client_id: new.client_id,
                kind: new.kind,
                pid: new.pid,
                capabilities: new.capabilities,
                out: new.out,
                cancel: new.cancel,
                max_frame: new.max_frame,
                principal: new.principal,
                resume_token: new.resume_token,
                subs: Map::default(),
                liveness: new.liveness,
                counters: ConnCounters::default(),
                last_slow_announce: None,
                touched: false,
                in_flight: 0,
                direct_in_flight: 0,
                pending_requests: 0,
                direct_sent: 0,
                gathers: 0,
            },
        );
        id
    }

    /// Forgets a connection; the caller has released what it held.
    pub fn remove(&mut self, conn: ConnId) -> Option<Conn> {
        let c = self.map.remove(&conn)?;
        if self.by_client.get(&c.client_id) == Some(&conn) {
            self.by_client.remove(&c.client_id);
        }
        Some(c)
    }

    pub fn get(&self, conn: ConnId) -> Option<&Conn> {
        self.map.get(&conn)
    }

    pub fn get_mut(&mut self, conn: ConnId) -> Option<&mut Conn> {
        self.map.get_mut(&conn)
    }

    pub fn contains(&self, conn: ConnId) -> bool {
        self.map.contains_key(&conn)
    }

    /// The live connection registered under `client`.
    pub fn by_client(&self, client: &ClientId) -> Option<ConnId> {
        self.by_client.get(client).copied()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn ids(&self) -> Vec<ConnId> {
        self.map.keys().copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.map.iter().map(|(&id, c)| (id, c))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ConnId, &mut Conn)> {
        self.map.iter_mut().map(|(&id, c)| (id, c))
    }

    /// Queues a frame that must not be dropped for `conn`, for the caller's
    /// flush; a connection at its hard cap is doomed instead.
    pub fn send(&mut self, conn: ConnId, frame: impl Into<Outgoing>) {
        let Some(c) = self.map.get_mut(&conn) else {
            return;
        };
        match c.out.push_quiet(frame.into()) {
            Ok(()) => mark(&mut self.touched, conn, c),
            Err(PushError::TooSlow { .. }) => self.doomed.push((conn, DisconnectReason::TooSlow)),
            Err(_) => {}
        }
    }

    /// Queues a fan-out delivery under the connection's overflow policy.
    /// `Ok(None)`: no such connection.
    pub fn push_droppable(
        &mut self,
        conn: ConnId,
        item: Outgoing,
    ) -> Result<Option<Pushed>, PushError> {
        let Some(c) = self.map.get_mut(&conn) else {
            return Ok(None);
        };
        let pushed = c.out.push_droppable(item);
        if matches!(pushed, Ok(Pushed::Queued | Pushed::EvictedOldest)) {
            mark(&mut self.touched, conn, c);
        }
        if let Err(PushError::TooSlow { .. }) = pushed {
            self.doomed.push((conn, DisconnectReason::TooSlow));
        }
        pushed.map(Some)
    }

    /// Pushes a heartbeat straight to the writer (the ticker flushes nothing
    /// else).
    pub fn heartbeat(&mut self, conn: ConnId) {
        let Some(c) = self.map.get_mut(&conn) else {
            return;
        };
        let frame = Frame {
            kind: Some(proto::frame::Kind::Heartbeat(proto::Heartbeat { nonce: 0 })),
        };
        if let Err(PushError::TooSlow { .. }) = c.out.push(frame) {
            self.doomed.push((conn, DisconnectReason::TooSlow));
        }
    }

    /// Marks `conn` for closing by the next `reap`.
    pub fn doom(&mut self, conn: ConnId, reason: DisconnectReason) {
        self.doomed.push((conn, reason));
    }

    pub fn take_doomed(&mut self) -> Option<(ConnId, DisconnectReason)> {
        self.doomed.pop()
    }

    /// The outbound queues frames were pushed into since the last call.
    pub fn take_touched(&mut self, into: &mut Vec<Arc<Outbound>>) {
        for conn in self.touched.drain(..) {
            if let Some(c) = self.map.get_mut(&conn) {
                c.touched = false;
                into.push(c.out.clone());
            }
        }
    }
}

fn mark(touched: &mut Vec<ConnId>, conn: ConnId, c: &mut Conn) {
    if !c.touched {
        c.touched = true;
        touched.push(conn);
    }
}
