//! The router: owner of all routing state.
//!
//! Input is a validated [`Command`] from one connection
//! ([`apply`](Router::apply)), a registration, a disconnect or a tick; output
//! is frames pushed (never waiting) into the connections' bounded
//! [`Outbound`] queues, plus what [`finish`](Router::finish) leaves in
//! [`Effects`] for the caller to carry out once the lock is released. The
//! router is synchronous and never touches a socket or a clock of its own:
//! the caller says what time it is, which is what makes it testable
//! deterministically (`tests/`).
//!
//! Its state is in parts, each with its own invariants: [`Connections`]
//! (who is connected, their queued frames), the [`SubscriptionIndex`] of
//! [`Target`]s, [`Queues`] (queue groups), [`InFlightTable`] (deliveries
//! awaiting settlement), [`Requests`] (awaiting replies), the counters and
//! the ticker's [`Schedule`].
//!
//! **Invariant:** every message a queue group accepted is in exactly one
//! place: waiting in its queue, in flight to one member, or counted as
//! acked, dead-lettered, evicted or cancelled (checked by
//! `Router::check_invariants` in the tests).

mod bridges;
mod connections;
mod counters;
mod disk_bound;
mod durable;
mod fanout;
mod gather;
mod in_flight;
#[cfg(any(test, fuzzing))]
mod invariants;
mod lifecycle;
pub(crate) mod observe;
mod publish;
mod queues;
mod requests;
mod results;
mod schedule;
mod settle;
mod stats;
mod subscribe;
mod sys_stats;
#[cfg(any(test, fuzzing))]
mod tests;
mod usage;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use connections::Connections;
use counters::{TopicCounters, Totals};
use durable::Durable;
use gather::Gathers;
use in_flight::InFlightTable;
use queues::Queues;
use requests::{Requests, Responders};
use results::Results;
use schedule::Schedule;
use usage::Usage;

pub(crate) use lifecycle::Registration;
#[cfg(fuzzing)]
pub use tests::model as fuzz_model;

use super::command::{Command, Inbound, Publish};
use super::config::BrokerConfig;
use super::confirm::Held;
use super::effects::Effects;
use super::ids::{ConnId, GroupId, Ids, Seq, SubscriptionId, Tokens};
use super::journal::{Journal, Recovered};
use super::refusal::{DisconnectReason, Refusal, StatsRefusal};
use crate::proto::{self, Frame, frame::Kind};
use crate::topic::SubscriptionIndex;

/// The router's maps: keyed by small ids and topics it hashes several times
/// per message, so a fast (per-map randomly seeded) hasher instead of SipHash.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Slow consumers are announced on this topic, at most once a second each, with
/// a JSON payload: `client_id`, `dropped`, `outbound_depth`, `max_len`.
pub const SLOW_CONSUMER_TOPIC: &str = "_sys.slow-consumer";

/// Dead-lettered messages go to `<prefix>.<group>`.
pub const DEAD_LETTER_PREFIX: &str = "_sys.dead-letter";

/// Where a matching subscription sends a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// A plain subscription: every match gets a copy.
    Plain { conn: ConnId, sid: SubscriptionId },
    /// A queue group: one member gets it.
    Group(GroupId),
}

/// What became of a command.
#[derive(Debug)]
#[must_use]
pub(crate) enum Applied {
    /// Done; anything to answer is queued.
    Done,
    /// A publish must wait for room in a full queue with the `block` policy:
    /// the connection stops reading and retries it with
    /// [`retry_parked`](Router::retry_parked).
    Parked(Parked),
}

/// A publish waiting for room in a full queue with the `block` policy.
#[derive(Debug)]
pub(crate) struct Parked {
    pub publish: Publish,
    /// How long it may wait in all.
    pub timeout: Duration,
    /// Notified when a blocking queue makes room.
    pub space: Arc<tokio::sync::Notify>,
}

/// The time as the router sees it: the caller's monotonic `now`, and the
/// wall clock publishes are stamped with, both read once per batch.
#[derive(Debug, Clone, Copy)]
struct Clock {
    now: Instant,
    wall_us: u64,
}

impl Clock {
    fn at(now: Instant) -> Self {
        Self {
            now,
            wall_us: wall_us(),
        }
    }
}

