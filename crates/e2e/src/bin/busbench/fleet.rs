//! `busbench fleet`: the bridge across two hosts, next to raw async-nats
//! over the same links in the same run. A fleet of two nodes (network
//! namespaces when it can make them, else loopback; the mode is printed)
//! and one `nats-server`:
//!
//! 1. round trip, floor: a raw async-nats requester on node 1 and a raw
//!    responder on node 2 (`floor.rtt`), one request at a time;
//! 2. round trip, bridged: an eventbus requester on node 1 → its bridge
//!    (`[[serve]]`) → NATS → node 2's bridge → a queue-group responder on
//!    node 2's broker, and back;
//! 3. throughput, floor: raw async-nats publish from node 1 to a subscriber
//!    on node 2; bridged: eventbus publish on node 1 → export (at-most-once)
//!    → NATS → import on node 2 → an eventbus subscriber. Measured two ways:
//!    - **unpaced**: `--events` published as fast as the publisher can,
//!      reporting how many arrived and how fast. On an at-most-once path
//!      this measures how much of a burst each hop's buffers hold, not a
//!      sustainable rate (the raw floor itself loses up to a third);
//!    - **paced** (the throughput figure): each path published at fixed
//!      rates ([`PACED_RATES`], then bisected), [`PACED_STEP`] per rate;
//!      the highest rate at which at least [`DELIVERED_FRACTION`] of the
//!      events arrive, for both paths alike;
//! 4. throughput at least once: eventbus publish on node 1 → export to
//!    JetStream → durable consumer of node 2's bridge → an eventbus
//!    subscriber, `--alo-events` unpaced (nothing is lost at least once, so
//!    the rate first → last arrival is the throughput; no raw floor yet);
//! 5. each bridge's RSS (`VmRSS`, `VmHWM`) after the loads.
//!
//! The goals of issue 19 are printed as ratios: bridged p50 ≤ 1.3 × the
//! floor's, bridged paced throughput ≥ 80 % of raw, bridge RSS ≤ 10 MiB.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::fleet::{Export, Fleet, FleetBuilder, Import, Mode, Node, Serve};
use serde_json::{Value, json};

use eventbus_harness::next_within;

use crate::rate::{Delivered, Pacer, RateSearch, highest_rate};
use crate::roles::{histogram, summary};

/// A throughput receiver stops after this long without a message (what did
/// not arrive by then was lost: at-most-once).
const STALL: Duration = Duration::from_secs(2);
/// How long the floor responder waits for its next request before it stops.
const IDLE: Duration = Duration::from_secs(600);
/// A paced rate counts as carried when at least this share of its events
/// arrives (at most once, an event may be lost now and then without the
/// path being saturated).
const DELIVERED_FRACTION: f64 = 0.999;
/// The paced rates tried, in events a second, up to the first that falls
/// short of [`DELIVERED_FRACTION`]; then [`PACED_BISECTIONS`] bisections.
const PACED_RATES: [u64; 16] = [
    10_000, 20_000, 40_000, 60_000, 80_000, 100_000, 150_000, 200_000, 300_000, 400_000, 600_000,
    800_000, 1_000_000, 1_200_000, 1_500_000, 2_000_000,
];
/// Bisections between the best paced rate and the first that fell short.
const PACED_BISECTIONS: u32 = 3;
/// How long each paced rate is held (its events: rate × this).
const PACED_STEP: Duration = Duration::from_secs(2);

/// The events of one paced step at `rate`.
fn paced_events(rate: u64) -> u64 {
    (rate as f64 * PACED_STEP.as_secs_f64()) as u64
}

