//! Two nodes export and import the same topics: no message loops. Each
//! bridge marks what it exports with its origin and never exports what it
//! imported, nor imports its own: every message is seen once per node.

use std::time::Duration;

use e2e::fleet::{Export, FleetBuilder, Import, Mode};
use eventbus_harness::quiet_for;

use crate::support::{QUIET, client, publish_numbered, receive, start_bridge, warm_up};

const EACH: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_exporting_and_importing_the_same_topics_see_each_message_once() {
    let mut fleet = FleetBuilder::new().nodes(2).start().await;
    for i in 0..2 {
        let mut config = fleet.node(i).bridge_config();
        config
            .exports
            .push(Export::new("events.#", Mode::AtMostOnce));
        config
            .imports
            .push(Import::new("events.>", Mode::AtMostOnce));
        start_bridge(&mut fleet, i, config).await;
    }
    let mut subs = Vec::new();
    let mut warm = Vec::new();
    let mut publishers = Vec::new();
    for i in 0..2 {
        let c = client(&fleet, i, "peer").await;
        subs.push(c.subscribe("events.loop.#").await.unwrap());
        warm.push(
            c.subscribe(format!("events.warm.to{i}").as_str())
                .await
                .unwrap(),
        );
        publishers.push(c);
    }
    // Each node's warm-up must reach the other.
    let (w0, w1) = warm.split_at_mut(1);
    warm_up(&publishers[1], "events.warm.to0", w0).await;
    warm_up(&publishers[0], "events.warm.to1", w1).await;
    tokio::join!(
        publish_numbered(&publishers[0], "events.loop.a", "node1", EACH, None),
        publish_numbered(&publishers[1], "events.loop.b", "node2", EACH, None),
    );
    for (i, sub) in subs.iter_mut().enumerate() {
        let received = receive(sub, 2 * EACH as usize, Duration::from_secs(60)).await;
        let (a, b) = (received.tally("node1", EACH), received.tally("node2", EACH));
        println!(
            "figure: fleet loops ({}) node{}: {} messages for {} sent, node1's {a:?}, node2's {b:?}",
            fleet.mode(),
            i + 1,
            received.total(),
            2 * EACH
        );
        assert_eq!(
            (a.lost, a.duplicated, b.lost, b.duplicated),
            (0, 0, 0, 0),
            "node{}",
            i + 1
        );
        assert!(
            quiet_for(sub, QUIET).await,
            "node{} still receiving: a loop",
            i + 1
        );
    }
}
