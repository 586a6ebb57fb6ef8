//! What belongs to whom, for every client with the default configuration:
//! only a publisher cancels its messages, only a recipient answers a
//! request, `x-` headers are the broker's, a plain publish cannot make an
//! honest responder answer someone else, and only a requester gets the
//! kept result of its durable request.

use std::pin::Pin;

use e2e::ClusterExt as _;
use e2e::hostile::{Answer, Refusal, message};
use e2e::{
    BrokerBuilder, Cluster, CollectorBuilder, CollectorKind, DEADLINE, RunOptions, TaskReply,
    task_ids,
};
use eventbus::TopicFilter;
use eventbus::proto::{self, ErrorCode, frame::Kind};
use futures_core::Stream;

use super::{assert_refused, raw, victim_tasks_complete};

/// The ids an attacker tries: every message id up to (and a little past)
/// one it just got itself, since the broker hands them out in order.
fn guesses(own_id: u64) -> std::ops::RangeInclusive<u64> {
    1..=own_id + 16
}

/// Proves that only the publisher of a message may cancel it: while 20 of
/// a victim's tasks wait in the process queue (one collector, 100 ms per
/// task), an attacker sends `Cancel` for every message id up to past its
/// own latest; none is accepted (each is `PermissionDenied` or
/// `UnknownMessage`) and all 20 tasks complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_only_the_publisher_cancels_its_tasks() {
    let cluster = Cluster::start().await;
    let _collector = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1).delay_ms(100))
        .await;
    let driver = cluster.driver().await;
    let history = e2e::History::new();
    let run = tokio::spawn({
        let driver = driver.clone();
        let history = history.clone();
        async move {
            let options = RunOptions::default().concurrency(20);
            driver
                .run_tasks(
                    CollectorKind::Process,
                    task_ids("victim", 20),
                    options,
                    &history,
                )
                .await
        }
    });
    e2e::wait_until("the victim's tasks are queued", DEADLINE, || async {
        driver
            .queue_stats(CollectorKind::Process)
            .await
            .is_some_and(|q| q.depth >= 10)
    })
    .await
    .unwrap();
    let mut attacker = raw(cluster.socket(), "mallory").await;
    let own = attacker.publish_to("events.probe", "x").await.unwrap();
    let mut accepted = Vec::new();
    let mut refusals = Vec::new();
    for id in guesses(own) {
        let seq = attacker.next_seq();
        let cancel = Kind::Cancel(proto::Cancel {
            seq,
            message_id: id,
        });
        match attacker.call(cancel, seq).await {
            Ok(_) => accepted.push(id),
            Err(r) => refusals.push(r.code()),
        }
    }
    let report = run.await.unwrap();
    assert!(
        accepted.is_empty(),
        "the attacker cancelled {} messages: {accepted:?}; the victim lost {} of 20 tasks",
        accepted.len(),
        report.failures.len()
    );
    assert!(
        refusals.iter().all(|c| matches!(
            c,
            Some(ErrorCode::PermissionDenied | ErrorCode::UnknownMessage)
        )),
        "{refusals:?}"
    );
    assert!(refusals.contains(&Some(ErrorCode::PermissionDenied)));
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.replies.len(), 20);
}