/// All routing state of one broker.
#[derive(Debug)]
pub(crate) struct Router {
    config: Arc<BrokerConfig>,
    conns: Connections,
    index: SubscriptionIndex<Target>,
    queues: Queues,
    in_flight: InFlightTable,
    requests: Requests,
    gathers: Gathers,
    /// The journal of durable queues, if any queue may be durable.
    durable: Option<Durable>,
    /// Confirmations of durable publishes waiting for their records, handed
    /// to the caller by `finish`.
    held: Vec<Held>,
    /// Replies to durable requests, kept for `Client::result`.
    results: Results,
    totals: Totals,
    topics: TopicCounters,
    /// What messages in queue groups add up to, per publisher and in all.
    usage: Usage,
    /// The bridges' last statuses.
    bridges: bridges::Bridges,
    /// The resident memory last sampled, when it was over the high
    /// watermark: publishes into queue groups are refused meanwhile.
    memory_alarm: Option<u64>,
    ids: Ids,
    /// Requests' correlation tokens.
    tokens: Tokens,
    /// The plain subscribers the request being routed was copied to.
    recipients: Responders,
    clock: Clock,
    schedule: Schedule,
    /// Where the last publish kept encoded went, reused while its topic
    /// repeats and the subscription index is unchanged.
    fanout_route: Option<fanout::Route>,
    /// Reused by routing, so a publish does not allocate its target list.
    scratch: Vec<Target>,
    /// Slow-consumer events waiting to be published, as JSON payloads.
    slow_announcements: Vec<String>,
    draining: bool,
    started: Instant,
    /// What a monitor records; `None` (no cost) unless one is attached.
    observer: Option<Box<observe::Observer>>,
}

impl Router {
    pub fn new(config: Arc<BrokerConfig>, now: Instant) -> Self {
        Self {
            results: Results::new(&config.durability),
            config,
            conns: Connections::default(),
            index: SubscriptionIndex::new(),
            queues: Queues::default(),
            in_flight: InFlightTable::default(),
            requests: Requests::default(),
            gathers: Gathers::default(),
            durable: None,
            held: Vec::new(),
            totals: Totals::default(),
            topics: TopicCounters::default(),
            usage: Usage::default(),
            bridges: bridges::Bridges::default(),
            memory_alarm: None,
            ids: Ids::default(),
            tokens: Tokens::default(),
            recipients: Responders::None,
            clock: Clock::at(now),
            schedule: Schedule::new(now),
            fanout_route: None,
            scratch: Vec::new(),
            slow_announcements: Vec::new(),
            draining: false,
            started: now,
            observer: None,
        }
    }

    /// Journals the durable queues in `journal`, after restoring what it
    /// `recovered`: before the broker serves anyone.
    pub fn attach_journal(&mut self, journal: Journal, recovered: &Recovered) {
        self.durable = Some(Durable::new(journal, recovered.loss.clone()));
        self.restore(recovered);
        self.reserve_ids();
    }

    /// Lets go of the journal (to close it once nothing else holds it).
    pub fn detach_journal(&mut self) -> Option<Journal> {
        self.durable.take().map(Durable::into_journal)
    }

    /// What wakes the ticker when something falls due sooner than planned.
    pub fn ticker(&self) -> Arc<tokio::sync::Notify> {
        self.schedule.waker()
    }

    #[cfg(test)]
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Starts a batch of `conn`'s frames at `now`: it was heard from, and
    /// the batch's publishes are stamped with the wall clock read here.
    pub fn begin(&mut self, conn: ConnId, now: Instant) {
        self.clock = Clock::at(now);
        if let Some(c) = self.conns.get_mut(conn) {
            c.liveness.last_seen = now;
        }
    }

