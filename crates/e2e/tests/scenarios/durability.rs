//! Durable queues across broker crashes: the real `broker` with `--durable
//! --data-dir`, killed with SIGKILL and started again on the same journal.
//!
//! What a confirmation promises (`docs/durability.md`): a task whose publish
//! was confirmed is never lost, whatever moment the broker dies at; a
//! consumer sees a task again only if the broker died before its ack was
//! journaled, and then with an attempt number above 1; an ack the broker
//! confirmed is never undone; the persisted counters add up.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::ClusterExt as _;
use e2e::rng::{Rng, seed_from_env};
use e2e::{
    BrokerBuilder, Cluster, CollectorBuilder, CollectorKind, DEADLINE, History, Order, TaskReply,
    wait_until,
};
use eventbus::client::{PublishError, ResultError};
use eventbus::{Client, ClientOptions};
use tempfile::TempDir;

/// The queue the crash-loop publishers and consumers use.
const JOBS: &str = "jobs.scan";

/// A broker whose every queue is durable, journaling in `data`.
fn durable_broker(data: &TempDir) -> BrokerBuilder {
    BrokerBuilder::new()
        .arg("--durable")
        .arg("--data-dir")
        .arg(data.path())
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What the consumers saw beyond the shared history: each delivery's
/// attempt number, and the tasks whose ack the broker confirmed.
#[derive(Debug, Default)]
struct Seen {
    /// Every delivery: (task id, attempt).
    deliveries: Vec<(String, u32)>,
    /// Tasks whose ack the broker confirmed, with the delivery count then.
    confirmed_acks: HashMap<String, usize>,
}

/// A consumer of group `workers` that records every delivery and acks it
/// (confirmed), across broker restarts (the client reconnects and restores
/// its subscription), until `stop`.
async fn consumer(
    cluster: &Cluster,
    id: String,
    history: History,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let client = cluster.client(&id).await;
    let mut tasks = client
        .queue_subscribe(JOBS, "workers", 8)
        .await
        .expect("subscribe");
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok(Some(task)) =
                tokio::time::timeout(Duration::from_millis(50), tasks.next()).await
            else {
                continue;
            };
            let task_id = String::from_utf8_lossy(task.message().payload()).into_owned();
            let attempt = task.message().attempt();
            history.delivered(&task_id, &id, now_us());
            seen.lock()
                .unwrap()
                .deliveries
                .push((task_id.clone(), attempt));
            // Sent: the task is done as far as this consumer knows, even if
            // the broker dies before it journals the ack.
            history.acked(&task_id);
            match task.ack_confirmed().await {
                Ok(()) => {
                    let mut seen = seen.lock().unwrap();
                    let count = seen
                        .deliveries
                        .iter()
                        .filter(|(t, _)| *t == task_id)
                        .count();
                    seen.confirmed_acks.insert(task_id, count);
                }
                Err(e) => history.error(&task_id, format!("ack: {e}")),
            }
        }
        client.close().await;
    })
}

