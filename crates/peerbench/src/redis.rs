//! redis-server through the redis crate, over its Unix socket. The work
//! queue is a list (the fair analogue of a queue group: each task popped by
//! exactly one worker; no acks, a task popped by a worker that dies is
//! lost); the fan-out is pub/sub.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use e2e::bench::{Recorder, ready};
use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;

use crate::fanout::{Tally, WILDCARD_SUBS};
use crate::{IdleArgs, PubArgs, RttArgs, Target, TasksArgs};

/// The list the round-trip requests go to.
pub const RTT_QUEUE: &str = "bench.rtt";
/// The list the work-queue tasks go to.
pub const WORK_QUEUE: &str = "bench.work";
/// The fan-out channel of the scale role.
const FAN: &str = "bench.fan";
/// Most tasks pushed, popped or replied to in one command.
const BATCH: usize = 1_000;
/// A blocking pop waits this long (seconds) before it is made again.
const POP_WAIT_S: u64 = 1;

fn replies(queue: &str) -> String {
    format!("{queue}.replies")
}

fn client(target: &Target) -> anyhow::Result<redis::Client> {
    redis::Client::open(format!("unix://{}", target.addr))
        .with_context(|| format!("redis at {}", target.addr))
}

async fn connect(target: &Target) -> anyhow::Result<MultiplexedConnection> {
    // Blocking pops wait up to POP_WAIT_S: the response timeout must allow it.
    let config = redis::AsyncConnectionConfig::new()
        .set_response_timeout(crate::REPLY_TIMEOUT)
        .set_connection_timeout(crate::REPLY_TIMEOUT);
    Ok(client(target)?
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// Pops up to `count` entries from the right of `list`, waiting up to
/// `POP_WAIT_S` for the first.
async fn pop(
    con: &mut MultiplexedConnection,
    list: &str,
    count: usize,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let popped: Option<(String, Vec<Vec<u8>>)> = redis::cmd("BLMPOP")
        .arg(POP_WAIT_S)
        .arg(1)
        .arg(list)
        .arg("RIGHT")
        .arg("COUNT")
        .arg(count)
        .query_async(con)
        .await?;
    Ok(popped.map(|(_, items)| items).unwrap_or_default())
}

/// Answers every task on `queue`, taking up to `batch` at a time (as a bus
/// worker holds up to its prefetch), the replies in one `LPUSH`.
pub async fn worker(target: &Target, queue: &str, batch: usize) -> anyhow::Result<()> {
    let mut con = connect(target).await?;
    let back = replies(queue);
    ready();
    loop {
        let tasks = pop(&mut con, queue, batch).await?;
        if tasks.is_empty() {
            continue;
        }
        let mut push = redis::cmd("LPUSH");
        push.arg(&back);
        for task in &tasks {
            push.arg(&crate::reply_payload(task)[..]);
        }
        push.query_async::<()>(&mut con).await?;
    }
}

pub async fn rtt(args: &RttArgs) -> anyhow::Result<()> {
    let mut con = connect(&args.target).await?;
    let payload = crate::request_payload();
    let back = replies(RTT_QUEUE);
    let mut recorder = Recorder::new(args.count, args.samples);
    for i in 0..args.warmup + args.count {
        let start = Instant::now();
        redis::cmd("LPUSH")
            .arg(RTT_QUEUE)
            .arg(&payload[..])
            .query_async::<()>(&mut con)
            .await?;
        let reply: Option<(String, Vec<u8>)> = redis::cmd("BRPOP")
            .arg(&back)
            .arg(crate::REPLY_TIMEOUT.as_secs())
            .query_async(&mut con)
            .await?;
        if reply.is_none() {
            bail!("no reply within {:?}", crate::REPLY_TIMEOUT);
        }
        if i >= args.warmup {
            recorder.record(start.elapsed())?;
        }
    }
    recorder.report();
    Ok(())
}

/// Keeps `concurrency` tasks in the list or with workers: pushes as many as
/// there is room for in one `LPUSH`, and pops replies from a connection of
/// their own (a blocking pop holds its connection).
pub async fn tasks(args: &TasksArgs) -> anyhow::Result<()> {
    let mut push_con = connect(&args.target).await?;
    let mut pop_con = connect(&args.target).await?;
    let room = Arc::new(tokio::sync::Semaphore::new(args.concurrency as usize));
    let payload = crate::request_payload();
    let count = args.count;
    let start = Instant::now();
    let sender = {
        let room = room.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            while sent < count {
                room.acquire().await?.forget();
                let more = room
                    .available_permits()
                    .min(BATCH - 1)
                    .min((count - sent - 1) as usize);
                if more > 0 {
                    room.acquire_many(more as u32).await?.forget();
                }
                let mut push = redis::cmd("LPUSH");
                push.arg(WORK_QUEUE);
                for _ in 0..=more {
                    push.arg(&payload[..]);
                }
                push.query_async::<()>(&mut push_con).await?;
                sent += more as u64 + 1;
            }
            anyhow::Ok(())
        })
    };
    let back = replies(WORK_QUEUE);
    let mut shares: HashMap<u64, u64> = HashMap::new();
    let mut received = 0u64;
    let mut quiet_since = Instant::now();
    while received < count {
        let got = pop(&mut pop_con, &back, BATCH).await?;
        if got.is_empty() {
            if quiet_since.elapsed() > crate::REPLY_TIMEOUT {
                bail!(
                    "{received} of {count} replies, then none for {:?}",
                    crate::REPLY_TIMEOUT
                );
            }
            continue;
        }
        quiet_since = Instant::now();
        for reply in &got {
            *shares.entry(crate::worker_of(reply)).or_default() += 1;
        }
        received += got.len() as u64;
        room.add_permits(got.len());
    }
    sender.await??;
    crate::report_tasks(
        count,
        args.concurrency,
        start.elapsed().as_secs_f64(),
        shares,
    );
    Ok(())
}

pub async fn idle(args: &IdleArgs) -> anyhow::Result<()> {
    let tally = Tally::new(args.clients as u64 * args.expect);
    let client = client(&args.target)?;
    for i in 0..args.clients {
        let mut pubsub = client.get_async_pubsub().await?;
        for j in 0..WILDCARD_SUBS {
            pubsub.psubscribe(format!("scale.c{i}.s{j}.*")).await?;
        }
        pubsub.subscribe(FAN).await?;
        let tally = tally.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while messages.next().await.is_some() {
                tally.count();
            }
        });
    }
    ready();
    tally.report(args.clients).await;
    Ok(())
}

pub async fn publish(args: &PubArgs) -> anyhow::Result<()> {
    let mut con = connect(&args.target).await?;
    let payload = crate::request_payload();
    let mut sent = 0;
    while sent < args.count {
        let n = (args.count - sent).min(BATCH as u64);
        let mut pipe = redis::pipe();
        for _ in 0..n {
            pipe.cmd("PUBLISH").arg(FAN).arg(&payload[..]).ignore();
        }
        pipe.query_async::<()>(&mut con).await?;
        sent += n;
    }
    println!("{}", serde_json::json!({"sent": sent}));
    Ok(())
}

// A blocking pop must end before the connection's response timeout.
const _: () = assert!(POP_WAIT_S < crate::REPLY_TIMEOUT.as_secs());
