//! Which connection a queue delivery came on, and whether that connection can
//! still settle it: the client's half of "a dead consumer's deliveries belong
//! to someone else now".
//!
//! The broker takes a delivery back when its holder's connection ends, or when
//! it has heard nothing from the holder for `misses × interval`. A process that
//! was frozen (SIGSTOP, a long stall) past that limit wakes up with deliveries
//! still in its socket buffer or mailbox that the broker has already handed to
//! another member, maybe already answered. Running them would be a duplicate
//! after the ack. So every delivery carries the epoch of the connection it
//! came on, and is void — never handed to the application, reported as
//! cancelled if already handed out — once that connection has ended, or once
//! this client has sent no heartbeat for longer than the broker waits: by
//! then the broker has dropped (or is about to drop) the connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The current connection's epoch and this client's own heartbeat clock.
#[derive(Debug)]
pub(crate) struct Session {
    start: Instant,
    /// Odd while a connection is up (its epoch), even between connections.
    epoch: AtomicU64,
    /// When this client last queued a heartbeat, in ms since `start`.
    last_beat_ms: AtomicU64,
    /// The current connection's `misses × interval` (plus a little slack), in ms.
    dead_after_ms: AtomicU64,
}

impl Session {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            epoch: AtomicU64::new(0),
            last_beat_ms: AtomicU64::new(0),
            dead_after_ms: AtomicU64::new(u64::MAX),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A connection is up, which the broker drops after about `dead_after`
    /// of silence; returns its epoch.
    pub fn begin(&self, dead_after: Duration) -> u64 {
        let ms = u64::try_from(dead_after.as_millis()).unwrap_or(u64::MAX);
        self.dead_after_ms.store(ms, Ordering::Relaxed);
        self.beat();
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The connection is over: its deliveries are void.
    pub fn end(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The epoch deliveries arriving now belong to.
    pub fn current(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A heartbeat was queued.
    pub fn beat(&self) {
        self.last_beat_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Whether this client has been silent longer than the broker waits: it
    /// was frozen or starved, and the broker has given up on the connection.
    pub fn stalled(&self) -> bool {
        let silent = self
            .now_ms()
            .saturating_sub(self.last_beat_ms.load(Ordering::Relaxed));
        silent > self.dead_after_ms.load(Ordering::Relaxed)
    }

    /// Whether a delivery of `epoch` can still be settled by this client.
    pub fn holds(&self, epoch: u64) -> bool {
        epoch == self.current() && !self.stalled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deliveries_are_void_after_their_connection_or_a_stall() {
        let session = Session::new();
        let first = session.begin(Duration::from_millis(300));
        assert!(session.holds(first));
        tokio::time::advance(Duration::from_millis(200)).await;
        session.beat();
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(session.holds(first), "beating keeps the session");
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(session.stalled());
        assert!(!session.holds(first), "silent past the broker's limit");
        session.end();
        let second = session.begin(Duration::from_millis(300));
        assert!(session.holds(second));
        assert!(!session.holds(first), "an ended connection's epoch");
    }
}
