//! Broker crashes with durable queues: the broker runs with `--durable
//! --data-dir` (one temporary directory, the same across its restarts) and
//! the nemesis SIGKILLs and restarts it among the usual collector faults.
//! What is judged is what the broker confirmed (`docs/durability.md`): every
//! task whose `submit` was confirmed runs, a task runs again only as a
//! redelivery (attempt > 1), and no requester of one is told `Closed`: its
//! `PendingRequest` outlives the crash.

use std::time::Duration;

use e2e::chaos::judge::DurableConsistency;
use e2e::chaos::{Fault, FaultKind, Op, Plan, Report, Schedule, Workload};
use e2e::{BrokerBuilder, Cluster, ClusterExt as _, CollectorKind};

use super::{Judged, chaos_seed, collector, judge_load, mixed_load, run_schedule};

/// How long a requester waits for a durable task's reply: long enough that
/// no confirmed task's deadline passes during a crash and recovery.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Each task's run time on the collectors: with 60 tasks a second over six
/// collectors, a few are always in flight when the broker dies, so the run
/// sees redeliveries after a crash.
const TASK_MS: u64 = 50;

/// When the broker is killed and restarted, in every run: between the
/// drawn collector faults (at 2, 3.5, 5 and 6.5 s).
const BROKER_CRASHES: [Duration; 2] = [Duration::from_millis(2_750), Duration::from_millis(5_750)];

impl From<&DurableConsistency> for Judged {
    fn from(c: &DurableConsistency) -> Self {
        Self {
            label: "consistency (confirmed tasks neither lost nor run again at attempt 1)",
            score: c.score(),
            summary: c.summary(),
        }
    }
}

/// Proves consistency 1.0 across broker crashes with durable queues: 60
/// task requests/s (`submit`, every kind) from 4 clients for 12 s over two
/// collectors of each kind (50 ms a task); one more collector killed, paused or restarted
/// every 1.5 s from 2 s, healed at 8 s, and the broker SIGKILLed and
/// restarted on its journal at 2.75 s and 5.75 s. Every confirmed task runs
/// (none lost), runs again only at attempt > 1, its requester never gets
/// `Closed`; availability ≥ 0.8 within 10 s, recovery ≤ 5 s, every queue
/// drained, no request outlives its deadline by over 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_crashes_with_durable_queues_under_load() {
    let seed = chaos_seed();
    let data = tempfile::tempdir().expect("a data directory");
    let mut cluster = Cluster::start_with(
        BrokerBuilder::new()
            .arg("--durable")
            .arg("--data-dir")
            .arg(data.path()),
    )
    .await;
    let mut collectors = Vec::new();
    for kind in CollectorKind::ALL {
        for instance in 1..=2 {
            let builder = collector(kind, instance).delay_ms(TASK_MS);
            collectors.push(cluster.add_collector(builder).await);
        }
    }
    let plan = Plan {
        first_at: Duration::from_secs(2),
        every: Duration::from_millis(1_500),
        faults: 4,
        heal_at: Duration::from_secs(8),
        menu: vec![
            (FaultKind::Kill, 2),
            (FaultKind::Pause, 2),
            (FaultKind::RestartCollector, 1),
        ],
        collectors: collectors.len(),
        links: 0,
    };
    let schedule = BROKER_CRASHES
        .iter()
        .fold(Schedule::progressive(seed, &plan), |s, &at| {
            s.with(at, Fault::RestartBroker)
        });
    // Tasks only: events and direct sends are not durable.
    let workload = Workload {
        mix: CollectorKind::ALL.map(|k| (Op::Task(k), 1)).to_vec(),
        timeout: TIMEOUT,
        ..mixed_load(Duration::from_secs(12))
    };
    let (schedule, chaos) =
        run_schedule(schedule, &workload, &mut cluster, &mut collectors, &[]).await;
    let consistency = DurableConsistency::check(&chaos.run, &chaos.executions);
    let mut report = Report::new("broker_crashes_with_durable_queues_under_load", seed);
    let crashes = chaos
        .applied
        .iter()
        .filter(|a| a.what.starts_with("killed the broker"))
        .count();
    report.at_least(
        "broker crashes carried out (SIGKILL + restart)",
        BROKER_CRASHES.len() as f64,
        crashes as f64,
        "",
    );
    report.at_most(
        "confirmed tasks whose requester was told `Closed`",
        0.0,
        consistency.closed() as f64,
        "",
    );
    let slack = workload.timeout + Duration::from_secs(1);
    let hung = chaos
        .run
        .records
        .iter()
        .filter(|r| r.latency > slack)
        .count();
    report.at_most(
        "requests that outlived their deadline by over 1 s (hangs)",
        0.0,
        hung as f64,
        "",
    );
    judge_load(
        &mut report,
        &chaos,
        &schedule,
        workload.timeout,
        (&consistency).into(),
    );
    report.finish();
}
