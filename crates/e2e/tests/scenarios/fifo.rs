//! FIFO queues: `[queue] concurrency` bounds a group's deliveries in flight
//! across all its members, so tasks start in publish order (concurrency 1) or
//! at most `concurrency - 1` earlier tasks are still running when one starts.
//!
//! Tasks are sent with `Client::submit`, one after the other: each returns once
//! the broker has queued it, so publish order is the submit order, and the
//! replies are awaited afterwards. Start and finish times are the collectors'
//! own `started_us`/`finished_us`, all read from the one system clock.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use e2e::ClusterExt as _;
use e2e::{
    BrokerBuilder, Cluster, CollectorBuilder, CollectorKind, CollectorProcess, DEADLINE, Driver,
    History, Order, TaskReply, task_ids, wait_until,
};
use eventbus::client::RequestError;

use super::assert_clean;

const KIND: CollectorKind = CollectorKind::Process;

/// A broker whose queue groups all run at most `n` deliveries at once.
fn concurrency(n: u32) -> BrokerBuilder {
    BrokerBuilder::new().config_toml(format!("[queue]\nconcurrency = {n}\n"))
}

/// `count` process collectors, instances 1.., each built by `builder`.
async fn collectors(
    cluster: &Cluster,
    count: u32,
    builder: impl Fn(CollectorBuilder) -> CollectorBuilder,
) -> Vec<CollectorProcess> {
    let mut started = Vec::new();
    for instance in 1..=count {
        let b = builder(CollectorBuilder::new(KIND, instance));
        started.push(cluster.add_collector(b).await);
    }
    started
}

/// Submits every task in order, at most `window` awaiting their replies at
/// once (the oldest is awaited first), each with `timeout` from its submit.
/// Records the history; returns each task's reply in publish order.
async fn submit_in_order(
    driver: &Driver,
    kind: CollectorKind,
    ids: &[String],
    window: usize,
    timeout: Duration,
    history: &History,
) -> Vec<TaskReply> {
    let topic = kind.task_topic();
    let mut waiting = VecDeque::new();
    let mut replies = Vec::with_capacity(ids.len());
    for id in ids {
        if waiting.len() >= window.max(1) {
            replies.push(reply_of(waiting.pop_front().expect("non-empty"), history).await);
        }
        history.published(id);
        let pending = driver
            .client()
            .submit(&topic, kind.payload(id), timeout)
            .await
            .unwrap_or_else(|e| panic!("submit {id}: {e}"));
        history.accepted(id);
        waiting.push_back((id.clone(), pending));
    }
    for pending in waiting {
        replies.push(reply_of(pending, history).await);
    }
    replies
}

async fn reply_of(
    (id, pending): (String, eventbus::client::PendingRequest),
    history: &History,
) -> TaskReply {
    let message = pending
        .reply()
        .await
        .unwrap_or_else(|e| panic!("reply to {id}: {e}"));
    let reply = TaskReply::parse(&message).unwrap_or_else(|e| panic!("{id}: {e}"));
    history.record_all(&id, reply.events(&id));
    assert!(reply.is_ok(), "{id}: {reply:?}");
    reply
}

/// Tasks that started no later than an earlier task started: with
/// concurrency 1 the starts must strictly increase in publish order.
fn strict_order_breaks(replies: &[TaskReply]) -> Vec<(usize, u64, u64)> {
    replies
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1].timings.started_us <= w[0].timings.finished_us)
        .map(|(i, w)| (i + 1, w[0].timings.finished_us, w[1].timings.started_us))
        .collect()
}

/// The FIFO criterion for a group with concurrency `c`: the broker delivers
/// task `j` only while fewer than `c` deliveries are unsettled, so at most
/// `c - 1` earlier tasks can still be unfinished when `j` starts. Returns the
/// largest number of earlier tasks found unfinished at a start (`finished_us`
/// after `j`'s `started_us`), and the task where it was found.
fn most_earlier_unfinished_at_a_start(replies: &[TaskReply]) -> (usize, usize) {
    let mut worst = (0, 0);
    for (j, task) in replies.iter().enumerate() {
        let start = task.timings.started_us;
        let unfinished = replies[..j]
            .iter()
            .filter(|earlier| earlier.timings.finished_us > start)
            .count();
        if unfinished > worst.0 {
            worst = (unfinished, j);
        }
    }
    worst
}