/// A publisher that sends tasks `<name>-<n>` one at a time, each confirmed,
/// until `stop`; a task whose confirmation fails is not retried (it may or
/// may not have been stored: the history allows either).
async fn publisher(
    cluster: &Cluster,
    name: String,
    history: History,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    let client = cluster.client(&name).await;
    tokio::spawn(async move {
        let mut confirmed = 0;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let task_id = format!("{name}-{n}");
            history.published(&task_id);
            match client.publish_confirmed(JOBS, task_id.clone()).await {
                Ok(_) => {
                    history.accepted(&task_id);
                    confirmed += 1;
                }
                Err(e) => {
                    history.error(&task_id, format!("publish: {e}"));
                    // The broker is down: do not spin while it restarts.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        client.close().await;
        confirmed
    })
}

/// Proves that confirmed durable tasks survive ten SIGKILLs of the broker at
/// random moments while 4 publishers submit and 3 consumers work: after the
/// last restart every confirmed task has been worked, a task is seen again
/// only with an attempt above 1 and never after an ack the broker
/// confirmed, and the persisted totals add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_durable_tasks_survive_ten_broker_kills() {
    let seed = seed_from_env();
    eprintln!("seed {seed} (EVENTBUS_SEED replays it)");
    let mut rng = Rng::new(seed);
    let data = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start_with(durable_broker(&data)).await;
    // The group exists, and is durable, before anything is published.
    let history = History::new();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let stop_publishers = Arc::new(AtomicBool::new(false));
    let mut consumers = Vec::new();
    for i in 1..=3 {
        consumers.push(
            consumer(
                &cluster,
                format!("worker-{i}"),
                history.clone(),
                seen.clone(),
                stop_consumers.clone(),
            )
            .await,
        );
    }
    let mut publishers = Vec::new();
    for i in 1..=4 {
        publishers.push(
            publisher(
                &cluster,
                format!("pub{i}"),
                history.clone(),
                stop_publishers.clone(),
            )
            .await,
        );
    }

    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(300))).await;
        cluster.broker_mut().kill();
        tokio::time::sleep(Duration::from_millis(rng.below(50))).await;
        cluster.broker_mut().restart().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_publishers.store(true, Ordering::Relaxed);
    let mut confirmed = 0;
    for p in publishers {
        confirmed += p.await.unwrap();
    }
    assert!(confirmed > 0, "nothing was confirmed");

    // Every confirmed task is worked (acked at least once).
    let observer = cluster.client("observer").await;
    wait_until("every confirmed task acked", DEADLINE, || {
        let verdict = history.check(Order::Any);
        async move { verdict.lost.is_empty() }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", history.check(Order::Any)));
    // And the queue is empty for the broker too.
    wait_until("the queue drained", DEADLINE, || {
        let observer = observer.clone();
        async move {
            let stats = observer.stats().await.unwrap_or_default();
            stats
                .queues
                .iter()
                .any(|q| q.group == "workers" && q.depth == 0 && q.in_flight == 0)
        }
    })
    .await
    .unwrap();
    stop_consumers.store(true, Ordering::Relaxed);
    for c in consumers {
        c.await.unwrap();
    }

    let verdict = history.check(Order::Any);
    assert!(verdict.lost.is_empty(), "{verdict}");
    assert!(verdict.unexpected.is_empty(), "{verdict}");
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    // A task seen twice: every later delivery is a redelivery (attempt > 1),
    // and none came after an ack the broker confirmed.
    let mut deliveries: HashMap<&str, Vec<u32>> = HashMap::new();
    for (task, attempt) in &seen.deliveries {
        deliveries.entry(task).or_default().push(*attempt);
    }
    for (task, attempts) in &deliveries {
        for later in &attempts[1..] {
            assert!(
                *later > 1,
                "{task} delivered again with attempt {later}: {attempts:?}"
            );
        }
        if let Some(&count) = seen.confirmed_acks.get(*task) {
            assert_eq!(
                attempts.len(),
                count,
                "{task} delivered again after its ack was confirmed: {attempts:?}"
            );
        }
    }
    let again: HashSet<&&str> = deliveries
        .iter()
        .filter(|(_, a)| a.len() > 1)
        .map(|(t, _)| t)
        .collect();
    for task in &verdict.duplicated_after_ack {
        assert!(again.contains(&task.as_str()), "{task}");
    }

    // The persisted totals add up across the ten crashes.
    let stats = observer.stats().await.unwrap();
    let queue = stats
        .queues
        .iter()
        .find(|q| q.group == "workers")
        .expect("the durable queue is still there");
    let totals = queue.totals.as_ref().expect("durable queues have totals");
    assert!(queue.durable);
    assert!(
        totals.accepted >= confirmed as u64,
        "{totals:?} < {confirmed}"
    );
    assert_eq!(
        totals.accepted,
        totals.acked
            + totals.dead_lettered
            + totals.evicted
            + totals.cancelled
            + queue.depth
            + queue.in_flight,
        "{totals:?}"
    );
    eprintln!(
        "10 kills: {confirmed} confirmed, {} delivered ({} tasks seen twice), totals {totals:?}",
        seen.deliveries.len(),
        again.len()
    );
    observer.close().await;
}

/// Proves that ordering persists: one publisher, one consumer taking one
/// task at a time, the broker killed twice mid-stream; tasks start in the
/// order they were confirmed, the redelivered one first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_queue_keeps_its_order_across_broker_kills() {
    let data = tempfile::tempdir().unwrap();
    let mut cluster =
        Cluster::start_with(durable_broker(&data).config_toml("[queue]\nconcurrency = 1\n")).await;
    let history = History::new();
    let consumer_client = cluster.client("worker").await;
    let mut tasks = consumer_client
        .queue_subscribe(JOBS, "workers", 1)
        .await
        .unwrap();
    let publisher = cluster.client("publisher").await;
    // 30 tasks confirmed before anyone works on them.
    for n in 0..30 {
        let id = format!("t-{n:02}");
        history.published(&id);
        publisher.publish_confirmed(JOBS, id.clone()).await.unwrap();
        history.accepted(&id);
    }
    let mut done = 0;
    let mut key = 0u64;
    let mut kills = 0;
    while done < 30 {
        let Ok(Some(task)) = tokio::time::timeout(DEADLINE, tasks.next()).await else {
            panic!("no task within {DEADLINE:?} after {done} done");
        };
        let id = String::from_utf8_lossy(task.message().payload()).into_owned();
        key += 1;
        history.delivered(&id, "worker", key);
        if kills < 2 && (done == 10 || done == 20) {
            // Killed while this task is in flight: it comes back first.
            kills += 1;
            cluster.broker_mut().kill();
            cluster.broker_mut().restart().await;
            continue;
        }
        if task.ack_confirmed().await.is_ok() {
            history.acked(&id);
            done += 1;
        }
    }
    let verdict = history.check(Order::Fifo);
    assert!(verdict.lost.is_empty(), "{verdict}");
    assert!(verdict.out_of_order.is_empty(), "{verdict}");
    assert!(verdict.duplicated_after_ack.is_empty(), "{verdict}");
    consumer_client.close().await;
}

