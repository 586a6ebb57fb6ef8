//! Collector faults: a crash mid-task, a frozen process, a restart under the
//! same id, and repeated crashes under load.

use std::os::unix::process::ExitStatusExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::ClusterExt as _;
use e2e::{
    BrokerBuilder, Cluster, CollectorBuilder, CollectorKind, DEADLINE, History, Order, RunOptions,
    task_ids, wait_until,
};
use eventbus::ClientId;

use super::assert_clean;

/// SIGABRT, which `--crash-after` raises.
const SIGABRT: i32 = 6;

/// Proves that a task held by a collector that crashes (SIGABRT on receiving
/// it, before replying) is handed to the surviving member and completed there:
/// every task is answered by the survivor, the broker counts the redelivery
/// (attempt 2), and the history is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_held_by_a_crashed_collector_is_completed_by_the_survivor() {
    let cluster = Cluster::start().await;
    let mut crashing = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1).crash_after(1))
        .await;
    let survivor = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 2))
        .await;
    let driver = cluster.driver().await;
    let history = History::new();
    // Round robin hands the crashing member one of the first two tasks.
    let report = driver
        .run_tasks(
            CollectorKind::Process,
            task_ids("crash", 6),
            RunOptions::default().concurrency(6),
            &history,
        )
        .await;
    let status = crashing.wait_exit().await;
    assert_eq!(status.signal(), Some(SIGABRT), "{status}");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.per_collector().get(survivor.id()), Some(&6));
    let queue = driver
        .queue_stats(CollectorKind::Process)
        .await
        .expect("the group exists");
    assert!(queue.redelivered >= 1, "{queue:?}");
    assert_clean(&history.check(Order::Any));
}

/// Proves heartbeat-based failure detection: a collector frozen with SIGSTOP
/// while holding 4 tasks (heartbeat 50 ms x 3) is declared dead, its tasks are
/// redelivered to the other member and all complete; once resumed, the system
/// still serves new tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_collectors_tasks_are_redelivered_and_service_continues_after_resume() {
    let cluster =
        Cluster::start_with(BrokerBuilder::new().heartbeat(Duration::from_millis(50), 3)).await;
    // Each holds 4 tasks for 1 s, so the frozen one is caught holding them.
    let collector = |instance, heartbeat_ms| {
        CollectorBuilder::new(CollectorKind::Process, instance)
            .prefetch(4)
            .delay_ms(1000)
            .heartbeat_interval(Duration::from_millis(heartbeat_ms))
    };
    let frozen = cluster.add_collector(collector(1, 50)).await;
    // The survivor's link tolerates a stalled machine: 1 s x 3.
    let survivor = cluster.add_collector(collector(2, 1000)).await;
    let driver = cluster.driver().await;
    let history = History::new();
    let load = tokio::spawn({
        let (driver, history) = (driver.clone(), history.clone());
        async move {
            let options = RunOptions::default().concurrency(8);
            driver
                .run_tasks(
                    CollectorKind::Process,
                    task_ids("frozen", 8),
                    options,
                    &history,
                )
                .await
        }
    });
    let frozen_id = frozen.id().to_owned();
    wait_until("the first collector holds 4 tasks", DEADLINE, || {
        let (driver, id) = (driver.clone(), frozen_id.clone());
        async move {
            let queue = driver.queue_stats(CollectorKind::Process).await;
            queue.is_some_and(|q| {
                q.members
                    .iter()
                    .any(|m| m.client_id == id && m.in_flight == 4)
            })
        }
    })
    .await
    .unwrap();
    frozen.pause();
    let report = load.await.expect("the load completes");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.per_collector().get(survivor.id()), Some(&8));
    let stats = driver.stats().await;
    assert!(
        stats.connections.iter().all(|c| c.id != frozen_id),
        "the frozen collector is out"
    );
    let queue = driver
        .queue_stats(CollectorKind::Process)
        .await
        .expect("the group exists");
    assert!(queue.redelivered >= 4, "{queue:?}");

    frozen.resume();
    let report = driver
        .run_tasks(
            CollectorKind::Process,
            task_ids("after-resume", 8),
            RunOptions::default().concurrency(8),
            &history,
        )
        .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_clean(&history.check(Order::Any));
}

