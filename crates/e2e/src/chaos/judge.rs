//! Turning a chaos run into figures: availability, recovery time and
//! consistency, from the workload's records and the collectors' executions.

use std::collections::HashMap;
use std::time::Duration;

use super::executions::{Execution, by_task};
use super::workload::{OpRecord, Outcome, WorkloadRun};

/// Task and direct requests (events are at most once and judged apart).
fn requests(run: &WorkloadRun) -> impl Iterator<Item = &OpRecord> {
    run.records.iter().filter(|r| r.task_id.is_some())
}

/// Completed ÷ attempted requests, each within its deadline (a late reply is
/// a timeout, not a completion). 1.0 when nothing was attempted.
pub fn availability(run: &WorkloadRun) -> f64 {
    let (mut attempted, mut completed) = (0u64, 0u64);
    for r in requests(run) {
        attempted += 1;
        completed += u64::from(r.is_ok());
    }
    if attempted == 0 {
        1.0
    } else {
        completed as f64 / attempted as f64
    }
}

/// How long after `healed` requests succeeded again for good: from `healed`
/// to the start of the last failed request started after it (zero when none
/// failed). `None` when the very last request failed: no recovery seen.
pub fn recovery_time(run: &WorkloadRun, healed: Duration) -> Option<Duration> {
    let mut after: Vec<&OpRecord> = requests(run).filter(|r| r.started >= healed).collect();
    after.sort_by_key(|r| r.started);
    if after.last().is_some_and(|r| !r.is_ok()) {
        return None;
    }
    Some(
        after
            .iter()
            .filter(|r| !r.is_ok())
            .map(|r| r.started - healed)
            .max()
            .unwrap_or(Duration::ZERO),
    )
}

/// What happened to the tasks the broker accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consistency {
    /// Tasks accepted (confirmed, or in doubt after `Closed` or a timeout).
    pub accepted: usize,
    /// Of those, tasks whose requester got a reply.
    pub replied: usize,
    /// Accepted tasks without a reply that a collector did run (late, after
    /// the requester's deadline).
    pub ran_late: usize,
    /// Accepted tasks without a reply, never run, whose requester was told
    /// with a typed error the persistence model allows (see [`Consistency::check`]).
    pub accounted: usize,
    /// Accepted tasks never run, without a reply or an allowed error.
    pub lost: Vec<String>,
    /// Tasks that started on a collector after their requester had the reply.
    pub duplicated_after_ack: Vec<String>,
    /// Tasks that ran more than once before their reply (at-least-once
    /// redelivery after a collector died): allowed, reported.
    pub redelivered: usize,
}

impl Consistency {
    /// Checks every accepted request of `run` against `executions`.
    /// `allowed_loss(error)` says which typed errors may stand for a task the
    /// bus dropped by design (a broker crash loses its queues; nothing else does).
    pub fn check(
        run: &WorkloadRun,
        executions: &[Execution],
        allowed_loss: impl Fn(&str) -> bool,
    ) -> Self {
        let ran = by_task(executions);
        let mut c = Self::default();
        let mut seen: HashMap<&str, ()> = HashMap::new();
        for r in requests(run).filter(|r| r.accepted) {
            let id = r.task_id.as_deref().unwrap_or_default();
            if seen.insert(id, ()).is_some() {
                continue;
            }
            c.accepted += 1;
            let starts = ran.get(id).map_or(&[][..], Vec::as_slice);
            let replied = r.replied_by.is_some();
            if replied {
                c.replied += 1;
                let late = starts
                    .iter()
                    .filter(|e| e.started_unix_us > r.finished_unix_us)
                    .count();
                if late > 0 {
                    c.duplicated_after_ack.push(id.to_owned());
                }
                c.redelivered += usize::from(starts.len() - late > 1);
            } else if !starts.is_empty() {
                c.ran_late += 1;
            } else if matches!(&r.outcome, Outcome::Failed(e) if allowed_loss(e)) {
                c.accounted += 1;
            } else {
                c.lost.push(id.to_owned());
            }
        }
        c
    }

    /// 1.0 when no accepted task was lost or duplicated after its ack; else
    /// the share of accepted tasks that were neither.
    pub fn score(&self) -> f64 {
        if self.accepted == 0 {
            return 1.0;
        }
        let bad = self.lost.len() + self.duplicated_after_ack.len();
        1.0 - bad as f64 / self.accepted as f64
    }

    /// A one-line account, for the report's notes.
    pub fn summary(&self) -> String {
        format!(
            "accepted {}, replied {}, ran after the requester's deadline {}, lost by design with a typed error {}, lost {:?}, duplicated after ack {:?}, redelivered before the reply {}",
            self.accepted,
            self.replied,
            self.ran_late,
            self.accounted,
            self.lost,
            self.duplicated_after_ack,
            self.redelivered
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: &str, started_ms: u64, outcome: Outcome, replied: bool, at_us: u64) -> OpRecord {
        OpRecord {
            op: "task:process".into(),
            task_id: Some(id.into()),
            started: Duration::from_millis(started_ms),
            latency: Duration::from_millis(1),
            accepted: true,
            finished_unix_us: at_us,
            replied_by: replied.then(|| "procmond-1".into()),
            outcome,
        }
    }

    fn ran(id: &str, at_us: u64) -> Execution {
        Execution {
            task_id: id.into(),
            collector: "procmond-1".into(),
            started_unix_us: at_us,
        }
    }

    #[test]
    fn availability_and_recovery() {
        let failed = || Outcome::Failed("timeout".into());
        let run = WorkloadRun {
            records: vec![
                op("a", 100, Outcome::Ok, true, 0),
                op("b", 2_000, failed(), false, 0),
                op("c", 2_500, failed(), false, 0),
                op("d", 3_000, Outcome::Ok, true, 0),
            ],
            ..WorkloadRun::default()
        };
        assert_eq!(availability(&run), 0.5);
        assert_eq!(
            recovery_time(&run, Duration::from_secs(2)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            recovery_time(&run, Duration::from_secs(3)),
            Some(Duration::ZERO)
        );
        let mut stuck = run.clone();
        stuck.records.push(op("e", 4_000, failed(), false, 0));
        assert_eq!(recovery_time(&stuck, Duration::from_secs(2)), None);
    }

    #[test]
    fn consistency_finds_lost_late_and_duplicated_tasks() {
        let run = WorkloadRun {
            records: vec![
                op("fine", 0, Outcome::Ok, true, 100),
                op("dup", 0, Outcome::Ok, true, 100),
                op("late", 0, Outcome::Failed("timeout".into()), false, 100),
                op("gone", 0, Outcome::Failed("timeout".into()), false, 100),
                op(
                    "crash",
                    0,
                    Outcome::Failed("connection closed".into()),
                    false,
                    100,
                ),
            ],
            ..WorkloadRun::default()
        };
        let executions = [
            ran("fine", 50),
            ran("fine", 60),
            ran("dup", 50),
            ran("dup", 150),
            ran("late", 200),
        ];
        let c = Consistency::check(&run, &executions, |e| e == "connection closed");
        assert_eq!(c.accepted, 5);
        assert_eq!(c.replied, 2);
        assert_eq!(c.ran_late, 1);
        assert_eq!(c.accounted, 1);
        assert_eq!(c.lost, ["gone"]);
        assert_eq!(c.duplicated_after_ack, ["dup"]);
        assert_eq!(c.redelivered, 1);
        assert!((c.score() - 0.6).abs() < 1e-9);
        let strict = Consistency::check(&run, &executions, |_| false);
        assert_eq!(strict.lost, ["gone", "crash"]);
    }
}