/// Proves that a requester gets its collector's reply by id after the
/// broker was killed while the collector worked on the task: the task is
/// redelivered after the restart, and `Client::result` hands over the reply
/// the broker kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_reaches_its_requester_by_id_after_the_broker_is_killed_mid_task() {
    let data = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start_with(durable_broker(&data)).await;
    let kind = CollectorKind::Process;
    let _collector = cluster
        .add_collector(CollectorBuilder::new(kind, 1).delay_ms(300))
        .await;
    let options: ClientOptions = cluster.client_options("agent");
    let agent = Client::connect(options.clone()).await.unwrap();
    let pending = agent
        .submit(
            kind.task_topic(),
            kind.payload("scan-after-crash"),
            DEADLINE,
        )
        .await
        .unwrap();
    let id = pending.message_id();
    // The collector holds the task (it takes 300 ms): the broker dies.
    wait_until("the task in flight", DEADLINE, || {
        let agent = agent.clone();
        async move {
            agent.stats().await.is_ok_and(|s| {
                s.queues
                    .iter()
                    .any(|q| q.topic == kind.task_topic().as_str() && q.in_flight == 1)
            })
        }
    })
    .await
    .unwrap();
    cluster.broker_mut().kill();
    drop(pending);
    cluster.broker_mut().restart().await;

    let reply = agent
        .result(id, DEADLINE)
        .await
        .expect("the kept reply, by id");
    let reply = TaskReply::parse(&reply).unwrap();
    assert_eq!(reply.task_id.as_deref(), Some("scan-after-crash"));
    assert_eq!(reply.collector_id, "procmond-1");
    // Kept: asked again, it comes at once; another client may not have it.
    assert!(agent.result(id, Duration::ZERO).await.is_ok());
    let other = cluster.client("someone-else").await;
    assert_eq!(
        other.result(id, Duration::ZERO).await.unwrap_err(),
        ResultError::NotRequester { message_id: id }
    );
    agent.close().await;
}

