//! Plain publish/subscribe over a real socket.

use std::time::Duration;

use eventbus::{Topic, TopicFilter};
use eventbus_harness::{DEADLINE, TestBroker, next, quiet_for};

fn t(s: &str) -> Topic {
    Topic::new(s).unwrap()
}

fn f(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

#[tokio::test]
async fn every_matching_subscription_gets_a_copy_with_wildcards() {
    let broker = TestBroker::start().await;
    let sub = broker.client("sub").await;
    let publisher = broker.client("pub").await;
    let mut all = sub.subscribe(&f("#")).await.unwrap();
    let mut events = sub.subscribe(&f("events.#")).await.unwrap();
    let mut snapshots = sub.subscribe(&f("events.+.snapshot")).await.unwrap();
    let mut other = sub.subscribe(&f("control.#")).await.unwrap();

    publisher
        .publish_confirmed(&t("events.process.snapshot"), "p1")
        .await
        .unwrap();
    for stream in [&mut all, &mut events, &mut snapshots] {
        let m = next(stream).await.unwrap();
        assert_eq!(m.topic(), "events.process.snapshot");
        assert_eq!(&m.payload()[..], b"p1");
        assert_eq!(m.source(), "pub");
        assert_eq!(m.attempt(), 1);
    }
    assert!(quiet_for(&mut other, Duration::from_millis(50)).await);
    broker.shutdown().await;
}

#[tokio::test]
async fn one_publisher_one_topic_arrives_in_order() {
    let broker = TestBroker::start().await;
    let sub = broker.client("sub").await;
    let publisher = broker.client("pub").await;
    let mut stream = sub.subscribe(&f("seq.n")).await.unwrap();
    for i in 0..2000u32 {
        publisher
            .publish(t("seq.n"), i.to_be_bytes().to_vec())
            .unwrap();
    }
    for i in 0..2000u32 {
        let m = next(&mut stream).await.unwrap();
        assert_eq!(&m.payload()[..], &i.to_be_bytes());
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes() {
    let broker = TestBroker::start().await;
    let sub = broker.client("sub").await;
    let stream = sub.subscribe(&f("a.b")).await.unwrap();
    drop(stream);
    eventbus_harness::wait_until("the broker forgot the subscription", DEADLINE, || async {
        let s = sub.stats().await.unwrap();
        s.connections
            .iter()
            .all(|c| c.id != "sub" || c.delivered == 0)
            && sub
                .request(&t("a.b"), "x", Duration::from_millis(200))
                .await
                .is_err()
    })
    .await
    .unwrap();
    let err = sub
        .request(&t("a.b"), "x", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, eventbus::client::RequestError::NoResponders { .. }),
        "{err}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn invalid_names_are_refused_at_the_edge() {
    assert!(Topic::new("Events.x").is_err());
    assert!(TopicFilter::new("a.#.b").is_err());
    assert!(eventbus::ClientId::new("has space").is_err());
}