/// Proves that a zombie consumer does not run work the broker took back: a
/// collector (prefetch 2, 1.5 s per task) busy with 2 direct tasks is sent 4
/// more direct tasks, which wait in its client's inbox for a free slot; it is
/// then frozen (SIGSTOP). The broker declares it dead (heartbeat 300 ms x 3)
/// and hands all 6 to its capability group: the survivor answers them. When
/// the frozen collector resumes, its running tasks end and slots free up, but
/// the 4 waiting deliveries came on a connection the broker has dropped: its
/// client skips them, so the collector never starts them (no `task started`
/// in its log). It then registers again and serves new tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_collector_does_not_run_tasks_the_broker_took_back() {
    let cluster = Cluster::start().await;
    let kind = CollectorKind::Process;
    let zombie = cluster
        .add_collector(
            CollectorBuilder::new(kind, 1)
                .prefetch(2)
                .delay_ms(1500)
                .heartbeat_interval(Duration::from_millis(300)),
        )
        .await;
    let survivor = cluster
        .add_collector(CollectorBuilder::new(kind, 2).prefetch(8))
        .await;
    let driver = cluster.driver().await;
    let zombie_id = ClientId::new(zombie.id()).unwrap();
    let send = |task_id: String| {
        let (driver, target) = (driver.clone(), zombie_id.clone());
        tokio::spawn(async move {
            driver
                .client()
                .request_direct(
                    &target,
                    &kind.task_topic(),
                    kind.payload(&task_id),
                    DEADLINE,
                )
                .await
        })
    };
    let started = |task_id: &str| {
        e2e::chaos::executions::read_log(&zombie.logs().stderr, zombie.id())
            .iter()
            .any(|e| e.task_id == task_id)
    };
    let busy: Vec<_> = ["busy-0", "busy-1"].map(|id| send(id.to_owned())).into();
    wait_until("the collector runs both busy tasks", DEADLINE, || {
        let done = started("busy-0") && started("busy-1");
        async move { done }
    })
    .await
    .unwrap();
    let waiting = task_ids("waiting", 4);
    let held: Vec<_> = waiting.iter().cloned().map(send).collect();
    wait_until("the broker handed it all 6 tasks", DEADLINE, || {
        let (driver, id) = (driver.clone(), zombie.id().to_owned());
        async move {
            driver
                .stats()
                .await
                .connections
                .iter()
                .any(|c| c.id == id && c.delivered >= 6)
        }
    })
    .await
    .unwrap();
    zombie.pause();
    for task in busy.into_iter().chain(held) {
        let reply = task.await.unwrap().expect("the group answers");
        assert_eq!(reply.source(), survivor.id(), "taken over by the survivor");
    }

    zombie.resume();
    wait_until("the resumed collector registers again", DEADLINE, || {
        let (driver, id) = (driver.clone(), zombie.id().to_owned());
        async move {
            driver
                .queue_stats(kind)
                .await
                .is_some_and(|q| q.members.iter().any(|m| m.client_id == id))
        }
    })
    .await
    .unwrap();
    let reply = driver
        .client()
        .request_direct(
            &zombie_id,
            &kind.task_topic(),
            kind.payload("after"),
            DEADLINE,
        )
        .await
        .expect("the resumed collector serves");
    assert_eq!(reply.source(), zombie.id());
    let ran: Vec<&String> = waiting.iter().filter(|id| started(id)).collect();
    assert!(
        ran.is_empty(),
        "the zombie ran tasks it no longer held: {ran:?}"
    );
}

