//! The pieces of `slow_consumer_under_a_burst` (in the parent module): the
//! subscriber counter, and the queue part of the burst — confirmed publishes
//! into a bounded queue whose only consumer sits behind a slow link.

use std::time::Duration;

use e2e::Cluster;

/// Counts the messages `subscription` yields until none comes for `quiet`.
pub(super) async fn count_until_quiet(
    subscription: &mut eventbus::Subscription,
    quiet: Duration,
) -> u64 {
    use futures_core::Stream;
    let mut n = 0;
    let mut subscription = std::pin::Pin::new(subscription);
    loop {
        let next = std::future::poll_fn(|cx| subscription.as_mut().poll_next(cx));
        match tokio::time::timeout(quiet, next).await {
            Ok(Some(_)) => n += 1,
            _ => return n,
        }
    }
}

/// Confirmed publishes in the queue part of [`slow_consumer_under_a_burst`](super::slow_consumer_under_a_burst).
pub(super) const QUEUE_BURST: u64 = 3_000;

/// What the queue part of the burst did.
#[derive(Debug)]
pub(super) struct QueueBurst {
    pub accepted: u64,
    pub refused: u64,
    pub broker_rejected: u64,
    pub delivered: u64,
}

/// 3,000 confirmed publishes as fast as they are confirmed into a queue
/// (`max_len = 500`, `reject`) whose only consumer sits behind a link of
/// 64 KiB/s: the queue fills, the rest are refused with `QueueFull`, and the
/// consumer then receives every accepted task.
pub(super) async fn queue_burst(cluster: &Cluster, seed: u64) -> QueueBurst {
    use eventbus::client::PublishError;
    use eventbus::{Client, ClientOptions, GroupName, Topic, TopicFilter};
    use futures_core::Stream;

    let link = cluster.fault_proxy(seed ^ 1).await;
    link.set_bandwidth(e2e::Direction::ToClient, Some(64 * 1024));
    let consumer = Client::connect(ClientOptions::new(link.socket()))
        .await
        .unwrap();
    let filter = TopicFilter::new("burst.work").unwrap();
    let mut deliveries = consumer
        .queue_subscribe(&filter, &GroupName::new("burst").unwrap(), 100)
        .await
        .unwrap();
    let publisher = Client::connect(ClientOptions::new(cluster.socket()))
        .await
        .unwrap();
    let topic = Topic::new("burst.work").unwrap();
    let (mut accepted, mut refused) = (0, 0);
    for n in 0..QUEUE_BURST {
        match publisher.publish_confirmed(&topic, n.to_string()).await {
            Ok(_) => accepted += 1,
            Err(PublishError::QueueFull { max_len: 500, .. }) => refused += 1,
            Err(e) => panic!("publish {n}: {e}"),
        }
    }
    let mut delivered = 0;
    while delivered < accepted {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut deliveries).poll_next(cx));
        match tokio::time::timeout(e2e::DEADLINE, next).await {
            Ok(Some(delivery)) => {
                delivery.ack().unwrap();
                delivered += 1;
            }
            _ => break,
        }
    }
    let broker_rejected = publisher
        .stats()
        .await
        .unwrap()
        .queues
        .iter()
        .find(|q| q.group == "burst")
        .map_or(0, |q| q.rejected);
    QueueBurst {
        accepted,
        refused,
        broker_rejected,
        delivered,
    }
}
