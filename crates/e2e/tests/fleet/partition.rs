//! Node 2 partitioned for 5 s under load: its local bus keeps serving its
//! own tasks, its at-least-once exports wait in the bridge and are delivered
//! after the heal, none lost and in order per publisher; the report gives
//! availability, consistency and recovery time like the chaos criteria.

use std::time::Duration;

use e2e::chaos::Report;
use e2e::fleet::nemesis::{self, FleetFault, FleetSchedule};
use e2e::fleet::{Export, Fleet, Import, Mode, create_stream, nats_connect};
use e2e::rng::seed_from_env;
use e2e::{CollectorBuilder, CollectorKind, Driver};
use tokio::time::Instant;

use crate::support::{client, publish_numbered, receive, start_bridge, statuses, wait_status};

/// Node 2 publishes this many events per second...
const RATE: u32 = 200;
/// ...for this long.
const LOAD: Duration = Duration::from_secs(12);
const PARTITION_AT: Duration = Duration::from_secs(3);
const PARTITION_FOR: Duration = Duration::from_secs(5);

/// Local tasks on node 2, one after the other until `until`: (sent at, ok).
async fn local_tasks(driver: &Driver, start: Instant, until: Duration) -> Vec<(Duration, bool)> {
    let mut results = Vec::new();
    let mut n = 0;
    while start.elapsed() < until {
        let id = format!("local-{n}");
        let at = start.elapsed();
        let ok = driver
            .request_task(CollectorKind::Process, &id, Duration::from_secs(2))
            .await
            .is_ok_and(|r| r.is_ok());
        results.push((at, ok));
        n += 1;
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_keeps_its_local_bus_and_delivers_its_exports_after_the_heal() {
    let seed = seed_from_env();
    let mut fleet = Fleet::start().await;
    let admin = nats_connect(&fleet.nats().urls()).await;
    create_stream(&admin, "EVENTS_NODE2", &["fleet.node2.>"], 3)
        .await
        .unwrap();
    let mut config = fleet.node(1).bridge_config();
    config.exports.push(
        Export::new("events.#", Mode::AtLeastOnce)
            .add_prefix("fleet.node2")
            .stream("EVENTS_NODE2"),
    );
    start_bridge(&mut fleet, 1, config).await;
    let mut config = fleet.node(0).bridge_config();
    config.imports.push(
        Import::new("fleet.node2.>", Mode::AtLeastOnce).stream("EVENTS_NODE2", "events-node1"),
    );
    start_bridge(&mut fleet, 0, config).await;
    fleet
        .node_mut(1)
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 2))
        .await;

    let mut sub = client(&fleet, 0, "subscriber")
        .await
        .subscribe("fleet.node2.events.load")
        .await
        .unwrap();
    let publisher = client(&fleet, 1, "publisher").await;
    let driver = Driver::connect(fleet.node(1).cluster().socket())
        .await
        .unwrap();
    let mut status = statuses(fleet.node(1)).await;
    let sent = u64::from(RATE) * LOAD.as_secs();
    let schedule =
        FleetSchedule::new(seed).fault(PARTITION_AT, PARTITION_FOR, FleetFault::Partition(1));
    let heal_at = PARTITION_AT + PARTITION_FOR;

    let start = Instant::now();
    let (log, tasks, received) = {
        let load = async {
            let (_, tasks) = tokio::join!(
                publish_numbered(&publisher, "events.load", "node2", sent, Some(RATE)),
                local_tasks(&driver, start, LOAD),
            );
            tasks
        };
        let receiver = receive(&mut sub, sent as usize, LOAD + Duration::from_secs(90));
        tokio::join!(nemesis::run(&schedule, start, &mut fleet), load, receiver)
    };
    let after = wait_status(fleet.node(1), &mut status, "drained its buffer", |s| {
        s.buffered == 0
    })
    .await;

    let tally = received.tally("node2", sent);
    let during: Vec<bool> = tasks
        .iter()
        .filter(|(at, _)| *at >= PARTITION_AT && *at < heal_at)
        .map(|(_, ok)| *ok)
        .collect();
    let availability = during.iter().filter(|ok| **ok).count() as f64 / during.len().max(1) as f64;
    // Recovery: from the heal until node 1 had every event node 2 published
    // before it (paced: event k is published at k / RATE); "never" if one
    // of them never arrived.
    let before_heal = (heal_at.as_secs_f64() * f64::from(RATE)) as u64;
    let recovery = received
        .all_below_by("node2", before_heal)
        .map(|t| (t - start).saturating_sub(heal_at).as_secs_f64())
        .unwrap_or(f64::INFINITY);

    let mut report = Report::new("fleet-partition", seed).replayed_by("fleet", "partition::");
    report.at_least(
        "node 2's local tasks answered during the partition (availability)",
        0.99,
        availability,
        "",
    );
    report.at_most("events lost (at-least-once)", 0.0, tally.lost as f64, "");
    report.at_most(
        "events out of order per publisher",
        0.0,
        tally.out_of_order as f64,
        "",
    );
    report.at_most(
        "recovery: heal until every event published before it is delivered",
        10.0,
        recovery,
        "s",
    );
    report.note(format!(
        "mode {}; {sent} events at {RATE}/s from node 2, {} received on node 1, {} duplicated",
        fleet.mode(),
        received.total(),
        tally.duplicated
    ));
    report.note(format!(
        "{} local tasks on node 2, {} during the partition",
        tasks.len(),
        during.len()
    ));
    report.note(format!("bridge of node 2 after: {after:?}"));
    for line in nemesis::log_lines(&log) {
        report.note(line);
    }
    println!(
        "figure: fleet partition ({}): availability {availability:.3}, lost {}, recovery {recovery:.2} s",
        fleet.mode(),
        tally.lost
    );
    report.finish();
}
