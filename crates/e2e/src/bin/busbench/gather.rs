//! Scatter-gather over worker processes, three ways in one run: one gather
//! (ends at the last reply), the same workers asked one after another with
//! `request`, and the NATS way (publish once, collect replies on a shared
//! inbox until a timeout, since nobody says how many will answer).
//!
//! The goal of issue 20: a gather's time to its last reply within 1.5 × the
//! slowest of the single round trips to the same workers.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use eventbus::Topic;
use eventbus::client::GatherOptions;
use serde_json::{Value, json};

use crate::roles::{connect, histogram, ready, summary};
use crate::suite::{SuiteArgs, finish, start};

/// Worker processes a gather goes to.
pub const GATHER_WORKERS: usize = 5;
/// How long the NATS way waits for replies after each publish.
const INBOX_WAIT: Duration = Duration::from_millis(20);
/// Rounds of the NATS way (each lasts [`INBOX_WAIT`]).
const INBOX_ROUNDS: u64 = 100;

/// Arguments of `busbench gather-worker`.
#[derive(Debug, clap::Args)]
pub struct GatherWorkerArgs {
    /// Socket to connect to.
    #[arg(long)]
    pub socket: PathBuf,
    /// This worker's number: it answers requests on `bench.gather.<N>`.
    #[arg(long)]
    pub index: usize,
}

/// Answers requests on `bench.gather.all` and `bench.gather.<index>` with
/// their payload, and messages on `bench.gather.nats` by publishing their
/// payload to the inbox topic they name.
pub async fn worker(args: &GatherWorkerArgs) -> anyhow::Result<()> {
    let client = connect(&args.socket).await?;
    let mut all = client.subscribe("bench.gather.all").await?;
    let mut mine = client
        .subscribe(format!("bench.gather.{}", args.index).as_str())
        .await?;
    let mut nats = client.subscribe("bench.gather.nats").await?;
    ready();
    loop {
        tokio::select! {
            m = all.next() => {
                let Some(m) = m else { break };
                client.reply(&m, m.payload().clone())?;
            }
            m = mine.next() => {
                let Some(m) = m else { break };
                client.reply(&m, m.payload().clone())?;
            }
            m = nats.next() => {
                let Some(m) = m else { break };
                let inbox = std::str::from_utf8(m.payload()).context("an inbox topic")?;
                client.publish(inbox, "")?;
            }
        }
    }
    Ok(())
}

/// Arguments of `busbench gather-rtt`.
#[derive(Debug, clap::Args)]
pub struct GatherRttArgs {
    /// Socket to connect to.
    #[arg(long)]
    pub socket: PathBuf,
    /// Workers running (`gather-worker --index 0..N`).
    #[arg(long, default_value_t = GATHER_WORKERS)]
    pub workers: usize,
    /// Measured rounds.
    #[arg(long, default_value_t = 2_000)]
    pub count: u64,
    /// Rounds before measuring.
    #[arg(long, default_value_t = 200)]
    pub warmup: u64,
}

/// Each round: one request to each worker in turn (each timed), then one
/// gather to all of them; then the NATS way for [`INBOX_ROUNDS`] rounds.
/// Prints one JSON line.
pub async fn rtt(args: &GatherRttArgs) -> anyhow::Result<()> {
    let client = connect(&args.socket).await?;
    let wait = Duration::from_secs(5);
    let topics: Vec<Topic> = (0..args.workers)
        .map(|i| Topic::new(format!("bench.gather.{i}")))
        .collect::<Result<_, _>>()?;
    let all = Topic::new("bench.gather.all")?;
    let payload = bytes::Bytes::from(vec![7u8; 64]);
    let (mut gather_h, mut slowest_h, mut sequential_h) = (histogram(), histogram(), histogram());
    let mut over_slowest = Vec::with_capacity(args.count as usize);
    for round in 0..args.warmup + args.count {
        let mut slowest = Duration::ZERO;
        let sequential = Instant::now();
        for topic in &topics {
            let start = Instant::now();
            client.request(topic, payload.clone(), wait).await?;
            slowest = slowest.max(start.elapsed());
        }
        let sequential = sequential.elapsed();
        let start = Instant::now();
        let replies = client
            .gather(&all, payload.clone(), GatherOptions::new(wait))
            .await?
            .all()
            .await?;
        let gathered = start.elapsed();
        if replies.len() != args.workers {
            bail!("{} replies from {} workers", replies.len(), args.workers);
        }
        if round >= args.warmup {
            gather_h.record(gathered.as_nanos() as u64)?;
            slowest_h.record(slowest.as_nanos() as u64)?;
            sequential_h.record(sequential.as_nanos() as u64)?;
            over_slowest.push(gathered.as_secs_f64() / slowest.as_secs_f64());
        }
    }
    over_slowest.sort_by(f64::total_cmp);
    let median_ratio = over_slowest.get(over_slowest.len() / 2).copied();

    // The NATS way: a shared inbox, replies until the timeout.
    let inbox = format!("bench.inbox.{}", std::process::id());
    let mut replies = client.subscribe(inbox.as_str()).await?;
    let mut last_h = histogram();
    let mut incomplete = 0u64;
    for _ in 0..INBOX_ROUNDS {
        let start = Instant::now();
        client
            .publish_confirmed("bench.gather.nats", inbox.clone())
            .await?;
        let deadline = tokio::time::Instant::now() + INBOX_WAIT;
        let mut got = 0;
        let mut last = None;
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, replies.next()).await {
            got += 1;
            last = Some(start.elapsed());
        }
        match last {
            Some(last) if got == args.workers => last_h.record(last.as_nanos() as u64)?,
            _ => incomplete += 1,
        }
    }
    let gather = summary(&gather_h);
    let slowest = summary(&slowest_h);
    let ratio = |a: &Value, b: &Value, k: &str| {
        a[k].as_f64().unwrap_or(f64::NAN) / b[k].as_f64().unwrap_or(f64::NAN)
    };
    println!(
        "{}",
        json!({
            "workers": args.workers,
            "gather": gather,
            "slowest_single": slowest,
            "sequential": summary(&sequential_h),
            "gather_over_slowest_p50": ratio(&gather, &slowest, "p50_us"),
            "gather_over_slowest_p99": ratio(&gather, &slowest, "p99_us"),
            "gather_over_slowest_per_round_median": median_ratio,
            "inbox": {
                "wait_ms": INBOX_WAIT.as_millis() as u64,
                "rounds": INBOX_ROUNDS,
                "last_reply": summary(&last_h),
                "incomplete_rounds": incomplete,
            },
        })
    );
    Ok(())
}

