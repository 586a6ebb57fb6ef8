//! Headers set by a sender, over a real socket: on every kind of send, in
//! both directions of a request, next to headerless messages on the fast path.

use std::time::Duration;

use eventbus::client::PublishError;
use eventbus::{Body, GroupName, Headers, Topic, TopicFilter};
use eventbus_harness::{DEADLINE, TestBroker, next};

fn t(s: &str) -> Topic {
    Topic::new(s).unwrap()
}

fn f(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn traced(payload: &'static str, trace: &str) -> Body {
    Body::new(payload).header("trace-id", trace).unwrap()
}

#[tokio::test]
async fn fire_and_forget_headers_arrive_in_order_among_headerless_messages() {
    let broker = TestBroker::start().await;
    let sub = broker.client("sub").await;
    let publisher = broker.client("pub").await;
    let mut stream = sub.subscribe(&f("events.#")).await.unwrap();
    let topic = t("events.process.start");
    publisher.publish(&topic, "plain-1").unwrap();
    publisher.publish(&topic, traced("traced", "7f3a")).unwrap();
    publisher.publish(&topic, "plain-2").unwrap();

    let first = next(&mut stream).await.unwrap();
    assert_eq!(first.payload(), "plain-1");
    assert!(first.headers().is_empty());
    let second = next(&mut stream).await.unwrap();
    assert_eq!(second.payload(), "traced");
    assert_eq!(second.headers().get("trace-id"), Some("7f3a"));
    assert_eq!(second.headers().len(), 1);
    assert_eq!(second.source(), "pub");
    let third = next(&mut stream).await.unwrap();
    assert_eq!(third.payload(), "plain-2");
    assert!(third.headers().is_empty());
    broker.shutdown().await;
}

#[tokio::test]
async fn confirmed_publishes_and_queue_deliveries_carry_headers() {
    let broker = TestBroker::start().await;
    let worker = broker.client("worker").await;
    let publisher = broker.client("pub").await;
    let mut tasks = worker
        .queue_subscribe(&f("jobs"), &GroupName::new("w").unwrap(), 1)
        .await
        .unwrap();
    let headers = Headers::from_pairs([("a", "1"), ("b", "")]).unwrap();
    publisher
        .publish_confirmed(&t("jobs"), Body::new("job").with_headers(headers.clone()))
        .await
        .unwrap();
    let delivery = next(&mut tasks).await.unwrap();
    assert_eq!(delivery.message().headers(), &headers);
    delivery.ack_confirmed().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn requests_and_replies_carry_headers_both_ways() {
    let broker = TestBroker::start().await;
    let responder = broker.client("responder").await;
    let requester = broker.client("requester").await;
    let mut queue = responder
        .queue_subscribe(&f("rpc.queue"), &GroupName::new("r").unwrap(), 1)
        .await
        .unwrap();
    let mut plain = responder.subscribe(&f("rpc.plain")).await.unwrap();
    tokio::spawn(async move {
        let delivery = next(&mut queue).await.unwrap();
        let trace = delivery.message().headers()["trace-id"].clone();
        delivery
            .reply(Body::new("from-queue").header("echo", trace).unwrap())
            .unwrap();
        let request = next(&mut plain).await.unwrap();
        let trace = request.headers()["trace-id"].clone();
        responder
            .reply(
                &request,
                Body::new("from-plain").header("echo", trace).unwrap(),
            )
            .unwrap();
        // Keep the responder's connection up until the test ends.
        std::future::pending::<()>().await;
    });
    let reply = requester
        .request(&t("rpc.queue"), traced("q", "t-1"), DEADLINE)
        .await
        .unwrap();
    assert_eq!(reply.payload(), "from-queue");
    assert_eq!(reply.headers().get("echo"), Some("t-1"));
    let reply = requester
        .request(&t("rpc.plain"), traced("p", "t-2"), DEADLINE)
        .await
        .unwrap();
    assert_eq!(reply.payload(), "from-plain");
    assert_eq!(reply.headers().get("echo"), Some("t-2"));
    broker.shutdown().await;
}

#[tokio::test]
async fn a_dead_letter_keeps_the_publishers_headers_next_to_the_brokers() {
    let broker = TestBroker::start().await;
    let worker = broker.client("worker").await;
    let watcher = broker.client("watcher").await;
    let mut letters = watcher.subscribe(&f("_sys.dead-letter.#")).await.unwrap();
    let mut tasks = worker
        .queue_subscribe(&f("jobs"), &GroupName::new("w").unwrap(), 1)
        .await
        .unwrap();
    worker
        .publish_confirmed(&t("jobs"), traced("job", "dl-1"))
        .await
        .unwrap();
    let delivery = next(&mut tasks).await.unwrap();
    delivery.nack_confirmed(false).await.unwrap();
    let letter = next(&mut letters).await.unwrap();
    assert_eq!(letter.headers().get("trace-id"), Some("dl-1"));
    assert_eq!(letter.headers()["x-original-topic"], "jobs");
    broker.shutdown().await;
}

#[tokio::test]
async fn headers_count_against_the_frame_limit_before_anything_is_sent() {
    let broker = TestBroker::start_with(|c| c.max_frame_bytes = 4096).await;
    let publisher = broker.client("pub").await;
    let huge = Body::new("x").header("big", "v".repeat(8192)).unwrap();
    assert!(matches!(
        publisher.publish(t("events.x"), huge.clone()),
        Err(PublishError::TooLarge { max: 4096, .. })
    ));
    assert!(matches!(
        publisher.publish_confirmed(&t("events.x"), huge).await,
        Err(PublishError::TooLarge { .. })
    ));
    // The connection is still usable.
    tokio::time::timeout(Duration::from_secs(10), publisher.stats())
        .await
        .unwrap()
        .unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn x_headers_are_the_brokers_and_a_publish_that_sets_one_is_refused() {
    let broker = TestBroker::start().await;
    let publisher = broker.client("pub").await;
    let forged = Body::new("x").header("x-attempts", "1").unwrap();
    let refused = publisher.publish_confirmed(&t("jobs"), forged).await;
    assert!(
        matches!(&refused, Err(PublishError::ReservedHeader { name }) if name == "x-attempts"),
        "{refused:?}"
    );
    broker.shutdown().await;
}
