//! Chaos: seeded fault schedules on a loaded cluster, judged by explicit
//! success criteria. Each scenario prints its seed, the schedule, what the
//! nemesis did, a criteria table and per-second metrics, records them when
//! `EVENTBUS_CHAOS_REPORT_DIR` is set (`cargo xtask e2e --type chaos`), and
//! fails unless every criterion passed. Replay a run with
//! `EVENTBUS_CHAOS_SEED=<seed>`. Broker crashes with durable queues are in
//! [`durable`].

mod burst;
mod durable;

use std::time::Duration;

use e2e::ClusterExt as _;
use e2e::chaos::judge::{Consistency, availability, recovery_time};
use e2e::chaos::metrics::{PidCell, rss_bytes, samples_table};
use e2e::chaos::nemesis::log_lines;
use e2e::chaos::{self, ChaosRun, FaultKind, Op, Plan, Report, Schedule, Targets, Workload};
use e2e::collector::SQUEEZE_HEADROOM;
use e2e::rng::seed_from_env;
use e2e::{BrokerBuilder, Cluster, CollectorBuilder, CollectorKind, CollectorProcess, FaultProxy};

use burst::{QUEUE_BURST, count_until_quiet, queue_burst};

/// Heartbeat of the collectors in these scenarios: a frozen or cut-off
/// collector is declared dead after 3 × 100 ms.
const HEARTBEAT: Duration = Duration::from_millis(100);

/// How long after the last fault heals requests must succeed again for good.
const RECOVERY_BOUND: Duration = Duration::from_secs(5);

/// Lowest share of requests completed within their deadline.
const AVAILABILITY: f64 = 0.8;

fn collector(kind: CollectorKind, instance: u32) -> CollectorBuilder {
    CollectorBuilder::new(kind, instance).heartbeat_interval(HEARTBEAT)
}

/// Two collectors of every kind, in kind order: procmond-1, procmond-2, ...
async fn two_of_each(cluster: &Cluster, links: &[FaultProxy]) -> Vec<CollectorProcess> {
    let mut collectors = Vec::new();
    for kind in CollectorKind::ALL {
        for instance in 1..=2 {
            let builder = collector(kind, instance);
            let c = match links.get(collectors.len()) {
                Some(link) => cluster.add_collector_behind(link, builder).await,
                None => cluster.add_collector(builder).await,
            };
            collectors.push(c);
        }
    }
    collectors
}

/// The run's seed ([`seed_from_env`]), printed first so a failure can be replayed.
fn chaos_seed() -> u64 {
    let seed = seed_from_env();
    println!("chaos seed {seed}");
    seed
}

/// Derives the schedule of `plan` from `seed`, prints it, then runs it and
/// `workload` together on the cluster (see [`chaos::run`]).
async fn run_plan(
    seed: u64,
    plan: &Plan,
    workload: &Workload,
    cluster: &mut Cluster,
    collectors: &mut [CollectorProcess],
    links: &[FaultProxy],
) -> (Schedule, ChaosRun) {
    let schedule = Schedule::progressive(seed, plan);
    run_schedule(schedule, workload, cluster, collectors, links).await
}

/// Prints `schedule`, then runs it and `workload` together on the cluster
/// (see [`chaos::run`]).
async fn run_schedule(
    schedule: Schedule,
    workload: &Workload,
    cluster: &mut Cluster,
    collectors: &mut [CollectorProcess],
    links: &[FaultProxy],
) -> (Schedule, ChaosRun) {
    println!("{schedule}");
    let broker_pid = PidCell::new(cluster.broker().pid());
    let targets = Targets {
        cluster,
        collectors,
        links,
        broker_pid: &broker_pid,
    };
    let chaos = chaos::run(workload, &schedule, targets).await;
    (schedule, chaos)
}

/// Tasks of every kind, a direct request to procmond-1 now and then, events.
fn mixed_load(duration: Duration) -> Workload {
    Workload {
        mix: vec![
            (Op::Task(CollectorKind::Process), 3),
            (Op::Task(CollectorKind::Network), 3),
            (Op::Task(CollectorKind::Filesystem), 3),
            (
                Op::Direct {
                    kind: CollectorKind::Process,
                    target: "procmond-1".into(),
                },
                1,
            ),
            (Op::Event, 2),
        ],
        rate_per_s: 60.0,
        duration,
        clients: 4,
        timeout: Duration::from_secs(3),
        max_in_flight: 256,
        scratch: None,
    }
}

