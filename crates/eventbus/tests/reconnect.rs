//! Client reconnection: a restarted broker gets the same client back, with its
//! subscriptions and queue memberships restored.

use eventbus::{ConnectionEvent, GroupName, Topic, TopicFilter};
use eventbus_harness::{DEADLINE, TestBroker, next};

#[tokio::test]
async fn subscriptions_and_memberships_survive_a_broker_restart() {
    let broker = TestBroker::start().await;
    let worker = broker.client("worker").await;
    let mut events = worker.connection_events();
    let mut plain = worker
        .subscribe(&TopicFilter::new("news.#").unwrap())
        .await
        .unwrap();
    let mut tasks = worker
        .queue_subscribe(
            &TopicFilter::new("jobs").unwrap(),
            &GroupName::new("w").unwrap(),
            4,
        )
        .await
        .unwrap();

    let broker = broker.restart().await;
    let disconnected = tokio::time::timeout(DEADLINE, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(disconnected, ConnectionEvent::Disconnected { .. }),
        "{disconnected:?}"
    );
    let reconnected = tokio::time::timeout(DEADLINE, events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(reconnected, ConnectionEvent::Reconnected { .. }),
        "{reconnected:?}"
    );

    let publisher = broker.client("publisher").await;
    eventbus_harness::wait_until(
        "the worker's subscriptions are restored",
        DEADLINE,
        || async {
            let stats = publisher.stats().await.unwrap();
            stats.connections.iter().any(|c| c.id == "worker")
                && stats
                    .queues
                    .iter()
                    .any(|q| q.topic == "jobs" && q.members.len() == 1)
        },
    )
    .await
    .unwrap();
    publisher
        .publish_confirmed(&Topic::new("news.x").unwrap(), "fresh")
        .await
        .unwrap();
    assert_eq!(&next(&mut plain).await.unwrap().payload()[..], b"fresh");

    let reply = tokio::spawn(async move {
        let d = next(&mut tasks).await.unwrap();
        d.reply("done").unwrap();
    });
    let answer = publisher
        .request(&Topic::new("jobs").unwrap(), "task", DEADLINE)
        .await
        .unwrap();
    assert_eq!(
        (answer.source(), &answer.payload()[..]),
        ("worker", &b"done"[..])
    );
    reply.await.unwrap();
    assert!(!worker.is_closed());
    broker.shutdown().await;
}

#[tokio::test]
async fn publishes_during_an_outage_are_buffered_and_delivered() {
    let broker = TestBroker::start().await;
    let listener = broker.client("listener").await;
    let mut listener_events = listener.connection_events();
    let mut stream = listener
        .subscribe(&TopicFilter::new("log").unwrap())
        .await
        .unwrap();
    let talker = broker.client("talker").await;
    let broker = broker.restart().await;
    // Plain pub/sub keeps nothing for absent subscribers: wait until the
    // listener's subscription is confirmed on the new broker.
    reconnected(&mut listener_events).await;
    // The talker may not have reconnected yet; what it queues meanwhile is kept.
    let id = tokio::time::timeout(
        DEADLINE,
        talker.publish_confirmed(&Topic::new("log").unwrap(), "kept"),
    )
    .await
    .expect("confirmed after reconnecting")
    .unwrap();
    assert!(id > 0);
    assert_eq!(&next(&mut stream).await.unwrap().payload()[..], b"kept");
    broker.shutdown().await;
}

#[tokio::test]
async fn publish_wait_blocks_through_an_outage_and_loses_nothing() {
    let broker = TestBroker::start().await;
    let listener = broker.client("listener").await;
    let mut listener_events = listener.connection_events();
    let mut stream = listener
        .subscribe(&TopicFilter::new("bulk").unwrap())
        .await
        .unwrap();
    let talker = eventbus::Client::connect(broker.options("talker").outbound_capacity(16))
        .await
        .unwrap();
    let broker = broker.restart().await;
    reconnected(&mut listener_events).await;
    let topic = Topic::new("bulk").unwrap();
    for i in 0..200u32 {
        tokio::time::timeout(
            DEADLINE,
            talker.publish_wait(&topic, i.to_be_bytes().to_vec()),
        )
        .await
        .expect("room is made")
        .unwrap();
    }
    for i in 0..200u32 {
        assert_eq!(
            &next(&mut stream).await.unwrap().payload()[..],
            &i.to_be_bytes()
        );
    }
    broker.shutdown().await;
}

/// Waits for the `Reconnected` event: the client's subscriptions are confirmed
/// on the new broker.
async fn reconnected(events: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>) {
    loop {
        let event = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .expect("reconnected within the deadline")
            .expect("events keep coming");
        if matches!(event, ConnectionEvent::Reconnected { .. }) {
            return;
        }
    }
}