/// Proves that a requester keeps its `PendingRequest` across a SIGKILL of
/// the broker: the request went into a durable group (`is_durable`), the
/// collector holds it (300 ms a task) when the broker dies; after the
/// restart the task is redelivered, and the same `reply()` the requester
/// was waiting on returns the collector's reply, once, before its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_request_gets_its_reply_across_a_broker_kill() {
    let data = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start_with(durable_broker(&data)).await;
    let kind = CollectorKind::Process;
    let _collector = cluster
        .add_collector(CollectorBuilder::new(kind, 1).delay_ms(300))
        .await;
    let agent = Client::connect(cluster.client_options("agent"))
        .await
        .unwrap();
    let pending = agent
        .submit(
            kind.task_topic(),
            kind.payload("kept-across-kill"),
            DEADLINE,
        )
        .await
        .unwrap();
    assert!(pending.is_durable(), "confirmed into a durable group");
    let id = pending.message_id();
    let reply = tokio::spawn(pending.reply());
    wait_until("the task in flight", DEADLINE, || {
        let agent = agent.clone();
        async move {
            agent.stats().await.is_ok_and(|s| {
                s.queues
                    .iter()
                    .any(|q| q.topic == kind.task_topic().as_str() && q.in_flight == 1)
            })
        }
    })
    .await
    .unwrap();
    let before = cluster.broker().pid();
    cluster.broker_mut().kill();
    cluster.broker_mut().restart().await;
    assert_ne!(cluster.broker().pid(), before, "a new broker process");

    let reply = reply
        .await
        .unwrap()
        .expect("the reply, through the same PendingRequest");
    let reply = TaskReply::parse(&reply).unwrap();
    assert_eq!(reply.task_id.as_deref(), Some("kept-across-kill"));
    assert_eq!(reply.collector_id, "procmond-1");
    // The broker still keeps it for its requester, by id.
    assert!(agent.result(id, Duration::ZERO).await.is_ok());
    agent.close().await;
}

