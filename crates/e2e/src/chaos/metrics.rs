//! Metrics of a chaos run, per second: throughput, p95 latency and error rate
//! from the operation records, broker RSS from a sampler that reads
//! `/proc/<pid>/status` every second (following the broker across restarts).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::workload::{Outcome, WorkloadRun};
use crate::driver::latency_histogram;

/// The broker's current pid, updated by whoever restarts it.
#[derive(Debug, Clone, Default)]
pub struct PidCell(Arc<AtomicU32>);

impl PidCell {
    /// A cell holding `pid`.
    pub fn new(pid: u32) -> Self {
        Self(Arc::new(AtomicU32::new(pid)))
    }

    /// Replaces the pid (after a restart).
    pub fn set(&self, pid: u32) {
        self.0.store(pid, Ordering::Relaxed);
    }

    /// The pid.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The resident set size of `pid` in bytes, if it is running.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples a process's RSS every second until stopped.
#[derive(Debug)]
pub struct RssSampler {
    samples: Arc<Mutex<Vec<(Duration, u64)>>>,
    task: JoinHandle<()>,
}

impl RssSampler {
    /// Starts sampling `pid` (read anew each time) from `start`.
    pub fn start(pid: PidCell, start: Instant) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(start, Duration::from_secs(1));
            ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                let at = ticker.tick().await;
                if let Some(rss) = rss_bytes(pid.get()) {
                    sink.lock().await.push((at - start, rss));
                }
            }
        });
        Self { samples, task }
    }

    /// Stops and returns `(time since start, RSS bytes)` samples.
    pub async fn stop(self) -> Vec<(Duration, u64)> {
        self.task.abort();
        let _ = self.task.await;
        std::mem::take(&mut *self.samples.lock().await)
    }
}

/// One second of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Which second, from the start of the run.
    pub second: u64,
    /// Operations started in that second.
    pub attempted: u64,
    /// Of those, how many succeeded.
    pub completed: u64,
    /// Of those, how many failed (errors, timeouts, overload).
    pub errors: u64,
    /// 95th percentile latency of the successful ones.
    pub p95: Duration,
    /// The broker's RSS sampled in that second, if it was running.
    pub broker_rss: Option<u64>,
}

impl Sample {
    /// Errors over attempts, 0 when nothing was attempted.
    pub fn error_rate(&self) -> f64 {
        if self.attempted == 0 {
            0.0
        } else {
            self.errors as f64 / self.attempted as f64
        }
    }
}

/// Buckets the operations by the second they started in, with the RSS samples.
pub fn per_second(run: &WorkloadRun, rss: &[(Duration, u64)]) -> Vec<Sample> {
    let last = run
        .records
        .iter()
        .map(|r| r.started.as_secs())
        .chain(rss.iter().map(|(t, _)| t.as_secs()))
        .max()
        .unwrap_or(0);
    (0..=last)
        .map(|second| {
            let mut histogram = latency_histogram();
            let (mut attempted, mut completed, mut errors) = (0, 0, 0);
            for r in run.records.iter().filter(|r| r.started.as_secs() == second) {
                attempted += 1;
                if r.outcome == Outcome::Ok {
                    completed += 1;
                    let us = u64::try_from(r.latency.as_micros()).unwrap_or(u64::MAX);
                    histogram.saturating_record(us.max(1));
                } else {
                    errors += 1;
                }
            }
            let p95 = if completed == 0 {
                Duration::ZERO
            } else {
                Duration::from_micros(histogram.value_at_quantile(0.95))
            };
            let broker_rss = rss
                .iter()
                .filter(|(t, _)| t.as_secs() == second)
                .map(|(_, b)| *b)
                .max();
            Sample {
                second,
                attempted,
                completed,
                errors,
                p95,
                broker_rss,
            }
        })
        .collect()
}

/// The samples as a Markdown table.
pub fn samples_table(samples: &[Sample]) -> String {
    let mut out = String::from(
        "| second | attempted | completed | errors | error rate | p95 latency | broker RSS |\n|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in samples {
        let rss = s.broker_rss.map_or_else(
            || "-".to_owned(),
            |b| format!("{:.1} MiB", b as f64 / 1048576.0),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2} | {:.1} ms | {rss} |",
            s.second,
            s.attempted,
            s.completed,
            s.errors,
            s.error_rate(),
            s.p95.as_secs_f64() * 1e3,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::workload::OpRecord;

    fn record(started_ms: u64, latency_ms: u64, outcome: Outcome) -> OpRecord {
        OpRecord {
            op: "task:process".into(),
            task_id: Some("t".into()),
            started: Duration::from_millis(started_ms),
            latency: Duration::from_millis(latency_ms),
            accepted: true,
            confirmed: true,
            finished_unix_us: 0,
            replied_by: None,
            outcome,
        }
    }

    #[test]
    fn operations_are_bucketed_by_the_second_they_started() {
        let run = WorkloadRun {
            records: vec![
                record(100, 5, Outcome::Ok),
                record(900, 7, Outcome::Ok),
                record(1_200, 0, Outcome::Failed("timeout".into())),
                record(1_300, 0, Outcome::Overloaded),
            ],
            ..WorkloadRun::default()
        };
        let samples = per_second(&run, &[(Duration::from_millis(1_010), 4 << 20)]);
        assert_eq!(samples.len(), 2);
        assert_eq!((samples[0].attempted, samples[0].completed), (2, 2));
        assert!(samples[0].p95 >= Duration::from_millis(7));
        assert_eq!((samples[1].attempted, samples[1].errors), (2, 2));
        assert_eq!(samples[1].error_rate(), 1.0);
        assert_eq!(samples[1].broker_rss, Some(4 << 20));
        assert!(samples_table(&samples).contains("| 1 | 2 | 0 | 2 | 1.00 |"));
    }

    #[test]
    fn rss_of_this_process_is_positive() {
        assert!(rss_bytes(std::process::id()).is_some_and(|b| b > 0));
        assert_eq!(rss_bytes(u32::MAX), None);
    }
}