/// A run's consistency criterion: what it counts, its score and a one-line
/// account for the notes.
struct Judged {
    label: &'static str,
    score: f64,
    summary: String,
}

impl From<&Consistency> for Judged {
    fn from(c: &Consistency) -> Self {
        Self {
            label: "consistency (accepted tasks neither lost nor run after their ack)",
            score: c.score(),
            summary: c.summary(),
        }
    }
}

/// The criteria every scenario under load shares: availability (within the
/// workload's `timeout`), consistency, recovery, and the queues draining
/// after the load.
fn judge_load(
    report: &mut Report,
    chaos: &ChaosRun,
    schedule: &Schedule,
    timeout: Duration,
    consistency: Judged,
) {
    report.at_least(
        &format!(
            "availability (requests completed ÷ attempted, within {} s)",
            timeout.as_secs()
        ),
        AVAILABILITY,
        availability(&chaos.run),
        "",
    );
    report.at_least(consistency.label, 1.0, consistency.score, "");
    let recovery =
        recovery_time(&chaos.run, schedule.last_heal()).map_or(f64::INFINITY, |d| d.as_secs_f64());
    report.at_most(
        "recovery time after the last fault heals",
        RECOVERY_BOUND.as_secs_f64(),
        recovery,
        "s",
    );
    report.at_least(
        "queues drained after the load (1 = yes)",
        1.0,
        f64::from(u8::from(chaos.drained)),
        "",
    );
    report.note(consistency.summary);
    report.note(format!(
        "events: {} sent, {} received (at most once: reported, not judged)",
        chaos.run.events_sent, chaos.run.events_received
    ));
    for line in log_lines(&chaos.applied) {
        report.note(format!("nemesis {line}"));
    }
    report.per_second = Some(samples_table(&chaos.samples()));
}

/// Proves availability ≥ 0.8, consistency 1.0 and recovery ≤ 5 s under
/// progressive collector failures: 60 requests/s from 4 clients (tasks of
/// every kind, direct requests, events) against two collectors of each kind
/// while the nemesis kills, pauses or restarts one more collector every 1.5 s
/// from 2 s, and heals everything at 8 s; the load runs 14 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progressive_collector_failures_under_load() {
    let seed = chaos_seed();
    let mut cluster = Cluster::start().await;
    let mut collectors = two_of_each(&cluster, &[]).await;
    let plan = Plan {
        first_at: Duration::from_secs(2),
        every: Duration::from_millis(1_500),
        faults: 4,
        heal_at: Duration::from_secs(8),
        menu: vec![
            (FaultKind::Kill, 2),
            (FaultKind::Pause, 2),
            (FaultKind::RestartCollector, 1),
        ],
        collectors: collectors.len(),
        links: 0,
    };
    let workload = mixed_load(Duration::from_secs(14));
    let (schedule, chaos) =
        run_plan(seed, &plan, &workload, &mut cluster, &mut collectors, &[]).await;
    let consistency = Consistency::check(&chaos.run, &chaos.executions, |_| false);
    let mut report = Report::new("progressive_collector_failures_under_load", seed);
    judge_load(
        &mut report,
        &chaos,
        &schedule,
        workload.timeout,
        (&consistency).into(),
    );
    report.finish();
}