/// Arguments of `busbench fleet`.
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// The `broker` binary each node runs.
    #[arg(long)]
    pub broker: PathBuf,
    /// The `eventbus-bridge` binary (not needed with `--floor-only`).
    #[arg(long, required_unless_present = "floor_only")]
    pub bridge: Option<PathBuf>,
    /// Measured round trips per path.
    #[arg(long, default_value_t = 5_000)]
    pub count: u64,
    /// Round trips before measuring.
    #[arg(long, default_value_t = 500)]
    pub warmup: u64,
    /// Events of the unpaced at-most-once throughput loads.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Events of the at-least-once throughput load.
    #[arg(long, default_value_t = 20_000)]
    pub alo_events: u64,
    /// Payload bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Each bridge's `backlog_max_messages` (the bridge's default if absent):
    /// how much of a burst it holds, against its memory.
    #[arg(long)]
    pub backlog: Option<u64>,
    /// Measure only the raw async-nats floors (no bridge needed).
    #[arg(long)]
    pub floor_only: bool,
}

/// One end of a floor measurement: a node's host (none on loopback) and the
/// NATS URLs as it sees them.
#[derive(Debug, Clone)]
struct Side {
    host: Option<eventbus_harness::Host>,
    urls: Vec<String>,
}

impl Side {
    fn of(node: &Node) -> Self {
        Self {
            host: node.host().cloned(),
            urls: node.nats_urls().to_vec(),
        }
    }

    /// Runs `f` on a thread of this side's host (its network namespace; on
    /// loopback, a plain thread) with a runtime of its own.
    fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> std::thread::JoinHandle<anyhow::Result<T>> {
        let host = self.host.clone();
        std::thread::spawn(move || match host {
            Some(host) => host.enter(f)?,
            None => f(),
        })
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Raw async-nats round trips from node 1 to a responder on node 2: ns per trip.
/// Blocking: run it off the runtime (on loopback the proxies run there).
fn floor_rtt(
    from: &Side,
    to: &Side,
    count: u64,
    warmup: u64,
    size: usize,
) -> anyhow::Result<Vec<u64>> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let urls = to.urls.clone();
    let responder = to.spawn(move || {
        runtime()?.block_on(async move {
            let client = async_nats::connect(urls).await?;
            let mut requests = client.subscribe("floor.rtt").await?;
            client.flush().await?;
            let _ = ready_tx.send(());
            let serve = async {
                while let Some(m) = next_within(&mut requests, IDLE).await {
                    if let Some(reply) = m.reply {
                        client.publish(reply, m.payload).await?;
                    }
                }
                anyhow::Ok(())
            };
            tokio::select! {
                r = serve => r,
                _ = stop_rx => Ok(()),
            }
        })
    });
    if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
        let _ = stop_tx.send(());
        let why = responder
            .join()
            .map_err(|_| anyhow::anyhow!("the floor responder panicked"))?;
        return Err(why.err().unwrap_or_else(|| anyhow::anyhow!("timed out")))
            .context("the floor responder never subscribed");
    }
    let urls = from.urls.clone();
    let requester = from.spawn(move || {
        runtime()?.block_on(async move {
            let client = async_nats::connect(urls).await?;
            let payload = bytes::Bytes::from(vec![7u8; size]);
            let mut trips = Vec::with_capacity(count as usize);
            for i in 0..warmup + count {
                let start = Instant::now();
                client.request("floor.rtt", payload.clone()).await?;
                if i >= warmup {
                    trips.push(start.elapsed().as_nanos() as u64);
                }
            }
            Ok(trips)
        })
    });
    let trips = requester
        .join()
        .map_err(|_| anyhow::anyhow!("the floor requester panicked"))?;
    let _ = stop_tx.send(());
    responder
        .join()
        .map_err(|_| anyhow::anyhow!("the floor responder panicked"))??;
    trips
}