/// Replies per collector, by the broker-stamped source.
fn shares(replies: &[TaskReply]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for reply in replies {
        *counts.entry(reply.source.as_str()).or_insert(0) += 1;
    }
    counts
}

/// Proves strict FIFO at `concurrency = 1`: 10 tasks queued in order (two
/// collectors, prefetch 4 each, so each member has room for more) start in
/// publish order, each after the previous one finished; the history checker
/// finds no inversion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_tasks_at_concurrency_one_start_in_publish_order() {
    let cluster = Cluster::start_with(concurrency(1)).await;
    let _collectors = collectors(&cluster, 2, |b| b.prefetch(4)).await;
    let driver = cluster.driver().await;
    let history = History::new();
    let ids = task_ids("fifo", 10);
    let replies = submit_in_order(&driver, KIND, &ids, ids.len(), DEADLINE, &history).await;
    assert_eq!(strict_order_breaks(&replies), vec![]);
    assert_clean(&history.check(Order::Fifo));
}

/// Proves the FIFO bound at `concurrency = 5` under volume: 1,000 tasks queued
/// in order over 3 collectors (prefetch 4 each) all complete, and when any task
/// starts at most 4 earlier tasks are unfinished (the broker keeps at most 5 in
/// flight and hands them out from the head of the queue). Start times across
/// collectors may be inverted within that window, which is why the checker's
/// strict order is not the criterion here; the history is otherwise clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_at_concurrency_five_start_within_the_fifo_window() {
    let cluster = Cluster::start_with(concurrency(5)).await;
    let _collectors = collectors(&cluster, 3, |b| b.prefetch(4)).await;
    let driver = cluster.driver().await;
    let history = History::new();
    let ids = task_ids("window", 1_000);
    let replies = submit_in_order(&driver, KIND, &ids, ids.len(), DEADLINE, &history).await;
    let (worst, at) = most_earlier_unfinished_at_a_start(&replies);
    println!("figure: fifo window at concurrency 5: at most {worst} earlier tasks unfinished");
    assert!(
        worst <= 4,
        "task {at} started with {worst} earlier unfinished"
    );
    assert_eq!(shares(&replies).len(), 3, "{:?}", shares(&replies));
    assert_clean(&history.check(Order::Any));
}

/// Proves that workers of different speeds (`--delay-ms` 1, 10 and 30) do not
/// reorder a `concurrency = 1` queue: 30 tasks start strictly in publish order,
/// each after the previous one finished, whoever runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_of_different_speeds_still_start_tasks_in_order() {
    let cluster = Cluster::start_with(concurrency(1)).await;
    let mut workers = Vec::new();
    for (instance, delay) in [(1, 1), (2, 10), (3, 30)] {
        let b = CollectorBuilder::new(KIND, instance)
            .prefetch(4)
            .delay_ms(delay);
        workers.push(cluster.add_collector(b).await);
    }
    let driver = cluster.driver().await;
    let history = History::new();
    let ids = task_ids("speeds", 30);
    let replies = submit_in_order(&driver, KIND, &ids, ids.len(), DEADLINE, &history).await;
    println!("shares: {:?}", shares(&replies));
    assert_eq!(strict_order_breaks(&replies), vec![]);
    assert_clean(&history.check(Order::Fifo));
}

