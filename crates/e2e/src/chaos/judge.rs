//! Turning a chaos run into figures: availability, recovery time and
//! consistency, from the workload's records and the collectors' executions.
//! [`Consistency`] judges what the broker accepted in memory;
//! [`DurableConsistency`] what it confirmed into durable queues, across
//! broker crashes.

use std::collections::{BTreeMap, HashMap};
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

/// What happened to the tasks the broker confirmed into durable queues,
/// across broker crashes (`docs/durability.md`): each must run, and a run
/// after the first must be a redelivery the broker announced with its
/// attempt number. The collectors' replies are not confirmed acks, so a
/// crash may undo one: its task runs again (attempt > 1), even after its
/// requester had the reply — allowed and reported, never at attempt 1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurableConsistency {
    /// Tasks whose `submit` the broker confirmed (the only ones judged:
    /// a `submit` that failed may or may not have been stored).
    pub confirmed: usize,
    /// Of those, tasks whose requester got a reply.
    pub replied: usize,
    /// Confirmed tasks without a reply that a collector ran.
    pub ran_without_reply: usize,
    /// Confirmed tasks never run and never replied to.
    pub lost: Vec<String>,
    /// Tasks run again at attempt 1: a duplicate no redelivery explains.
    pub duplicated: Vec<String>,
    /// Runs after a task's first, each at attempt > 1 (after a collector or
    /// the broker died holding it).
    pub reruns: usize,
    /// Of those, runs that started after the requester had its reply.
    pub reruns_after_reply: usize,
    /// The errors requesters of confirmed tasks saw, by text.
    pub errors: BTreeMap<String, usize>,
}

impl DurableConsistency {
    /// Checks every confirmed request of `run` against `executions`.
    pub fn check(run: &WorkloadRun, executions: &[Execution]) -> Self {
        let ran = by_task(executions);
        let mut c = Self::default();
        let mut seen: HashMap<&str, ()> = HashMap::new();
        for r in requests(run).filter(|r| r.confirmed) {
            let id = r.task_id.as_deref().unwrap_or_default();
            if seen.insert(id, ()).is_some() {
                continue;
            }
            c.confirmed += 1;
            if let Outcome::Failed(e) = &r.outcome {
                *c.errors.entry(e.clone()).or_default() += 1;
            }
            let mut runs = ran.get(id).cloned().unwrap_or_default();
            runs.sort_by_key(|e| e.started_unix_us);
            let replied = r.replied_by.is_some();
            if replied {
                c.replied += 1;
            } else if !runs.is_empty() {
                c.ran_without_reply += 1;
            } else {
                c.lost.push(id.to_owned());
            }
            let again = runs.get(1..).unwrap_or_default();
            if again.iter().any(|e| e.attempt <= 1) {
                c.duplicated.push(id.to_owned());
            }
            c.reruns += again.len();
            if replied {
                c.reruns_after_reply += again
                    .iter()
                    .filter(|e| e.started_unix_us > r.finished_unix_us)
                    .count();
            }
        }
        c
    }

    /// 1.0 when no confirmed task was lost or run again at attempt 1; else
    /// the share of confirmed tasks that were neither.
    pub fn score(&self) -> f64 {
        if self.confirmed == 0 {
            return 1.0;
        }
        let bad = self.lost.len() + self.duplicated.len();
        1.0 - bad as f64 / self.confirmed as f64
    }

    /// Confirmed tasks whose requester was told the connection closed: a
    /// durable request's `PendingRequest` outlives a broker crash, so none.
    pub fn closed(&self) -> usize {
        self.errors.get("connection closed").copied().unwrap_or(0)
    }

    /// A one-line account, for the report's notes.
    pub fn summary(&self) -> String {
        format!(
            "confirmed {}, replied {}, ran without a reply {}, lost {:?}, run again at attempt 1 {:?}, runs again at attempt > 1 {} ({} after the reply), requesters' errors {:?}",
            self.confirmed,
            self.replied,
            self.ran_without_reply,
            self.lost,
            self.duplicated,
            self.reruns,
            self.reruns_after_reply,
            self.errors
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
            confirmed: true,
            finished_unix_us: at_us,
            replied_by: replied.then(|| "procmond-1".into()),
            outcome,
        }
    }

    fn ran(id: &str, at_us: u64) -> Execution {
        ran_at(id, at_us, 1)
    }

    fn ran_at(id: &str, at_us: u64, attempt: u32) -> Execution {
        Execution {
            task_id: id.into(),
            collector: "procmond-1".into(),
            started_unix_us: at_us,
            attempt,
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

    #[test]
    fn durable_consistency_judges_only_confirmed_tasks_and_allows_reruns_above_attempt_one() {
        let in_doubt = OpRecord {
            confirmed: false,
            ..op(
                "doubt",
                0,
                Outcome::Failed("connection closed".into()),
                false,
                100,
            )
        };
        let run = WorkloadRun {
            records: vec![
                op("fine", 0, Outcome::Ok, true, 100),
                op("crashed", 0, Outcome::Ok, true, 100),
                op("twice", 0, Outcome::Ok, true, 100),
                op("late", 0, Outcome::Failed("timeout".into()), false, 100),
                op(
                    "gone",
                    0,
                    Outcome::Failed("connection closed".into()),
                    false,
                    100,
                ),
                in_doubt,
            ],
            ..WorkloadRun::default()
        };
        let executions = [
            ran_at("fine", 50, 1),
            // Redelivered after a crash undid the reply's settlement.
            ran_at("crashed", 50, 1),
            ran_at("crashed", 150, 2),
            // Run again at attempt 1: nothing explains it.
            ran_at("twice", 50, 1),
            ran_at("twice", 60, 1),
            ran_at("late", 200, 1),
        ];
        let c = DurableConsistency::check(&run, &executions);
        assert_eq!(c.confirmed, 5, "the in-doubt submit is not judged");
        assert_eq!(c.replied, 3);
        assert_eq!(c.ran_without_reply, 1);
        assert_eq!(c.lost, ["gone"]);
        assert_eq!(c.duplicated, ["twice"]);
        assert_eq!((c.reruns, c.reruns_after_reply), (2, 1));
        assert_eq!(c.closed(), 1);
        assert!((c.score() - 0.6).abs() < 1e-9);
    }
}