/// Raw async-nats events from node 1 to node 2 on `subject`, unpaced or at
/// `rate` a second: (received, seconds). Blocking: run it off the runtime.
fn floor_throughput(
    from: &Side,
    to: &Side,
    subject: &str,
    events: u64,
    size: usize,
    rate: Option<u64>,
) -> anyhow::Result<(u64, f64)> {
    let subject = async_nats::Subject::from(subject);
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let urls = to.urls.clone();
    let sub_subject = subject.clone();
    let subscriber = to.spawn(move || {
        runtime()?.block_on(async move {
            let client = async_nats::connect(urls).await?;
            let mut sub = client.subscribe(sub_subject).await?;
            client.flush().await?;
            let _ = ready_tx.send(());
            let mut n = 0;
            let mut first = None;
            let mut last = Instant::now();
            while n < events {
                match next_within(&mut sub, STALL).await {
                    Some(_) => {
                        first.get_or_insert_with(Instant::now);
                        last = Instant::now();
                        n += 1;
                    }
                    _ => break,
                }
            }
            let secs = first.map(|f| (last - f).as_secs_f64()).unwrap_or(0.0);
            anyhow::Ok((n, secs))
        })
    });
    if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
        let why = subscriber
            .join()
            .map_err(|_| anyhow::anyhow!("the floor subscriber panicked"))?;
        return Err(why.err().unwrap_or_else(|| anyhow::anyhow!("timed out")))
            .context("the floor subscriber never subscribed");
    }
    let urls = from.urls.clone();
    let publisher = from.spawn(move || {
        runtime()?.block_on(async move {
            let client = async_nats::connect(urls).await?;
            let payload = bytes::Bytes::from(vec![7u8; size]);
            let mut pace = Pacer::new(rate);
            let mut sent = 0;
            while sent < events {
                let step = pace.step(events - sent).await;
                for _ in 0..step {
                    client.publish(subject.clone(), payload.clone()).await?;
                }
                sent += step;
            }
            client.flush().await?;
            anyhow::Ok(())
        })
    });
    publisher
        .join()
        .map_err(|_| anyhow::anyhow!("the floor publisher panicked"))??;
    subscriber
        .join()
        .map_err(|_| anyhow::anyhow!("the floor subscriber panicked"))?
}

/// The JetStream stream of the at-least-once path.
const ALO_STREAM: &str = "BENCH_ALO";

/// A bridged path from node 1 to node 2.
#[derive(Debug, Clone, Copy)]
enum Bridged {
    /// `events.#`, exported and imported over core NATS.
    AtMostOnce,
    /// `jobs.#`, exported to and imported from JetStream ([`ALO_STREAM`]).
    AtLeastOnce,
}

impl Bridged {
    /// The topic prefix events are published under on node 1, and the one
    /// they arrive under on node 2.
    fn prefixes(self) -> (&'static str, &'static str) {
        match self {
            Self::AtMostOnce => ("events", "fleet.node1.events"),
            Self::AtLeastOnce => ("jobs", "bench.alo.jobs"),
        }
    }
}

/// Starts both bridges: node 1 sends the `bench.rtt` requests nobody there
/// serves over NATS and exports `events.#` (at most once) and `jobs.#` (at
/// least once); node 2 serves them and imports both.
async fn start_bridges(fleet: &mut Fleet, backlog: Option<u64>) -> anyhow::Result<()> {
    // Node 1's bridge is a fallback member of the responders' group, so
    // requests nobody on node 1 serves go out; node 2's serves them.
    let serve = Serve {
        topic_filter: "bench.rtt".into(),
        subject_prefix: "fleet.req".into(),
        group: "responders".into(),
    };
    let mut one = fleet.node(0).bridge_config();
    one.backlog_max_messages = backlog;
    one.serves.push(serve.clone());
    one.exports
        .push(Export::new("events.#", Mode::AtMostOnce).add_prefix("fleet.node1"));
    one.exports.push(
        Export::new("jobs.#", Mode::AtLeastOnce)
            .add_prefix("bench.alo")
            .stream(ALO_STREAM),
    );
    let mut two = fleet.node(1).bridge_config();
    two.backlog_max_messages = backlog;
    two.serves.push(serve);
    two.imports
        .push(Import::new("fleet.node1.>", Mode::AtMostOnce));
    two.imports
        .push(Import::new("bench.alo.>", Mode::AtLeastOnce).stream(ALO_STREAM, "bench-node2"));
    fleet.node_mut(0).start_bridge(&one).await;
    fleet.node_mut(1).start_bridge(&two).await;
    Ok(())
}