/// Proves that a request is answered only by whom it was delivered to: while
/// `procmond-1` works on a victim's request (500 ms), an attacker that never
/// received it sends a `Reply` with `delivery_id` 0 for every correlation id
/// up to past its own latest message id; every one is refused and the
/// victim gets the collector's real answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_a_forged_reply_does_not_answer_anothers_request() {
    let cluster = Cluster::start().await;
    let real = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1).delay_ms(500))
        .await;
    let driver = cluster.driver().await;
    let kind = CollectorKind::Process;
    let pending = driver
        .client()
        .submit(&kind.task_topic(), kind.payload("victim"), DEADLINE)
        .await
        .unwrap();
    let mut attacker = raw(cluster.socket(), "mallory").await;
    let own = attacker.publish_to("events.probe", "x").await.unwrap();
    let mut accepted = Vec::new();
    for correlation_id in guesses(own) {
        let seq = attacker.next_seq();
        let reply = Kind::Reply(proto::Reply {
            correlation_id,
            delivery_id: 0,
            message: Some(message("forged", r#"{"forged":true}"#)),
            seq,
        });
        match attacker.call(reply, seq).await {
            Ok(_) => accepted.push(correlation_id),
            Err(Refusal::Closed) => panic!("the attacker was disconnected"),
            Err(Refusal::Error(_)) => {}
        }
    }
    let answer = pending.reply().await;
    let honest = answer
        .as_ref()
        .ok()
        .and_then(|m| TaskReply::parse(m).ok())
        .is_some_and(|r| r.collector_pid == real.pid());
    assert!(
        accepted.is_empty() && honest,
        "the attacker's replies to {accepted:?} were accepted; the victim got {answer:?}"
    );
}

/// Proves that `x-` headers are the broker's: a confirmed publish with
/// `x-dead-letter-reason` and one with `x-attempts` are refused with
/// `PermissionDenied`, and so is a fire-and-forget one with
/// `x-original-topic` (an `Error` without `seq`); a subscriber sees none of
/// them, while a message with an ordinary header goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_x_headers_are_the_brokers() {
    let cluster = Cluster::start().await;
    let mut watcher = raw(cluster.socket(), "watcher").await;
    watcher.subscribe(1, "events.#", "", 0).await.unwrap();
    let mut attacker = raw(cluster.socket(), "mallory").await;
    let with = |key: &str| {
        let mut m = message("events.task.failed", "x");
        m.headers.insert(key.to_owned(), "forged".to_owned());
        proto::Publish {
            message: Some(m),
            ..Default::default()
        }
    };
    let reason = attacker
        .publish_confirmed(with("x-dead-letter-reason"))
        .await;
    let attempts = attacker.publish_confirmed(with("x-attempts")).await;
    attacker
        .send(Kind::Publish(with("x-original-topic")))
        .await
        .unwrap();
    attacker.publish_confirmed(with("trace-id")).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let d = watcher.next_delivery(DEADLINE).await.expect("a delivery");
        let headers = d.message.unwrap_or_default().headers;
        if headers.contains_key("trace-id") {
            break;
        }
        seen.push(headers);
    }
    assert!(
        seen.is_empty(),
        "the subscriber got forged headers: {seen:?}"
    );
    assert_refused(reason, ErrorCode::PermissionDenied, "x-dead-letter-reason");
    assert_refused(attempts, ErrorCode::PermissionDenied, "x-attempts");
    let errors = attacker.take(|f| matches!(&f.kind, Some(Kind::Error(e)) if e.seq == 0));
    assert_eq!(errors.len(), 1, "the fire-and-forget refusal: {errors:?}");
}

