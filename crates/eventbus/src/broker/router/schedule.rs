//! When the ticker runs next: it sleeps until something is due (a heartbeat,
//! a heartbeat limit, a request or ack deadline) and is woken when something
//! falls due sooner.
//!
//! **Invariant:** `next_tick` is never later than anything the router has
//! scheduled since the last tick.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest the ticker sleeps, whatever is due.
pub(crate) const MAX_TICK: Duration = Duration::from_secs(1);
/// The shortest: a deadline met exactly is handled on the next tick, not in a spin.
pub(crate) const MIN_TICK: Duration = Duration::from_millis(1);

/// The ticker's plan.
#[derive(Debug)]
pub(crate) struct Schedule {
    next_tick: Instant,
    /// Wakes the ticker when something falls due before `next_tick`.
    wake: Arc<tokio::sync::Notify>,
}

impl Schedule {
    pub fn new(now: Instant) -> Self {
        Self {
            next_tick: now,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// What wakes the ticker.
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// Makes sure the ticker runs by `at`, waking it if it planned to sleep
    /// longer.
    pub fn due_by(&mut self, at: Instant) {
        if at < self.next_tick {
            self.next_tick = at;
            self.wake.notify_one();
        }
    }

    /// Plans the next tick after one at `now`, at `next` but no sooner than
    /// [`MIN_TICK`] from now.
    pub fn planned(&mut self, now: Instant, next: Instant) -> Instant {
        self.next_tick = next.max(now + MIN_TICK);
        self.next_tick
    }
}