/// Proves that a full disk is a typed refusal, not a crash: the broker runs
/// under a file-size limit (`prlimit --fsize`, below the segment size, so
/// writing past it fails with EFBIG); durable publishes are confirmed until the journal cannot write,
/// then refused with `Storage`; the broker keeps serving; started again
/// without the limit, it delivers every message it had confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_durable_publishes_and_loses_nothing_confirmed() {
    let data = tempfile::tempdir().unwrap();
    let limited = data.path().join("broker-limited.sh");
    let limit_bytes = 256 * 1024;
    std::fs::write(
        &limited,
        format!(
            "#!/bin/sh\nexec prlimit --fsize={limit_bytes}:{limit_bytes} -- '{}' \"$@\"\n",
            e2e::binaries::broker_bin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &limited,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let journal = data.path().join("journal");
    let builder = |bin: &std::path::Path| {
        BrokerBuilder::new()
            .bin(bin)
            .arg("--durable")
            .arg("--data-dir")
            .arg(&journal)
    };
    let cluster = Cluster::start_with(builder(&limited)).await;
    let holder = cluster.client("holder").await;
    drop(holder.queue_subscribe(JOBS, "workers", 1).await.unwrap());
    holder.close().await;

    let publisher = cluster.client("publisher").await;
    let mut confirmed = Vec::new();
    let refusal = loop {
        let body = format!("{:04}-{}", confirmed.len(), "x".repeat(1000));
        match publisher.publish_confirmed(JOBS, body.clone()).await {
            Ok(_) => confirmed.push(body),
            Err(e) => break e,
        }
        assert!(confirmed.len() < 1000, "the file-size limit never refused");
    };
    assert!(
        matches!(&refusal, PublishError::Storage { .. }),
        "{refusal:?}"
    );
    // Still serving: stats, and plain pub/sub.
    let stats = publisher.stats().await.expect("the broker still answers");
    assert!(stats.queues.iter().any(|q| q.group == "workers"));
    publisher.publish("events.still.alive", "x").unwrap();
    drop(publisher);
    drop(cluster);

    // Without the limit: every confirmed message is there, in order.
    let cluster = Cluster::start_with(builder(&e2e::binaries::broker_bin())).await;
    let worker = cluster.client("worker").await;
    let mut tasks = worker.queue_subscribe(JOBS, "workers", 16).await.unwrap();
    let mut got = Vec::new();
    while got.len() < confirmed.len() {
        let Ok(Some(task)) = tokio::time::timeout(DEADLINE, tasks.next()).await else {
            panic!(
                "{} of {} confirmed messages came back",
                got.len(),
                confirmed.len()
            );
        };
        got.push(String::from_utf8_lossy(task.message().payload()).into_owned());
        task.ack().unwrap();
    }
    assert_eq!(got[..], confirmed[..got.len()]);
    assert_eq!(got.len(), confirmed.len());
    eprintln!(
        "file-size limit {limit_bytes} B: {} confirmed, then {refusal}",
        confirmed.len()
    );
    worker.close().await;
}

/// Proves that a torn tail does not stop the broker: the last segment cut
/// in the middle of its last record (and, separately, a byte of it
/// flipped); the broker starts, and every earlier message is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_journal_tail_loses_only_the_last_record() {
    for damage in ["cut-one-byte", "cut-half", "flip-a-byte"] {
        let data = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::start_with(durable_broker(&data)).await;
        let holder = cluster.client("holder").await;
        drop(holder.queue_subscribe(JOBS, "workers", 1).await.unwrap());
        holder.close().await;
        let publisher = cluster.client("publisher").await;
        for n in 0..10 {
            publisher
                .publish_confirmed(JOBS, format!("m-{n}"))
                .await
                .unwrap();
        }
        publisher.close().await;
        cluster.broker_mut().kill();

        let mut segments: Vec<_> = std::fs::read_dir(data.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        segments.sort();
        let last = segments.last().expect("a segment");
        let mut bytes = std::fs::read(last).unwrap();
        // The broker extends its segment ahead of what it writes: the zeros
        // after the last record are not part of it.
        let written = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        bytes.truncate(written);
        // The last record holds "m-9": find its payload to damage it.
        let at = bytes
            .windows(3)
            .rposition(|w| w == b"m-9")
            .expect("the last message in the last segment");
        match damage {
            "cut-one-byte" => bytes.truncate(bytes.len() - 1),
            "cut-half" => bytes.truncate(at),
            _ => bytes[at + 2] ^= 0x40,
        }
        std::fs::write(last, &bytes).unwrap();

        cluster.broker_mut().restart().await;
        let worker = cluster.client("worker").await;
        let mut tasks = worker.queue_subscribe(JOBS, "workers", 16).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 9 {
            let Ok(Some(task)) = tokio::time::timeout(DEADLINE, tasks.next()).await else {
                panic!("{damage}: only {got:?} came back");
            };
            got.push(String::from_utf8_lossy(task.message().payload()).into_owned());
            task.ack().unwrap();
        }
        let expected: Vec<String> = (0..9).map(|n| format!("m-{n}")).collect();
        assert_eq!(got, expected, "{damage}");
        // The damaged tenth is gone, not half-delivered.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), tasks.next())
                .await
                .is_err(),
            "{damage}: the damaged record came back"
        );
        worker.close().await;
    }
}
