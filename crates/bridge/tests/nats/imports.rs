//! At-least-once imports: several messages on their way into the local
//! broker at once, none acked to JetStream before the broker confirmed it.

use super::*;
use eventbus_harness::{Cluster, Direction};

/// Messages in flight in the window test: more than one, fewer than the
/// bridge's window and the consumer's `max_ack_pending`.
const IN_FLIGHT: usize = 20;

/// With the broker's answers held (a one-way partition between the bridge
/// and its broker: the bridge's publishes reach the broker, its
/// confirmations do not reach the bridge), every message of a batch reaches
/// a local subscriber — so they were all published before any confirmation
/// came, several on their way at once — and in JetStream's order, while
/// JetStream has none of them acked. Healed, every one is acked, none
/// redelivered. (One message at a time, only the first would arrive.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_imports_are_pipelined_and_acked_only_once_confirmed() {
    const { assert!(IN_FLIGHT > 1 && IN_FLIGHT < eventbus_bridge::import::IMPORT_WINDOW) };
    let server = NatsServer::start_jetstream().await;
    // Heartbeats far apart: answers held for a while must not look like a
    // dead broker to the bridge's client.
    let cluster = Cluster::embedded_with(|c| {
        c.heartbeat_interval_ms = c.max_heartbeat_interval_ms;
    })
    .await;
    let proxy = cluster.fault_proxy(19).await;
    let rules = "[[import]]\nsubject = \"fleet.task.>\"\nremove_prefix = \"fleet.task\"\n\
                 add_prefix = \"tasks\"\nmode = \"at-least-once\"\nstream = \"TASKS\"\n\
                 durable = \"n1\"\n";
    let bridge = Bridge::start(config_at(proxy.socket(), &server.url(), "n1", rules))
        .await
        .unwrap();
    connected(&bridge).await;
    let local = cluster.client("worker").await;
    let mut sub = local.subscribe("tasks.#").await.unwrap();
    let js = jetstream::new(nats_client(&server).await);
    // Goes through with nothing held.
    publish_once_stored(&js, "fleet.task.process", "probe").await;
    assert_eq!(take(&mut sub, 1).await[0].payload().as_ref(), b"probe");
    let consumer_info = || async {
        js.get_stream("TASKS")
            .await
            .unwrap()
            .consumer_info("n1")
            .await
            .unwrap()
    };
    wait_until("the probe is acked", DEADLINE, || async {
        consumer_info().await.ack_floor.stream_sequence == 1
    })
    .await
    .unwrap();

    proxy.partition_one_way(Direction::ToClient);
    for n in 0..IN_FLIGHT {
        js.publish("fleet.task.process", n.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let got: Vec<String> = take(&mut sub, IN_FLIGHT)
        .await
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload()).into_owned())
        .collect();
    let expected: Vec<String> = (0..IN_FLIGHT).map(|n| n.to_string()).collect();
    assert_eq!(got, expected, "all published at once, in JetStream's order");
    // None acked, however long an ack might take to reach JetStream.
    let acked = wait_until("an ack reaches JetStream", QUIET, || async {
        let info = consumer_info().await;
        info.ack_floor.stream_sequence > 1 || info.num_ack_pending < IN_FLIGHT
    })
    .await;
    let held = consumer_info().await;
    assert!(acked.is_err(), "acked before confirmed: {held:?}");
    assert_eq!(held.num_ack_pending, IN_FLIGHT, "{held:?}");
    assert_eq!(
        bridge.status().imported,
        1,
        "no confirmation reached the bridge"
    );

    proxy.heal();
    wait_until("every message is acked", DEADLINE, || async {
        let info = consumer_info().await;
        info.ack_floor.stream_sequence == 1 + IN_FLIGHT as u64 && info.num_ack_pending == 0
    })
    .await
    .unwrap();
    assert_eq!(bridge.status().imported, 1 + IN_FLIGHT as u64);
    assert_eq!(consumer_info().await.num_redelivered, 0);
    assert!(quiet_for(&mut sub, QUIET).await, "no duplicates");
    bridge.stop().await;
}
