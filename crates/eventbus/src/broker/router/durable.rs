//! Durable queues: what the router writes to the journal, and what it
//! recovers from it.
//!
//! A queue group whose policy is durable has a handle in the journal; every
//! change of one of its messages is appended as it happens, under the
//! router's lock, so the journal's order is the router's: accepted (the
//! message, encoded with its stamps), handed out, put back, gone for good,
//! and the counters no message record implies. A publish that reached a
//! durable queue is confirmed only once its last record is durable (the
//! confirmation waits in [`Effects`](crate::broker::effects::Effects), see
//! `broker/confirm.rs`). Message ids are reserved in blocks (`IdFloor`), so
//! a restarted broker never issues an id again.
//!
//! **Invariant:** a durable group's messages are the journal's unsettled
//! messages of its queue, in the same places (waiting or in flight).

use prost::Message as _;

use super::Map;
use super::Router;
use super::queues::GroupKey;
use crate::broker::confirm::{Held, IfLost};
use crate::broker::ids::{GroupId, Seq};
use crate::broker::journal::{
    self, AppendError, Counter, Journal, Lsn, MessageId as JournalId, Outcome, QueueKey, QueueRef,
    Record, Recovered,
};
use crate::broker::queue::Queued;
use crate::broker::refusal::{PublishRefusal, Refusal, SubscribeRefusal};
use crate::codec::raw::{ReplyStamp, Stamped};
use crate::framed::Outgoing;
use crate::names::ClientId;
use crate::proto;
use crate::topic::Topic;

/// Message ids are reserved in the journal this many at a time.
const ID_BLOCK: u64 = 1 << 20;

/// The journal and what the router keeps about it.
#[derive(Debug)]
pub(super) struct Durable {
    pub journal: Journal,
    refs: Map<GroupId, QueueRef>,
    /// Each durable queue's counters since its first start (they outlive
    /// the group, which is forgotten when idle).
    pub totals: Map<GroupKey, journal::Counters>,
    /// The last record appended for the publish being routed.
    pub last: Option<Lsn>,
    /// Whether the publish being routed entered a durable queue (its
    /// `Accepted` record was appended).
    pub accepted: bool,
    /// Why an append for it failed, if one did.
    pub failed: Option<AppendError>,
    /// The last record appended at all.
    pub appended: Option<Lsn>,
    /// Ids up to here are reserved in the journal.
    reserved: u64,
    /// What recovery could not read when the journal was opened.
    recovery: journal::LossReport,
}

impl Durable {
    pub fn new(journal: Journal, recovery: journal::LossReport) -> Self {
        Self {
            journal,
            recovery,
            refs: Map::default(),
            totals: Map::default(),
            last: None,
            accepted: false,
            failed: None,
            appended: None,
            reserved: 0,
        }
    }

    pub fn into_journal(self) -> Journal {
        self.journal
    }
}

impl Router {
    /// The journal's handle of group `gid`, if it is durable.
    pub(super) fn durable_ref(&mut self, gid: GroupId) -> Option<QueueRef> {
        let durable = self.durable.as_mut()?;
        if let Some(&r) = durable.refs.get(&gid) {
            return Some(r);
        }
        let group = self.queues.get(gid)?;
        if !group.policy().durable {
            return None;
        }
        let r = durable
            .journal
            .queue(&QueueKey::new(group.filter.clone(), group.name.clone()));
        durable.refs.insert(gid, r);
        Some(r)
    }

    /// Appends `record`, remembering its LSN for the publish being routed
    /// (or why it failed); returns the LSN.
    fn append(&mut self, record: Record<'_>) -> Option<Lsn> {
        let durable = self.durable.as_mut()?;
        match durable.journal.append(record) {
            Ok(lsn) => {
                durable.last = Some(lsn);
                durable.appended = Some(lsn);
                Some(lsn)
            }
            Err(e) => {
                tracing::error!(error = %e, "journal append failed");
                durable.failed = Some(e);
                None
            }
        }
    }

    /// Counts `record` in group `gid`'s totals, by the journal's own rules
    /// ([`journal::Counters::apply`], saturating), so the totals shown
    /// before a restart are those recovered after it.
    fn count(&mut self, gid: GroupId, record: &Record<'_>) {
        let Some(key) = self.queues.get(gid).map(|g| GroupKey {
            filter: g.filter.clone(),
            name: g.name.clone(),
        }) else {
            return;
        };
        if let Some(durable) = self.durable.as_mut() {
            durable.totals.entry(key).or_default().apply(record);
        }
    }

