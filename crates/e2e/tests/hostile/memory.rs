//! The broker's memory as the target: a ceiling on everything queued, and
//! no small message pinning a large read buffer.

use std::pin::Pin;

use e2e::ClusterExt as _;
use e2e::hostile::{message, rss_bytes};
use e2e::{BrokerBuilder, Cluster, CollectorBuilder, CollectorKind, DEADLINE};
use eventbus::proto::{self, ErrorCode, frame::Kind};
use eventbus::{Topic, TopicFilter};
use futures_core::Stream;

use super::{raw, victim_tasks_complete};

/// The ceiling of the scenario: below one client's 64 MiB quota, so one
/// attacker reaches it.
const CEILING: usize = 32 << 20;
/// Bytes of each of the attacker's payloads.
const BIG: usize = 900_000;

/// Proves the broker-wide memory ceiling (`memory.max_queued_bytes`, set to
/// 32 MiB here, under one client's 64 MiB quota): an attacker fills a
/// queue nobody acks with 900 kB messages, then 1 kB ones, then empty
/// ones, each time until it is refused with `MemoryPressure`, and the
/// queues hold no more than the ceiling. While the broker is at its
/// ceiling a victim's task already in flight is answered and a plain event
/// reaches its subscriber, but a new task is refused the same way (the
/// ceiling is the broker's last line, behind the per-client quotas); once
/// a consumer drains the attacker's queue, the victim's tasks run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_the_ceiling_stops_queued_publishes_while_everything_else_flows() {
    let config = format!("[memory]\nmax_queued_bytes = {CEILING}\n");
    let cluster = Cluster::start_with(BrokerBuilder::new().config_toml(config)).await;
    let _collector = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
        .await;
    let driver = cluster.driver().await;
    // A worker of the victim's that answers when the scenario says so.
    let mut worker = raw(cluster.socket(), "worker").await;
    worker
        .subscribe(1, "jobs.victim", "workers", 1)
        .await
        .unwrap();
    let jobs = Topic::new("jobs.victim").unwrap();
    let in_flight = driver
        .client()
        .submit(&jobs, "in flight", DEADLINE)
        .await
        .unwrap();
    let held = worker
        .next_delivery(DEADLINE)
        .await
        .expect("the victim's task");
    let mut events = driver
        .client()
        .subscribe(&TopicFilter::new("events.#").unwrap())
        .await
        .unwrap();

    let mut attacker = raw(cluster.socket(), "mallory").await;
    attacker.subscribe(1, "bulk.jobs", "bulk", 1).await.unwrap();
    // Big messages until one does not fit, then ever smaller ones, so the
    // queues end up as full as the ceiling allows.
    let mut accepted = 0;
    let mut refusals = Vec::new();
    for size in [BIG, 1_000, 0] {
        let payload = bytes::Bytes::from(vec![b'x'; size]);
        let refusal = loop {
            match attacker.publish_to("bulk.jobs", payload.clone()).await {
                Ok(_) => accepted += 1,
                Err(r) => break r,
            }
            assert!(
                accepted <= 2 * CEILING / BIG + 2_000,
                "{accepted} accepted, no refusal"
            );
        };
        refusals.push(refusal.code());
    }
    assert_eq!(refusals, [Some(ErrorCode::MemoryPressure); 3]);
    let mut observer = raw(cluster.socket(), "observer").await;
    let stats = observer.stats().await.unwrap();
    let queued: u64 = stats.queues.iter().map(|q| q.bytes).sum();
    assert!(queued <= CEILING as u64, "{queued} bytes waiting");

    let mut victim = raw(cluster.socket(), "victim").await;
    victim
        .publish_to("events.victim", "still flows")
        .await
        .unwrap();
    let next = std::future::poll_fn(|cx| Pin::new(&mut events).poll_next(cx));
    let event = tokio::time::timeout(DEADLINE, next).await.unwrap().unwrap();
    assert_eq!(event.payload(), "still flows");
    let task = victim.publish_to("jobs.victim", "refused").await;
    assert_eq!(
        task.as_ref().err().and_then(|r| r.code()),
        Some(ErrorCode::MemoryPressure),
        "a new task at the ceiling: {task:?}"
    );
    let request = held.message.unwrap_or_default();
    let seq = worker.next_seq();
    let reply = Kind::Reply(proto::Reply {
        correlation_id: request.correlation_id,
        delivery_id: held.delivery_id,
        message: Some(message("jobs.victim", "done")),
        seq,
    });
    worker
        .call(reply, seq)
        .await
        .expect("a reply at the ceiling");
    let answer = in_flight
        .reply()
        .await
        .expect("the task in flight is answered");
    assert_eq!(answer.payload(), "done");

    // A consumer drains the attacker's queue: the ceiling clears.
    let accepted = stats
        .queues
        .iter()
        .find(|q| q.group == "bulk")
        .map_or(0, |q| q.depth + q.in_flight);
    let mut drainer = raw(cluster.socket(), "drainer").await;
    attacker
        .send(Kind::Unsubscribe(proto::Unsubscribe { seq: 0, sid: 1 }))
        .await
        .unwrap();
    drainer
        .subscribe(1, "bulk.jobs", "bulk", 1000)
        .await
        .unwrap();
    for i in 1..=accepted {
        let d = drainer
            .next_delivery(DEADLINE)
            .await
            .expect("a queued message");
        // The last ack is confirmed: every ack before it is settled then.
        let seq = if i == accepted { drainer.next_seq() } else { 0 };
        let ack = Kind::Ack(proto::Ack {
            delivery_id: d.delivery_id,
            seq,
        });
        if seq == 0 {
            drainer.send(ack).await.unwrap();
        } else {
            drainer.call(ack, seq).await.unwrap();
        }
    }
    victim_tasks_complete(&driver, "after-drain", "procmond-1").await;
}