/// Proves that FIFO queues are independent: with `concurrency = 1` on every
/// group, 50 tasks on each of the process, network and filesystem queues
/// (one collector each, 10 ms per task), submitted interleaved, each start in
/// their own queue's order, and the three queues run at the same time: every
/// queue's span (first start to last finish) overlaps the other two, instead
/// of one queue waiting for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_fifo_queues_run_side_by_side() {
    const PER_QUEUE: usize = 50;
    let cluster = Cluster::start_with(concurrency(1)).await;
    let mut workers = Vec::new();
    for kind in CollectorKind::ALL {
        let b = CollectorBuilder::new(kind, 1).prefetch(4).delay_ms(10);
        workers.push(cluster.add_collector(b).await);
    }
    let driver = cluster.driver().await;
    let history = History::new();
    let runs = CollectorKind::ALL.map(|kind| {
        let (driver, history) = (driver.clone(), history.clone());
        tokio::spawn(async move {
            let ids = task_ids(&format!("{kind}"), PER_QUEUE);
            submit_in_order(&driver, kind, &ids, PER_QUEUE, DEADLINE, &history).await
        })
    });
    let mut spans = Vec::new();
    for (kind, run) in CollectorKind::ALL.into_iter().zip(runs) {
        let replies = run.await.expect("the queue's run completes");
        assert_eq!(strict_order_breaks(&replies), vec![], "{kind}");
        let first = replies.iter().map(|r| r.timings.started_us).min();
        let last = replies.iter().map(|r| r.timings.finished_us).max();
        spans.push((kind, first.expect("50 replies"), last.expect("50 replies")));
    }
    println!("spans (µs since epoch): {spans:?}");
    for (a, a_start, a_end) in &spans {
        for (b, b_start, b_end) in &spans {
            assert!(
                a_start < b_end && b_start < a_end,
                "{a} and {b} did not run at the same time: {spans:?}"
            );
        }
    }
    let verdict = history.check(Order::Any);
    assert_clean(&verdict);
    assert_eq!(verdict.completed, 3 * PER_QUEUE);
}

/// Proves cancelling queued tasks by message id: of 10 tasks at
/// `concurrency = 1` on one slow collector (150 ms each), tasks 3, 5 and 7 are
/// cancelled while queued behind the first; their requesters get
/// `RequestError::Cancelled` with their message id, the broker counts 3
/// cancelled and only 7 delivered (the 3 never left the queue), and the
/// other 7 complete in publish order. The history shows the
/// 3 as the only tasks never acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_queued_tasks_fail_as_cancelled_and_the_rest_keep_their_order() {
    const CANCELLED: [usize; 3] = [3, 5, 7];
    let cluster = Cluster::start_with(concurrency(1)).await;
    let _slow = collectors(&cluster, 1, |b| b.prefetch(4).delay_ms(150)).await;
    let driver = cluster.driver().await;
    let history = History::new();
    let topic = KIND.task_topic();
    let ids = task_ids("cancel", 10);
    let mut pending = Vec::new();
    for id in &ids {
        history.published(id);
        let request = driver
            .client()
            .submit(&topic, KIND.payload(id), DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("submit {id}: {e}"));
        history.accepted(id);
        pending.push(request);
    }
    for &i in &CANCELLED {
        let message_id = pending[i].message_id();
        driver
            .client()
            .cancel(message_id)
            .await
            .unwrap_or_else(|e| panic!("cancel {}: {e}", ids[i]));
    }
    let mut completed = Vec::new();
    for (i, request) in pending.into_iter().enumerate() {
        let message_id = request.message_id();
        match request.reply().await {
            Err(RequestError::Cancelled { message_id: id }) if CANCELLED.contains(&i) => {
                assert_eq!(id, message_id);
                history.error(&ids[i], "cancelled");
            }
            Ok(message) if !CANCELLED.contains(&i) => {
                let reply = TaskReply::parse(&message).expect("a task reply");
                history.record_all(&ids[i], reply.events(&ids[i]));
                completed.push(reply);
            }
            other => panic!("task {i}: unexpected outcome {other:?}"),
        }
    }
    assert_eq!(completed.len(), 7);
    assert_eq!(strict_order_breaks(&completed), vec![]);
    let queue = driver.queue_stats(KIND).await.expect("the group exists");
    assert_eq!((queue.cancelled, queue.delivered), (3, 7), "{queue:?}");
    let verdict = history.check(Order::Fifo);
    let expected: Vec<String> = CANCELLED.iter().map(|&i| ids[i].clone()).collect();
    assert_eq!(verdict.lost, expected, "{verdict}");
    assert!(verdict.duplicated_after_ack.is_empty(), "{verdict}");
    assert!(verdict.out_of_order.is_empty(), "{verdict}");
    assert!(verdict.unexpected.is_empty(), "{verdict}");
}

