//! Events published on node 1 reach the subscribers on nodes 2 and 3 exactly
//! once each: at-most-once (core NATS) duplicates none, at-least-once
//! (JetStream, a durable consumer per importing bridge) loses none.

use std::time::Duration;

use e2e::fleet::{Export, Fleet, Import, Mode, create_stream, nats_connect};

use crate::support::{client, publish_numbered, receive, start_bridge, warm_up};

/// Events node 1 publishes.
const EVENTS: u64 = 2_000;
/// How long the receivers get.
const RECEIVE_WITHIN: Duration = Duration::from_secs(90);

async fn events_cross_the_fleet(mode: Mode) {
    let mut fleet = Fleet::start().await;
    let stream = match mode {
        Mode::AtMostOnce => "",
        Mode::AtLeastOnce => "EVENTS_NODE1",
    };
    if mode == Mode::AtLeastOnce {
        let admin = nats_connect(&fleet.nats().urls()).await;
        create_stream(&admin, stream, &["fleet.node1.>"], 3)
            .await
            .unwrap();
    }
    let mut config = fleet.node(0).bridge_config();
    config.exports.push(
        Export::new("events.#", mode)
            .add_prefix("fleet.node1")
            .stream(stream),
    );
    start_bridge(&mut fleet, 0, config).await;
    for i in 1..3 {
        let mut config = fleet.node(i).bridge_config();
        let durable = format!("events-{}", fleet.node(i).name());
        let durable = if stream.is_empty() {
            ""
        } else {
            durable.as_str()
        };
        config
            .imports
            .push(Import::new("fleet.node1.>", mode).stream(stream, durable));
        start_bridge(&mut fleet, i, config).await;
    }
    let mut counted = Vec::new();
    let mut warm = Vec::new();
    for i in 1..3 {
        let c = client(&fleet, i, "subscriber").await;
        counted.push(c.subscribe("fleet.node1.events.test").await.unwrap());
        warm.push(c.subscribe("fleet.node1.events.warm").await.unwrap());
    }
    let publisher = client(&fleet, 0, "publisher").await;
    warm_up(&publisher, "events.warm", &mut warm).await;
    let start = tokio::time::Instant::now();
    publish_numbered(&publisher, "events.test", "node1", EVENTS, None).await;
    let published = start.elapsed();
    // Both nodes read at once, so each one's arrival times are its own.
    let all = futures_util::future::join_all(
        counted
            .iter_mut()
            .map(|sub| receive(sub, EVENTS as usize, RECEIVE_WITHIN)),
    )
    .await;
    let mut tallies = Vec::new();
    for (k, received) in all.into_iter().enumerate() {
        let node = fleet.node(k + 1).name().to_owned();
        let tally = received.tally("node1", EVENTS);
        let took = received.last_at.map(|t| t - start).unwrap_or_default();
        println!(
            "figure: fleet events {mode:?} ({}) node1 -> {node}: {} of {EVENTS} received in {:.2} s (published in {:.2} s), \
             lost {}, duplicated {}, reordered {}",
            fleet.mode(),
            received.total(),
            took.as_secs_f64(),
            published.as_secs_f64(),
            tally.lost,
            tally.duplicated,
            tally.out_of_order
        );
        assert_eq!(received.junk, 0);
        tallies.push((node, tally));
    }
    for (node, tally) in tallies {
        match mode {
            Mode::AtMostOnce => assert_eq!(tally.duplicated, 0, "{node}: {tally:?}"),
            Mode::AtLeastOnce => assert_eq!(tally.lost, 0, "{node}: {tally:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_once_events_reach_every_other_node_never_duplicated() {
    events_cross_the_fleet(Mode::AtMostOnce).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_events_reach_every_other_node_none_lost() {
    events_cross_the_fleet(Mode::AtLeastOnce).await;
}
