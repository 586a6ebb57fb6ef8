//! Per-worker performance: how each client that takes deliveries settles
//! them, over its last [`LATENCY_SAMPLES`] settlements in the last
//! [`WORKER_WINDOW`], and the score `docs/monitoring.md` describes.
//!
//! **Invariant:** one entry per connected client that settled or lost a
//! delivery, each holding at most [`LATENCY_SAMPLES`] samples; an entry goes
//! with its client's connection.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::super::Map;
use super::tasks::Ended;
use crate::broker::monitor::AttemptEnd;
use crate::names::ClientId;

/// Settlements kept per worker.
pub(crate) const LATENCY_SAMPLES: usize = 256;
/// How far back the statistics look.
pub(crate) const WORKER_WINDOW: Duration = Duration::from_secs(60);

/// One settlement.
#[derive(Debug, Clone, Copy)]
struct Settled {
    at: Instant,
    run_us: u64,
    ok: bool,
}

/// A worker's recent settlements.
#[derive(Debug, Default)]
pub(super) struct Worker {
    samples: VecDeque<Settled>,
}

/// What the window says about one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct WorkerStats {
    pub ok: u64,
    pub failed: u64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

impl Worker {
    fn record(&mut self, at: Instant, ended: &Ended) {
        if self.samples.len() == LATENCY_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(Settled {
            at,
            run_us: u64::try_from(ended.run.as_micros()).unwrap_or(u64::MAX),
            ok: ended.end == AttemptEnd::Acked,
        });
    }

    /// Its statistics over the window ending at `now`.
    pub fn stats(&self, now: Instant) -> WorkerStats {
        let recent = self
            .samples
            .iter()
            .filter(|s| now.saturating_duration_since(s.at) <= WORKER_WINDOW);
        let mut ok_latencies = Vec::new();
        let mut failed = 0;
        for s in recent {
            if s.ok {
                ok_latencies.push(s.run_us);
            } else {
                failed += 1;
            }
        }
        ok_latencies.sort_unstable();
        WorkerStats {
            ok: ok_latencies.len() as u64,
            failed,
            p50_us: percentile(&ok_latencies, 50),
            p99_us: percentile(&ok_latencies, 99),
        }
    }
}

/// The `p`th percentile of sorted `values` (nearest rank).
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// A worker's score, 0 to 100: the share of its settlements that were
/// acknowledgements, weighed by its speed against the fleet's median
/// latency (a worker as fast as the median or faster loses nothing; one
/// twice as slow loses a quarter).
pub(super) fn score(stats: &WorkerStats, fleet_p50_us: Option<u64>) -> u8 {
    let settled = stats.ok + stats.failed;
    if settled == 0 {
        return 100;
    }
    let success = stats.ok as f64 / settled as f64;
    let speed = match (stats.p50_us, fleet_p50_us) {
        (Some(own), Some(fleet)) if own > 0 => (fleet as f64 / own as f64).min(1.0),
        _ => 1.0,
    };
    (100.0 * success * (0.5 + 0.5 * speed)).round() as u8
}

/// Every worker's window.
#[derive(Debug, Default)]
pub(super) struct Workers {
    by_client: Map<ClientId, Worker>,
}

impl Workers {
    pub fn record(&mut self, at: Instant, ended: &Ended) {
        self.by_client
            .entry(ended.collector.clone())
            .or_default()
            .record(at, ended);
    }

    pub fn get(&self, client: &ClientId) -> Option<&Worker> {
        self.by_client.get(client)
    }

    /// Forgets a worker whose connection ended.
    pub fn remove(&mut self, client: &ClientId) {
        self.by_client.remove(client);
    }

    #[cfg(any(test, fuzzing))]
    pub fn len(&self) -> usize {
        self.by_client.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(us: u64, end: AttemptEnd) -> Ended {
        Ended {
            collector: ClientId::new("w").unwrap(),
            run: Duration::from_micros(us),
            end,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn the_window_is_bounded_and_old_samples_do_not_count() {
        let start = Instant::now();
        let mut w = Worker::default();
        for i in 0..(LATENCY_SAMPLES as u64 + 10) {
            w.record(start, &ended(i, AttemptEnd::Acked));
        }
        assert_eq!(w.samples.len(), LATENCY_SAMPLES);
        w.record(start, &ended(5, AttemptEnd::TimedOut));
        let stats = w.stats(start);
        assert_eq!(stats.failed, 1);
        assert_eq!(stats.ok, LATENCY_SAMPLES as u64 - 1);
        let later = start + WORKER_WINDOW + Duration::from_secs(1);
        assert_eq!(w.stats(later), WorkerStats::default());
    }

    #[test]
    fn the_score_weighs_failures_and_slowness() {
        let good = WorkerStats {
            ok: 10,
            failed: 0,
            p50_us: Some(100),
            p99_us: Some(200),
        };
        assert_eq!(score(&good, Some(100)), 100);
        assert_eq!(score(&good, Some(50)), 75, "twice as slow as the fleet");
        let flaky = WorkerStats { failed: 10, ..good };
        assert_eq!(score(&flaky, Some(100)), 50);
        assert_eq!(score(&WorkerStats::default(), None), 100, "no news");
    }
}
