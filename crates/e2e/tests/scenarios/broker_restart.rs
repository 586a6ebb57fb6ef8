//! The broker restarting under running collectors.

use std::time::Duration;

use e2e::ClusterExt as _;
use e2e::{Cluster, CollectorBuilder, CollectorKind, DEADLINE, wait::POLL_INTERVAL};
use tokio::time::Instant;

/// Proves that collectors survive a broker restart: after a graceful broker
/// restart on the same socket, every collector reconnects on its own (the
/// process keeps running) and, within the deadline, a new task of each kind
/// gets a reply from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_reconnect_after_a_broker_restart_and_serve_new_tasks() {
    let mut cluster = Cluster::start().await;
    let mut collectors = Vec::new();
    for kind in CollectorKind::ALL {
        collectors.push(cluster.add_collector(CollectorBuilder::new(kind, 1)).await);
    }
    {
        let driver = cluster.driver().await;
        for c in &collectors {
            let reply = driver
                .request_task(c.kind(), &format!("before-{}", c.id()), DEADLINE)
                .await
                .expect("served before the restart");
            assert_eq!(reply.collector_id, c.id());
        }
    }
    let old_pid = cluster.broker().pid();
    cluster.broker_mut().restart().await;
    assert_ne!(cluster.broker().pid(), old_pid);

    let driver = cluster.driver().await;
    for c in &mut collectors {
        let end = Instant::now() + DEADLINE;
        let mut attempt = 0;
        loop {
            if let Some(status) = c.try_exit() {
                panic!(
                    "{} exited ({status}) after the broker restart instead of reconnecting",
                    c.id()
                );
            }
            attempt += 1;
            let task_id = format!("after-{}-{attempt}", c.id());
            let outcome = driver
                .request_task(c.kind(), &task_id, Duration::from_secs(2))
                .await;
            if outcome.is_ok_and(|reply| reply.collector_id == c.id()) {
                break;
            }
            assert!(
                Instant::now() < end,
                "{} served no task within {DEADLINE:?} of the restart",
                c.id()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}
