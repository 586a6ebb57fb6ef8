//! A bridge's state in the broker's stats (`ebctl stats`, `Client::stats`,
//! the monitor): the real binary announces, the broker keeps the last
//! status by name, and keeps it, marked, once the bridge is gone.

mod support;

use eventbus_bridge::status::Status;
use eventbus_harness::{DEADLINE, TestBroker, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridges_state_shows_in_the_brokers_stats_and_stays_marked_when_it_stops() {
    let broker = TestBroker::start().await;
    let dir = tempfile::tempdir().unwrap();
    // No NATS server: the bridge is ready, and says it is connecting.
    let file = support::config(dir.path(), &broker, "node7", "");
    let mut process = support::start(&file, dir.path()).await;
    let watcher = broker.client("watcher").await;

    wait_until("the broker has the bridge's status", DEADLINE, || async {
        let stats = watcher.stats().await.unwrap();
        stats.bridges.iter().any(|b| {
            let status: Option<Status> = serde_json::from_str(&b.status_json).ok();
            b.name == "node7"
                && b.connected
                && status.is_some_and(|s| s.name == "node7" && s.nats == "connecting")
        })
    })
    .await
    .unwrap();

    let exit = process.terminate(DEADLINE).await;
    assert!(exit.success(), "{exit:?}");
    wait_until("the gone bridge stays, marked", DEADLINE, || async {
        let stats = watcher.stats().await.unwrap();
        stats.bridges.len() == 1 && stats.bridges.iter().all(|b| !b.connected)
    })
    .await
    .unwrap();
    broker.shutdown().await;
}
