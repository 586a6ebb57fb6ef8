//! The faults a proxy injects and the counters it keeps: the state that the
//! [`FaultProxy`](super::FaultProxy) handle sets and every pump reads.
//!
//! One `std::sync::Mutex` guards it all; every section is a few assignments or
//! one random draw, never an `.await`. A `watch` channel tells waiting writers
//! that something changed (a heal), so none of them polls.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::Direction;
use super::stats::{DirStats, ProxyStats};
use crate::rng::Rng;

/// One concrete way through a connection; [`Direction`] may name both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// From the client to the broker.
    ToBroker,
    /// From the broker to the client.
    ToClient,
}

impl Flow {
    /// Both flows, in index order.
    pub(super) const BOTH: [Flow; 2] = [Flow::ToBroker, Flow::ToClient];

    fn index(self) -> usize {
        match self {
            Flow::ToBroker => 0,
            Flow::ToClient => 1,
        }
    }

    /// Whether `dir` includes this flow.
    fn is_in(self, dir: Direction) -> bool {
        matches!(
            (self, dir),
            (_, Direction::Both)
                | (Flow::ToBroker, Direction::ToBroker)
                | (Flow::ToClient, Direction::ToClient)
        )
    }

    /// The flows `dir` names.
    pub(super) fn of(dir: Direction) -> impl Iterator<Item = Flow> {
        Flow::BOTH.into_iter().filter(move |f| f.is_in(dir))
    }
}

/// The faults set for one flow. The default is a perfect wire.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct FlowFaults {
    pub(super) latency: Duration,
    pub(super) jitter: Duration,
    pub(super) bandwidth: Option<u64>,
    pub(super) drop: f64,
    pub(super) duplicate: f64,
}

/// Everything behind the lock.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) flows: [FlowFaults; 2],
    /// Per flow: whether its frames are held (a partition, both or one way).
    pub(super) held: [bool; 2],
    /// An armed one-shot tear, until a frame claims it.
    pub(super) tear: Option<Direction>,
    pub(super) stats: ProxyStats,
}

impl State {
    pub(super) fn flow_mut(&mut self, flow: Flow) -> &mut FlowFaults {
        &mut self.flows[flow.index()]
    }

    /// Holds (or releases) the frames of `flow`.
    pub(super) fn hold(&mut self, flow: Flow, held: bool) {
        self.held[flow.index()] = held;
    }

    fn dir_stats(&mut self, flow: Flow) -> &mut DirStats {
        match flow {
            Flow::ToBroker => &mut self.stats.to_broker,
            Flow::ToClient => &mut self.stats.to_client,
        }
    }
}

/// What the reader does with a frame it has just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Discard it (counted).
    Drop,
    /// Queue it in the delay line: written `copies` times, `delay` after arrival.
    Forward { delay: Duration, copies: u8 },
}

/// What the writer does with the frame at the head of its delay line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// Write it (its copies), paced to this many bytes per second if any.
    Write { bandwidth: Option<u64> },
    /// Write half of it and close the connection: the armed tear is this frame's.
    Tear,
}

/// The state shared by a proxy and all its pumps.
#[derive(Debug)]
pub(super) struct Shared {
    state: Mutex<State>,
    changed: watch::Sender<()>,
}

impl Shared {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            changed: watch::Sender::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave these plain fields half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the faults and wakes every waiting writer.
    pub(super) fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.changed.send_replace(());
    }

    /// Reads (or counts) without waking anyone.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.lock())
    }

    /// A copy of the counters.
    pub(super) fn stats(&self) -> ProxyStats {
        self.lock().stats
    }

    /// Decides the fate of a frame just read on `flow`, drawing from `rng`.
    pub(super) fn on_read(&self, flow: Flow, rng: &mut Rng) -> Verdict {
        let mut state = self.lock();
        let faults = state.flows[flow.index()];
        if rng.chance(faults.drop) {
            state.dir_stats(flow).dropped += 1;
            return Verdict::Drop;
        }
        let copies = if rng.chance(faults.duplicate) { 2 } else { 1 };
        let delay = faults.latency + rng.duration_up_to(faults.jitter);
        Verdict::Forward { delay, copies }
    }

    /// Decides how the frame at the head of `flow`'s line goes out; `whole` is
    /// false for the cut-off tail of a stream, which a tear never claims.
    pub(super) fn on_release(&self, flow: Flow, whole: bool) -> Release {
        let mut state = self.lock();
        if whole && state.tear.is_some_and(|dir| flow.is_in(dir)) {
            state.tear = None;
            state.stats.torn += 1;
            return Release::Tear;
        }
        Release::Write {
            bandwidth: state.flows[flow.index()].bandwidth,
        }
    }

    /// Counts a frame written `copies` times.
    pub(super) fn wrote(&self, flow: Flow, copies: u8, len: usize) {
        let mut state = self.lock();
        let stats = state.dir_stats(flow);
        stats.frames += u64::from(copies);
        stats.bytes += u64::from(copies) * len as u64;
        stats.duplicated += u64::from(copies - 1);
    }

    /// Adds `delta` to the frames waiting in `flow`'s delay lines.
    pub(super) fn add_held(&self, flow: Flow, delta: i64) {
        let mut state = self.lock();
        let held = &mut state.dir_stats(flow).held;
        *held = held.saturating_add_signed(delta);
    }

    /// A receiver of fault changes, for [`healed`](Self::healed).
    pub(super) fn changes(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Returns at once when `flow` is not held, else when the partition heals.
    pub(super) async fn healed(&self, flow: Flow, changes: &mut watch::Receiver<()>) {
        loop {
            // Marked seen before the check, so a heal after it wakes us.
            changes.borrow_and_update();
            if !self.lock().held[flow.index()] {
                return;
            }
            if changes.changed().await.is_err() {
                // Unreachable while we hold the Arc that owns the sender.
                return;
            }
        }
    }
}
