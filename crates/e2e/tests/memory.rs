//! Memory pressure on a collector process: squeezed (a lowered `RLIMIT_AS`), a
//! collector sheds the tasks whose scratch memory does not fit, to the other
//! member of its group, and keeps serving everything else; relieved, it takes
//! big tasks again.
#![cfg(target_os = "linux")]
#![forbid(unsafe_code)]

use std::time::Duration;

use e2e::ClusterExt as _;
use e2e::collector::SQUEEZE_HEADROOM;
use e2e::{
    Cluster, CollectorBuilder, CollectorKind, CollectorProcess, DEADLINE, Driver, TaskReply,
    task_ids, wait_until,
};
use eventbus::ClientId;

const KIND: CollectorKind = CollectorKind::Process;
/// Four times the headroom: never fits in a squeezed collector.
const BIG: u64 = 4 * SQUEEZE_HEADROOM;
/// Well within the headroom.
const SMALL: u64 = 4 << 20;

/// A task with `scratch` bytes of working memory, through the queue group.
async fn queued(driver: &Driver, id: &str, scratch: u64) -> TaskReply {
    let message = driver
        .client()
        .request(
            &KIND.task_topic(),
            KIND.payload_with_scratch(id, scratch),
            DEADLINE,
        )
        .await
        .unwrap_or_else(|e| panic!("task {id}: {e}"));
    TaskReply::parse(&message).unwrap()
}

/// A task with `scratch` bytes of working memory, sent to `collector` only.
async fn direct(
    driver: &Driver,
    collector: &CollectorProcess,
    id: &str,
    scratch: u64,
) -> TaskReply {
    let target = ClientId::new(collector.id()).unwrap();
    let message = driver
        .client()
        .request_direct(
            &target,
            &KIND.task_topic(),
            KIND.payload_with_scratch(id, scratch),
            DEADLINE,
        )
        .await
        .unwrap_or_else(|e| panic!("task {id} to {}: {e}", collector.id()));
    TaskReply::parse(&message).unwrap()
}

fn stderr(collector: &CollectorProcess) -> String {
    std::fs::read_to_string(&collector.logs().stderr).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squeezed_collector_sheds_what_does_not_fit_and_serves_the_rest() {
    let cluster = Cluster::start().await;
    let collector =
        |n| CollectorBuilder::new(KIND, n).heartbeat_interval(Duration::from_millis(500));
    // Joined first: round-robin offers it the first big task, and each next one
    // (the other member answered the one before).
    let mut squeezed = cluster.add_collector(collector(1)).await;
    let roomy = cluster.add_collector(collector(2)).await;
    let driver = cluster.driver().await;
    for id in task_ids("warm", 2) {
        assert!(queued(&driver, &id, SMALL).await.is_ok());
    }

    let squeeze = squeezed
        .squeeze_memory(SQUEEZE_HEADROOM)
        .expect("squeeze the collector");
    assert_eq!(squeeze.limit, squeeze.vm_size + SQUEEZE_HEADROOM);
    eprintln!(
        "squeezed {}: VmSize {} KiB, soft RLIMIT_AS {} KiB (was {:?})",
        squeezed.id(),
        squeeze.vm_size >> 10,
        squeeze.limit >> 10,
        squeeze.previous
    );

    // Every big task completes, answered by the collector with room.
    for id in task_ids("big", 4) {
        let reply = queued(&driver, &id, BIG).await;
        assert!(reply.is_ok(), "{reply:?}");
        assert_eq!(reply.source, roomy.id(), "{reply:?}");
    }
    let shed = format!("shedding load: cannot reserve {BIG} bytes");
    wait_until("the squeezed collector logs shedding", DEADLINE, || async {
        stderr(&squeezed).contains(&shed)
    })
    .await
    .unwrap();
    let queue = driver.queue_stats(KIND).await.expect("the process group");
    assert!(queue.nacked >= 1, "{queue:?}");

    // Small tasks still run on the squeezed collector, also mixed with big ones.
    for id in task_ids("small", 3) {
        let reply = direct(&driver, &squeezed, &id, SMALL).await;
        assert!(reply.is_ok(), "{reply:?}");
        assert_eq!(reply.source, squeezed.id());
    }
    for (n, id) in task_ids("mixed", 6).iter().enumerate() {
        let reply = queued(&driver, id, if n % 2 == 0 { BIG } else { SMALL }).await;
        assert!(reply.is_ok(), "{reply:?}");
    }
    assert!(
        squeezed.try_exit().is_none(),
        "the squeezed collector exited"
    );
    let log = stderr(&squeezed);
    assert!(
        !log.contains("lost the broker"),
        "heartbeats stopped:\n{log}"
    );
    assert!(!log.contains("cannot settle"), "{log}");

    // Relieved, it takes big tasks again.
    squeezed
        .relieve_memory(squeeze)
        .expect("relieve the collector");
    let reply = direct(&driver, &squeezed, "big-after", BIG).await;
    assert!(reply.is_ok(), "{reply:?}");
    assert_eq!(reply.source, squeezed.id());
    assert!(squeezed.try_exit().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relieving_a_restarted_collector_is_a_no_op() {
    let cluster = Cluster::start().await;
    let mut collector = cluster.add_collector(CollectorBuilder::new(KIND, 1)).await;
    let squeeze = collector.squeeze_memory(SQUEEZE_HEADROOM).unwrap();
    collector.restart().await;
    assert_ne!(collector.pid(), squeeze.pid);
    collector.relieve_memory(squeeze).unwrap();
    let driver = cluster.driver().await;
    let reply = direct(&driver, &collector, "big", BIG).await;
    assert!(reply.is_ok(), "{reply:?}");
}
