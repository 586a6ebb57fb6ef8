//! One-second samples: the headline rates and depths over time, in a ring of
//! `monitor.history_seconds` samples, so a page opened late still draws the
//! last minutes; and the per-client and per-queue rates of the last second.
//!
//! **Invariants:** the ring holds at most `capacity` samples, oldest first;
//! the rate tables hold one entry per connected client and per queue group
//! that existed at the last sample.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::super::{Map, Router};
use crate::broker::ids::{ConnId, GroupId};
use crate::broker::monitor::Sample;

/// Counts at the last sample, and the rates they gave.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Rates {
    counts: [u64; 3],
    /// Per second, in the order of the counts.
    pub per_s: [f64; 3],
}

impl Rates {
    fn update(&mut self, counts: [u64; 3], secs: f64) {
        for ((rate, now), before) in self.per_s.iter_mut().zip(counts).zip(self.counts) {
            // A counter that went down (a group re-created) restarts its rate.
            let delta = now.saturating_sub(before);
            *rate = if secs > 0.0 { delta as f64 / secs } else { 0.0 };
        }
        self.counts = counts;
    }
}

/// Totals at the last sample.
#[derive(Debug, Clone, Copy)]
struct Last {
    at: Instant,
    totals: [u64; 5],
}

/// The samples, and the rates of the last second.
#[derive(Debug)]
pub(crate) struct History {
    capacity: usize,
    samples: VecDeque<Sample>,
    last: Option<Last>,
    /// Per client: published, delivered, acked.
    pub(super) clients: Map<ConnId, Rates>,
    /// Per queue group: accepted, delivered, acked.
    pub(super) queues: Map<GroupId, Rates>,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            samples: VecDeque::new(),
            last: None,
            clients: Map::default(),
            queues: Map::default(),
        }
    }

    /// Starts counting at `at`, from the broker's totals then (the
    /// observer's own counters start at zero).
    pub fn start(&mut self, at: Instant, published: u64, delivered: u64, dropped: u64) {
        self.last = Some(Last {
            at,
            totals: [published, delivered, 0, dropped, 0],
        });
    }

    pub fn forget_client(&mut self, conn: ConnId) {
        self.clients.remove(&conn);
    }

    /// The samples of the last `window`, oldest first.
    pub fn window(&self, window: Duration) -> Vec<Sample> {
        let n = usize::try_from(window.as_secs()).unwrap_or(usize::MAX);
        let skip = self.samples.len().saturating_sub(n);
        self.samples.iter().skip(skip).cloned().collect()
    }

    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    fn push(&mut self, sample: Sample) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.samples.len()
    }
}

impl Router {
    /// Takes the one-second sample at `now`, with the resident memory the
    /// caller read outside the lock; `None` without a monitor.
    pub(crate) fn monitor_sample(&mut self, now: Instant, rss: Option<u64>) -> Option<Sample> {
        self.settle_fanout_counts();
        let o = self.observer.as_deref_mut()?;
        let totals = [
            self.totals.published,
            self.totals.delivered,
            o.acked,
            self.totals.dropped,
            o.dead_lettered,
        ];
        let h = &mut o.history;
        let (secs, previous) = match h.last {
            Some(last) => (
                now.saturating_duration_since(last.at).as_secs_f64(),
                last.totals,
            ),
            None => (0.0, totals),
        };
        let rate = |i: usize| {
            if secs > 0.0 {
                totals[i].saturating_sub(previous[i]) as f64 / secs
            } else {
                0.0
            }
        };
        h.last = Some(Last { at: now, totals });
        h.clients.retain(|id, _| self.conns.contains(*id));
        for (id, c) in self.conns.iter() {
            let counts = [c.counters.published, c.counters.delivered, c.counters.acked];
            // A client new since the last sample counts from zero.
            h.clients.entry(id).or_default().update(counts, secs);
        }
        h.queues.retain(|gid, _| self.queues.get(*gid).is_some());
        let mut depth = 0;
        for (gid, g) in self.queues.iter() {
            depth += g.depth() as u64;
            let c = &g.counters;
            let counts = [c.accepted, c.delivered, c.acked];
            h.queues.entry(gid).or_default().update(counts, secs);
        }
        let sample = Sample {
            at_ms: super::super::wall_us() / 1000,
            publish_rate: rate(0),
            deliver_rate: rate(1),
            ack_rate: rate(2),
            drop_rate: rate(3),
            dead_letter_rate: rate(4),
            depth,
            in_flight: self.in_flight.len() as u64,
            connections: self.conns.iter().count(),
            rss_bytes: rss.unwrap_or(0),
            published: totals[0],
            delivered: totals[1],
            acked: totals[2],
            dropped: totals[3],
            dead_lettered: totals[4],
        };
        h.push(sample.clone());
        o.emit(crate::broker::monitor::MonitorEvent::Sample(sample.clone()));
        Some(sample)
    }

    /// The samples of the last `window`, oldest first.
    pub(crate) fn monitor_history(&self, window: Duration) -> Vec<Sample> {
        self.observer
            .as_deref()
            .map(|o| o.history.window(window))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64) -> Sample {
        Sample {
            at_ms,
            publish_rate: 0.0,
            deliver_rate: 0.0,
            ack_rate: 0.0,
            drop_rate: 0.0,
            dead_letter_rate: 0.0,
            depth: 0,
            in_flight: 0,
            connections: 0,
            rss_bytes: 0,
            published: 0,
            delivered: 0,
            acked: 0,
            dropped: 0,
            dead_lettered: 0,
        }
    }

    #[test]
    fn the_ring_keeps_the_latest_samples_and_windows_take_the_newest() {
        let mut h = History::new(3);
        for at in 1..=5 {
            h.push(sample(at));
        }
        assert_eq!(h.len(), 3);
        let at: Vec<_> = h
            .window(Duration::from_secs(2))
            .iter()
            .map(|s| s.at_ms)
            .collect();
        assert_eq!(at, [4, 5]);
        assert_eq!(h.window(Duration::from_secs(60)).len(), 3);
        assert_eq!(h.latest().map(|s| s.at_ms), Some(5));
    }

    #[test]
    fn rates_are_deltas_over_the_interval() {
        let mut r = Rates::default();
        r.update([10, 0, 0], 1.0);
        r.update([30, 5, 0], 2.0);
        assert_eq!(r.per_s, [10.0, 2.5, 0.0]);
        r.update([1, 5, 0], 1.0);
        assert_eq!(r.per_s[0], 0.0, "a counter that restarted");
    }
}
