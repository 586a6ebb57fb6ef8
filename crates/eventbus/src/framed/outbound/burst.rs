//! Answers to a burst go out in one write.
//!
//! An inline flush writes a frame from the task that queued it: one system
//! call, and one wake-up of the peer, per frame. That is the fastest path
//! for one frame at a time, and the slowest for a burst: when one read
//! hands the application 500 replies, the 500 tasks it woke each send their
//! next request with a write of its own (measured: 100,004 `sendto` for
//! 100,000 pipelined requests).
//!
//! So the reader announces how many frames it just handed over
//! ([`Outbound::expect_burst`](super::Outbound::expect_burst)). While a
//! burst is open, an inline flush leaves its frame queued for the writer task
//! (which it wakes) — except the one that would be the burst's last, which
//! writes everything queued at once. The writer task, woken by the first,
//! runs after the tasks woken before it and writes whatever is left.
//!
//! **Bounds:** a burst closes once its count of frames is used, when the
//! writer takes a batch, or when no frame was queued for [`BURST_GAP`]: a
//! task that answers after a pause writes at once, as without a burst. A
//! frame left queued waits at most until the next frame queued, or until
//! the writer task runs, whichever is first.

use std::time::{Duration, Instant};

/// The longest pause between two frames of one burst: a frame queued later
/// than this after the previous one is written at once.
#[cfg(not(test))]
pub const BURST_GAP: Duration = Duration::from_micros(50);
/// In unit tests, a gap no scheduling delay reaches, so that what a burst
/// does never depends on how fast the test runs (the gap's own tests give
/// the clock's readings explicitly).
#[cfg(test)]
pub const BURST_GAP: Duration = Duration::from_secs(60);

/// The burst in progress, if any.
#[derive(Debug, Default)]
pub(super) struct Burst {
    /// Frames still expected, the last of which writes them all.
    left: usize,
    /// When the burst closes unless another frame is queued first.
    until: Option<Instant>,
}

impl Burst {
    /// Expects `frames` more frames from `now`: they join the burst in
    /// progress, or open one (none for a single frame, which is written at
    /// once).
    pub fn open(&mut self, frames: usize, now: Instant) {
        if frames == 0 {
            return;
        }
        let left = if self.until.is_some() {
            self.left.saturating_add(frames)
        } else {
            frames
        };
        if left > 1 {
            self.left = left;
            self.until = Some(now + BURST_GAP);
        } else {
            self.close();
        }
    }

    pub fn close(&mut self) {
        self.left = 0;
        self.until = None;
    }

    /// Whether a frame queued now waits for the burst's last (or the writer
    /// task) instead of being written at once. `now` is asked only while a
    /// burst is open.
    pub fn defers(&mut self, now: impl FnOnce() -> Instant) -> bool {
        let Some(until) = self.until else {
            return false;
        };
        if self.left > 1 {
            let now = now();
            if now < until {
                self.left -= 1;
                self.until = Some(now + BURST_GAP);
                return true;
            }
        }
        self.close();
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_of_a_burst_but_the_last_waits() {
        let t0 = Instant::now();
        let mut burst = Burst::default();
        burst.open(4, t0);
        let at = |us| move || t0 + Duration::from_micros(us);
        assert!(burst.defers(at(1)));
        assert!(burst.defers(at(2)));
        assert!(burst.defers(at(3)));
        assert!(!burst.defers(at(4)), "the last writes them all");
        assert!(!burst.defers(at(5)), "and the burst is over");
    }

    #[test]
    fn a_second_read_before_the_first_is_answered_joins_its_burst() {
        let t0 = Instant::now();
        let mut burst = Burst::default();
        burst.open(2, t0);
        burst.open(2, t0);
        burst.open(0, t0);
        let deferred = (0..4).filter(|_| burst.defers(|| t0)).count();
        assert_eq!(deferred, 3, "all four in one write");
    }

    #[test]
    fn one_frame_is_no_burst() {
        let mut burst = Burst::default();
        burst.open(1, Instant::now());
        assert!(!burst.defers(|| panic!("no clock read without a burst")));
        burst.open(0, Instant::now());
        assert!(!burst.defers(|| panic!("no clock read without a burst")));
    }

    #[test]
    fn a_pause_longer_than_the_gap_ends_the_burst() {
        let t0 = Instant::now();
        let mut burst = Burst::default();
        burst.open(100, t0);
        assert!(burst.defers(|| t0 + BURST_GAP / 2));
        // Each frame moves the deadline: still within the gap of the last one.
        assert!(burst.defers(|| t0 + BURST_GAP));
        assert!(
            !burst.defers(|| t0 + BURST_GAP * 3),
            "a late frame writes at once"
        );
        assert!(!burst.defers(|| t0 + BURST_GAP * 3));
    }

    #[test]
    fn a_closed_burst_defers_nothing() {
        let t0 = Instant::now();
        let mut burst = Burst::default();
        burst.open(10, t0);
        burst.close();
        assert!(!burst.defers(|| t0));
    }
}
