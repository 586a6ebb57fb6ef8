//! Durable queues seen from the client, over real sockets: results fetched
//! by request id (now, later, after a restart; only by their requester), a
//! pending durable request that outlives its connection and the broker, and
//! a publish the journal cannot store refused with a typed error.

use std::time::Duration;

use eventbus::client::{PublishError, RequestError, ResultError};
use eventbus::{BrokerConfig, Delivery, OverflowPolicy};
use eventbus_harness::{DEADLINE, FaultProxy, TestBroker, wait_until};
use tempfile::TempDir;
use tokio::sync::mpsc;

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

/// Makes group `process` exist with no member: durable groups outlive
/// their members, so requests wait in its queue.
async fn idle_group(broker: &TestBroker) {
    let first = broker.client("procmond-1").await;
    drop(first.queue_subscribe(TASKS, "process", 8).await.unwrap());
    first.close().await;
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
    idle_group(&broker).await;

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

/// Waits for the client whose `events` these are to reconnect.
async fn reconnected(events: &mut tokio::sync::broadcast::Receiver<eventbus::ConnectionEvent>) {
    loop {
        match tokio::time::timeout(DEADLINE, events.recv()).await {
            Ok(Ok(eventbus::ConnectionEvent::Reconnected { .. })) => return,
            Ok(Ok(eventbus::ConnectionEvent::Closed)) => panic!("the client closed"),
            Ok(_) => {}
            Err(_) => panic!("no reconnection within {DEADLINE:?}"),
        }
    }
}

/// A slow worker of group `process`: it holds every first attempt of a task
/// unanswered (reporting it on the returned channel) and answers later
/// attempts with `done:<payload>` — a collector that was still busy when
/// the broker went away, and runs the redelivered task after it came back.
async fn spawn_slow_worker(
    broker: &TestBroker,
    id: &str,
) -> (tokio::task::JoinHandle<()>, mpsc::Receiver<u64>) {
    let worker = broker.client(id).await;
    let mut tasks = worker.queue_subscribe(TASKS, "process", 8).await.unwrap();
    let (held_tx, held_rx) = mpsc::channel(8);
    let task = tokio::spawn(async move {
        let mut held: Vec<Delivery> = Vec::new();
        while let Some(task) = tasks.next().await {
            if task.message().attempt() == 1 {
                let _ = held_tx.send(task.message().id()).await;
                held.push(task);
                continue;
            }
            let answer = format!("done:{}", String::from_utf8_lossy(task.message().payload()));
            let _ = task.reply(answer);
        }
        drop(worker);
    });
    (task, held_rx)
}

#[tokio::test]
async fn a_durable_pending_request_outlives_a_broker_restart_and_gets_the_reply_that_comes_after_it()
 {
    let data = eventbus_harness::embedded::short_temp_dir();
    let broker = durable_broker(&data, |_| {}).await;
    let (worker, mut held) = spawn_slow_worker(&broker, "procmond-1").await;
    let agent = broker.client("agent").await;
    let mut events = agent.connection_events();

    let pending = agent.submit(TASKS, "scan /etc", DEADLINE).await.unwrap();
    assert!(pending.is_durable());
    let id = pending.message_id();
    let reply = tokio::spawn(pending.reply());
    assert_eq!(held.recv().await, Some(id), "the worker holds the task");

    // The broker goes away while the task runs, and comes back on its journal.
    let broker = broker.restart_with(durable(&data)).await;
    reconnected(&mut events).await;
    // The worker, reconnected, runs the redelivered task; the pending
    // request hears the answer.
    let reply = reply.await.unwrap().unwrap();
    assert_eq!(
        (&reply.payload()[..], reply.source()),
        (&b"done:scan /etc"[..], "procmond-1")
    );
    // Kept for its requester only.
    let other = broker.client("other").await;
    assert_eq!(
        other.result(id, Duration::ZERO).await,
        Err(ResultError::NotRequester { message_id: id })
    );
    worker.abort();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_durable_pending_request_gets_the_reply_that_came_while_its_client_was_away() {
    let data = eventbus_harness::embedded::short_temp_dir();
    let broker = durable_broker(&data, |_| {}).await;
    let worker = broker.client("procmond-1").await;
    let mut tasks = worker.queue_subscribe(TASKS, "process", 8).await.unwrap();
    let watcher = broker.client("watcher").await;
    // The agent reaches the broker through a link that can be cut, and
    // notices a silent broker after 3 × 50 ms.
    let proxy_dir = eventbus_harness::embedded::short_temp_dir();
    let link = FaultProxy::start(&proxy_dir.path().join("p.sock"), broker.socket(), 15)
        .await
        .unwrap();
    let agent = eventbus::Client::connect(
        eventbus::ClientOptions::new(link.socket())
            .client_id(eventbus::ClientId::new("agent").unwrap())
            .heartbeat(Duration::from_millis(50), 3)
            .connect_timeout(Duration::from_millis(500))
            .request_timeout(DEADLINE),
    )
    .await
    .unwrap();

    let pending = agent.submit(TASKS, "scan /var", DEADLINE).await.unwrap();
    assert!(pending.is_durable());
    let reply = tokio::spawn(pending.reply());
    let task = tokio::time::timeout(DEADLINE, tasks.next())
        .await
        .unwrap()
        .unwrap();

    // Cut off: the broker drops the silent agent (and forgets its request).
    link.partition();
    wait_until("the broker dropped the agent", DEADLINE, || async {
        let stats = watcher.stats().await.unwrap();
        !stats.connections.iter().any(|c| c.id == "agent")
    })
    .await
    .unwrap();
    // The answer comes while the agent is away: the broker keeps it.
    task.reply("done:scan /var").unwrap();
    wait_until("the broker settled the task", DEADLINE, || async {
        let stats = watcher.stats().await.unwrap();
        stats
            .queues
            .iter()
            .any(|q| q.group == "process" && q.acked == 1)
    })
    .await
    .unwrap();
    assert!(!reply.is_finished(), "the pending request waits on");

    link.heal();
    let reply = reply.await.unwrap().unwrap();
    assert_eq!(
        (&reply.payload()[..], reply.source()),
        (&b"done:scan /var"[..], "procmond-1")
    );
    agent.close().await;
    broker.shutdown().await;
}

#[tokio::test]
async fn a_plain_request_into_a_durable_group_outlives_a_broker_restart() {
    let data = eventbus_harness::embedded::short_temp_dir();
    let broker = durable_broker(&data, |_| {}).await;
    let (worker, mut held) = spawn_slow_worker(&broker, "procmond-1").await;
    let agent = broker.client("agent").await;
    let mut events = agent.connection_events();

    // `request`, not `submit`: no message id in the caller's hands.
    let requester = agent.clone();
    let reply = tokio::spawn(async move { requester.request(TASKS, "scan /opt", DEADLINE).await });
    let id = tokio::time::timeout(DEADLINE, held.recv())
        .await
        .unwrap()
        .unwrap();

    let broker = broker.restart_with(durable(&data)).await;
    reconnected(&mut events).await;
    // The worker runs the redelivered task; the request hears the answer.
    let reply = reply.await.unwrap().unwrap();
    assert_eq!(
        (&reply.payload()[..], reply.source()),
        (&b"done:scan /opt"[..], "procmond-1")
    );
    // It was kept under the id the worker saw, for the requester only.
    let kept = agent.result(id, Duration::ZERO).await.unwrap();
    assert_eq!(&kept.payload()[..], b"done:scan /opt");
    worker.abort();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_request_the_broker_does_not_keep_fails_at_once_when_the_broker_goes() {
    let data = eventbus_harness::embedded::short_temp_dir();
    // Durable broker, but this queue is kept in memory.
    let in_memory = |c: &mut BrokerConfig| {
        durable(&data)(c);
        c.queue.durable = false;
    };
    let broker = TestBroker::start_with(in_memory).await;
    let (worker, mut held) = spawn_slow_worker(&broker, "procmond-1").await;
    let agent = broker.client("agent").await;

    let pending = agent.submit(TASKS, "scan /tmp", DEADLINE).await.unwrap();
    assert!(!pending.is_durable());
    let id = pending.message_id();
    let reply = tokio::spawn(pending.reply());
    assert_eq!(held.recv().await, Some(id));
    // A plain `request` too.
    let requester = agent.clone();
    let plain = tokio::spawn(async move { requester.request(TASKS, "scan /run", DEADLINE).await });
    assert!(held.recv().await.is_some());

    let broker = broker.restart_with(in_memory).await;
    // Closed, long before the request's deadline: nothing to wait for.
    assert_eq!(reply.await.unwrap(), Err(RequestError::Closed));
    assert_eq!(plain.await.unwrap(), Err(RequestError::Closed));
    assert_eq!(
        agent.result(id, Duration::ZERO).await,
        Err(ResultError::UnknownMessage { message_id: id })
    );
    worker.abort();
    broker.shutdown().await;
}

#[tokio::test]
async fn a_result_waiter_hears_that_the_request_was_cancelled() {
    let data = eventbus_harness::embedded::short_temp_dir();
    let broker = durable_broker(&data, |_| {}).await;
    // The durable group exists, nobody works: the request waits.
    idle_group(&broker).await;
    let agent = broker.client("agent").await;
    let pending = agent.submit(TASKS, "scan /srv", DEADLINE).await.unwrap();
    let id = pending.message_id();

    let waiting = agent.result(id, DEADLINE);
    tokio::pin!(waiting);
    // Polled once, its `ResultRequest` is queued ahead of the cancel on the
    // same connection, so the broker has the waiter before the cancel.
    tokio::select! {
        biased;
        early = &mut waiting => panic!("answered before the cancel: {early:?}"),
        () = std::future::ready(()) => {}
    }
    agent.cancel(id).await.unwrap();
    assert_eq!(
        waiting.await,
        Err(ResultError::Cancelled { message_id: id })
    );
    assert_eq!(
        pending.reply().await,
        Err(RequestError::Cancelled { message_id: id })
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn a_durable_pending_request_keeps_its_own_deadline_across_a_restart() {
    let data = eventbus_harness::embedded::short_temp_dir();
    let broker = durable_broker(&data, |_| {}).await;
    idle_group(&broker).await;
    let agent = broker.client("agent").await;
    let timeout = Duration::from_secs(2);
    let pending = agent.submit(TASKS, "scan /opt", timeout).await.unwrap();
    assert!(pending.is_durable());
    let reply = tokio::spawn(pending.reply());
    // Back on its journal, the broker still holds the task; nobody works.
    let broker = broker.restart_with(durable(&data)).await;
    assert_eq!(reply.await.unwrap(), Err(RequestError::Timeout(timeout)));
    broker.shutdown().await;
}
