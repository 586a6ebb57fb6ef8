//! mosquitto through rumqttc (MQTT 3.1.1) over mosquitto's Unix socket
//! listener. Requests and replies are QoS 0 (no acks); the work queue is a
//! shared subscription (`$share/workers/...`), mosquitto's queue group.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::bench::{Recorder, ready};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, Transport};

use crate::fanout::{Tally, WILDCARD_SUBS};
use crate::{IdleArgs, PubArgs, RttArgs, Target, TasksArgs};

/// The round-trip requests' topic.
pub const RTT: &str = "bench/rtt";
/// The work queue's topic.
pub const WORK: &str = "bench/work";
/// The fan-out topic of the scale role.
const FAN: &str = "bench/fan";
/// Seconds a connection attempt or a write may take.
const NETWORK_TIMEOUT_S: u64 = 60;
/// Requests the client queues for its event loop, at most.
const REQUEST_CHANNEL: usize = 16_384;

fn reply_topic(topic: &str) -> String {
    format!("{topic}/reply")
}

/// A client whose id is unique on the broker, and its event loop.
fn client(target: &Target) -> (AsyncClient, EventLoop) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = format!(
        "peerbench-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut options = MqttOptions::new(id, target.addr.as_str(), 0);
    options
        .set_transport(Transport::Unix)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(64 * 1024, 64 * 1024);
    let (client, mut events) = AsyncClient::new(options, REQUEST_CHANNEL);
    // rumqttc gives up on a write that takes longer than this (5 s by
    // default); a publisher fanning out to many clients waits on mosquitto
    // longer than that on a loaded machine.
    let mut network = rumqttc::NetworkOptions::new();
    network.set_connection_timeout(NETWORK_TIMEOUT_S);
    events.set_network_options(network);
    (client, events)
}

/// Subscribes to each of `filters` and polls until the broker has
/// acknowledged them all.
async fn subscribe(
    client: &AsyncClient,
    events: &mut EventLoop,
    filters: &[String],
) -> anyhow::Result<()> {
    for filter in filters {
        client.subscribe(filter.as_str(), QoS::AtMostOnce).await?;
    }
    let mut acked = 0;
    while acked < filters.len() {
        if let Event::Incoming(Packet::SubAck(_)) = events.poll().await.context("mosquitto")? {
            acked += 1;
        }
    }
    Ok(())
}

/// Answers every message on `topic` (shared subscription `workers`) with a
/// reply on its reply topic.
pub async fn worker(target: &Target, topic: &str) -> anyhow::Result<()> {
    let (client, mut events) = client(target);
    subscribe(&client, &mut events, &[format!("$share/workers/{topic}")]).await?;
    let back = reply_topic(topic);
    ready();
    loop {
        if let Event::Incoming(Packet::Publish(p)) = events.poll().await? {
            // The event loop must not wait on itself: `try_publish` queues
            // the reply without waiting (the channel has room for every
            // task in flight).
            client.try_publish(
                back.as_str(),
                QoS::AtMostOnce,
                false,
                crate::reply_payload(&p.payload),
            )?;
        }
    }
}

/// Hands every message the event loop receives to `on_message`, in a task
/// of its own.
fn spawn_loop(
    mut events: EventLoop,
    mut on_message: impl FnMut(&[u8]) + Send + 'static,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        loop {
            if let Event::Incoming(Packet::Publish(p)) = events.poll().await? {
                on_message(&p.payload);
            }
        }
    })
}

pub async fn rtt(args: &RttArgs) -> anyhow::Result<()> {
    let (client, mut events) = client(&args.target);
    subscribe(&client, &mut events, &[reply_topic(RTT)]).await?;
    let replies = Arc::new(tokio::sync::Notify::new());
    let loop_task = spawn_loop(events, {
        let replies = replies.clone();
        move |_| replies.notify_one()
    });
    let payload = crate::request_payload();
    let mut recorder = Recorder::new(args.count, args.samples);
    for i in 0..args.warmup + args.count {
        let start = Instant::now();
        client
            .publish(RTT, QoS::AtMostOnce, false, payload.clone())
            .await?;
        if tokio::time::timeout(crate::REPLY_TIMEOUT, replies.notified())
            .await
            .is_err()
        {
            bail!("no reply within {:?}", crate::REPLY_TIMEOUT);
        }
        if i >= args.warmup {
            recorder.record(start.elapsed())?;
        }
    }
    loop_task.abort();
    recorder.report();
    Ok(())
}

pub async fn tasks(args: &TasksArgs) -> anyhow::Result<()> {
    let (client, mut events) = client(&args.target);
    subscribe(&client, &mut events, &[reply_topic(WORK)]).await?;
    let room = Arc::new(tokio::sync::Semaphore::new(args.concurrency as usize));
    let shares = Arc::new(std::sync::Mutex::new(HashMap::<u64, u64>::new()));
    let received = Arc::new(AtomicU64::new(0));
    let loop_task = spawn_loop(events, {
        let (room, shares, received) = (room.clone(), shares.clone(), received.clone());
        move |reply| {
            *shares
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(crate::worker_of(reply))
                .or_default() += 1;
            received.fetch_add(1, Ordering::Relaxed);
            room.add_permits(1);
        }
    });
    let payload = crate::request_payload();
    let start = Instant::now();
    for _ in 0..args.count {
        room.acquire().await?.forget();
        client
            .publish(WORK, QoS::AtMostOnce, false, payload.clone())
            .await?;
    }
    // Every reply, or a run that lost some (QoS 0) and says so.
    let mut seen = 0;
    let mut quiet_since = Instant::now();
    while received.load(Ordering::Relaxed) < args.count {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = received.load(Ordering::Relaxed);
        if now != seen {
            (seen, quiet_since) = (now, Instant::now());
        } else if quiet_since.elapsed() > crate::REPLY_TIMEOUT {
            bail!(
                "{now} of {} replies, then none for {:?}",
                args.count,
                crate::REPLY_TIMEOUT
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    loop_task.abort();
    let shares = std::mem::take(&mut *shares.lock().unwrap_or_else(|p| p.into_inner()));
    crate::report_tasks(args.count, args.concurrency, secs, shares);
    Ok(())
}

pub async fn idle(args: &IdleArgs) -> anyhow::Result<()> {
    let tally = Tally::new(args.clients as u64 * args.expect);
    let mut held = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let (client, mut events) = client(&args.target);
        let mut filters: Vec<String> = (0..WILDCARD_SUBS)
            .map(|j| format!("scale/c{i}/s{j}/+"))
            .collect();
        filters.push(FAN.to_owned());
        subscribe(&client, &mut events, &filters).await?;
        let tally = tally.clone();
        spawn_loop(events, move |_| tally.count());
        held.push(client);
    }
    ready();
    tally.report(args.clients).await;
    Ok(())
}

/// Publishes COUNT - 1 messages at QoS 0, then one at QoS 1 and waits for
/// its ack: mosquitto has then taken every message before it.
pub async fn publish(args: &PubArgs) -> anyhow::Result<()> {
    let (client, mut events) = client(&args.target);
    let payload = crate::request_payload();
    let acked = tokio::spawn(async move {
        loop {
            if let Event::Incoming(Packet::PubAck(_)) = events.poll().await? {
                return anyhow::Ok(());
            }
        }
    });
    for i in 0..args.count {
        let qos = if i + 1 == args.count {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        client.publish(FAN, qos, false, payload.clone()).await?;
    }
    acked.await??;
    println!("{}", serde_json::json!({"sent": args.count}));
    Ok(())
}
