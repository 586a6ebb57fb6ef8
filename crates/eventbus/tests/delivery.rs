//! At-least-once work queues: redelivery, dead letters, FIFO under a concurrency
//! limit, cancellation, overflow policies and slow consumers, over real sockets.

use std::time::{Duration, Instant};

use eventbus::broker::QueueOverride;
use eventbus::client::{AckError, PublishError, RequestError};
use eventbus::{Client, GroupName, OverflowPolicy, Topic, TopicFilter};
use eventbus_harness::{DEADLINE, TestBroker, next};

fn t(s: &str) -> Topic {
    Topic::new(s).unwrap()
}

fn f(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn g(s: &str) -> GroupName {
    GroupName::new(s).unwrap()
}

fn body(d: &eventbus::Delivery) -> String {
    String::from_utf8_lossy(d.message().payload()).into_owned()
}

#[tokio::test]
async fn ack_timeout_redelivers_and_the_late_ack_is_refused() {
    let broker = TestBroker::start_with(|c| c.queue.ack_timeout_ms = 100).await;
    let slow = broker.client("slow").await;
    let mut qs = slow.queue_subscribe(&f("jobs"), &g("w"), 1).await.unwrap();
    let publisher = broker.client("pub").await;
    publisher.publish_confirmed(&t("jobs"), "x").await.unwrap();
    let held = next(&mut qs).await.unwrap();
    let fast = broker.client("fast").await;
    let mut qf = fast.queue_subscribe(&f("jobs"), &g("w"), 1).await.unwrap();
    let again = next(&mut qf).await.unwrap();
    assert_eq!((body(&again).as_str(), again.message().attempt()), ("x", 2));
    assert_eq!(
        held.ack_confirmed().await.unwrap_err(),
        AckError::UnknownDelivery {
            delivery_id: held.delivery_id()
        }
    );
    again.ack_confirmed().await.unwrap();
    let stats = publisher.stats().await.unwrap();
    let q = stats.queues.iter().find(|q| q.topic == "jobs").unwrap();
    assert_eq!((q.redelivered, q.acked, q.in_flight), (1, 1, 0));
    broker.shutdown().await;
}

#[tokio::test]
async fn max_attempts_sends_the_message_to_the_dead_letter_topic() {
    let broker = TestBroker::start_with(|c| {
        c.queue.ack_timeout_ms = 0;
        c.queue.max_attempts = 2;
    })
    .await;
    let watcher = broker.client("watcher").await;
    let mut dead = watcher.subscribe(&f("_sys.dead-letter.#")).await.unwrap();
    let worker = broker.client("worker").await;
    let mut q = worker
        .queue_subscribe(&f("jobs"), &g("w"), 1)
        .await
        .unwrap();
    let requester = broker.client("req").await;
    let request =
        tokio::spawn(async move { requester.request(&t("jobs"), "doomed", DEADLINE).await });
    for attempt in 1..=2 {
        let d = next(&mut q).await.unwrap();
        assert_eq!(d.message().attempt(), attempt);
        d.nack_confirmed(true).await.unwrap();
    }
    let letter = next(&mut dead).await.unwrap();
    assert_eq!(letter.topic(), "_sys.dead-letter.w");
    assert_eq!(&letter.payload()[..], b"doomed");
    assert_eq!(letter.headers()["x-attempts"], "2");
    assert_eq!(letter.headers()["x-original-topic"], "jobs");
    assert!(letter.headers()["x-dead-letter-reason"].contains("attempts"));
    let err = request.await.unwrap().unwrap_err();
    assert!(matches!(err, RequestError::DeadLettered { .. }), "{err}");

    worker
        .publish_confirmed(&t("jobs"), "rejected")
        .await
        .unwrap();
    next(&mut q)
        .await
        .unwrap()
        .nack_confirmed(false)
        .await
        .unwrap();
    let letter = next(&mut dead).await.unwrap();
    assert_eq!(
        letter.headers()["x-dead-letter-reason"],
        "rejected by the consumer"
    );
    let stats = watcher.stats().await.unwrap();
    assert_eq!(
        stats
            .queues
            .iter()
            .find(|q| q.topic == "jobs")
            .unwrap()
            .dead_lettered,
        2
    );
    broker.shutdown().await;
}

/// With a concurrency limit of 1, task starts are strictly FIFO even across
/// workers of different speeds.
#[tokio::test]
async fn concurrency_one_starts_tasks_in_publish_order_across_uneven_workers() {
    let broker = TestBroker::start_with(|c| c.queue.concurrency = 1).await;
    let (tx, mut starts) = tokio::sync::mpsc::channel(64);
    for (name, delay) in [("fast", 1u64), ("slow", 15)] {
        let c = broker.client(name).await;
        let mut q = c.queue_subscribe(&f("fifo"), &g("w"), 5).await.unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _keep = c;
            while let Some(d) = next(&mut q).await {
                tx.send(body(&d)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(delay)).await;
                d.ack().unwrap();
            }
        });
    }
    let publisher = broker.client("pub").await;
    for i in 0..10 {
        publisher
            .publish_confirmed(&t("fifo"), i.to_string())
            .await
            .unwrap();
    }
    let mut order = Vec::new();
    for _ in 0..10 {
        order.push(
            tokio::time::timeout(DEADLINE, starts.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let expected: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(order, expected);
    broker.shutdown().await;
}

#[tokio::test]
async fn cancel_a_queued_request_and_an_in_flight_one() {
    let broker = TestBroker::start().await;
    let worker = broker.client("worker").await;
    let mut q = worker
        .queue_subscribe(&f("jobs"), &g("w"), 1)
        .await
        .unwrap();
    let requester = broker.client("req").await;
    let running = requester
        .submit(&t("jobs"), "running", DEADLINE)
        .await
        .unwrap();
    let held = next(&mut q).await.unwrap();
    let queued = requester
        .submit(&t("jobs"), "queued", DEADLINE)
        .await
        .unwrap();
    let started = Instant::now();
    requester.cancel(queued.message_id()).await.unwrap();
    println!("cancelling a queued task took {:?}", started.elapsed());
    let err = queued.reply().await.unwrap_err();
    assert!(matches!(err, RequestError::Cancelled { .. }), "{err}");

    requester.cancel(running.message_id()).await.unwrap();
    assert!(matches!(
        running.reply().await.unwrap_err(),
        RequestError::Cancelled { .. }
    ));
    // The holder was told; its result is discarded.
    assert!(matches!(held.reply("late"), Ok(())));
    assert_eq!(
        held.ack_confirmed().await.unwrap_err(),
        AckError::UnknownDelivery {
            delivery_id: held.delivery_id()
        }
    );
    assert!(
        requester.cancel(held.message().id()).await.is_err(),
        "finished ids are unknown"
    );
    broker.shutdown().await;
}

/// Publishes 200 tasks while the only member holds its one credit, then lets it
/// drain: with a bound of 100 it sees exactly the tasks the policy keeps.
async fn burst_of_200(policy: OverflowPolicy) -> (Vec<String>, Vec<Result<u64, PublishError>>) {
    let broker = TestBroker::start_with(|c| {
        c.queue.max_len = 100;
        c.queue.overflow = policy;
    })
    .await;
    let worker = broker.client("worker").await;
    let mut q = worker
        .queue_subscribe(&f("burst"), &g("w"), 1)
        .await
        .unwrap();
    let publisher = broker.client("pub").await;
    publisher
        .publish_confirmed(&t("burst"), "blocker")
        .await
        .unwrap();
    let blocker = next(&mut q).await.unwrap();
    let mut results = Vec::new();
    for i in 0..200 {
        results.push(
            publisher
                .publish_confirmed(&t("burst"), i.to_string())
                .await,
        );
    }
    blocker.ack().unwrap();
    let mut got = Vec::new();
    while let Some(d) = eventbus_harness::next_within(&mut q, Duration::from_millis(200)).await {
        got.push(body(&d));
        d.ack().unwrap();
    }
    broker.shutdown().await;
    (got, results)
}

#[tokio::test]
async fn drop_oldest_keeps_the_last_100_of_200_in_order() {
    let (got, results) = burst_of_200(OverflowPolicy::DropOldest).await;
    assert!(results.iter().all(Result::is_ok));
    let expected: Vec<String> = (100..200).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn drop_incoming_keeps_the_first_100_of_200() {
    let (got, _) = burst_of_200(OverflowPolicy::DropIncoming).await;
    let expected: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn reject_fails_the_101st_publish_naming_the_queue_and_its_limit() {
    let (got, results) = burst_of_200(OverflowPolicy::Reject).await;
    assert!(results[..100].iter().all(Result::is_ok));
    let err = results[100].clone().unwrap_err();
    match &err {
        PublishError::QueueFull {
            topic,
            group,
            max_len,
        } => {
            assert_eq!(
                (topic.as_str(), group.as_str(), *max_len),
                ("burst", "w", 100)
            );
        }
        other => panic!("expected QueueFull, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("burst") && text.contains("100"), "{text}");
    assert_eq!(got.len(), 100);
}

/// Found by `chaos::slow_consumer_under_a_burst`: a plain subscriber on the
/// same topic used to make a publish the queue refused look accepted.
#[tokio::test]
async fn a_publish_a_full_queue_refuses_reaches_no_plain_subscriber_either() {
    let broker = TestBroker::start_with(|c| {
        c.queue.max_len = 1;
        c.queue.overflow = OverflowPolicy::Reject;
    })
    .await;
    let worker = broker.client("worker").await;
    let mut q = worker
        .queue_subscribe(&f("jobs"), &g("w"), 1)
        .await
        .unwrap();
    let watcher = broker.client("watcher").await;
    let mut all = watcher.subscribe(&f("jobs")).await.unwrap();
    let publisher = broker.client("pub").await;
    for body in ["held", "queued"] {
        publisher.publish_confirmed(&t("jobs"), body).await.unwrap();
        assert_eq!(next(&mut all).await.unwrap().payload(), body.as_bytes());
    }
    let _held = next(&mut q).await.unwrap();
    let refused = publisher.publish_confirmed(&t("jobs"), "refused").await;
    assert!(
        matches!(refused, Err(PublishError::QueueFull { max_len: 1, .. })),
        "{refused:?}"
    );
    publisher
        .publish_confirmed(&t("other"), "marker")
        .await
        .unwrap();
    let mut marker = watcher.subscribe(&f("other")).await.unwrap();
    publisher
        .publish_confirmed(&t("other"), "marker")
        .await
        .unwrap();
    next(&mut marker).await.unwrap();
    assert!(
        eventbus_harness::next_within(&mut all, Duration::from_millis(50))
            .await
            .is_none(),
        "the refused message reached the plain subscriber"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn block_waits_for_room_without_stalling_others_then_times_out() {
    let broker = TestBroker::start_with(|c| {
        c.queue.max_len = 1;
        c.queue.overflow = OverflowPolicy::Block;
        c.queue.block_timeout_ms = 300;
    })
    .await;
    let worker = broker.client("worker").await;
    let mut q = worker.queue_subscribe(&f("b"), &g("w"), 1).await.unwrap();
    let publisher = broker.client("pub").await;
    publisher.publish_confirmed(&t("b"), "0").await.unwrap();
    let first = next(&mut q).await.unwrap();
    publisher.publish_confirmed(&t("b"), "1").await.unwrap();
    let p2 = publisher.clone();
    let blocked = tokio::spawn(async move { p2.publish_confirmed(&t("b"), "2").await });
    // Everyone else carries on meanwhile.
    let other = broker.client("other").await;
    let mut s = other.subscribe(&f("chat")).await.unwrap();
    other.publish_confirmed(&t("chat"), "hi").await.unwrap();
    assert_eq!(&next(&mut s).await.unwrap().payload()[..], b"hi");
    assert!(!blocked.is_finished());
    first.ack().unwrap();
    assert!(blocked.await.unwrap().is_ok(), "room was made in time");

    // Nobody drains now: the next blocked publish times out with a typed error.
    let err = publisher.publish_confirmed(&t("b"), "3").await.unwrap_err();
    assert!(
        matches!(err, PublishError::BlockTimeout { max_len: 1, .. }),
        "{err}"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn per_pattern_overrides_apply_to_matching_queues_only() {
    let broker = TestBroker::start_with(|c| {
        let mut o = QueueOverride::default();
        o.filter = "tight.#".into();
        o.max_len = Some(1);
        c.queue.overrides.push(o);
    })
    .await;
    let worker = broker.client("worker").await;
    let mut tight = worker
        .queue_subscribe(&f("tight.q"), &g("w"), 1)
        .await
        .unwrap();
    let _loose = worker
        .queue_subscribe(&f("loose.q"), &g("w"), 1)
        .await
        .unwrap();
    let p = broker.client("pub").await;
    for topic in ["tight.q", "tight.q", "loose.q", "loose.q", "loose.q"] {
        p.publish_confirmed(&t(topic), "x").await.unwrap();
    }
    let err = p.publish_confirmed(&t("tight.q"), "x").await.unwrap_err();
    assert!(
        matches!(err, PublishError::QueueFull { max_len: 1, .. }),
        "{err}"
    );
    p.publish_confirmed(&t("loose.q"), "x").await.unwrap();
    next(&mut tight).await.unwrap();
    broker.shutdown().await;
}

#[tokio::test]
async fn direct_task_of_a_dead_collector_goes_to_its_capability_group() {
    let broker = TestBroker::start().await;
    let connect = |id: &str| {
        Client::connect(
            broker
                .options(id)
                .capability("process")
                .reconnect(eventbus::ReconnectPolicy::disabled()),
        )
    };
    let one = connect("procmond-1").await.unwrap();
    let two = connect("procmond-2").await.unwrap();
    let filter = f("control.collector.task.process");
    let _q1 = one
        .queue_subscribe(&filter, &g("process"), 1)
        .await
        .unwrap();
    let mut q2 = two
        .queue_subscribe(&filter, &g("process"), 1)
        .await
        .unwrap();
    let mut inbox = one.direct_deliveries();
    let agent = broker.client("agent").await;
    let task = tokio::spawn(async move {
        agent
            .request_direct(
                one_id(),
                &t("control.collector.task.process"),
                "scan",
                DEADLINE,
            )
            .await
    });
    let held = next(&mut inbox).await.unwrap();
    assert_eq!(&held.message().payload()[..], b"scan");
    // procmond-1 dies mid-task: its connection ends with the task unsettled
    // (dropping the delivery first would nack it, handing it back).
    one.close().await;
    drop(held);
    drop(inbox);
    drop(_q1);
    let d = next(&mut q2).await.unwrap();
    assert_eq!(
        (&d.message().payload()[..], d.message().attempt()),
        (&b"scan"[..], 2)
    );
    d.reply("result").unwrap();
    let reply = task.await.unwrap().unwrap();
    assert_eq!(reply.source(), "procmond-2");
    broker.shutdown().await;
}

fn one_id() -> &'static eventbus::ClientId {
    static ID: std::sync::OnceLock<eventbus::ClientId> = std::sync::OnceLock::new();
    ID.get_or_init(|| eventbus::ClientId::new("procmond-1").unwrap())
}

#[tokio::test]
async fn slow_consumers_are_counted_and_announced() {
    use bytes::BytesMut;
    use eventbus::codec::FrameCodec;
    use eventbus::proto::{self, Frame, frame::Kind};
    use tokio::io::AsyncWriteExt;

    let broker = TestBroker::start_with(|c| {
        c.subscriber.max_len = 4;
        c.subscriber.hard_cap = 100_000;
    })
    .await;
    let watcher = broker.client("watcher").await;
    let mut events = watcher.subscribe(&f("_sys.slow-consumer")).await.unwrap();
    // A subscriber that never reads its socket: the kernel buffer fills, then the
    // broker's bounded buffer for it.
    let mut sleeper = eventbus::transport::connect(broker.socket()).await.unwrap();
    let mut wire = BytesMut::new();
    let codec = FrameCodec::default();
    let hello = proto::Hello {
        protocol_version: proto::PROTOCOL_VERSION,
        client_id: "sleeper".into(),
        ..Default::default()
    };
    let subscribe = proto::Subscribe {
        seq: 1,
        sid: 1,
        filter: "firehose".into(),
        ..Default::default()
    };
    for kind in [Kind::Hello(hello), Kind::Subscribe(subscribe)] {
        codec
            .encode(&Frame { kind: Some(kind) }, &mut wire)
            .unwrap();
    }
    sleeper.write_all(&wire).await.unwrap();
    let p = broker.client("pub").await;
    eventbus_harness::wait_until("the sleeper is subscribed", DEADLINE, || async {
        p.stats()
            .await
            .unwrap()
            .connections
            .iter()
            .any(|c| c.id == "sleeper")
            && p.publish_confirmed(&t("firehose"), "probe").await.is_ok()
            && p.stats()
                .await
                .unwrap()
                .topics
                .iter()
                .any(|t| t.topic == "firehose" && t.delivered > 0)
    })
    .await
    .unwrap();
    let big = vec![0u8; 64 * 1024];
    let mut sent = 0;
    let event = loop {
        p.publish_confirmed(&t("firehose"), big.clone())
            .await
            .unwrap();
        sent += 1;
        assert!(
            sent < 10_000,
            "no slow-consumer event after {sent} messages"
        );
        if let Some(event) =
            eventbus_harness::next_within(&mut events, Duration::from_millis(1)).await
        {
            break event;
        }
    };
    let payload = String::from_utf8_lossy(event.payload()).into_owned();
    assert!(payload.contains("\"client_id\":\"sleeper\""), "{payload}");
    let stats = watcher.stats().await.unwrap();
    let sleeper_stats = stats
        .connections
        .iter()
        .find(|c| c.id == "sleeper")
        .unwrap();
    assert!(sleeper_stats.dropped > 0 && sleeper_stats.slow_consumer_events >= 1);
    assert!(sleeper_stats.outbound_depth <= 4);
    drop(sleeper);
}
