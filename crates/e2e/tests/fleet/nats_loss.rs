//! One of the three nats-servers killed while tasks flow across the fleet
//! at-least-once: the bridges' NATS clients reconnect to the others, the
//! replicated stream keeps its quorum, and every task is run: 0 lost.

use std::collections::HashSet;
use std::time::Duration;

use e2e::chaos::Report;
use e2e::chaos::executions;
use e2e::fleet::nemesis::{self, FleetFault, FleetSchedule};
use e2e::fleet::{Export, Fleet, Import, Mode, create_stream, nats_connect};
use e2e::rng::seed_from_env;
use e2e::{CollectorBuilder, CollectorKind, DEADLINE, task_ids, wait_until};
use tokio::time::Instant;

use crate::support::{client, start_bridge};

const TASKS: usize = 600;
/// Tasks published per second.
const RATE: f64 = 100.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_nats_server_loses_no_at_least_once_task() {
    let seed = seed_from_env();
    let mut fleet = Fleet::start().await;
    let admin = nats_connect(&fleet.nats().urls()[1..]).await;
    create_stream(&admin, "FLEET_TASKS", &["fleet.task.>"], 3)
        .await
        .unwrap();
    let mut config = fleet.node(0).bridge_config();
    config
        .exports
        .push(Export::new("fleet.task.#", Mode::AtLeastOnce).stream("FLEET_TASKS"));
    start_bridge(&mut fleet, 0, config).await;
    let mut config = fleet.node(1).bridge_config();
    config.imports.push(
        Import::new("fleet.task.>", Mode::AtLeastOnce)
            .rename("fleet.task", "control.collector.task")
            .stream("FLEET_TASKS", "tasks-node2"),
    );
    start_bridge(&mut fleet, 1, config).await;
    fleet
        .node_mut(1)
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 2))
        .await;

    let publisher = client(&fleet, 0, "submitter").await;
    let ids = task_ids("fleet", TASKS);
    // The first server is every bridge's first choice: kill it a third in.
    let kill_at = Duration::from_secs_f64(TASKS as f64 / RATE / 3.0);
    let schedule =
        FleetSchedule::new(seed).fault(kill_at, Duration::from_secs(60), FleetFault::KillNats(0));
    let start = Instant::now();
    let publish = async {
        for (k, id) in ids.iter().enumerate() {
            tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / RATE)).await;
            publisher
                .publish_confirmed("fleet.task.process", CollectorKind::Process.payload(id))
                .await
                .unwrap_or_else(|e| panic!("the local broker refused {id}: {e}"));
        }
    };
    // Only the kill: its heal (a restart) is left out, the fleet must go on without it.
    let kill_only = FleetSchedule {
        seed,
        steps: schedule.steps[..1].to_vec(),
    };
    let (log, ()) = tokio::join!(nemesis::run(&kill_only, start, &mut fleet), publish);
    let collector = &fleet.node(1).collectors()[0];
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let done = wait_until("every task ran on node 2", DEADLINE * 3, || async {
        let ran = executions::read_log(&collector.logs().stderr, collector.id());
        let ran: HashSet<String> = ran.into_iter().map(|e| e.task_id).collect();
        wanted.iter().all(|id| ran.contains(*id))
    })
    .await;
    let took = start.elapsed();
    let ran = executions::read_log(&collector.logs().stderr, collector.id());
    let by_task = executions::by_task(&ran);
    let lost = wanted
        .iter()
        .filter(|id| !by_task.contains_key(**id))
        .count();
    let duplicated: usize = by_task.values().map(|e| e.len() - 1).sum();
    let mut report = Report::new("fleet-nats-loss", seed).replayed_by("fleet", "nats_loss::");
    report.at_most("tasks lost (at-least-once)", 0.0, lost as f64, "");
    report.note(format!("mode {}; {TASKS} tasks at {RATE}/s from node 1, run on node 2: {} distinct, {duplicated} run again (redelivered), all done after {:.2} s ({done:?})", fleet.mode(), by_task.len(), took.as_secs_f64()));
    for line in nemesis::log_lines(&log) {
        report.note(line);
    }
    println!(
        "figure: fleet nats-server loss ({}): lost {lost}, redelivered {duplicated}",
        fleet.mode()
    );
    report.finish();
}
