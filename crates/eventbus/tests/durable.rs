//! Durable queues seen from the client, over real sockets: results fetched
//! by request id (now, later, after a restart; only by their requester),
//! and a publish the journal cannot store refused with a typed error.

use std::time::Duration;

use eventbus::client::{PublishError, ResultError};
use eventbus::{BrokerConfig, OverflowPolicy};
use eventbus_harness::{DEADLINE, TestBroker};
use tempfile::TempDir;

const TASKS: &str = "control.collector.task.process";

/// A broker whose every queue is durable, journaling under `data`.
async fn durable_broker(data: &TempDir, configure: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
    TestBroker::start_with(|c| {
        durable(data)(c);
        configure(c);
    })
    .await
}

/// The configuration of a broker whose every queue is durable, journaling
/// under `data`.
fn durable(data: &TempDir) -> impl FnOnce(&mut BrokerConfig) {
    let dir = data.path().to_owned();
    move |c| {
        c.data_dir = Some(dir);
        c.queue.durable = true;
    }
}

/// A worker of group `process` that answers every task with `done:<payload>`.
async fn spawn_worker(broker: &TestBroker, id: &str) -> tokio::task::JoinHandle<()> {
    let worker = broker.client(id).await;
    let mut tasks = worker.queue_subscribe(TASKS, "process", 8).await.unwrap();
    tokio::spawn(async move {
        while let Some(task) = tasks.next().await {
            let answer = format!("done:{}", String::from_utf8_lossy(task.message().payload()));
            let _ = task.reply(answer);
        }
        drop(worker);
    })
}

#[tokio::test]
async fn a_durable_requests_reply_is_fetched_by_its_id_by_its_requester_only() {
    let data = eventbus_harness::embedded::short_temp_dir();
    let broker = durable_broker(&data, |_| {}).await;
    let worker = spawn_worker(&broker, "procmond-1").await;
    let agent = broker.client("agent").await;

    let pending = agent.submit(TASKS, "scan /etc", DEADLINE).await.unwrap();
    let id = pending.message_id();
    let reply = pending.reply().await.unwrap();
    assert_eq!(&reply.payload()[..], b"done:scan /etc");

    // Kept: the same reply again, at once, with its responder.
    let again = agent.result(id, Duration::ZERO).await.unwrap();
    assert_eq!(
        (&again.payload()[..], again.source()),
        (&b"done:scan /etc"[..], "procmond-1")
    );

    // Another client id may not read it; an id never used is unknown.
    let other = broker.client("other").await;
    assert_eq!(
        other.result(id, Duration::ZERO).await,
        Err(ResultError::NotRequester { message_id: id })
    );
    assert_eq!(
        agent.result(id + 1_000_000, Duration::ZERO).await,
        Err(ResultError::UnknownMessage {
            message_id: id + 1_000_000
        })
    );
    worker.abort();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_result_waits_for_a_reply_still_to_come_and_survives_a_restart() {
    let data = eventbus_harness::embedded::short_temp_dir();
    let broker = durable_broker(&data, |_| {}).await;
    // The group exists (durable groups outlive their members) but nobody
    // works: the request waits in the queue.
    let first = broker.client("procmond-1").await;
    drop(first.queue_subscribe(TASKS, "process", 8).await.unwrap());
    first.close().await;

    let agent = broker.client("agent").await;
    let pending = agent.submit(TASKS, "scan /var", DEADLINE).await.unwrap();
    let id = pending.message_id();
    drop(pending);
    // Not there yet: a zero wait is a timeout at once.
    assert!(matches!(
        agent.result(id, Duration::ZERO).await,
        Err(ResultError::Timeout { message_id, .. }) if message_id == id
    ));

    // A waiting `result`, then a worker: the reply reaches the waiter.
    let waiting = {
        let agent = agent.clone();
        tokio::spawn(async move { agent.result(id, DEADLINE).await })
    };
    let worker = spawn_worker(&broker, "procmond-2").await;
    let reply = waiting.await.unwrap().unwrap();
    assert_eq!(&reply.payload()[..], b"done:scan /var");
    worker.abort();
    agent.close().await;

    // After a restart on the same journal the reply is still there.
    let broker = broker.restart_with(durable(&data)).await;
    let agent = broker.client("agent").await;
    let kept = agent.result(id, Duration::ZERO).await.unwrap();
    assert_eq!(
        (&kept.payload()[..], kept.source()),
        (&b"done:scan /var"[..], "procmond-2")
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_publish_beyond_the_disk_budget_is_refused_as_storage_and_the_queue_keeps_what_it_has() {
    let data = eventbus_harness::embedded::short_temp_dir();
    let broker = durable_broker(&data, |c| {
        c.queue.overflow = OverflowPolicy::Reject;
        // Room for a few 4 KiB messages only.
        c.durability.max_disk_bytes = 32 * 1024;
    })
    .await;
    let holder = broker.client("procmond-1").await;
    drop(holder.queue_subscribe(TASKS, "process", 1).await.unwrap());
    holder.close().await;

    let agent = broker.client("agent").await;
    let payload = vec![b'x'; 4096];
    let mut stored = 0;
    let refusal = loop {
        match agent.publish_confirmed(TASKS, payload.clone()).await {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 64, "the disk budget never refused");
    };
    assert!(
        matches!(&refusal, PublishError::Storage { reason } if !reason.is_empty()),
        "{refusal:?}"
    );
    assert!(stored > 0, "nothing fit in the budget");
    // What was confirmed is all still queued.
    let stats = agent.stats().await.unwrap();
    let queue = stats.queues.iter().find(|q| q.group == "process").unwrap();
    assert!(queue.durable);
    assert_eq!(queue.depth, stored);
    let totals = queue.totals.as_ref().unwrap();
    assert_eq!(totals.accepted, stored);
    assert_eq!(totals.rejected, 1);
    broker.shutdown().await;
}