/// Bridged round trips, `warmup` then `count` measured: ns per trip.
async fn bridged_rtt(
    fleet: &Fleet,
    count: u64,
    warmup: u64,
    size: usize,
) -> anyhow::Result<Vec<u64>> {
    let responder = fleet.node(1).cluster().client("bench-responder").await;
    let mut requests = responder
        .queue_subscribe("bench.rtt", "responders", 1)
        .await?;
    let serve = tokio::spawn(async move {
        while let Some(d) = requests.next().await {
            let _ = d.reply(d.message().payload().clone());
        }
    });
    let requester = fleet.node(0).cluster().client("bench-requester").await;
    let payload = bytes::Bytes::from(vec![7u8; size]);
    // The bridges subscribe asynchronously: wait until a request gets through.
    let end = Instant::now() + Duration::from_secs(20);
    while requester
        .request("bench.rtt", payload.clone(), Duration::from_secs(1))
        .await
        .is_err()
    {
        if Instant::now() > end {
            bail!("no bridged request answered within 20 s");
        }
    }
    let mut trips = Vec::with_capacity(count as usize);
    for i in 0..warmup + count {
        let start = Instant::now();
        requester
            .request("bench.rtt", payload.clone(), Duration::from_secs(5))
            .await?;
        if i >= warmup {
            trips.push(start.elapsed().as_nanos() as u64);
        }
    }
    serve.abort();
    Ok(trips)
}

/// Bridged events from node 1 (`<prefix>.<name>`) to node 2 along `path`,
/// unpaced or at `rate` a second: (received, seconds).
async fn bridged_throughput(
    fleet: &Fleet,
    path: Bridged,
    name: &str,
    events: u64,
    size: usize,
    rate: Option<u64>,
) -> anyhow::Result<(u64, f64)> {
    let (here, there) = path.prefixes();
    // Ids of their own: the previous load's clients may not be gone yet.
    let subscriber = fleet
        .node(1)
        .cluster()
        .client(&format!("bench-sub-{here}-{name}"))
        .await;
    let mut sub = subscriber.subscribe(format!("{there}.{name}")).await?;
    let mut warm = subscriber.subscribe(format!("{there}.warm")).await?;
    let publisher = fleet
        .node(0)
        .cluster()
        .client(&format!("bench-pub-{here}-{name}"))
        .await;
    let warm_topic = eventbus::Topic::new(format!("{here}.warm"))?;
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        publisher.publish(&warm_topic, "warm")?;
        if tokio::time::timeout(Duration::from_millis(100), warm.next())
            .await
            .is_ok()
        {
            break;
        }
        if Instant::now() > end {
            bail!("no bridged event arrived within 20 s");
        }
    }
    let payload = bytes::Bytes::from(vec![7u8; size]);
    let topic = eventbus::Topic::new(format!("{here}.{name}"))?;
    let publish = async {
        let mut pace = Pacer::new(rate);
        let mut sent = 0;
        while sent < events {
            let step = pace.step(events - sent).await;
            for _ in 0..step {
                publisher.publish_wait(&topic, payload.clone()).await?;
            }
            sent += step;
        }
        anyhow::Ok(())
    };
    let receive = async {
        let mut n = 0;
        let mut first = None;
        let mut last = Instant::now();
        while n < events {
            match next_within(&mut sub, STALL).await {
                Some(_) => {
                    first.get_or_insert_with(Instant::now);
                    last = Instant::now();
                    n += 1;
                }
                _ => break,
            }
        }
        (n, first.map(|f| (last - f).as_secs_f64()).unwrap_or(0.0))
    };
    let (published, received) = tokio::join!(publish, receive);
    published?;
    Ok(received)
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentiles(trips: &[u64]) -> anyhow::Result<serde_json::Value> {
    let mut h = histogram();
    for &t in trips {
        h.record(t.max(1))?;
    }
    Ok(summary(&h))
}

