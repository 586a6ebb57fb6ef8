//! Queue dispatch through the real path, in one process: an embedded
//! [`Broker`] on a Unix socket, one publisher and three queue-group members
//! with prefetch 64 that ack every task. One iteration publishes a batch of
//! 64-byte tasks (confirming the last) and waits until the members have acked
//! them all: publish → route → group queue → round robin → deliver → ack.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventbus::{Broker, BrokerConfig, Client, ClientOptions, GroupName, Topic, TopicFilter};
use futures_core::Stream;
use tokio::sync::Notify;

const BATCH: u64 = 1_000;

fn dispatch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::Builder::new()
        .prefix("ebb")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let socket = dir.path().join("b.sock");
    let (publisher, acked, progress) = runtime.block_on(async {
        let broker = Broker::bind(BrokerConfig::new(&socket)).expect("bind");
        tokio::spawn(broker.run(std::future::pending()));
        let acked = Arc::new(AtomicU64::new(0));
        let progress = Arc::new(Notify::new());
        for _ in 0..3 {
            let member = Client::connect(ClientOptions::new(&socket))
                .await
                .expect("connect");
            let mut tasks = member
                .queue_subscribe(
                    &TopicFilter::new("bench.tasks").unwrap(),
                    &GroupName::new("workers").unwrap(),
                    64,
                )
                .await
                .expect("join");
            let (acked, progress) = (acked.clone(), progress.clone());
            tokio::spawn(async move {
                let _keep = member;
                while let Some(task) = poll_fn(|cx| Pin::new(&mut tasks).poll_next(cx)).await {
                    task.ack().expect("ack");
                    acked.fetch_add(1, Ordering::Relaxed);
                    progress.notify_one();
                }
            });
        }
        let publisher = Client::connect(ClientOptions::new(&socket))
            .await
            .expect("connect");
        (publisher, acked, progress)
    });
    let topic = Topic::new("bench.tasks").unwrap();
    let payload = bytes::Bytes::from(vec![7u8; 64]);
    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(BATCH));
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_millis(500));
    group.bench_function("queue_group_3_members_1000_tasks", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iterations {
                    let target = acked.load(Ordering::Relaxed) + BATCH;
                    for _ in 1..BATCH {
                        publisher.publish(&topic, payload.clone()).expect("publish");
                    }
                    publisher
                        .publish_confirmed(&topic, payload.clone())
                        .await
                        .expect("confirm");
                    while acked.load(Ordering::Relaxed) < target {
                        progress.notified().await;
                    }
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
