//! Bounded queues: what the broker does with a burst that does not fit, under
//! each overflow policy: `drop-oldest`, `drop-incoming`, `reject` and `block`.
//!
//! To hold a burst in the queue, its only member must have no credit: a
//! collector with prefetch 1 is frozen (SIGSTOP, with a 10 s heartbeat so it is
//! not declared dead meanwhile) and handed a plug task it will never settle.

use std::time::Duration;

use e2e::ClusterExt as _;
use e2e::{
    BrokerBuilder, Cluster, CollectorBuilder, CollectorKind, CollectorProcess, DEADLINE, Driver,
    History, Order, task_ids, wait_until,
};
use eventbus::client::PublishError;

const KIND: CollectorKind = CollectorKind::Process;

fn bounded_queue(overflow: &str) -> BrokerBuilder {
    BrokerBuilder::new().config_toml(format!(
        "[queue]\nmax_len = 100\noverflow = \"{overflow}\"\n"
    ))
}

/// Starts a collector with prefetch 1, freezes it, and gives it a plug task:
/// the group's only member then has no credit and publishes stay queued.
async fn frozen_member(cluster: &Cluster, driver: &Driver) -> CollectorProcess {
    let collector = cluster
        .add_collector(
            CollectorBuilder::new(KIND, 1)
                .prefetch(1)
                .heartbeat_interval(Duration::from_secs(10)),
        )
        .await;
    collector.pause();
    driver
        .client()
        .publish_confirmed(&KIND.task_topic(), KIND.payload("plug"))
        .await
        .expect("the plug is accepted");
    wait_until("the frozen member holds the plug", DEADLINE, || {
        let driver = driver.clone();
        async move {
            driver
                .queue_stats(KIND)
                .await
                .is_some_and(|q| q.in_flight == 1)
        }
    })
    .await
    .unwrap();
    collector
}

/// Proves `overflow = "drop-oldest"` with `max_len = 100`: of 200 confirmed
/// publishes (all accepted) into a queue nobody takes from, the broker keeps
/// the newest 100 and counts 100 dropped; a consumer then receives exactly
/// tasks 100..199, in publish order. The history shows the first 100 as the
/// only losses, with no duplicate and no inversion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_keeps_the_newest_hundred_in_order() {
    let cluster = Cluster::start_with(bounded_queue("drop-oldest")).await;
    let driver = cluster.driver().await;
    let _frozen = frozen_member(&cluster, &driver).await;
    let history = History::new();
    let ids = task_ids("burst", 200);
    let results = driver.publish_tasks(KIND, &ids, &history).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let queue = driver.queue_stats(KIND).await.expect("the group exists");
    assert_eq!((queue.depth, queue.dropped), (100, 100), "{queue:?}");

    let received = driver.drain_queue(KIND, 16, 100, &history).await;
    assert_eq!(received, ids[100..]);
    let verdict = history.check(Order::Fifo);
    assert_eq!(verdict.lost, ids[..100], "{verdict}");
    assert!(verdict.duplicated_after_ack.is_empty(), "{verdict}");
    assert!(verdict.out_of_order.is_empty(), "{verdict}");
    assert!(verdict.unexpected.is_empty(), "{verdict}");
}

/// Proves `overflow = "reject"` with `max_len = 100`: once 100 tasks wait, the
/// 101st confirmed publish fails with `PublishError::QueueFull { max_len: 100 }`
/// naming the queue's topic and group; the 100 accepted tasks are all delivered
/// afterwards, so the history is clean with the one refusal recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_refuses_the_101st_publish_naming_the_queue() {
    let cluster = Cluster::start_with(bounded_queue("reject")).await;
    let driver = cluster.driver().await;
    let _frozen = frozen_member(&cluster, &driver).await;
    let history = History::new();
    let ids = task_ids("full", 101);
    let results = driver.publish_tasks(KIND, &ids, &history).await;
    assert!(results[..100].iter().all(Result::is_ok), "{results:?}");
    let err = results[100].clone().expect_err("the 101st is refused");
    let topic = KIND.task_topic();
    match &err {
        PublishError::QueueFull {
            max_len,
            topic: full,
            group,
        } => {
            assert_eq!(*max_len, 100);
            assert_eq!(full, topic.as_str());
            assert_eq!(group, KIND.capability());
        }
        other => panic!("expected QueueFull, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(topic.as_str()) && message.contains(KIND.capability()),
        "{message}"
    );
    let queue = driver.queue_stats(KIND).await.expect("the group exists");
    assert_eq!((queue.depth, queue.rejected), (100, 1), "{queue:?}");

    let received = driver.drain_queue(KIND, 16, 100, &history).await;
    assert_eq!(received, ids[..100]);
    let verdict = history.check(Order::Fifo);
    assert!(verdict.is_clean(), "{verdict}");
    assert_eq!(verdict.errors.len(), 1, "{verdict}");
    assert_eq!(verdict.errors[0].0, ids[100]);
}