/// The suite's `gather` section, unpinned and pinned to one CPU: a broker
/// and [`GATHER_WORKERS`] worker processes, and next to it the floor: a
/// fan-out relay in front of [`GATHER_WORKERS`] echo processes (one round =
/// 64 bytes out, 5 × 64 back), and the same relay in front of one echo
/// process (the single round trip's floor).
pub fn measure(args: &SuiteArgs, dir: &Path) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let count = (args.count / 10).max(100).to_string();
    let warmup = (args.warmup / 10).max(10).to_string();
    let mut runs = Vec::new();
    for pinned in [false, true] {
        let mut run = {
            let sock = dir.join("g.sock").to_string_lossy().into_owned();
            let _ = std::fs::remove_file(&sock);
            let (_broker, _) = start(pinned, &args.broker, &["--socket", &sock])?;
            let _workers: Vec<_> = (0..GATHER_WORKERS)
                .map(|i| {
                    let index = i.to_string();
                    start(
                        pinned,
                        &me,
                        &["gather-worker", "--socket", &sock, "--index", &index],
                    )
                })
                .collect::<Result<_, _>>()?;
            finish(
                pinned,
                &me,
                &[
                    "gather-rtt",
                    "--socket",
                    &sock,
                    "--count",
                    &count,
                    "--warmup",
                    &warmup,
                ],
            )?
        };
        let echoes: Vec<String> = (0..GATHER_WORKERS)
            .map(|i| {
                dir.join(format!("ge{i}.sock"))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let _echoes: Vec<_> = echoes
            .iter()
            .map(|sock| {
                let _ = std::fs::remove_file(sock);
                start(pinned, &me, &["echo", "--listen", sock])
            })
            .collect::<Result<_, _>>()?;
        let mut floors = serde_json::Map::new();
        for (name, upstreams) in [("single", &echoes[..1]), ("fanout", &echoes[..])] {
            let relay = dir
                .join(format!("gr-{name}.sock"))
                .to_string_lossy()
                .into_owned();
            let _ = std::fs::remove_file(&relay);
            let mut relay_args = vec!["fanout-relay".to_owned(), "--listen".into(), relay.clone()];
            for up in upstreams {
                relay_args.extend(["--upstream".to_owned(), up.clone()]);
            }
            let _relay = start(pinned, &me, &relay_args)?;
            let replies = upstreams.len().to_string();
            let floor = finish(
                pinned,
                &me,
                &[
                    "raw-fanout",
                    "--socket",
                    &relay,
                    "--count",
                    &count,
                    "--warmup",
                    &warmup,
                    "--replies",
                    &replies,
                ],
            )?;
            floors.insert(name.into(), floor);
        }
        let ratio = |a: &Value, b: &Value| {
            a["p50_us"].as_f64().unwrap_or(f64::NAN) / b["p50_us"].as_f64().unwrap_or(f64::NAN)
        };
        run["floor"] = Value::Object(floors);
        run["gather_over_fanout_floor_p50"] = json!(ratio(&run["gather"], &run["floor"]["fanout"]));
        run["single_over_single_floor_p50"] =
            json!(ratio(&run["slowest_single"], &run["floor"]["single"]));
        run["fanout_floor_over_single_floor_p50"] =
            json!(ratio(&run["floor"]["fanout"], &run["floor"]["single"]));
        run["pinned"] = json!(pinned);
        runs.push(run);
    }
    Ok(json!(runs))
}