/// Pairs the pinning attacker sends: a queued small message and a large
/// one nobody keeps.
const PAIRS: usize = 2_000;
/// Bytes of the large message of each pair.
const LARGE: usize = 60_000;

/// Proves that a queued message never pins the read buffer it arrived in:
/// an attacker sends 2,000 pairs of a 10-byte message into a queue nobody
/// acks and a 60 kB message to a topic nobody reads (120 MB in all, of
/// which 20 kB are kept); the broker's RSS grows by less than 32 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_small_queued_messages_do_not_pin_read_buffers() {
    let cluster = Cluster::start().await;
    let mut attacker = raw(cluster.socket(), "mallory").await;
    attacker.subscribe(1, "bulk.jobs", "bulk", 1).await.unwrap();
    let pid = cluster.broker().pid();
    let before = rss_bytes(pid);
    let large = bytes::Bytes::from(vec![b'y'; LARGE]);
    let pairs = (0..PAIRS).flat_map(|_| {
        [
            Kind::Publish(proto::Publish {
                message: Some(message("bulk.jobs", "0123456789")),
                ..Default::default()
            }),
            Kind::Publish(proto::Publish {
                message: Some(message("events.nobody", large.clone())),
                ..Default::default()
            }),
        ]
    });
    attacker.send_all(pairs).await.unwrap();
    attacker.publish_to("events.barrier", "x").await.unwrap();
    let growth = rss_bytes(pid).saturating_sub(before);
    let mut observer = raw(cluster.socket(), "observer").await;
    let stats = observer.stats().await.unwrap();
    let depth = stats
        .queues
        .iter()
        .find(|q| q.group == "bulk")
        .map_or(0, |q| q.depth + q.in_flight);
    assert_eq!(depth, PAIRS as u64, "every small message is queued");
    println!(
        "figure: pinning: {PAIRS} queued messages of 10 bytes, broker RSS +{} MiB",
        growth >> 20
    );
    assert!(
        growth < 32 << 20,
        "{PAIRS} queued messages of 10 bytes grew the broker by {} MiB",
        growth >> 20
    );
}
