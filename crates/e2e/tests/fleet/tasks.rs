//! Requests across hosts: a process task submitted on node 1, which has no
//! process collector, is served by a collector on node 2 or 3 and its reply
//! reaches the requester on node 1; with collectors and requesters on all
//! three nodes, every task is served once and the shares are reported.

use std::collections::BTreeMap;

use e2e::chaos::executions::{self, Execution};
use e2e::fleet::{Fleet, Serve};
use e2e::{CollectorBuilder, CollectorKind, Driver, History, RunOptions, task_ids};

use crate::support::start_bridge;

const TASKS: usize = 200;

/// Process tasks served across hosts: NATS requests served here, and local
/// ones no local process collector takes sent out (the bridge is a fallback
/// member of the collectors' queue group).
fn serve() -> Serve {
    Serve {
        topic_filter: CollectorKind::Process.task_topic().to_string(),
        subject_prefix: "fleet.req".into(),
        group: CollectorKind::Process.capability().into(),
    }
}

/// Every execution of every collector of the fleet.
fn executions(fleet: &Fleet) -> Vec<Execution> {
    fleet
        .nodes()
        .iter()
        .flat_map(|n| n.collectors())
        .flat_map(|c| executions::read_log(&c.logs().stderr, c.id()))
        .collect()
}

/// Runs `ids` from node `i`, asserting every one got an ok reply.
async fn run(fleet: &Fleet, i: usize, ids: Vec<String>) -> BTreeMap<String, u64> {
    let driver = Driver::connect(fleet.node(i).cluster().socket())
        .await
        .unwrap();
    let n = ids.len();
    let report = driver
        .run_tasks(
            CollectorKind::Process,
            ids,
            RunOptions::default().concurrency(8),
            &History::new(),
        )
        .await;
    assert!(
        report.failures.is_empty(),
        "node{}: {:?}",
        i + 1,
        &report.failures[..report.failures.len().min(5)]
    );
    assert_eq!(report.replies.len(), n);
    assert!(report.replies.iter().all(|r| r.is_ok()), "an error reply");
    println!(
        "figure: fleet tasks from node{}: {n} in {:.2} s, p50 {:?}, p99 {:?}",
        i + 1,
        report.elapsed.as_secs_f64(),
        report.latency(0.5),
        report.latency(0.99)
    );
    let mut shares = BTreeMap::new();
    for reply in &report.replies {
        *shares.entry(reply.collector_id.clone()).or_insert(0) += 1;
    }
    shares
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_with_no_local_collector_is_served_on_another_node_and_answered_back() {
    let mut fleet = Fleet::start().await;
    for i in 0..3 {
        let mut config = fleet.node(i).bridge_config();
        config.serves.push(serve());
        start_bridge(&mut fleet, i, config).await;
    }
    for i in 1..3 {
        let instance = i as u32 + 1;
        fleet
            .node_mut(i)
            .add_collector(CollectorBuilder::new(CollectorKind::Process, instance))
            .await;
    }
    let shares = run(&fleet, 0, task_ids("remote", TASKS)).await;
    println!(
        "figure: fleet task shares ({}), requester node1, collectors on node2 and node3: {shares:?}",
        fleet.mode()
    );
    assert!(
        shares
            .keys()
            .all(|c| c == "procmond-2" || c == "procmond-3"),
        "{shares:?}"
    );
    let ran = executions(&fleet);
    let by_task = executions::by_task(&ran);
    let twice: Vec<_> = by_task
        .iter()
        .filter(|(_, e)| e.len() > 1)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(by_task.len(), TASKS, "tasks run");
    assert!(twice.is_empty(), "tasks run on two nodes: {twice:?}");

    // Collectors and requesters everywhere: each task still served once.
    fleet
        .node_mut(0)
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
        .await;
    let (a, b, c) = tokio::join!(
        run(&fleet, 0, task_ids("all-1", TASKS)),
        run(&fleet, 1, task_ids("all-2", TASKS)),
        run(&fleet, 2, task_ids("all-3", TASKS)),
    );
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for (collector, n) in a.iter().chain(&b).chain(&c) {
        *total.entry(collector.clone()).or_insert(0) += n;
    }
    println!(
        "figure: fleet task shares ({}), requesters and collectors on all three: {total:?}",
        fleet.mode()
    );
    let ran = executions(&fleet);
    let by_task = executions::by_task(&ran);
    assert_eq!(by_task.len(), 4 * TASKS);
    assert!(by_task.values().all(|e| e.len() == 1), "a task ran twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_requests_for_a_task_are_served_once_by_the_fleet_and_shared() {
    let mut fleet = Fleet::start().await;
    for i in 1..3 {
        let mut config = fleet.node(i).bridge_config();
        config.serves.push(serve());
        start_bridge(&mut fleet, i, config).await;
        let instance = i as u32 + 1;
        fleet
            .node_mut(i)
            .add_collector(CollectorBuilder::new(CollectorKind::Process, instance))
            .await;
    }
    // A NATS client on node 1's side of the network.
    let requester = e2e::fleet::nats_connect(fleet.node(0).nats_urls()).await;
    let subject = format!("fleet.req.{}", CollectorKind::Process.task_topic());
    let ids = task_ids("nats", TASKS);
    let mut shares: BTreeMap<String, u64> = BTreeMap::new();
    let start = std::time::Instant::now();
    for id in &ids {
        let reply = requester
            .request(subject.clone(), CollectorKind::Process.payload(id).into())
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        let json: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or_else(|e| {
            panic!(
                "{id}: a reply that is not JSON ({e}): {:?}, headers {:?}",
                reply.payload, reply.headers
            )
        });
        assert_eq!(json["task_id"], id.as_str(), "{json}");
        assert_eq!(json["status"], "ok", "{json}");
        *shares
            .entry(json["collector_id"].as_str().unwrap_or("?").to_owned())
            .or_insert(0) += 1;
    }
    println!(
        "figure: fleet NATS task requests ({}): {TASKS} one at a time in {:.2} s, shares {shares:?}",
        fleet.mode(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        shares
            .keys()
            .all(|c| c == "procmond-2" || c == "procmond-3"),
        "{shares:?}"
    );
    let ran = executions(&fleet);
    let by_task = executions::by_task(&ran);
    assert_eq!(by_task.len(), TASKS);
    assert!(by_task.values().all(|e| e.len() == 1), "a task ran twice");
}