/// The highest paced rate of the raw async-nats path, node 1 → node 2.
async fn floor_paced(from: &Side, to: &Side, size: usize) -> anyhow::Result<RateSearch> {
    let mut step = 0u32;
    highest_rate(&PACED_RATES, DELIVERED_FRACTION, PACED_BISECTIONS, |rate| {
        step += 1;
        let (from, to, events) = (from.clone(), to.clone(), paced_events(rate));
        let subject = format!("floor.paced.{step}");
        async move {
            let (received, secs) = tokio::task::spawn_blocking(move || {
                floor_throughput(&from, &to, &subject, events, size, Some(rate))
            })
            .await??;
            Ok(Delivered {
                sent: events,
                received,
                run: json!({"seconds": secs}),
            })
        }
    })
    .await
}

/// The highest paced rate of the bridged path, node 1 → node 2.
async fn bridged_paced(fleet: &Fleet, size: usize) -> anyhow::Result<RateSearch> {
    let mut step = 0u32;
    highest_rate(&PACED_RATES, DELIVERED_FRACTION, PACED_BISECTIONS, |rate| {
        step += 1;
        let events = paced_events(rate);
        let name = format!("paced{step}");
        async move {
            let (received, secs) =
                bridged_throughput(fleet, Bridged::AtMostOnce, &name, events, size, Some(rate))
                    .await?;
            Ok(Delivered {
                sent: events,
                received,
                run: json!({"seconds": secs}),
            })
        }
    })
    .await
}

/// An unpaced load's figures.
fn unpaced_json(received: u64, of: u64, secs: f64) -> Value {
    let per_s = if secs > 0.0 {
        received as f64 / secs
    } else {
        0.0
    };
    json!({"received": received, "of": of, "per_s": per_s})
}

/// A paced search's figures.
fn paced_json(search: &RateSearch) -> Value {
    json!({
        "max_per_s": search.best,
        "min_fraction": DELIVERED_FRACTION,
        "step_s": PACED_STEP.as_secs_f64(),
        "tries": search.tries,
    })
}

