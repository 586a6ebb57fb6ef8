//! Who gets which task: round robin within a queue group, capabilities across
//! groups, and credit (prefetch) deciding the share.

use std::collections::BTreeMap;
use std::time::Duration;

use e2e::ClusterExt as _;
use e2e::{Cluster, CollectorBuilder, CollectorKind, History, Order, RunOptions, task_ids};

use super::assert_clean;

/// Proves round robin within a queue group: 9 tasks to 3 idle process
/// collectors go 3/3/3. With prefetch 3 every member still has credit at each
/// of its turns, so no member is skipped and the split does not depend on timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_tasks_split_three_ways_over_three_collectors() {
    let cluster = Cluster::start().await;
    let mut collectors = Vec::new();
    for instance in 1..=3 {
        let builder = CollectorBuilder::new(CollectorKind::Process, instance).prefetch(3);
        collectors.push(cluster.add_collector(builder).await);
    }
    let driver = cluster.driver().await;
    let history = History::new();
    let report = driver
        .run_tasks(
            CollectorKind::Process,
            task_ids("rr", 9),
            RunOptions::default().concurrency(9),
            &history,
        )
        .await;
    let expected: BTreeMap<String, u64> =
        collectors.iter().map(|c| (c.id().to_owned(), 3)).collect();
    assert_eq!(report.per_collector(), expected);
    assert!(
        report.replies.iter().all(|r| r.is_ok()),
        "{:?}",
        report.replies
    );
    assert_clean(&history.check(Order::Any));
}

/// Proves routing by capability: with process, network and filesystem
/// collectors on one broker, each kind's tasks are answered only by
/// collectors of that kind (reply source `procmond-*`, `netmond-*`, `fsmond-*`),
/// and each answer is a successful collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_capability_reaches_only_its_own_collectors() {
    let cluster = Cluster::start().await;
    let mut collectors = Vec::new();
    for (kind, instance) in [
        (CollectorKind::Process, 1),
        (CollectorKind::Process, 2),
        (CollectorKind::Network, 1),
        (CollectorKind::Filesystem, 1),
    ] {
        collectors.push(
            cluster
                .add_collector(CollectorBuilder::new(kind, instance))
                .await,
        );
    }
    let driver = cluster.driver().await;
    let history = History::new();
    for kind in CollectorKind::ALL {
        let report = driver
            .run_tasks(
                kind,
                task_ids(&format!("cap-{kind}"), 6),
                RunOptions::default().concurrency(3),
                &history,
            )
            .await;
        assert_eq!(report.replies.len(), 6, "{:?}", report.failures);
        let prefix = format!("{}-", kind.alias());
        for reply in &report.replies {
            assert!(
                reply.source.starts_with(&prefix),
                "{kind} task answered by {reply:?}"
            );
            assert!(reply.is_ok(), "{kind} task failed: {reply:?}");
        }
    }
    assert_clean(&history.check(Order::Any));
}

/// Proves that credit decides the share: a collector with prefetch 8 that joins
/// while a prefetch-1 collector is busy takes the larger share of the tasks
/// started after it joined (both wait 20 ms per task, so each one's rate is its
/// prefetch; expected about 8 to 1, asserted at least 3 to 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_with_more_prefetch_added_later_takes_a_larger_share() {
    let cluster = Cluster::start().await;
    let slow = cluster
        .add_collector(
            CollectorBuilder::new(CollectorKind::Process, 1)
                .prefetch(1)
                .delay_ms(20),
        )
        .await;
    let driver = cluster.driver().await;
    let history = History::new();
    let load = tokio::spawn({
        let (driver, history) = (driver.clone(), history.clone());
        async move {
            let options = RunOptions::default().concurrency(24);
            driver
                .run_tasks(
                    CollectorKind::Process,
                    task_ids("share", 300),
                    options,
                    &history,
                )
                .await
        }
    });
    e2e::wait_until(
        "the first collector has done some tasks",
        e2e::DEADLINE,
        || {
            let done = history.completed();
            async move { done >= 10 }
        },
    )
    .await
    .unwrap();
    let wide = cluster
        .add_collector(
            CollectorBuilder::new(CollectorKind::Process, 2)
                .prefetch(8)
                .delay_ms(20),
        )
        .await;
    let joined_us = now_us();
    let report = load.await.expect("the load completes");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let mut after_join: BTreeMap<&str, u64> = BTreeMap::new();
    for reply in report
        .replies
        .iter()
        .filter(|r| r.timings.started_us >= joined_us)
    {
        *after_join.entry(reply.source.as_str()).or_default() += 1;
    }
    let (slow_n, wide_n) = (
        after_join.get(slow.id()).copied().unwrap_or(0),
        after_join.get(wide.id()).copied().unwrap_or(0),
    );
    println!("tasks started after {} joined: {after_join:?}", wide.id());
    assert!(
        wide_n >= 3 * slow_n.max(1),
        "prefetch 8 took {wide_n}, prefetch 1 took {slow_n}"
    );
    assert_clean(&history.check(Order::Any));
}

fn now_us() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX)
}