/// Proves the same criteria when the links, not the processes, fail: every
/// collector sits behind its own fault proxy, and one more link every 1.5 s
/// from 2 s is partitioned (frames held both ways) or slowed (50 ms + up to
/// 50 ms each way), until all heal at 8 s; the load runs 14 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_partitions_on_a_share_of_links() {
    let seed = chaos_seed();
    let mut cluster = Cluster::start().await;
    let mut links = Vec::new();
    for n in 0..6 {
        links.push(cluster.fault_proxy(seed ^ n).await);
    }
    let mut collectors = two_of_each(&cluster, &links).await;
    let plan = Plan {
        first_at: Duration::from_secs(2),
        every: Duration::from_millis(1_500),
        faults: 3,
        heal_at: Duration::from_secs(8),
        menu: vec![
            (FaultKind::Partition, 1),
            (
                FaultKind::Latency(Duration::from_millis(50), Duration::from_millis(50)),
                1,
            ),
        ],
        collectors: 0,
        links: links.len(),
    };
    let workload = mixed_load(Duration::from_secs(14));
    let (schedule, chaos) = run_plan(
        seed,
        &plan,
        &workload,
        &mut cluster,
        &mut collectors,
        &links,
    )
    .await;
    let consistency = Consistency::check(&chaos.run, &chaos.executions, |_| false);
    let mut report = Report::new("latency_and_partitions_on_a_share_of_links", seed);
    judge_load(
        &mut report,
        &chaos,
        &schedule,
        workload.timeout,
        (&consistency).into(),
    );
    for (n, link) in links.iter().enumerate() {
        report.note(format!("link {n}: {:?}", link.stats()));
    }
    report.finish();
}

/// Proves that a broker crash under load loses only what the persistence
/// model says (docs/delivery.md: the broker keeps queues in memory, and every
/// requester waiting on a lost task is told at once with
/// `RequestError::Closed`): every confirmed task is replied to, ran, or failed
/// with `Closed`; no request outlives its deadline by more than a second (no
/// hang); availability ≥ 0.8 and recovery ≤ 5 s. The broker is SIGKILLed and
/// restarted at 3 s and 6 s of a 12 s load of task requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_load() {
    let seed = chaos_seed();
    let mut cluster = Cluster::start().await;
    let mut collectors = Vec::new();
    for kind in CollectorKind::ALL {
        collectors.push(cluster.add_collector(collector(kind, 1)).await);
    }
    let plan = Plan {
        first_at: Duration::from_secs(3),
        every: Duration::from_secs(3),
        faults: 2,
        heal_at: Duration::from_secs(9),
        menu: vec![(FaultKind::RestartBroker, 1)],
        collectors: collectors.len(),
        links: 0,
    };
    let workload = Workload {
        mix: CollectorKind::ALL.map(|k| (Op::Task(k), 1)).to_vec(),
        ..mixed_load(Duration::from_secs(12))
    };
    let (schedule, chaos) =
        run_plan(seed, &plan, &workload, &mut cluster, &mut collectors, &[]).await;
    let closed = "connection closed";
    let consistency = Consistency::check(&chaos.run, &chaos.executions, |e| e == closed);
    let mut report = Report::new("broker_restart_under_load", seed);
    judge_load(
        &mut report,
        &chaos,
        &schedule,
        workload.timeout,
        (&consistency).into(),
    );
    let slack = workload.timeout + Duration::from_secs(1);
    let hung = chaos
        .run
        .records
        .iter()
        .filter(|r| r.latency > slack)
        .count();
    report.at_most(
        "requests that outlived their deadline by over 1 s (hangs)",
        0.0,
        hung as f64,
        "",
    );
    let mut errors = std::collections::BTreeMap::<&str, usize>::new();
    for r in &chaos.run.records {
        if let chaos::workload::Outcome::Failed(e) = &r.outcome {
            *errors.entry(e.as_str()).or_default() += 1;
        }
    }
    report.note(format!("typed errors seen by requesters: {errors:?}"));
    report.finish();
}