/// Runs the whole comparison and prints the report (JSON, then the ratios).
pub async fn run(args: &FleetArgs) -> anyhow::Result<()> {
    let mut builder = FleetBuilder::new()
        .nodes(2)
        .nats_servers(1)
        .broker_bin(&args.broker);
    if let Some(bridge) = &args.bridge {
        builder = builder.bridge_bin(bridge);
    }
    let mut fleet = builder.start().await;
    let (from, to) = (Side::of(fleet.node(0)), Side::of(fleet.node(1)));
    let (count, warmup, events, size) = (args.count, args.warmup, args.events, args.size);
    let (floor, (floor_n, floor_secs)) = {
        let (from, to) = (from.clone(), to.clone());
        tokio::task::spawn_blocking(move || {
            anyhow::Ok((
                floor_rtt(&from, &to, count, warmup, size)?,
                floor_throughput(&from, &to, "floor.tput", events, size, None)?,
            ))
        })
        .await??
    };
    let floor_unpaced = unpaced_json(floor_n, events, floor_secs);
    let floor_paced = floor_paced(&from, &to, size).await?;
    if args.floor_only {
        println!(
            "{}",
            json!({
                "mode": fleet.mode().to_string(),
                "rtt_floor": percentiles(&floor)?,
                "throughput_unpaced": {"floor": floor_unpaced},
                "throughput_paced": {"floor": paced_json(&floor_paced)},
            })
        );
        return Ok(());
    }
    start_bridges(&mut fleet, args.backlog).await?;
    // A path the bridge cannot carry is reported, and the others measured.
    let bridged = match bridged_rtt(&fleet, count, warmup, size).await {
        Ok(trips) => Ok(percentiles(&trips)?),
        Err(e) => Err(format!("{e:#}")),
    };
    let (bridged_n, bridged_secs) =
        bridged_throughput(&fleet, Bridged::AtMostOnce, "tput", events, size, None).await?;
    let bridged_unpaced = unpaced_json(bridged_n, events, bridged_secs);
    let bridged_paced = bridged_paced(&fleet, size).await?;
    // At least once nothing is lost: an unpaced load's rate is its throughput.
    let alo_events = args.alo_events;
    let (alo_n, alo_secs) =
        bridged_throughput(&fleet, Bridged::AtLeastOnce, "tput", alo_events, size, None).await?;
    let alo = unpaced_json(alo_n, alo_events, alo_secs);
    // Where the events went: each bridge's next status (counters since start).
    let mut statuses = Vec::new();
    for node in fleet.nodes() {
        let client = node.cluster().client("bench-status").await;
        let mut sub = client
            .subscribe(node.bridge_config().status_topic().as_str())
            .await?;
        let status = next_within(&mut sub, Duration::from_secs(5))
            .await
            .and_then(|m| serde_json::from_slice::<serde_json::Value>(m.payload()).ok())
            .unwrap_or_default();
        statuses.push(status);
    }
    let rss: Vec<(u64, u64)> = fleet
        .nodes()
        .iter()
        .filter_map(|n| n.bridge().map(|b| memory_kib(b.pid())))
        .collect();
    let floor_p = percentiles(&floor)?;
    let paced_ratio = match (bridged_paced.best, floor_paced.best) {
        (Some(b), Some(f)) if f > 0 => Some(b as f64 / f as f64),
        _ => None,
    };
    let report = json!({
        "mode": fleet.mode().to_string(),
        "rtt_floor": floor_p,
        "rtt_bridged": match &bridged { Ok(p) => p.clone(), Err(e) => json!({"not_measured": e}) },
        "throughput_paced": {
            "floor": paced_json(&floor_paced),
            "bridged": paced_json(&bridged_paced),
            "ratio": paced_ratio,
        },
        "throughput_unpaced": {"floor": floor_unpaced, "bridged": bridged_unpaced},
        "throughput_at_least_once": alo,
        "bridge_status": statuses,
        "bridge_kib": rss.iter().map(|(rss, hwm)| json!({"rss": rss, "hwm": hwm})).collect::<Vec<_>>(),
    });
    println!("{report}");
    let p50 = |v: &Value| v["p50_us"].as_f64().unwrap_or(0.0);
    println!("fleet mode = {}", fleet.mode());
    match &bridged {
        Ok(bridged_p) => println!(
            "round trip p50: bridged {:.0} µs, floor {:.0} µs: {:.2} × the floor (goal ≤ 1.3)",
            p50(bridged_p),
            p50(&floor_p),
            p50(bridged_p) / p50(&floor_p).max(1.0)
        ),
        Err(e) => println!(
            "round trip p50: bridged NOT MEASURED ({e}), floor {:.0} µs",
            p50(&floor_p)
        ),
    }
    let best = |s: &RateSearch| s.best.map_or("none".to_owned(), |r| format!("{r}/s"));
    println!(
        "throughput, paced (highest rate with ≥ {:.1} % delivered, {} s per rate): bridged {}, raw {}: {} of raw (goal ≥ 80 %)",
        100.0 * DELIVERED_FRACTION,
        PACED_STEP.as_secs(),
        best(&bridged_paced),
        best(&floor_paced),
        paced_ratio.map_or("n/a".to_owned(), |r| format!("{:.0} %", 100.0 * r)),
    );
    let per_s = |v: &Value| v["per_s"].as_f64().unwrap_or(0.0);
    println!(
        "throughput, unpaced burst of {events} at most once (buffer sizes, not a rate): bridged {:.0}/s ({bridged_n} received), raw {:.0}/s ({floor_n} received)",
        per_s(&bridged_unpaced),
        per_s(&floor_unpaced),
    );
    println!(
        "throughput, at least once (JetStream both ways), {alo_events} unpaced: {:.0}/s ({alo_n} received)",
        per_s(&alo),
    );
    for (node, (rss, hwm)) in fleet.nodes().iter().zip(&rss) {
        println!(
            "bridge of {}: RSS {:.1} MiB, peak {:.1} MiB (goal ≤ 10 MiB)",
            node.name(),
            *rss as f64 / 1024.0,
            *hwm as f64 / 1024.0
        );
    }
    Ok(())
}