/// Proves `overflow = "drop-incoming"` with `max_len = 100`: of 200 confirmed
/// publishes (all accepted), the broker keeps the first 100 and counts 100
/// dropped; a consumer then receives exactly tasks 0..99, in publish order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_incoming_keeps_the_oldest_hundred_in_order() {
    let cluster = Cluster::start_with(bounded_queue("drop-incoming")).await;
    let driver = cluster.driver().await;
    let _frozen = frozen_member(&cluster, &driver).await;
    let history = History::new();
    let ids = task_ids("burst", 200);
    let results = driver.publish_tasks(KIND, &ids, &history).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let queue = driver.queue_stats(KIND).await.expect("the group exists");
    assert_eq!((queue.depth, queue.dropped), (100, 100), "{queue:?}");

    let received = driver.drain_queue(KIND, 16, 100, &history).await;
    assert_eq!(received, ids[..100]);
    let verdict = history.check(Order::Fifo);
    assert_eq!(verdict.lost, ids[100..], "{verdict}");
    assert!(verdict.duplicated_after_ack.is_empty(), "{verdict}");
    assert!(verdict.out_of_order.is_empty(), "{verdict}");
}

/// Proves `overflow = "block"` with `max_len = 100`: the 101st publish waits
/// while another client of the same broker is served normally; it completes
/// as soon as a consumer makes room; with nobody making room, a publish fails
/// after `block_timeout_ms` with `PublishError::BlockTimeout` naming the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_holds_the_publisher_until_room_and_then_times_out() {
    let config = "[queue]\nmax_len = 100\noverflow = \"block\"\nblock_timeout_ms = 1500\n";
    let cluster = Cluster::start_with(BrokerBuilder::new().config_toml(config)).await;
    let driver = cluster.driver().await;
    let _frozen = frozen_member(&cluster, &driver).await;
    let history = History::new();
    let ids = task_ids("full", 100);
    let results = driver.publish_tasks(KIND, &ids, &history).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let publisher = driver.client().clone();
    let blocked = tokio::spawn(async move {
        publisher
            .publish_confirmed(&KIND.task_topic(), KIND.payload("waits"))
            .await
    });
    // Another client carries on meanwhile: its publishes and stats are answered.
    let other = cluster.driver().await;
    other
        .client()
        .publish_confirmed(&eventbus::Topic::new("events.other").unwrap(), "x")
        .await
        .expect("others are not blocked");
    assert!(other.queue_stats(KIND).await.is_some());
    assert!(!blocked.is_finished(), "the 101st publish waits for room");

    // The blocked publisher's connection is paused as a whole (nothing else
    // it sends is read meanwhile), so room is made by another client.
    let drained = other.drain_queue(KIND, 1, 1, &history).await;
    assert_eq!(drained, ids[..1]);
    let accepted = tokio::time::timeout(DEADLINE, blocked)
        .await
        .expect("room was made");
    let accepted = accepted.unwrap();
    assert!(accepted.is_ok(), "{accepted:?}");

    // The drain may briefly have held one more task before leaving the group;
    // wait until that one is back and the queue is full again.
    wait_until("the queue is full again", DEADLINE, || {
        let other = other.clone();
        async move {
            other
                .queue_stats(KIND)
                .await
                .is_some_and(|q| q.depth == 100)
        }
    })
    .await
    .unwrap();
    let err = driver
        .client()
        .publish_confirmed(&KIND.task_topic(), KIND.payload("times-out"))
        .await
        .expect_err("nobody makes room");
    assert!(
        matches!(err, PublishError::BlockTimeout { max_len: 100, .. }),
        "{err:?}"
    );
}
