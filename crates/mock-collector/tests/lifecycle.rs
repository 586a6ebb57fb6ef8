//! A collector's life as a process: the ready line, direct tasks, graceful
//! shutdown on SIGTERM, and exit code 3 when the broker goes away.

mod common;

#[cfg(unix)]
use common::ask;
use common::{Collector, DEADLINE, TestBroker};
use eventbus::{ClientId, Topic};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_line_carries_the_default_or_given_id() {
    let broker = TestBroker::start().await;
    // `Collector::start` already checks that the ready line's pid is the child's.
    let default = Collector::start(broker.socket(), "procmond", 4, &[]).await;
    assert_eq!(default.id, "procmond-4");
    let named = Collector::start(broker.socket(), "filesystem", 1, &["--id", "fs-custom"]).await;
    assert_eq!(named.id, "fs-custom");
    let client = broker.client("tester").await;
    let stats = client.stats().await.unwrap();
    let ours = stats
        .connections
        .iter()
        .find(|c| c.id == "fs-custom")
        .expect("connected");
    assert_eq!((ours.kind.as_str(), ours.pid), ("collector", named.pid()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_direct_tasks() {
    let broker = TestBroker::start().await;
    let collector = Collector::start(broker.socket(), "network", 2, &[]).await;
    let client = broker.client("tester").await;
    let target = ClientId::new(&collector.id).unwrap();
    let topic = Topic::new("control.collector.direct").unwrap();
    let reply = client
        .request_direct(
            &target,
            &topic,
            json!({"task_id": "d1"}).to_string(),
            DEADLINE,
        )
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(reply.payload()).unwrap();
    assert_eq!(
        (answer["status"].as_str(), answer["collector_id"].as_str()),
        (Some("ok"), Some("netmond-2"))
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero() {
    let broker = TestBroker::start().await;
    let mut collector = Collector::start(broker.socket(), "process", 1, &[]).await;
    let client = broker.client("tester").await;
    let (_, answer) = ask(&client, "process", json!({"task_id": "t1"})).await;
    assert_eq!(answer["status"], "ok");
    collector.terminate();
    let status = collector.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_running_task_before_exiting() {
    let broker = TestBroker::start().await;
    let mut collector =
        Collector::start(broker.socket(), "network", 1, &["--delay-ms", "500"]).await;
    let client = broker.client("tester").await;
    let pending = tokio::spawn({
        let client = client.clone();
        async move { ask(&client, "network", json!({"task_id": "slow"})).await }
    });
    // In flight at the broker is not enough: the delivery may still sit unread
    // in the collector, which hands unstarted tasks back on SIGTERM.
    common::wait_until(
        "the collector has started the task",
        common::DEADLINE,
        || {
            let lines = collector.stderr();
            async move { lines.iter().any(|l| l.contains("task started")) }
        },
    )
    .await
    .unwrap();
    collector.terminate();
    let (reply, answer) = pending.await.unwrap();
    assert_eq!(
        (reply.source(), answer["status"].as_str()),
        ("netmond-1", Some("ok"))
    );
    let status = collector.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_broker_exits_with_code_three() {
    let broker = TestBroker::start().await;
    let socket = broker.socket().to_owned();
    let mut collector = Collector::start(&socket, "filesystem", 1, &["--no-reconnect"]).await;
    broker.shutdown().await;
    let status = collector.wait_exit().await;
    assert_eq!(status.code(), Some(3), "{status:?}");
    common::wait_until("the stderr line is read", common::DEADLINE, || {
        let lines = collector.stderr();
        async move {
            lines
                .iter()
                .any(|l| l == "mock-collector: connection to the broker lost")
        }
    })
    .await
    .unwrap();
}
