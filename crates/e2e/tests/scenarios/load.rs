//! Volume and latency: many tasks over many collectors, and sequential round trips.

use e2e::ClusterExt as _;
use e2e::{Cluster, CollectorBuilder, CollectorKind, History, Order, RunOptions, task_ids};

use super::assert_clean;

/// Proves that the queue group neither loses nor duplicates under volume and
/// shares evenly: 10,000 process tasks (50 in flight) over 5 collectors with
/// prefetch 16 all complete, each collector's share is within 10% of 2,000,
/// and the history is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tasks_over_five_collectors_complete_evenly() {
    const TASKS: usize = 10_000;
    const COLLECTORS: u32 = 5;
    let cluster = Cluster::start().await;
    let mut collectors = Vec::new();
    for instance in 1..=COLLECTORS {
        let builder = CollectorBuilder::new(CollectorKind::Process, instance).prefetch(16);
        collectors.push(cluster.add_collector(builder).await);
    }
    let driver = cluster.driver().await;
    let history = History::new();
    let report = driver
        .run_tasks(
            CollectorKind::Process,
            task_ids("bulk", TASKS),
            RunOptions::default().concurrency(50),
            &history,
        )
        .await;
    println!(
        "{TASKS} tasks in {:?} ({:.0}/s); p50 {:?}, p99 {:?}; shares {:?}",
        report.elapsed,
        TASKS as f64 / report.elapsed.as_secs_f64(),
        report.latency(0.5),
        report.latency(0.99),
        report.per_collector()
    );
    assert!(
        report.failures.is_empty(),
        "{:?}",
        &report.failures[..report.failures.len().min(5)]
    );
    assert_eq!(report.replies.len(), TASKS);
    let fair = (TASKS / COLLECTORS as usize) as u64;
    let shares = report.per_collector();
    assert_eq!(shares.len(), COLLECTORS as usize, "{shares:?}");
    for (id, n) in &shares {
        assert!(
            n.abs_diff(fair) * 10 <= fair,
            "{id} took {n} of {TASKS}: {shares:?}"
        );
    }
    assert_clean(&history.check(Order::Any));
}

/// Measures 1,000 sequential request/reply round trips through the broker to
/// one collector and prints p50/p95/p99. The only timed assertion is a
/// generous one, p99 < 50 ms; the history must be clean and, the trips being
/// sequential, in FIFO order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sequential_round_trips_have_p99_under_50ms() {
    let cluster = Cluster::start().await;
    let _procmond = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1).prefetch(1))
        .await;
    let driver = cluster.driver().await;
    let history = History::new();
    let report = driver
        .run_tasks(
            CollectorKind::Process,
            task_ids("rtt", 1_000),
            RunOptions::default(),
            &history,
        )
        .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let (p50, p95, p99) = (
        report.latency(0.5),
        report.latency(0.95),
        report.latency(0.99),
    );
    println!("1000 sequential round trips: p50 {p50:?}, p95 {p95:?}, p99 {p99:?}");
    assert!(p99 < std::time::Duration::from_millis(50), "p99 {p99:?}");
    assert_clean(&history.check(Order::Fifo));
}