/// Proves that a slow consumer under a burst costs the broker bounded memory
/// and nobody else anything: with `subscriber.max_len = 1000` and
/// `overflow = "drop-oldest"`, a publisher bursts 20,000 events of 1 KiB
/// (20 MiB, at 20,000 a second) to two subscribers, one direct and one behind a fault proxy
/// limited to 1 MiB/s. The broker's RSS stays within 16 MiB of its idle
/// size, the slow subscriber's drops are counted (received + dropped =
/// published), the overflow was announced on `_sys.slow-consumer`, and the
/// fast subscriber loses nothing. Then the queue policy: see [`queue_burst`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_under_a_burst() {
    use eventbus::{ClientId, ClientOptions, Topic, TopicFilter};

    const BURST: u64 = 20_000;
    let seed = chaos_seed();
    let cluster = Cluster::start_with(BrokerBuilder::new().config_toml(
        "[subscriber]\nmax_len = 1000\noverflow = \"drop-oldest\"\n\
                 [queue]\nmax_len = 500\noverflow = \"reject\"\n",
    ))
    .await;
    let link = cluster.fault_proxy(seed).await;
    link.set_bandwidth(e2e::Direction::ToClient, Some(1024 * 1024));
    let idle_rss = rss_bytes(cluster.broker().pid()).expect("the broker runs");
    let connect = |socket: &std::path::Path, id: &str| {
        eventbus::Client::connect(ClientOptions::new(socket).client_id(ClientId::new(id).unwrap()))
    };
    let filter = TopicFilter::new("burst.#").unwrap();
    let fast = connect(cluster.socket(), "fast").await.unwrap();
    let slow = connect(link.socket(), "slow").await.unwrap();
    let watcher = connect(cluster.socket(), "watcher").await.unwrap();
    let mut fast_sub = fast.subscribe(&filter).await.unwrap();
    let mut slow_sub = slow.subscribe(&filter).await.unwrap();
    let mut announcements = watcher
        .subscribe(&TopicFilter::new("_sys.slow-consumer").unwrap())
        .await
        .unwrap();
    let publisher = connect(cluster.socket(), "burster").await.unwrap();
    let topic = Topic::new("burst.events").unwrap();
    let payload = bytes::Bytes::from(vec![7u8; 1024]);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(idle_rss));
    let sampler = {
        let (peak, pid) = (peak.clone(), cluster.broker().pid());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(20));
            loop {
                every.tick().await;
                if let Some(rss) = rss_bytes(pid) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    let (fast_n, slow_n, ()) = tokio::join!(
        count_until_quiet(&mut fast_sub, Duration::from_secs(3)),
        count_until_quiet(&mut slow_sub, Duration::from_secs(3)),
        async {
            // 100 events every 5 ms: 20,000 a second, which the fast
            // subscriber keeps up with and the 1 MiB/s link cannot.
            let mut every = tokio::time::interval(Duration::from_millis(5));
            for _ in 0..BURST / 100 {
                every.tick().await;
                for _ in 0..100 {
                    publisher
                        .publish_wait(&topic, payload.clone())
                        .await
                        .unwrap();
                }
            }
        }
    );
    sampler.abort();
    let stats = publisher.stats().await.unwrap();
    let slow_dropped = stats
        .connections
        .iter()
        .find(|c| c.id == "slow")
        .map_or(0, |c| c.dropped);
    let announced = count_until_quiet(&mut announcements, Duration::from_millis(200)).await;
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let mut report = Report::new("slow_consumer_under_a_burst", seed);
    report.at_most(
        "broker RSS growth over idle during a 20 MiB burst",
        16.0,
        (peak.saturating_sub(idle_rss)) as f64 / 1048576.0,
        "MiB",
    );
    report.at_least(
        "fast subscriber received (of 20,000)",
        BURST as f64,
        fast_n as f64,
        "",
    );
    report.at_least(
        "slow subscriber: received + dropped by the broker (of 20,000)",
        BURST as f64,
        (slow_n + slow_dropped) as f64,
        "",
    );
    report.at_least(
        "slow subscriber's drops counted",
        1.0,
        slow_dropped as f64,
        "",
    );
    report.at_least("slow-consumer announcements", 1.0, announced as f64, "");
    let queue = queue_burst(&cluster, seed).await;
    report.at_least(
        "queue: accepted + refused with QueueFull (of 3,000 confirmed publishes)",
        QUEUE_BURST as f64,
        (queue.accepted + queue.refused) as f64,
        "",
    );
    report.at_least(
        "queue: publishes refused at max_len = 500",
        1.0,
        queue.refused as f64,
        "",
    );
    report.at_least(
        "queue: broker's rejected count = refusals seen (1 = yes)",
        1.0,
        f64::from(u8::from(queue.broker_rejected == queue.refused)),
        "",
    );
    report.at_least(
        "queue: accepted tasks delivered to the slow consumer (of accepted)",
        queue.accepted as f64,
        queue.delivered as f64,
        "",
    );
    report.note(format!("queue burst: {queue:?}"));
    report.note(format!(
        "broker RSS idle {:.1} MiB, peak {:.1} MiB; slow subscriber received {slow_n}, dropped {slow_dropped}; proxy {:?}",
        idle_rss as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        link.stats()
    ));
    report.finish();
}