/// Arguments of `busbench fleet-workload`.
#[derive(Debug, clap::Args)]
pub struct FleetWorkloadArgs {
    /// The `broker` binary each node runs.
    #[arg(long)]
    pub broker: PathBuf,
    /// The `eventbus-bridge` binary of the nodes not profiled.
    #[arg(long)]
    pub bridge: PathBuf,
    /// What node `--node` runs as its bridge instead: a wrapper that runs
    /// the bridge under a profiler, its arguments passed on.
    #[arg(long)]
    pub profiled: PathBuf,
    /// The node (1 or 2) whose bridge is `--profiled`.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub node: u8,
}

/// Events of each kind the workload sends, and the pace of the at-most-once
/// ones (slow enough for a bridge under callgrind).
const WORKLOAD_EVENTS: u64 = 2_000;
const WORKLOAD_RATE: u64 = 1_000;
/// An unpaced at-most-once burst of the workload, larger than a bridge's
/// default backlog.
const WORKLOAD_BURST: u64 = 20_000;
/// How long a profiled bridge gets to write its profile and exit.
const WORKLOAD_STOP: Duration = Duration::from_secs(60);

/// The patterns a bridge serves, small, for a profile of the bridge of one
/// node (`cargo xtask hot-functions`): two loopback nodes as in `fleet`
/// (node 1 exports and sends requests, node 2 imports and serves them);
/// round trips, paced at-most-once events, an unpaced burst and
/// at-least-once events; then
/// every bridge stopped with SIGTERM (a profiler writes at exit). Run once
/// per node for both sides of the bridge.
pub async fn workload(args: &FleetWorkloadArgs) -> anyhow::Result<()> {
    let mut fleet = FleetBuilder::new()
        .nodes(2)
        .nats_servers(1)
        .mode(e2e::fleet::FleetMode::Loopback)
        .broker_bin(&args.broker)
        .bridge_bin(&args.bridge)
        .start()
        .await;
    fleet
        .node_mut(usize::from(args.node) - 1)
        .set_bridge_bin(&args.profiled);
    start_bridges(&mut fleet, None).await?;
    bridged_rtt(&fleet, 300, 10, 64).await?;
    let events = WORKLOAD_EVENTS;
    let (n, _) = bridged_throughput(
        &fleet,
        Bridged::AtMostOnce,
        "work",
        events,
        64,
        Some(WORKLOAD_RATE),
    )
    .await?;
    // A burst beyond what the bridges hold: the paths that evict and count.
    bridged_throughput(
        &fleet,
        Bridged::AtMostOnce,
        "burst",
        WORKLOAD_BURST,
        64,
        None,
    )
    .await?;
    let (alo, _) =
        bridged_throughput(&fleet, Bridged::AtLeastOnce, "work", events, 64, None).await?;
    if alo < events {
        bail!("{alo} of {events} at-least-once events arrived");
    }
    for i in 0..2 {
        if let Some(bridge) = fleet.node_mut(i).bridge_mut() {
            let status = bridge.terminate(WORKLOAD_STOP).await;
            if !status.success() {
                bail!("the bridge of node {} exited with {status}", i + 1);
            }
        }
    }
    println!(
        "{}",
        json!({"at_most_once": n, "at_least_once": alo, "of": events})
    );
    Ok(())
}
