//! Chaos: seeded fault schedules carried out on a loaded cluster, judged by
//! explicit success criteria.
//!
//! - [`schedule`]: a [`Schedule`] of faults (kill, pause, restart collectors,
//!   restart the broker, partition or slow links, squeeze memory) derived from
//!   a seed; progressive failures add one more every N seconds.
//! - [`nemesis`]: carries a schedule out on the processes and the
//!   [`FaultProxy`](crate::FaultProxy) links, on time.
//! - [`workload`]: a weighted mix of task requests, direct requests and events
//!   at a target rate from several clients, every operation recorded.
//! - [`metrics`]: per-second throughput, p95 latency, error rate and broker RSS.
//! - [`executions`]: what the collectors really ran, from their logs.
//! - [`judge`]: availability, recovery time and consistency.
//! - [`criteria`]: the [`Report`] with its criteria table.
//!
//! [`run`] ties them together for a scenario. The scenarios themselves are in
//! `crates/e2e/tests/scenarios/chaos/`; `docs/scenarios.md` lists them.

pub mod criteria;
pub mod executions;
pub mod judge;
pub mod metrics;
pub mod nemesis;
pub mod schedule;
pub mod workload;

use std::time::Duration;

use tokio::time::Instant;

pub use criteria::Report;
pub use metrics::PidCell;
pub use nemesis::Targets;
pub use schedule::{Fault, FaultKind, Plan, Schedule};
pub use workload::{Op, Workload, WorkloadRun};

use eventbus_harness::{DEADLINE, wait_until};

use crate::collector::ClusterExt as _;

/// Everything a chaos run produced.
#[derive(Debug, Clone)]
pub struct ChaosRun {
    /// The workload's records.
    pub run: WorkloadRun,
    /// Broker RSS samples: `(time since start, bytes)`.
    pub rss: Vec<(Duration, u64)>,
    /// What the nemesis did.
    pub applied: Vec<nemesis::Applied>,
    /// What the collectors ran (read after the queues drained).
    pub executions: Vec<executions::Execution>,
    /// Whether every queue drained after the load (nothing left waiting or in flight).
    pub drained: bool,
}

impl ChaosRun {
    /// The per-second metrics.
    pub fn samples(&self) -> Vec<metrics::Sample> {
        metrics::per_second(&self.run, &self.rss)
    }

    /// The largest broker RSS sampled, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.rss.iter().map(|(_, b)| *b).max().unwrap_or(0)
    }
}

/// Runs `workload` and `schedule` together from now, samples the broker's RSS,
/// then waits (up to [`DEADLINE`]) for every queue to drain and reads what the
/// collectors ran.
pub async fn run(workload: &Workload, schedule: &Schedule, targets: Targets<'_>) -> ChaosRun {
    let socket = targets.cluster.socket().to_owned();
    let start = Instant::now();
    let sampler = metrics::RssSampler::start(targets.broker_pid.clone(), start);
    let seed = schedule.seed;
    let Targets {
        cluster,
        collectors,
        links,
        broker_pid,
    } = targets;
    let (run, applied) = {
        let nemesis = nemesis::run(
            schedule,
            start,
            Targets {
                cluster: &mut *cluster,
                collectors: &mut *collectors,
                links,
                broker_pid,
            },
        );
        tokio::join!(workload.run(&socket, seed, start), nemesis)
    };
    let driver = cluster.driver().await;
    let drained = wait_until("every queue drains", DEADLINE, || {
        let driver = driver.clone();
        async move {
            driver.try_stats().await.is_ok_and(|stats| {
                stats
                    .queues
                    .iter()
                    .all(|q| q.depth == 0 && q.in_flight == 0)
            })
        }
    })
    .await
    .is_ok();
    let rss = sampler.stop().await;
    let executions = collectors
        .iter()
        .flat_map(|c| executions::read_log(&c.logs().stderr, c.id()))
        .collect();
    ChaosRun {
        run,
        rss,
        applied,
        executions,
        drained,
    }
}
