//! Bad payloads and injected faults, against real collector processes.

mod common;

use common::{Collector, TestBroker, ask, task_topic, wait_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_payload_gets_an_error_reply_and_the_next_task_is_served() {
    let broker = TestBroker::start().await;
    let mut collector = Collector::start(broker.socket(), "network", 1, &["--prefetch", "1"]).await;
    let client = broker.client("tester").await;
    let topic = task_topic("network");

    let reply = client
        .request(&topic, "not json", common::DEADLINE)
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(reply.payload()).unwrap();
    assert_eq!(answer["status"], "error", "{answer}");
    assert!(answer["task_id"].is_null(), "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("bad network task payload"),
        "{answer}"
    );

    let (_, answer) = ask(&client, "network", json!({"task_id": "t2", "bogus": true})).await;
    assert_eq!(
        (answer["status"].as_str(), answer["task_id"].as_str()),
        (Some("error"), Some("t2")),
        "{answer}"
    );

    let (_, answer) = ask(&client, "network", json!({"task_id": "t3"})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert!(collector.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_every_two_fails_every_second_task() {
    let broker = TestBroker::start().await;
    let _collector = Collector::start(broker.socket(), "process", 1, &["--fail-every", "2"]).await;
    let client = broker.client("tester").await;
    let mut statuses = Vec::new();
    for n in 1..=6 {
        let task = json!({"task_id": format!("t{n}"), "pid": std::process::id()});
        let (_, answer) = ask(&client, "process", task).await;
        if answer["status"] == "error" {
            assert!(answer["data"].is_null(), "{answer}");
            assert!(
                answer["error"].as_str().unwrap().contains("injected"),
                "{answer}"
            );
        }
        statuses.push(answer["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(statuses, ["ok", "error", "ok", "error", "ok", "error"]);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_aborts_on_that_task_without_replying() {
    use std::os::unix::process::ExitStatusExt as _;
    use std::time::Duration;
    let broker = TestBroker::start().await;
    let mut collector =
        Collector::start(broker.socket(), "network", 1, &["--crash-after", "2"]).await;
    let client = broker.client("tester").await;
    let (_, answer) = ask(&client, "network", json!({"task_id": "t1"})).await;
    assert_eq!(answer["status"], "ok");
    let second = client
        .request(
            &task_topic("network"),
            json!({"task_id": "t2"}).to_string(),
            Duration::from_secs(2),
        )
        .await;
    assert!(
        second.is_err(),
        "the crashing collector must not reply: {second:?}"
    );
    let status = collector.wait_exit().await;
    assert_eq!(status.signal(), Some(6), "expected SIGABRT, got {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_after_freezes_heartbeats_without_exiting() {
    let broker = TestBroker::start().await;
    let mut collector = Collector::start(
        broker.socket(),
        "network",
        1,
        &["--hang-after", "1", "--heartbeat-interval-ms", "100"],
    )
    .await;
    let client = broker.client("tester").await;
    let connected = |client: eventbus::Client, id: String| async move {
        let stats = client.stats().await.unwrap();
        stats.connections.iter().any(|c| c.id == id)
    };
    assert!(connected(client.clone(), collector.id.clone()).await);
    client
        .publish_confirmed(&task_topic("network"), json!({"task_id": "t1"}).to_string())
        .await
        .unwrap();
    wait_until(
        "the broker drops the frozen collector",
        common::DEADLINE,
        || {
            let (client, id) = (client.clone(), collector.id.clone());
            async move { !connected(client, id).await }
        },
    )
    .await
    .unwrap();
    assert!(collector.is_running(), "a hung collector stays alive");
}
