//! Several collectors of one type share the work through their queue group.

mod common;

use std::collections::BTreeMap;

use common::{Collector, TestBroker, ask};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_collectors_share_nine_tasks_evenly() {
    let broker = TestBroker::start().await;
    let mut collectors = Vec::new();
    for instance in 1..=3 {
        let args = ["--prefetch", "3", "--delay-ms", "100"];
        collectors.push(Collector::start(broker.socket(), "process", instance, &args).await);
    }
    let client = broker.client("tester").await;
    let asks: Vec<_> = (1..=9)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                let task = json!({"task_id": format!("t{n}"), "pid": std::process::id()});
                ask(&client, "process", task).await
            })
        })
        .collect();
    let mut per_collector: BTreeMap<String, usize> = BTreeMap::new();
    for pending in asks {
        let (reply, answer) = pending.await.unwrap();
        assert_eq!(answer["status"], "ok", "{answer}");
        assert_eq!(
            answer["collector_id"].as_str(),
            Some(reply.source()),
            "{answer}"
        );
        *per_collector.entry(reply.source().to_owned()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = collectors.iter().map(|c| (c.id.clone(), 3)).collect();
    assert_eq!(per_collector, expected);
}