    /// A durable group accepted `m` (published into it, or `adopted` from
    /// a direct send whose holder left: then it waits for attempt + 1).
    pub(super) fn journal_accepted(&mut self, gid: GroupId, m: &Queued, adopted: bool) {
        let Some(queue) = self.durable_ref(gid) else {
            return;
        };
        let bytes = m.message.to_bytes();
        let id = JournalId::new(m.message.id);
        let attempt = m.message.attempt;
        let record = Record::Accepted {
            queue,
            id,
            attempt,
            envelope: &bytes,
        };
        self.append(record);
        if let Some(d) = self.durable.as_mut() {
            d.accepted |= d.failed.is_none();
        }
        self.count(gid, &record);
        if adopted {
            self.journal_requeued(gid, m.message.id, attempt.saturating_add(1), false);
        }
    }

    /// Journals a delivery of a durable group's message; returns the
    /// record's LSN, which the delivery waits for ([`Router::send_delivery`]).
    pub(super) fn journal_delivered(&mut self, gid: GroupId, id: u64, attempt: u32) -> Option<Lsn> {
        let queue = self.durable_ref(gid)?;
        let record = Record::Delivered {
            queue,
            id: JournalId::new(id),
            attempt,
        };
        let lsn = self.append(record);
        self.count(gid, &record);
        lsn
    }

    /// Sends `frame` (a delivery) to `conn` once the record at `lsn` is
    /// durable, or at once when there is no such record.
    pub(super) fn send_after(&mut self, conn: super::ConnId, lsn: Option<Lsn>, frame: Outgoing) {
        match (lsn, self.conns.get(conn)) {
            (Some(lsn), Some(c)) => {
                let out = c.out.clone();
                self.held.push(Held {
                    lsn,
                    out,
                    ok: frame,
                    if_lost: IfLost::SendOk,
                });
            }
            _ => self.conns.send(conn, frame),
        }
    }

    pub(super) fn journal_requeued(&mut self, gid: GroupId, id: u64, attempt: u32, nacked: bool) {
        let Some(queue) = self.durable_ref(gid) else {
            return;
        };
        let record = Record::Requeued {
            queue,
            id: JournalId::new(id),
            attempt,
            nacked,
        };
        self.append(record);
        self.count(gid, &record);
    }

    pub(super) fn journal_settled(&mut self, gid: GroupId, id: u64, outcome: Outcome) {
        let Some(queue) = self.durable_ref(gid) else {
            return;
        };
        let record = Record::Settled {
            queue,
            id: JournalId::new(id),
            outcome,
        };
        self.append(record);
        self.count(gid, &record);
    }

    pub(super) fn journal_counted(&mut self, gid: GroupId, counter: Counter) {
        let Some(queue) = self.durable_ref(gid) else {
            return;
        };
        let record = Record::Counted {
            queue,
            counter,
            by: 1,
        };
        self.append(record);
        self.count(gid, &record);
    }

    /// The journal's handle of group `gid` if it is durable, for routing.
    pub(super) fn journaled(&mut self, gid: GroupId) -> bool {
        self.durable_ref(gid).is_some()
    }

    /// Whether group `gid` stays when it has no members and nothing waits:
    /// a durable queue does, unless only its recovered messages made it one.
    pub(super) fn outlives_members(&self, gid: GroupId) -> bool {
        self.durable.is_some() && self.queues.get(gid).is_some_and(|g| g.policy().durable)
    }

    /// Forgets the handle of a group that is gone.
    pub(super) fn forget_durable(&mut self, gid: GroupId) {
        if let Some(d) = self.durable.as_mut() {
            d.refs.remove(&gid);
        }
    }

    /// Whether a member may join group `key`: a new durable queue only
    /// under `durability.max_queues`.
    pub(super) fn durable_room_for(&self, key: &GroupKey) -> Result<(), SubscribeRefusal> {
        let Some(d) = self.durable.as_ref() else {
            return Ok(());
        };
        if self.queues.find(key).is_some() || !self.config.queue.policy_for(&key.filter).durable {
            return Ok(());
        }
        let max = self.config.durability.max_queues;
        let durable = self
            .queues
            .iter()
            .filter(|(gid, g)| g.policy().durable || d.refs.contains_key(gid))
            .count();
        if durable >= max {
            return Err(SubscribeRefusal::TooManyDurableQueues { max });
        }
        Ok(())
    }