/// Proves that memory pressure on one collector stays with it: procmond-1's
/// address space is limited to 32 MiB over its idle size from 2 s to 8 s
/// while every process task asks for 48 MiB of working memory (30 requests/s
/// of every kind). It sheds those tasks (nack with
/// requeue: procmond-2 runs them) or fails cleanly; availability stays ≥ 0.8,
/// consistency 1.0, every other collector stays up, no request fails but the
/// direct ones to procmond-1 (a shed direct task has nowhere else to go), and
/// recovery after the squeeze ends ≤ 5 s. Skips with a message where resource limits cannot be
/// set on another process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_on_a_collector() {
    const SCRATCH: u64 = 48 << 20;
    let seed = chaos_seed();
    let mut cluster = Cluster::start().await;
    let mut collectors = two_of_each(&cluster, &[]).await;
    let plan = Plan {
        first_at: Duration::from_secs(2),
        every: Duration::from_secs(1),
        faults: 1,
        heal_at: Duration::from_secs(8),
        menu: vec![(FaultKind::SqueezeMemory(SQUEEZE_HEADROOM), 1)],
        collectors: 1,
        links: 0,
    };
    let driver = cluster.driver().await;
    for kind in CollectorKind::ALL {
        // One plain task per collector, so the baseline of the squeeze is a
        // warm collector's size (worker thread and allocator arena included).
        for n in 0..2 {
            driver
                .request_task(kind, &format!("warm-{kind}-{n}"), e2e::DEADLINE)
                .await
                .expect("a warm-up task");
        }
    }
    let workload = Workload {
        scratch: Some((CollectorKind::Process, SCRATCH)),
        rate_per_s: 30.0,
        ..mixed_load(Duration::from_secs(12))
    };
    let (schedule, chaos) =
        run_plan(seed, &plan, &workload, &mut cluster, &mut collectors, &[]).await;
    let mut report = Report::new("memory_pressure_on_a_collector", seed);
    if let Some(skip) = chaos.applied.iter().find(|a| a.what.starts_with("SKIPPED")) {
        println!("chaos: memory_pressure_on_a_collector {}", skip.what);
        report.note(skip.what.clone());
        report.finish();
        return;
    }
    let consistency = Consistency::check(&chaos.run, &chaos.executions, |_| false);
    judge_load(
        &mut report,
        &chaos,
        &schedule,
        workload.timeout,
        (&consistency).into(),
    );
    let squeezed = &mut collectors[0];
    let log = std::fs::read_to_string(&squeezed.logs().stderr).unwrap_or_default();
    let shed = log.matches("shedding load").count();
    let exited = squeezed.try_exit();
    report.at_least(
        "squeezed collector shed load or exited (tasks shed, or 1 if it exited)",
        1.0,
        if exited.is_some() { 1.0 } else { shed as f64 },
        "",
    );
    let squeezed_id = squeezed.id().to_owned();
    let collateral = chaos
        .run
        .records
        .iter()
        .filter(|r| r.task_id.is_some() && !r.is_ok())
        .filter(|r| r.op != format!("direct:{squeezed_id}"))
        .count();
    report.at_most(
        "failed requests not aimed at the squeezed collector by name",
        0.0,
        collateral as f64,
        "",
    );
    let others_down = collectors[1..]
        .iter_mut()
        .filter_map(|c| c.try_exit().map(|s| format!("{} {s}", c.id())))
        .collect::<Vec<_>>();
    report.at_most(
        "other collectors that went down",
        0.0,
        others_down.len() as f64,
        "",
    );
    report.note(format!(
        "squeezed collector: {shed} tasks shed, exit {exited:?}; others down: {others_down:?}"
    ));
    report.finish();
}