/// Proves that `reply_to` and `correlation_id` are stripped from a publish
/// that is not a request, so an honest responder cannot be made to answer
/// someone else: while a victim's request waits on `procmond-1` (500 ms),
/// an attacker publishes plain messages to an honest echo service (an
/// ordinary client that replies to every request it receives), each
/// naming the victim as `reply_to` with a guessed correlation id. The echo
/// service sees no request among them, and the victim gets the collector's
/// answer, not an echo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_reply_to_on_a_plain_publish_is_stripped() {
    let cluster = Cluster::start().await;
    let real = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1).delay_ms(500))
        .await;
    let driver = cluster.driver().await;
    let echo = cluster.driver().await;
    let mut inbox = echo
        .client()
        .subscribe(&TopicFilter::new("svc.echo").unwrap())
        .await
        .unwrap();
    let kind = CollectorKind::Process;
    let pending = driver
        .client()
        .submit(&kind.task_topic(), kind.payload("victim"), DEADLINE)
        .await
        .unwrap();
    let victim = driver.client().client_id().as_str().to_owned();
    let mut attacker = raw(cluster.socket(), "mallory").await;
    let own = attacker.publish_to("events.probe", "x").await.unwrap();
    let guesses = guesses(own);
    let count = guesses.clone().count();
    for correlation_id in guesses {
        let mut m = message("svc.echo", "echo me");
        m.reply_to.clone_from(&victim);
        m.correlation_id = correlation_id;
        attacker
            .publish_confirmed(proto::Publish {
                message: Some(m),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut requests = 0;
    for _ in 0..count {
        let next = std::future::poll_fn(|cx| Pin::new(&mut inbox).poll_next(cx));
        let msg = tokio::time::timeout(DEADLINE, next)
            .await
            .expect("the echo service gets every message")
            .expect("its subscription stays open");
        if msg.is_request() {
            requests += 1;
            let _ = echo.client().reply(&msg, "echo");
        }
    }
    let answer = pending.reply().await;
    let honest = answer
        .as_ref()
        .ok()
        .and_then(|m| TaskReply::parse(m).ok())
        .is_some_and(|r| r.collector_pid == real.pid());
    assert!(
        requests == 0 && honest,
        "{requests} of {count} plain publishes reached the echo service as requests; \
         the victim got {answer:?}"
    );
    victim_tasks_complete(&driver, "after", "procmond-1").await;
}

/// Proves that the reply to a durable request is given only to its
/// requester (issue 14 for `ResultRequest`): with durable queue groups, an
/// agent submits a request to `procmond-1` (500 ms per task). While it is
/// in flight, and again once its reply is kept, an attacker asks for that
/// result (`PermissionDenied` both times, even when it offers to wait),
/// and for ids nobody used (`UnknownMessage`). The agent gets the reply
/// live, then the same reply again by id; other tasks still complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_a_durable_requests_result_is_only_its_requesters() {
    let data = tempfile::tempdir().unwrap();
    let config = format!(
        "data_dir = {:?}\n[queue]\ndurable = true\n",
        data.path().display().to_string()
    );
    let cluster = Cluster::start_with(BrokerBuilder::new().config_toml(config)).await;
    let _real = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1).delay_ms(500))
        .await;
    let driver = cluster.driver().await;
    let kind = CollectorKind::Process;
    let mut agent = raw(cluster.socket(), "agent").await;
    let seq = agent.next_seq();
    let submit = Kind::Publish(proto::Publish {
        seq,
        mode: proto::PublishMode::RequestConfirmed as i32,
        message: Some(message(kind.task_topic().as_str(), kind.payload("durable"))),
        timeout_ms: DEADLINE.as_millis() as u32,
        ..Default::default()
    });
    let Ok(Answer::Ok(id)) = agent.call(submit, seq).await else {
        panic!("the durable request is accepted with its id");
    };
    let mut attacker = raw(cluster.socket(), "mallory").await;
    assert_refused(
        attacker.result(id, 60_000).await,
        ErrorCode::PermissionDenied,
        "the agent's result while in flight",
    );
    for unknown in [0, id + 1, id + 1000, u64::MAX] {
        assert_refused(
            attacker.result(unknown, 0).await,
            ErrorCode::UnknownMessage,
            "a result nobody asked for",
        );
    }

    let Ok(Answer::Reply(live)) = agent.answer(seq).await else {
        panic!("the agent gets its reply");
    };
    let live = live.message.expect("a reply carries a message");
    assert_eq!(live.source, "procmond-1");
    assert_refused(
        attacker.result(id, 0).await,
        ErrorCode::PermissionDenied,
        "the agent's kept result",
    );
    let kept = agent
        .result(id, 0)
        .await
        .expect("the requester gets its kept result by id")
        .message
        .expect("a reply carries a message");
    assert_eq!(
        (kept.source.as_str(), &kept.payload),
        ("procmond-1", &live.payload)
    );
    victim_tasks_complete(&driver, "after", "procmond-1").await;
}
