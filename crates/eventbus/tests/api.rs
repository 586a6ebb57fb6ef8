//! The client API as a user writes it: names as strings, JSON payloads,
//! deliveries that settle on drop, cancelled subscribes, typed stats.

use std::future::Future as _;
use std::time::Duration;

use eventbus::client::{AckError, PublishError, RequestError, SubscribeError};
use eventbus::{Body, Topic};
use eventbus_harness::{DEADLINE, TestBroker, next, quiet_for};
use serde::{Deserialize, Serialize};

#[tokio::test]
async fn strings_are_validated_inside_the_call_with_a_typed_error() {
    let broker = TestBroker::start().await;
    let client = broker.client("c").await;
    let mut events = client.subscribe("events.#").await.unwrap();
    let mut tasks = client.queue_subscribe("jobs", "workers", 1).await.unwrap();
    client.publish("events.a", "1").unwrap();
    client.publish(String::from("events.b"), "2").unwrap();
    client
        .publish(Topic::new("events.c").unwrap(), "3")
        .unwrap();
    for payload in ["1", "2", "3"] {
        assert_eq!(next(&mut events).await.unwrap().payload(), payload);
    }
    client.publish_confirmed("jobs", "j").await.unwrap();
    next(&mut tasks).await.unwrap().ack().unwrap();

    assert!(matches!(
        client.publish("Events.A", "x"),
        Err(PublishError::InvalidTopic(_))
    ));
    assert!(matches!(
        client.publish_confirmed("events.#", "x").await,
        Err(PublishError::InvalidTopic(_))
    ));
    assert!(matches!(
        client.request("a..b", "x", DEADLINE).await,
        Err(RequestError::Publish(PublishError::InvalidTopic(_)))
    ));
    assert!(matches!(
        client.send_direct("no spaces", "a.b", "x").await,
        Err(RequestError::InvalidClientId(_))
    ));
    assert!(matches!(
        client.subscribe("#.x").await,
        Err(SubscribeError::InvalidFilter(_))
    ));
    assert!(matches!(
        client.queue_subscribe("jobs", "Workers", 1).await,
        Err(SubscribeError::InvalidGroup(_))
    ));
    // Nothing invalid reached the broker: the subscription saw only the three.
    assert!(quiet_for(&mut events, Duration::from_millis(50)).await);
    broker.shutdown().await;
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Resize {
    image: String,
    width: u32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Resized {
    bytes: u64,
}

#[tokio::test]
async fn json_payloads_round_trip_and_a_bad_reply_is_a_typed_error() {
    let broker = TestBroker::start().await;
    let worker = broker.client("worker").await;
    let client = broker.client("client").await;
    let mut events = client.subscribe("events.#").await.unwrap();
    let job = Resize {
        image: "a.png".into(),
        width: 64,
    };
    client.publish_json("events.resize", &job).unwrap();
    let event = next(&mut events).await.unwrap();
    assert_eq!(event.json::<Resize>().unwrap(), job);
    assert!(event.json::<Resized>().is_err());

    let mut tasks = worker.queue_subscribe("jobs.resize", "w", 1).await.unwrap();
    tokio::spawn(async move {
        let task = next(&mut tasks).await.unwrap();
        let job: Resize = task.message().json().unwrap();
        let body = Body::json(&Resized {
            bytes: u64::from(job.width) * 10,
        })
        .unwrap();
        task.reply(body).unwrap();
        let task = next(&mut tasks).await.unwrap();
        task.reply("not json").unwrap();
        std::future::pending::<()>().await;
    });
    let done: Resized = client
        .request_json("jobs.resize", &job, DEADLINE)
        .await
        .unwrap();
    assert_eq!(done, Resized { bytes: 640 });
    let bad = client
        .request_json::<_, Resized>("jobs.resize", &job, DEADLINE)
        .await;
    assert!(matches!(bad, Err(RequestError::Json(_))), "{bad:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_delivery_dropped_unsettled_is_requeued_at_once_not_after_the_ack_timeout() {
    // An ack timeout far beyond the test's deadline: only the drop's nack can
    // bring the task back in time.
    let broker = TestBroker::start_with(|c| c.queue.ack_timeout_ms = 600_000).await;
    let client = broker.client("c").await;
    let mut tasks = client.queue_subscribe("jobs", "w", 1).await.unwrap();
    client.publish_confirmed("jobs", "t").await.unwrap();
    let first = next(&mut tasks).await.unwrap();
    assert_eq!(first.message().attempt(), 1);
    assert!(!first.is_settled());
    drop(first);
    let second = next(&mut tasks).await.unwrap();
    assert_eq!(second.message().attempt(), 2);
    assert_eq!(second.message().payload(), "t");
    second.ack().unwrap();
    assert!(second.is_settled());
    drop(second);
    // Settled deliveries are not nacked when dropped: nothing comes back.
    assert!(quiet_for(&mut tasks, Duration::from_millis(100)).await);
    let stats = client.stats().await.unwrap();
    let queue = stats.queues.iter().find(|q| q.topic == "jobs").unwrap();
    assert_eq!((queue.acked, queue.nacked, queue.in_flight), (1, 1, 0));
    broker.shutdown().await;
}

#[tokio::test]
async fn ack_and_nack_each_have_a_sync_and_a_confirmed_variant() {
    let broker = TestBroker::start().await;
    let client = broker.client("c").await;
    let mut tasks = client.queue_subscribe("jobs", "w", 4).await.unwrap();
    let mut letters = client.subscribe("_sys.dead-letter.#").await.unwrap();
    for n in 0..4 {
        client
            .publish_confirmed("jobs", format!("{n}"))
            .await
            .unwrap();
    }
    let d = [
        next(&mut tasks).await.unwrap(),
        next(&mut tasks).await.unwrap(),
        next(&mut tasks).await.unwrap(),
        next(&mut tasks).await.unwrap(),
    ];
    d[0].ack().unwrap();
    d[1].ack_confirmed().await.unwrap();
    d[2].nack(false).unwrap();
    d[3].nack_confirmed(false).await.unwrap();
    for payload in ["2", "3"] {
        assert_eq!(next(&mut letters).await.unwrap().payload(), payload);
    }
    // Settling twice: the broker no longer holds it.
    assert!(matches!(
        d[1].ack_confirmed().await,
        Err(AckError::UnknownDelivery { .. })
    ));
    broker.shutdown().await;
}

#[tokio::test]
async fn a_cancelled_subscribe_leaves_no_subscription_behind() {
    let broker = TestBroker::start().await;
    let client = broker.client("c").await;
    {
        // Polled once (the subscribe goes out), then cancelled: dropped at
        // the end of this block.
        let mut subscribe = std::pin::pin!(client.subscribe("events.#"));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(subscribe.as_mut().poll(&mut cx).is_pending());
    }
    // Frames on one connection are handled in order: once this answer comes,
    // the subscribe and the unsubscribe that followed it are both done.
    client.stats().await.unwrap();
    let publisher = broker.client("p").await;
    publisher.publish_confirmed("events.a", "x").await.unwrap();
    let stats = publisher.stats().await.unwrap();
    let c = stats.connections.iter().find(|c| c.id == "c").unwrap();
    assert_eq!(c.delivered, 0, "{stats:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn stats_are_a_typed_snapshot_that_serializes_to_the_documented_names() {
    let broker = TestBroker::start().await;
    let client = broker.client("c").await;
    client.publish_confirmed("events.a", "x").await.unwrap();
    let stats = client.stats().await.unwrap();
    assert_eq!(stats.published, 1);
    assert!(stats.connections.iter().any(|c| c.id == "c"));
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["published"], 1);
    assert_eq!(json["topics"][0]["topic"], "events.a");
    broker.shutdown().await;
}
