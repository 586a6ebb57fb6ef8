//! Progressive failures: the three nodes are cut off one after another (in
//! a seeded order) while node 1 exports events at-least-once to nodes 2 and
//! 3; all heal together. Every node catches up: none lost on either
//! importer, whoever was cut off first.

use std::time::Duration;

use e2e::chaos::Report;
use e2e::fleet::nemesis::{self, FleetSchedule};
use e2e::fleet::{Export, Fleet, Import, Mode, create_stream, nats_connect};
use e2e::rng::seed_from_env;
use tokio::time::Instant;

use crate::support::{client, publish_numbered, receive, start_bridge};

const RATE: u32 = 200;
const LOAD: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_cut_off_one_after_another_all_catch_up_after_the_heal() {
    let seed = seed_from_env();
    let mut fleet = Fleet::start().await;
    let admin = nats_connect(&fleet.nats().urls()).await;
    create_stream(&admin, "EVENTS_NODE1", &["fleet.node1.>"], 3)
        .await
        .unwrap();
    let mut config = fleet.node(0).bridge_config();
    config.exports.push(
        Export::new("events.#", Mode::AtLeastOnce)
            .add_prefix("fleet.node1")
            .stream("EVENTS_NODE1"),
    );
    start_bridge(&mut fleet, 0, config).await;
    for i in 1..3 {
        let mut config = fleet.node(i).bridge_config();
        let durable = format!("events-{}", fleet.node(i).name());
        config
            .imports
            .push(Import::new("fleet.node1.>", Mode::AtLeastOnce).stream("EVENTS_NODE1", &durable));
        start_bridge(&mut fleet, i, config).await;
    }
    let mut subs = Vec::new();
    for i in 1..3 {
        let c = client(&fleet, i, "subscriber").await;
        subs.push(c.subscribe("fleet.node1.events.load").await.unwrap());
    }
    let publisher = client(&fleet, 0, "publisher").await;
    let sent = u64::from(RATE) * LOAD.as_secs();
    let heal_at = Duration::from_secs(8);
    let schedule = FleetSchedule::progressive(
        seed,
        3,
        Duration::from_secs(2),
        Duration::from_secs(2),
        heal_at,
    );

    let start = Instant::now();
    let receivers = futures_util::future::join_all(
        subs.iter_mut()
            .map(|sub| receive(sub, sent as usize, LOAD + Duration::from_secs(90))),
    );
    let (log, (), received) = tokio::join!(
        nemesis::run(&schedule, start, &mut fleet),
        publish_numbered(&publisher, "events.load", "node1", sent, Some(RATE)),
        receivers,
    );

    let mut report = Report::new("fleet-progressive", seed).replayed_by("fleet", "progressive::");
    for (k, received) in received.iter().enumerate() {
        let node = fleet.node(k + 1).name();
        let tally = received.tally("node1", sent);
        let caught_up = received
            .all_below_by("node1", sent)
            .map(|t| (t - start).saturating_sub(heal_at).as_secs_f64())
            .unwrap_or(f64::INFINITY);
        report.at_most(
            &format!("events lost on {node} (at-least-once)"),
            0.0,
            tally.lost as f64,
            "",
        );
        report.note(format!(
            "{node}: {} received, {} duplicated, {} out of order, all {sent} by {caught_up:.2} s after the heal",
            received.total(),
            tally.duplicated,
            tally.out_of_order
        ));
    }
    report.note(format!(
        "mode {}; {sent} events at {RATE}/s from node 1",
        fleet.mode()
    ));
    for line in nemesis::log_lines(&log) {
        report.note(line);
    }
    report.finish();
}