/// Proves that the broker's queue stats agree with the history, during and
/// after a run: 300 tasks at `concurrency = 5` over 3 collectors, sampled
/// every poll interval while they run. In every sample the group has at most
/// 5 in flight and has acked at least as many tasks as the driver had seen
/// replies for just before (a reply settles its delivery before it is
/// forwarded); at the end delivered = acked = 300 = completed in the history,
/// nothing waits or is in flight, and each member's acked count equals the
/// replies it sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_stats_sampled_during_a_run_agree_with_the_history() {
    const TASKS: u64 = 300;
    let cluster = Cluster::start_with(concurrency(5)).await;
    let _collectors = collectors(&cluster, 3, |b| b.prefetch(4).delay_ms(2)).await;
    let driver = cluster.driver().await;
    let history = History::new();
    let done = Arc::new(AtomicBool::new(false));
    let most_in_flight = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn({
        let (driver, history, done) = (driver.clone(), history.clone(), done.clone());
        let most_in_flight = most_in_flight.clone();
        async move {
            let mut samples = 0u32;
            while !done.load(Ordering::Relaxed) {
                let seen = history.completed() as u64;
                if let Some(q) = driver.queue_stats(KIND).await {
                    assert!(q.in_flight <= 5, "{q:?}");
                    assert!(q.acked >= seen, "broker acked {} < {seen} seen", q.acked);
                    most_in_flight.fetch_max(q.in_flight, Ordering::Relaxed);
                    samples += 1;
                }
                tokio::time::sleep(e2e::wait::POLL_INTERVAL).await;
            }
            samples
        }
    });
    let ids = task_ids("stats", TASKS as usize);
    let replies = submit_in_order(&driver, KIND, &ids, ids.len(), DEADLINE, &history).await;
    done.store(true, Ordering::Relaxed);
    let samples = sampler.await.expect("the sampler's checks hold");
    println!(
        "{samples} samples, most in flight {}",
        most_in_flight.load(Ordering::Relaxed)
    );
    let verdict = history.check(Order::Any);
    assert_clean(&verdict);
    let queue = driver.queue_stats(KIND).await.expect("the group exists");
    assert_eq!(
        (queue.delivered, queue.acked, verdict.completed as u64),
        (TASKS, TASKS, TASKS),
        "{queue:?}"
    );
    assert_eq!((queue.depth, queue.in_flight), (0, 0), "{queue:?}");
    let by_member: BTreeMap<&str, usize> = queue
        .members
        .iter()
        .map(|m| (m.client_id.as_str(), m.acked as usize))
        .collect();
    assert_eq!(by_member, shares(&replies));
}

/// Stress: 10,000 tasks at `concurrency = 10` over 4 collectors (prefetch 8),
/// submitted in order with up to 2,000 awaiting replies: all complete, and at
/// every start at most 9 earlier tasks are unfinished; the history is clean.
/// Runs in the `stress` nextest profile only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_ten_thousand_tasks_at_concurrency_ten_stay_within_the_fifo_window() {
    const TASKS: usize = 10_000;
    let cluster = Cluster::start_with(concurrency(10)).await;
    let _collectors = collectors(&cluster, 4, |b| b.prefetch(8)).await;
    let driver = cluster.driver().await;
    let history = History::new();
    let ids = task_ids("stress", TASKS);
    let started = tokio::time::Instant::now();
    let timeout = Duration::from_secs(120);
    let replies = submit_in_order(&driver, KIND, &ids, 2_000, timeout, &history).await;
    let elapsed = started.elapsed();
    let (worst, at) = most_earlier_unfinished_at_a_start(&replies);
    println!(
        "figure: {TASKS} FIFO tasks at concurrency 10 in {elapsed:?} ({:.0}/s); at most {worst} earlier unfinished",
        TASKS as f64 / elapsed.as_secs_f64()
    );
    assert!(
        worst <= 9,
        "task {at} started with {worst} earlier unfinished"
    );
    let verdict = history.check(Order::Any);
    assert_clean(&verdict);
    assert_eq!(verdict.completed, TASKS);
    wait_until("the broker has acked every task", DEADLINE, || {
        let driver = driver.clone();
        async move {
            driver
                .queue_stats(KIND)
                .await
                .is_some_and(|q| q.acked == TASKS as u64 && q.in_flight == 0)
        }
    })
    .await
    .unwrap();
}
