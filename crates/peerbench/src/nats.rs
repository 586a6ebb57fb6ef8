//! nats-server through async-nats: a queue group answers requests (core
//! NATS: no acks, a task lost with its worker is lost).

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Context;
use e2e::bench::{Recorder, ready};
use futures_util::StreamExt;

use crate::fanout::{Tally, WILDCARD_SUBS};
use crate::{IdleArgs, PubArgs, RttArgs, Target, TasksArgs};

/// The round-trip requests' subject.
pub const RTT: &str = "bench.rtt";
/// The work queue's subject.
pub const WORK: &str = "bench.work";
/// The fan-out subject of the scale role.
const FAN: &str = "bench.fan";

async fn connect(target: &Target) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .request_timeout(Some(crate::REPLY_TIMEOUT))
        .connect(target.addr.as_str())
        .await
        .with_context(|| format!("connecting to nats-server at {}", target.addr))
}

/// Answers every request on `subject` as a member of queue group `group`.
pub async fn responder(target: &Target, subject: &str, group: &str) -> anyhow::Result<()> {
    let client = connect(target).await?;
    let mut requests = client
        .queue_subscribe(subject.to_owned(), group.to_owned())
        .await?;
    // The server has the subscription once it answers a ping after it.
    client.flush().await?;
    ready();
    while let Some(m) = requests.next().await {
        if let Some(reply) = m.reply {
            client
                .publish(reply, crate::reply_payload(&m.payload))
                .await?;
        }
    }
    Ok(())
}

pub async fn rtt(args: &RttArgs) -> anyhow::Result<()> {
    let client = connect(&args.target).await?;
    let payload = crate::request_payload();
    let mut recorder = Recorder::new(args.count, args.samples);
    for i in 0..args.warmup + args.count {
        let start = Instant::now();
        client.request(RTT, payload.clone()).await?;
        if i >= args.warmup {
            recorder.record(start.elapsed())?;
        }
    }
    recorder.report();
    Ok(())
}

pub async fn tasks(args: &TasksArgs) -> anyhow::Result<()> {
    let client = connect(&args.target).await?;
    let payload = crate::request_payload();
    let start = Instant::now();
    let mut loops = Vec::new();
    for i in 0..args.concurrency {
        let share = args.count / args.concurrency + u64::from(i < args.count % args.concurrency);
        let (client, payload) = (client.clone(), payload.clone());
        loops.push(tokio::spawn(async move {
            let mut answered: HashMap<u64, u64> = HashMap::new();
            for _ in 0..share {
                let reply = client.request(WORK, payload.clone()).await?;
                *answered
                    .entry(crate::worker_of(&reply.payload))
                    .or_default() += 1;
            }
            anyhow::Ok(answered)
        }));
    }
    let mut shares: HashMap<u64, u64> = HashMap::new();
    for l in loops {
        for (worker, n) in l.await?? {
            *shares.entry(worker).or_default() += n;
        }
    }
    crate::report_tasks(
        args.count,
        args.concurrency,
        start.elapsed().as_secs_f64(),
        shares,
    );
    Ok(())
}

pub async fn idle(args: &IdleArgs) -> anyhow::Result<()> {
    let tally = Tally::new(args.clients as u64 * args.expect);
    let mut held = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let client = connect(&args.target).await?;
        let mut subs = Vec::with_capacity(WILDCARD_SUBS);
        for j in 0..WILDCARD_SUBS {
            subs.push(client.subscribe(format!("scale.c{i}.s{j}.*")).await?);
        }
        let mut fan = client.subscribe(FAN).await?;
        client.flush().await?;
        let tally = tally.clone();
        tokio::spawn(async move {
            while fan.next().await.is_some() {
                tally.count();
            }
        });
        held.push((client, subs));
    }
    ready();
    tally.report(args.clients).await;
    Ok(())
}

pub async fn publish(args: &PubArgs) -> anyhow::Result<()> {
    let client = connect(&args.target).await?;
    let payload = crate::request_payload();
    for _ in 0..args.count {
        client.publish(FAN, payload.clone()).await?;
    }
    client.flush().await?;
    println!("{}", serde_json::json!({"sent": args.count}));
    Ok(())
}