    /// The journal's space, work and recovery losses, if one is open.
    pub(super) fn journal_stats(&self) -> Option<proto::JournalStats> {
        let d = self.durable.as_ref()?;
        let usage = d.journal.usage();
        let done = d.journal.stats();
        Some(proto::JournalStats {
            file_bytes: usage.file_bytes,
            live_bytes: usage.live_bytes,
            max_disk_bytes: self.config.durability.max_disk_bytes,
            disk_full: usage.disk_full,
            syncs: done.syncs,
            records: done.records,
            failed_records: done.failed_records,
            compactions: done.compactions,
            recovery_lost_bytes: d.recovery.bytes,
            recovery_damaged: d.recovery.damage.len() as u64,
            recovery_skipped_records: d.recovery.skipped_records,
        })
    }

    /// Marks the durable queues in `queues` (one per group) and adds their
    /// counters since their first start; a durable queue with no group
    /// now (nothing waiting, no members) is listed with its totals only.
    pub(super) fn durable_stats(&self, queues: &mut Vec<proto::QueueStats>) {
        let Some(d) = self.durable.as_ref() else {
            return;
        };
        let mut listed = std::collections::HashSet::new();
        for (gid, g) in self.queues.iter() {
            let key = GroupKey {
                filter: g.filter.clone(),
                name: g.name.clone(),
            };
            let durable = d.refs.contains_key(&gid) || g.policy().durable;
            if !durable {
                continue;
            }
            let totals = d.totals.get(&key).copied().unwrap_or_default();
            if let Some(q) = queues
                .iter_mut()
                .find(|q| q.topic == key.filter.as_str() && q.group == key.name.as_str())
            {
                q.durable = true;
                q.totals = Some(queue_totals(&totals));
            }
            listed.insert(key);
        }
        for (key, totals) in &d.totals {
            if !listed.contains(key) {
                queues.push(proto::QueueStats {
                    topic: key.filter.as_str().to_owned(),
                    group: key.name.as_str().to_owned(),
                    durable: true,
                    totals: Some(queue_totals(totals)),
                    ..Default::default()
                });
            }
        }
    }

    /// A publish nobody is told about was routed: why its record failed,
    /// if it did, is in the log only.
    pub(super) fn durable_unconfirmed(&mut self) {
        if let Some(d) = self.durable.as_mut() {
            d.last = None;
            d.accepted = false;
            d.failed = None;
        }
    }

    /// Starts a command: nothing appended for it yet.
    pub(super) fn durable_begin(&mut self) {
        if let Some(d) = self.durable.as_mut() {
            d.last = None;
            d.accepted = false;
            d.failed = None;
        }
    }

    /// Confirms a command with `ok`: now, or once the records it appended
    /// are durable (handed to the caller in `held`), or with a `Storage`
    /// refusal when one could not be appended. Publishes, settlements,
    /// replies and cancels all go through here.
    pub(super) fn confirm_durable(&mut self, conn: super::ConnId, seq: Seq, ok: proto::Frame) {
        let (last, failed) = match self.durable.as_mut() {
            Some(d) => (d.last.take(), d.failed.take()),
            None => (None, None),
        };
        if let Some(e) = failed {
            let refusal: Refusal = PublishRefusal::Storage {
                reason: e.to_string(),
            }
            .into();
            self.conns.send(conn, refusal.into_frame(seq));
            return;
        }
        match (last, self.conns.get(conn)) {
            (Some(lsn), Some(c)) => {
                self.held.push(Held {
                    lsn,
                    out: c.out.clone(),
                    ok: ok.into(),
                    if_lost: IfLost::Refuse(seq),
                });
            }
            _ => self.conns.send(conn, ok),
        }
    }

    /// A request that is not confirmed entered a durable group: its reply
    /// will be kept by message id, so the requester is told that id (an
    /// `Ok` with `result_kept`, once the request's records are durable,
    /// ahead of its reply). A requester that loses its connection asks for
    /// the reply by it. Nothing is sent for a request that entered no
    /// durable group, or whose record could not be appended: its reply is
    /// not kept.
    pub(super) fn notice_kept(&mut self, conn: super::ConnId, seq: Seq, message_id: u64) {
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        let (last, failed, accepted) = (d.last.take(), d.failed.take(), d.accepted);
        d.accepted = false;
        if failed.is_some() || !accepted || !seq.wants_answer() {
            return;
        }
        if let (Some(lsn), Some(c)) = (last, self.conns.get(conn)) {
            self.held.push(Held {
                lsn,
                out: c.out.clone(),
                ok: super::accepted(seq, message_id, true).into(),
                if_lost: IfLost::SendOk,
            });
        }
    }

