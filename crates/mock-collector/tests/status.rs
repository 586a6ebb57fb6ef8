//! Every collector answers a status request: a gather over the fleet gets
//! one status from each, with its identity and its task counts.

mod common;

use std::time::Duration;

use common::{Collector, TestBroker, ask};
use eventbus::GroupName;
use eventbus::client::{GatherOptions, GatherScope};
use mock_collector::status::{STATUS_TOPIC, Status};
use serde_json::json;

fn parse(reply: &eventbus::Message) -> Status {
    serde_json::from_slice(reply.payload()).expect("a status reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gather_gets_every_collectors_status_with_its_task_counts() {
    let broker = TestBroker::start().await;
    let process = [
        Collector::start(broker.socket(), "process", 1, &[]).await,
        Collector::start(broker.socket(), "process", 2, &[]).await,
    ];
    let network = Collector::start(broker.socket(), "network", 1, &[]).await;
    let client = broker.client("agent").await;

    // Two tasks for the process collectors, so their counts add up to 2.
    for n in 1..=2 {
        let task = json!({"task_id": format!("t{n}"), "pid": std::process::id()});
        let (_, answer) = ask(&client, "process", task).await;
        assert_eq!(answer["status"], "ok", "{answer}");
    }

    let everyone = client
        .gather(
            STATUS_TOPIC,
            "",
            GatherOptions::new(Duration::from_secs(20)),
        )
        .await
        .unwrap()
        .all()
        .await
        .unwrap();
    let mut statuses: Vec<Status> = everyone.iter().map(parse).collect();
    statuses.sort_by(|a, b| a.collector_id.cmp(&b.collector_id));
    let ids: Vec<&str> = statuses.iter().map(|s| s.collector_id.as_str()).collect();
    assert_eq!(ids, [network.id.as_str(), &process[0].id, &process[1].id]);
    let pids: Vec<u32> = statuses.iter().map(|s| s.collector_pid).collect();
    assert_eq!(pids, [network.pid(), process[0].pid(), process[1].pid()]);
    let kinds: Vec<&str> = statuses.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["network", "process", "process"]);
    let done: u64 = statuses[1..].iter().map(|s| s.tasks.done).sum();
    assert_eq!(done, 2);
    assert_eq!(statuses[0].tasks.done, 0);
    assert!(
        statuses
            .iter()
            .all(|s| s.tasks.running == 0 && s.tasks.failed == 0)
    );
    #[cfg(target_os = "linux")]
    assert!(
        statuses
            .iter()
            .all(|s| s.resources.as_ref().is_some_and(|r| r.rss_bytes > 0)),
        "{statuses:?}"
    );

    // One type only: the members of its queue group.
    let scope = GatherScope::Group(GroupName::new("process").unwrap());
    let processes = client
        .gather(
            STATUS_TOPIC,
            "",
            GatherOptions::new(Duration::from_secs(20)).scope(scope),
        )
        .await
        .unwrap();
    let mut ids: Vec<String> = processes
        .recipients()
        .iter()
        .map(|c| c.to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, [process[0].id.clone(), process[1].id.clone()]);
    assert_eq!(processes.all().await.unwrap().len(), 2);
}