/// Proves that a collector killed and started again under the same id
/// registers again (the broker lists the id with the new pid), answers tasks
/// sent directly to it, and takes its turn in the queue group again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_collector_registers_again_under_its_id_and_serves() {
    let cluster = Cluster::start().await;
    let mut restarted = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
        .await;
    let _other = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 2))
        .await;
    let old_pid = restarted.pid();
    restarted.kill();
    restarted.restart().await;
    let new_pid = restarted.pid();
    assert_ne!(old_pid, new_pid);

    let driver = cluster.driver().await;
    let stats = driver.stats().await;
    let listed: Vec<_> = stats
        .connections
        .iter()
        .filter(|c| c.id == restarted.id())
        .collect();
    assert_eq!(listed.len(), 1, "{:?}", stats.connections);
    assert_eq!(listed[0].pid, new_pid);

    let id = ClientId::new(restarted.id()).expect("a valid id");
    let topic = CollectorKind::Process.task_topic();
    let reply = driver
        .client()
        .request_direct(
            &id,
            &topic,
            CollectorKind::Process.payload("direct-1"),
            DEADLINE,
        )
        .await
        .expect("a direct task is answered");
    let reply = e2e::TaskReply::parse(&reply).expect("a task reply");
    assert_eq!(
        (reply.collector_id.as_str(), reply.collector_pid),
        (restarted.id(), new_pid)
    );

    let history = History::new();
    let report = driver
        .run_tasks(
            CollectorKind::Process,
            task_ids("rejoined", 4),
            RunOptions::default().concurrency(4),
            &history,
        )
        .await;
    assert_eq!(
        report.per_collector().get(restarted.id()),
        Some(&2),
        "{:?}",
        report.per_collector()
    );
    assert_clean(&history.check(Order::Any));
}

/// Proves that repeated crashes under load lose nothing: while tasks run
/// without pause (16 in flight, 20 ms each, in batches of 200 until the crashes
/// are over), one of three collectors is killed (SIGKILL) and restarted five
/// times, each after 100 more tasks completed. Every task completes; the
/// driver retries only typed `Closed`/`Timeout` failures, which the history
/// records; no accepted task is lost, none is duplicated, nothing unexpected
/// happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_crashes_under_load_lose_no_accepted_task() {
    const BATCH: usize = 200;
    let cluster = Cluster::start().await;
    let builder = |instance| {
        CollectorBuilder::new(CollectorKind::Process, instance)
            .prefetch(4)
            .delay_ms(20)
    };
    let _steady = [
        cluster.add_collector(builder(1)).await,
        cluster.add_collector(builder(2)).await,
    ];
    let mut victim = cluster.add_collector(builder(3)).await;
    let driver = cluster.driver().await;
    let history = History::new();
    let crashes_done = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (driver, history, crashes_done) =
            (driver.clone(), history.clone(), crashes_done.clone());
        async move {
            let options = RunOptions::default().concurrency(16).attempts(3);
            let mut reports = Vec::new();
            while !crashes_done.load(Ordering::Relaxed) {
                let ids = task_ids(&format!("churn-{}", reports.len()), BATCH);
                reports.push(
                    driver
                        .run_tasks(CollectorKind::Process, ids, options, &history)
                        .await,
                );
            }
            reports
        }
    });
    for round in 1..=5 {
        let target = history.completed() + 100;
        wait_until(
            &format!("{target} tasks done before crash {round}"),
            DEADLINE,
            || {
                let done = history.completed();
                async move { done >= target }
            },
        )
        .await
        .unwrap();
        victim.kill();
        victim.restart().await;
    }
    crashes_done.store(true, Ordering::Relaxed);
    let reports = load.await.expect("the load completes");
    let sent = reports.len() * BATCH;
    let replied: usize = reports.iter().map(|r| r.replies.len()).sum();
    let retries: u64 = reports.iter().map(|r| r.retries).sum();
    let failures: Vec<_> = reports.iter().flat_map(|r| &r.failures).collect();
    let queue = driver
        .queue_stats(CollectorKind::Process)
        .await
        .expect("the group exists");
    println!(
        "{sent} tasks, 5 crashes: {} redelivered, {retries} retries",
        queue.redelivered
    );
    assert!(
        queue.redelivered >= 1,
        "no crash hit a task in flight: {queue:?}"
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(replied, sent);
    let verdict = history.check(Order::Any);
    assert!(verdict.is_clean(), "{verdict}");
    assert_eq!(verdict.completed, sent, "{verdict}");
}
