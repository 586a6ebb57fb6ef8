//! Failover: work held by collectors that die goes to the survivors — a task
//! sent directly to one collector, and tasks held by two collectors killed at
//! the same moment.

use e2e::ClusterExt as _;
use e2e::{
    Cluster, CollectorBuilder, CollectorKind, DEADLINE, History, Order, RunOptions, TaskReply,
    task_ids, wait_until,
};
use eventbus::ClientId;

const KIND: CollectorKind = CollectorKind::Process;

/// Proves that a direct task outlives its target: a task sent with
/// `request_direct` to `procmond-1` (which holds each task 2 s) is held by it
/// when it is killed (SIGKILL); the broker hands the unsettled direct task to
/// the holder's capability group (`process`), and the requester gets its
/// reply from `procmond-2`. The broker counts the redelivery; history clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_task_held_by_a_killed_collector_is_answered_by_its_group() {
    let cluster = Cluster::start().await;
    let mut target = cluster
        .add_collector(CollectorBuilder::new(KIND, 1).delay_ms(2000))
        .await;
    let survivor = cluster.add_collector(CollectorBuilder::new(KIND, 2)).await;
    let driver = cluster.driver().await;
    let history = History::new();
    let request = tokio::spawn({
        let (driver, history) = (driver.clone(), history.clone());
        let id = ClientId::new(target.id()).expect("a valid id");
        async move {
            history.published("direct");
            let message = driver
                .client()
                .request_direct(&id, &KIND.task_topic(), KIND.payload("direct"), DEADLINE)
                .await
                .expect("the direct task is answered");
            let reply = TaskReply::parse(&message).expect("a task reply");
            history.record_all("direct", reply.events("direct"));
            reply
        }
    });
    let target_id = target.id().to_owned();
    wait_until("procmond-1 holds the direct task", DEADLINE, || {
        let (driver, id) = (driver.clone(), target_id.clone());
        async move {
            let stats = driver.stats().await;
            stats
                .connections
                .iter()
                .any(|c| c.id == id && c.in_flight == 1)
        }
    })
    .await
    .unwrap();
    target.kill();
    let reply = request.await.expect("the request completes");
    assert_eq!(
        (reply.collector_id.as_str(), reply.source.as_str()),
        (survivor.id(), survivor.id())
    );
    assert!(reply.is_ok(), "{reply:?}");
    let queue = driver.queue_stats(KIND).await.expect("the group exists");
    assert!(queue.redelivered >= 1, "{queue:?}");
    super::assert_clean(&history.check(Order::Any));
}

/// Proves that two simultaneous failures lose nothing: 400 tasks (16 in
/// flight, 20 ms each) over 4 collectors; once 100 have completed, two of the
/// collectors are killed (SIGKILL) back to back, holding tasks. The broker
/// redelivers what they held to the 2 survivors, every task completes, and
/// the history is clean (the driver retries only typed `Closed`/`Timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_killed_at_once_under_load_lose_no_task() {
    const TASKS: usize = 400;
    let cluster = Cluster::start().await;
    let mut collectors = Vec::new();
    for instance in 1..=4 {
        let b = CollectorBuilder::new(KIND, instance)
            .prefetch(4)
            .delay_ms(20);
        collectors.push(cluster.add_collector(b).await);
    }
    let driver = cluster.driver().await;
    let history = History::new();
    let load = tokio::spawn({
        let (driver, history) = (driver.clone(), history.clone());
        async move {
            let options = RunOptions::default().concurrency(16).attempts(3);
            driver
                .run_tasks(KIND, task_ids("double", TASKS), options, &history)
                .await
        }
    });
    wait_until("100 tasks completed", DEADLINE, || {
        let done = history.completed();
        async move { done >= 100 }
    })
    .await
    .unwrap();
    collectors[0].kill();
    collectors[1].kill();
    let report = load.await.expect("the load completes");
    let queue = driver.queue_stats(KIND).await.expect("the group exists");
    println!(
        "figure: 2 of 4 collectors killed at once: {} redelivered, {} retries, shares {:?}",
        queue.redelivered,
        report.retries,
        report.per_collector()
    );
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.replies.len(), TASKS);
    assert!(queue.redelivered >= 1, "the kills hit no task: {queue:?}");
    assert_eq!(queue.members.len(), 2, "{queue:?}");
    let verdict = history.check(Order::Any);
    assert!(verdict.is_clean(), "{verdict}");
    assert_eq!(verdict.completed, TASKS, "{verdict}");
}
