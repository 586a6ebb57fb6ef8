//! Queue groups, direct sends and request/reply over a real socket.

use std::time::Duration;

use eventbus::client::{AckError, RequestError};
use eventbus::{ClientId, GroupName, Topic, TopicFilter};
use eventbus_harness::{DEADLINE, TestBroker, next, quiet_for};

fn t(s: &str) -> Topic {
    Topic::new(s).unwrap()
}

fn f(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn g(s: &str) -> GroupName {
    GroupName::new(s).unwrap()
}

#[tokio::test]
async fn nine_tasks_to_three_idle_members_split_three_three_three() {
    let broker = TestBroker::start().await;
    let mut members = Vec::new();
    for i in 1..=3 {
        let c = broker.client(&format!("w{i}")).await;
        let q = c
            .queue_subscribe(&f("control.collector.task.process"), &g("process"), 3)
            .await
            .unwrap();
        members.push((c, q));
    }
    let publisher = broker.client("pub").await;
    for i in 0..9 {
        publisher
            .publish_confirmed(&t("control.collector.task.process"), format!("task-{i}"))
            .await
            .unwrap();
    }
    for (_, q) in &mut members {
        let mut got = Vec::new();
        for _ in 0..3 {
            let d = next(q).await.unwrap();
            got.push(d.message().id());
            d.ack_confirmed().await.unwrap();
        }
        assert_eq!(got.len(), 3);
        assert!(
            quiet_for(q, Duration::from_millis(30)).await,
            "exactly 3 each"
        );
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn member_without_credit_is_skipped_and_work_waits_in_the_queue() {
    let broker = TestBroker::start().await;
    let a = broker.client("a").await;
    let mut qa = a.queue_subscribe(&f("jobs"), &g("w"), 1).await.unwrap();
    let publisher = broker.client("pub").await;
    for i in 0..3 {
        publisher
            .publish_confirmed(&t("jobs"), format!("{i}"))
            .await
            .unwrap();
    }
    let first = next(&mut qa).await.unwrap();
    assert_eq!(&first.message().payload()[..], b"0");
    assert!(
        quiet_for(&mut qa, Duration::from_millis(30)).await,
        "no credit, nothing more"
    );
    let stats = publisher.stats().await.unwrap();
    let queue = stats.queues.iter().find(|q| q.topic == "jobs").unwrap();
    assert_eq!((queue.depth, queue.in_flight), (2, 1));
    first.ack().unwrap();
    let second = next(&mut qa).await.unwrap();
    assert_eq!(&second.message().payload()[..], b"1");
    broker.shutdown().await;
}

#[tokio::test]
async fn unsettled_deliveries_go_to_another_member_when_one_disconnects() {
    let broker = TestBroker::start().await;
    let a = broker.client("a").await;
    let mut qa = a.queue_subscribe(&f("jobs"), &g("w"), 5).await.unwrap();
    let publisher = broker.client("pub").await;
    publisher.publish_confirmed(&t("jobs"), "x").await.unwrap();
    let held = next(&mut qa).await.unwrap();
    assert_eq!(held.message().attempt(), 1);
    let b = broker.client("b").await;
    let mut qb = b.queue_subscribe(&f("jobs"), &g("w"), 5).await.unwrap();
    drop(held);
    drop(qa);
    a.close().await;
    let again = next(&mut qb).await.unwrap();
    assert_eq!(&again.message().payload()[..], b"x");
    assert_eq!(again.message().attempt(), 2);
    broker.shutdown().await;
}

#[tokio::test]
async fn acks_from_the_wrong_client_or_twice_are_refused() {
    let broker = TestBroker::start().await;
    let a = broker.client("a").await;
    let mut qa = a.queue_subscribe(&f("jobs"), &g("w"), 5).await.unwrap();
    broker
        .client("pub")
        .await
        .publish_confirmed(&t("jobs"), "x")
        .await
        .unwrap();
    let d = next(&mut qa).await.unwrap();
    d.ack_confirmed().await.unwrap();
    let again = d.ack_confirmed().await.unwrap_err();
    assert_eq!(
        again,
        AckError::UnknownDelivery {
            delivery_id: d.delivery_id()
        }
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn request_reply_carries_the_responder_id() {
    let broker = TestBroker::start().await;
    let responder = broker.client("responder-1").await;
    let mut q = responder
        .queue_subscribe(&f("svc.echo"), &g("echo"), 10)
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Some(d) = next(&mut q).await {
            let body = d.message().payload().clone();
            d.reply(body).unwrap();
        }
    });
    let requester = broker.client("req").await;
    let reply = requester
        .request(&t("svc.echo"), "ping", DEADLINE)
        .await
        .unwrap();
    assert_eq!(&reply.payload()[..], b"ping");
    assert_eq!(reply.source(), "responder-1");
    broker.shutdown().await;
}

#[tokio::test]
async fn plain_subscribers_can_answer_requests() {
    let broker = TestBroker::start().await;
    let responder = broker.client("r").await;
    let mut s = responder.subscribe(&f("svc.time")).await.unwrap();
    let r2 = responder.clone();
    tokio::spawn(async move {
        while let Some(m) = next(&mut s).await {
            r2.reply(&m, "now").unwrap();
        }
    });
    let reply = broker
        .client("q")
        .await
        .request(&t("svc.time"), "", DEADLINE)
        .await
        .unwrap();
    assert_eq!(&reply.payload()[..], b"now");
}

#[tokio::test]
async fn no_responders_fails_at_once_and_silence_times_out() {
    let broker = TestBroker::start().await;
    let c = broker.client("c").await;
    let started = std::time::Instant::now();
    let err = c
        .request(&t("nobody.home"), "x", DEADLINE)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RequestError::NoResponders {
            topic: "nobody.home".into()
        }
    );
    assert!(started.elapsed() < DEADLINE / 2, "not a timeout");

    let silent = broker.client("silent").await;
    let _q = silent
        .queue_subscribe(&f("slow"), &g("s"), 1)
        .await
        .unwrap();
    let err = c
        .request(&t("slow"), "x", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(err, RequestError::Timeout(Duration::from_millis(100)));
    broker.shutdown().await;
}

#[tokio::test]
async fn direct_sends_reach_only_the_named_client() {
    let broker = TestBroker::start().await;
    let one = broker.client("procmond-1").await;
    let two = broker.client("procmond-2").await;
    let mut inbox1 = one.direct_deliveries();
    let mut inbox2 = two.direct_deliveries();
    let sender = broker.client("agent").await;
    let id = ClientId::new("procmond-1").unwrap();
    sender
        .send_direct(&id, &t("control.collector.task.process"), "only-you")
        .await
        .unwrap();
    let d = next(&mut inbox1).await.unwrap();
    assert_eq!(&d.message().payload()[..], b"only-you");
    assert_eq!(d.message().source(), "agent");
    d.ack().unwrap();
    assert!(quiet_for(&mut inbox2, Duration::from_millis(30)).await);

    let reply_task = tokio::spawn(async move {
        let d = next(&mut inbox1).await.unwrap();
        d.reply("done").unwrap();
    });
    let reply = sender
        .request_direct(&id, &t("control.collector.task.process"), "task", DEADLINE)
        .await
        .unwrap();
    assert_eq!(
        (reply.source(), &reply.payload()[..]),
        ("procmond-1", &b"done"[..])
    );
    reply_task.await.unwrap();

    let ghost = ClientId::new("ghost").unwrap();
    let err = sender.send_direct(&ghost, &t("x"), "?").await.unwrap_err();
    assert_eq!(
        err,
        RequestError::NoSuchClient {
            client_id: "ghost".into()
        }
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_queued_task_fails_its_requester_with_cancelled() {
    let broker = TestBroker::start().await;
    let worker = broker.client("w").await;
    let mut q = worker
        .queue_subscribe(&f("jobs"), &g("w"), 1)
        .await
        .unwrap();
    let requester = broker.client("r").await;
    let busy = requester.clone();
    let first = tokio::spawn(async move { busy.request(&t("jobs"), "first", DEADLINE).await });
    let held = next(&mut q).await.unwrap();
    let second_client = requester.clone();
    let second =
        tokio::spawn(async move { second_client.request(&t("jobs"), "second", DEADLINE).await });
    let admin = broker.client("admin").await;
    eventbus_harness::wait_until("the second request is queued", DEADLINE, || async {
        let s = admin.stats().await.unwrap();
        s.queues.iter().any(|q| q.depth == 1)
    })
    .await
    .unwrap();
    // The requester does not see its request's id; ids are assigned in order, so
    // the queued request is the next message after the held one that cancels.
    // Only its publisher may cancel it: another client is refused.
    let first_id = held.message().id();
    let mut cancelled = false;
    for id in first_id + 1..first_id + 4 {
        assert!(admin.cancel(id).await.is_err(), "not the publisher");
        if requester.cancel(id).await.is_ok() {
            cancelled = true;
            break;
        }
    }
    assert!(cancelled);
    let err = second.await.unwrap().unwrap_err();
    assert!(matches!(err, RequestError::Cancelled { .. }), "{err}");
    held.reply("ok").unwrap();
    assert_eq!(&first.await.unwrap().unwrap().payload()[..], b"ok");
    let err = admin.cancel(999_999).await.unwrap_err();
    assert_eq!(
        err,
        eventbus::client::CallError::UnknownMessage {
            message_id: 999_999
        }
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn direct_inbox_is_bounded_and_a_missing_inbox_answers_at_once() {
    let broker = TestBroker::start_with(|c| c.max_direct_in_flight = 2).await;
    let target = broker.client("slow").await;
    let mut inbox = target.direct_deliveries();
    let sender = broker.client("agent").await;
    let id = ClientId::new("slow").unwrap();
    for _ in 0..2 {
        sender.send_direct(&id, &t("task"), "x").await.unwrap();
    }
    let err = sender.send_direct(&id, &t("task"), "x").await.unwrap_err();
    assert!(
        matches!(
            &err,
            RequestError::Publish(eventbus::client::PublishError::QueueFull { max_len: 2, .. })
        ),
        "{err}"
    );
    next(&mut inbox)
        .await
        .unwrap()
        .ack_confirmed()
        .await
        .unwrap();
    sender.send_direct(&id, &t("task"), "x").await.unwrap();

    let no_inbox = broker.client("no-inbox").await;
    let started = std::time::Instant::now();
    let err = sender
        .request_direct(no_inbox.client_id(), &t("task"), "x", DEADLINE)
        .await
        .unwrap_err();
    assert!(matches!(err, RequestError::NoResponders { .. }), "{err}");
    assert!(started.elapsed() < DEADLINE / 2);
    broker.shutdown().await;
}