    /// Keeps the ids issued ahead of the journal's reservation, so a
    /// restarted broker never issues one again.
    pub(super) fn reserve_ids(&mut self) {
        let next = self.ids.peek();
        let Some(d) = self.durable.as_mut() else {
            return;
        };
        if next + ID_BLOCK / 2 < d.reserved {
            return;
        }
        let id = next + ID_BLOCK;
        if d.journal
            .append(Record::IdFloor {
                id: JournalId::new(id),
            })
            .is_ok()
        {
            d.reserved = id;
        }
    }

    /// Rebuilds the durable queues the journal recovered, before the broker
    /// serves anyone: each one's unsettled messages wait in their original
    /// order, a message that was in flight at attempt `n` is redelivered as
    /// attempt `n + 1` (and dead-lettered if that passes `max_attempts`).
    pub(super) fn restore(&mut self, recovered: &Recovered) {
        self.ids.skip_past(recovered.id_floor.get());
        for q in &recovered.queues {
            let key = GroupKey {
                filter: q.key.filter.clone(),
                name: q.key.group.clone(),
            };
            if let Some(d) = self.durable.as_mut() {
                d.totals.insert(key.clone(), q.counters);
            }
            // Every durable queue is back, empty or not, so what is
            // published before its members reconnect waits for them (one
            // the config no longer makes durable only while it holds
            // messages).
            if q.messages.is_empty() && !self.config.queue.policy_for(&key.filter).durable {
                continue;
            }
            let gid = self.group_for(&key);
            if let Some(d) = self.durable.as_mut() {
                d.refs.insert(gid, q.queue);
            }
            let max = self.queues.get(gid).map_or(0, |g| g.policy().max_attempts);
            for m in &q.messages {
                let Some(mut stamped) = stamped_from(&m.envelope, m.id.get()) else {
                    tracing::error!(message_id = %m.id, queue = %q.key, "a recovered message does not decode; dropped");
                    continue;
                };
                // A delivery's first attempt is 1: 0 is a damaged record.
                stamped.attempt = m.attempt.max(1);
                let mut queued = Queued::new(stamped);
                if m.in_flight {
                    if max > 0 && queued.message.attempt >= max {
                        let reason = format!("broker restarted; {max} attempts used");
                        self.usage.add(&queued.message.source, queued.size);
                        if let Some(g) = self.queues.get_mut(gid) {
                            g.counters.accepted += 1;
                        }
                        self.dead_letter(gid, queued, &reason);
                        continue;
                    }
                    queued.message.attempt = queued.message.attempt.saturating_add(1);
                    self.journal_requeued(gid, m.id.get(), queued.message.attempt, false);
                }
                self.usage.add(&queued.message.source, queued.size);
                if let Some(g) = self.queues.get_mut(gid) {
                    g.restore(queued);
                }
            }
        }
        for r in &recovered.results {
            self.results.restore(r);
        }
        if !recovered.loss.damage.is_empty() {
            tracing::warn!(
                bytes = recovered.loss.bytes,
                records = recovered.loss.skipped_records,
                "journal damage: what follows it was not recovered"
            );
        }
    }
}

fn queue_totals(c: &journal::Counters) -> proto::QueueTotals {
    proto::QueueTotals {
        accepted: c.accepted,
        delivered: c.delivered,
        acked: c.acked,
        nacked: c.nacked,
        redelivered: c.redelivered,
        dropped: c.dropped,
        rejected: c.rejected,
        dead_lettered: c.dead_lettered,
        cancelled: c.cancelled,
        evicted: c.evicted,
    }
}

/// A message as the journal stored it (its envelope with the broker's
/// stamps, encoded), back as the router holds it.
pub(super) fn stamped_from(bytes: &bytes::Bytes, id: u64) -> Option<Stamped> {
    let envelope = proto::Envelope::decode(bytes.clone()).ok()?;
    let topic = Topic::new(&envelope.topic).ok()?;
    let source = ClientId::new(&envelope.source).ok()?;
    let reply = match ClientId::new(&envelope.reply_to) {
        Ok(to) if envelope.correlation_id != 0 => ReplyStamp::Request {
            correlation: envelope.correlation_id,
            to,
        },
        _ if envelope.correlation_id != 0 || !envelope.reply_to.is_empty() => ReplyStamp::Clear,
        _ => ReplyStamp::None,
    };
    Some(Stamped {
        envelope: bytes.clone(),
        topic,
        id,
        source,
        timestamp_us: envelope.timestamp_us,
        attempt: envelope.attempt,
        reply,
    })
}