    /// Carries out one command from `conn` (or refuses a frame the edge
    /// rejected), in the order its connection sent them.
    pub fn apply(&mut self, conn: ConnId, inbound: Inbound) -> Applied {
        if !self.conns.contains(conn) {
            return Applied::Done;
        }
        let command = match inbound {
            Ok(command) => command,
            Err(rejected) => {
                self.refuse(conn, rejected.seq, rejected.refusal);
                return Applied::Done;
            }
        };
        // Whatever this command appends to the journal, its `Ok` waits for.
        self.durable_begin();
        let (seq, result): (Seq, Result<(), Refusal>) = match command {
            Command::Publish(p) => return self.publish_or_refuse(conn, p),
            Command::Gather(g) => (g.seq, self.gather(conn, g).map_err(Into::into)),
            Command::Subscribe(s) => (s.seq, self.subscribe(conn, s).map_err(Into::into)),
            Command::Unsubscribe { seq, sid } => (seq, self.unsubscribe(conn, seq, sid)),
            Command::Settle { delivery, how, seq } => (
                seq,
                self.settle(conn, delivery, how)
                    .map(|()| self.confirm(conn, seq))
                    .map_err(Into::into),
            ),
            Command::Reply(r) => (r.seq, self.reply(conn, r).map_err(Into::into)),
            Command::Cancel { message, seq } => {
                (seq, self.cancel(conn, message, seq).map_err(Into::into))
            }
            Command::Stats { seq } => (seq, self.send_stats(conn, seq)),
            Command::Result { seq, message, wait } => (
                seq,
                self.result(conn, seq, message, wait).map_err(Into::into),
            ),
            Command::Heartbeat => (Seq::NONE, Ok(())),
            Command::Goodbye => {
                self.disconnect(conn, DisconnectReason::Goodbye);
                (Seq::NONE, Ok(()))
            }
        };
        if let Err(refusal) = result {
            self.refuse(conn, seq, refusal);
        }
        Applied::Done
    }

    /// Ends a piece of work: closes the connections found too slow or dead,
    /// publishes slow-consumer announcements, and hands the caller the
    /// outbound queues to flush once the lock is released.
    pub fn finish(&mut self, effects: &mut Effects) {
        self.reap();
        self.reserve_ids();
        effects.held.append(&mut self.held);
        self.conns.take_touched(&mut effects.flush);
    }

    /// Answers a stats request, if the client's identity may read stats.
    fn send_stats(&mut self, conn: ConnId, seq: Seq) -> Result<(), Refusal> {
        let Some(c) = self.conns.get(conn) else {
            return Ok(());
        };
        if !c.principal.perms.stats {
            return Err(StatsRefusal::NotAllowed(c.principal.name.clone()).into());
        }
        let stats = self.stats(seq.get(), c.max_frame);
        let frame = Frame {
            kind: Some(Kind::StatsResponse(Box::new(stats))),
        };
        self.conns.send(conn, frame);
        Ok(())
    }

    /// Records the broker's resident memory, sampled by the ticker: above
    /// the high watermark, publishes into queue groups are refused (with
    /// `MemoryPressure`) until it is under again.
    pub fn sample_memory(&mut self, rss: Option<u64>, high_watermark: Option<u64>) {
        let was = self.memory_alarm.is_some();
        self.memory_alarm = rss.filter(|&rss| high_watermark.is_some_and(|high| rss > high));
        match (was, self.memory_alarm) {
            (false, Some(rss)) => {
                tracing::warn!(
                    rss,
                    ?high_watermark,
                    "memory alarm: queues take nothing until it passes"
                );
            }
            (true, None) => tracing::info!("memory alarm over"),
            _ => {}
        }
    }

    /// Tells `conn` why it was refused.
    fn refuse(&mut self, conn: ConnId, seq: Seq, refusal: Refusal) {
        self.conns.send(conn, refusal.into_frame(seq));
    }

    /// Answers `Ok` to a frame that asked for it.
    /// Answers `seq` with `Ok`: at once, or — when the command journaled
    /// something (an ack, a nack, a kept reply, a cancel) — once that is on
    /// disk, so a confirmed settlement is never undone by a crash.
    fn confirm(&mut self, conn: ConnId, seq: Seq) {
        if seq.wants_answer() {
            self.confirm_durable(conn, seq, ok(seq, 0));
        }
    }

    /// Starts a graceful shutdown: new publishes and connections are refused.
    pub fn begin_drain(&mut self) {
        self.draining = true;
    }

    /// Deliveries not yet acknowledged.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Closes every connection, telling each why.
    pub fn close_all(&mut self, reason: DisconnectReason) {
        for id in self.conns.ids() {
            self.disconnect(id, reason);
        }
    }
}

/// `Ok` answering `seq`, with the message id of an accepted publish (or 0).
fn ok(seq: Seq, message_id: u64) -> Frame {
    accepted(seq, message_id, false)
}

/// `Ok` answering confirmed publish `seq` with its message id; `result_kept`
/// says the publish was a request that entered a durable queue group, whose
/// reply the broker keeps by that id.
fn accepted(seq: Seq, message_id: u64, result_kept: bool) -> Frame {
    Frame {
        kind: Some(Kind::Ok(proto::Ok {
            seq: seq.get(),
            message_id,
            result_kept,
        })),
    }
}

/// Microseconds since the Unix epoch.
fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
