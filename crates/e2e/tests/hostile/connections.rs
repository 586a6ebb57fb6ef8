//! The connection itself as the weapon: sockets that never say hello, a
//! `Hello` of a megabyte, messages no receiver can read, and nonsense.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use e2e::ClusterExt as _;
use e2e::hostile::garbage::{Live, broken_bytes, random_kind};
use e2e::hostile::{Next, RawClient, frame_len, hello, publish_filling};
use e2e::rng::Rng;
use e2e::{
    BrokerBuilder, Cluster, CollectorBuilder, CollectorKind, DEADLINE, RunOptions, task_ids,
    wait_until,
};
use eventbus::TopicFilter;
use eventbus::proto::{self, ErrorCode, frame::Kind};
use futures_core::Stream;

use super::{assert_refused, victim_tasks_complete};

/// The connection limit of the flood scenario.
const MAX_CONNECTIONS: usize = 16;
/// The most sockets the flood opens: far more than the limit.
const FLOOD: usize = 64;
/// Refusals in a row after which the broker is taken to be full.
const FULL: usize = 5;
/// How long a new silent socket is watched for a refusal.
const WATCH: Duration = Duration::from_millis(250);

/// Proves that sockets that never say hello count against
/// `max_connections`: with `max_connections = 16` (and a 60 s handshake
/// timeout, so nothing expires meanwhile), a collector and a driver
/// connected, an attacker opens silent sockets one at a time until 5 in a
/// row are refused with `ConnectionLimit` before any hello (at most 64);
/// a legitimate client then gets `ConnectionLimit` too, the connected
/// victim's tasks complete, and once the flood closes the legitimate client
/// connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_a_pre_hello_flood_cannot_exhaust_the_connections() {
    let config = format!("max_connections = {MAX_CONNECTIONS}\nhandshake_timeout_ms = 60000\n");
    let cluster = Cluster::start_with(BrokerBuilder::new().config_toml(config)).await;
    let _collector = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
        .await;
    let driver = cluster.driver().await;
    let mut flood = Vec::with_capacity(FLOOD);
    let (mut in_a_row, mut refused) = (0, 0);
    while in_a_row < FULL && flood.len() < FLOOD {
        let mut socket = RawClient::open(cluster.socket()).await.unwrap();
        match socket.next_frame(WATCH).await {
            Next::Frame(proto::Frame {
                kind: Some(Kind::Error(e)),
            }) if e2e::hostile::code(&e) == ErrorCode::ConnectionLimit => {
                in_a_row += 1;
                refused += 1;
            }
            _ => in_a_row = 0,
        }
        flood.push(socket);
    }
    let during = RawClient::connect(cluster.socket(), hello("legit")).await;
    assert!(
        in_a_row == FULL && during.is_err(),
        "{refused} of {} silent sockets refused; a legitimate client during the flood: {:?}",
        flood.len(),
        during.as_ref().map(|(_, w)| w)
    );
    assert_refused(
        during.map(drop),
        ErrorCode::ConnectionLimit,
        "legit during the flood",
    );
    victim_tasks_complete(&driver, "during-flood", "procmond-1").await;
    drop(flood);
    wait_until("the legitimate client connects", DEADLINE, || async {
        RawClient::connect(cluster.socket(), hello("legit"))
            .await
            .is_ok()
    })
    .await
    .unwrap();
}

/// Bytes of the attacker's `Hello.kind`: its frame just fits 1 MiB.
const HUGE_KIND: usize = 1_048_000;
/// Connections with a 64-byte kind, so stats no longer fit 1 KiB.
const CROWD: usize = 30;

/// Proves that `Hello` is bounded and stats work for everyone: a hello
/// whose `kind` is 1 MB is refused with `FrameTooLarge` (a hello frame has
/// its own small limit) and one of 4 KiB with `InvalidArgument`; a socket
/// announcing a 1 MiB frame before any hello is refused at once; stats
/// then work for an ordinary client, and a client with a 1 KiB frame limit
/// gets a trimmed snapshot that fits (`omitted_connections` > 0) rather
/// than none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_hello_is_bounded_and_stats_work_for_everyone() {
    let cluster = Cluster::start().await;
    let _collector = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
        .await;
    let driver = cluster.driver().await;
    let kind_of = |len: usize, id: &str| proto::Hello {
        kind: "k".repeat(len),
        ..hello(id)
    };
    let huge = RawClient::connect(cluster.socket(), kind_of(HUGE_KIND, "huge")).await;
    let long = RawClient::connect(cluster.socket(), kind_of(4096, "long")).await;
    let mut announcer = RawClient::open(cluster.socket()).await.unwrap();
    announcer
        .send_bytes(&(1u32 << 20).to_be_bytes())
        .await
        .unwrap();
    let announced = announcer.next_frame(DEADLINE).await;
    let stats = driver.try_stats().await;
    assert!(
        stats
            .as_ref()
            .is_ok_and(|s| s.connections.iter().any(|c| c.id == "procmond-1")),
        "stats for an ordinary client after a {HUGE_KIND}-byte kind: {:?}",
        stats.map(|s| s.connections.len())
    );
    assert_refused(huge.map(drop), ErrorCode::FrameTooLarge, "a 1 MB kind");
    assert_refused(long.map(drop), ErrorCode::InvalidArgument, "a 4 KiB kind");
    match announced {
        Next::Frame(proto::Frame {
            kind: Some(Kind::Error(e)),
        }) if e2e::hostile::code(&e) == ErrorCode::FrameTooLarge => {}
        other => panic!("a 1 MiB frame announced before hello: {other:?}"),
    }
    let mut crowd = Vec::with_capacity(CROWD);
    for i in 0..CROWD {
        let (client, _) = RawClient::connect(cluster.socket(), kind_of(64, &format!("c{i}")))
            .await
            .unwrap();
        crowd.push(client);
    }
    let small_hello = proto::Hello {
        max_frame_bytes: 1024,
        ..hello("small")
    };
    let (mut small, welcome) = RawClient::connect(cluster.socket(), small_hello)
        .await
        .unwrap();
    assert_eq!(welcome.max_frame_bytes, 1024);
    let trimmed = small.stats().await.unwrap();
    assert!(trimmed.omitted_connections > 0, "{trimmed:?}");
    let len = frame_len(&Kind::StatsResponse(Box::new(trimmed)));
    assert!(len <= 1024, "a {len}-byte stats frame for a 1 KiB reader");
}

/// The small subscriber's frame limit; a payload this large never fits it.
const SMALL_LIMIT: usize = 2048;

/// Proves that a delivery that would not fit its receiver's frame limit is
/// refused at publish, never dropped silently: a publish exactly as large
/// as the publisher's 1 MiB limit, whose delivery (with the broker's
/// stamps) would exceed the subscriber's 1 MiB, is refused with
/// `FrameTooLarge` naming the receiver; so is a 2 KiB payload to a
/// subscriber that reads frames of at most 2 KiB (confirmed, and fire-and-forget
/// with an `Error` without `seq`). Both subscribers stay connected and get
/// the next message that fits, and nothing before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_a_delivery_too_large_for_its_receiver_is_refused_at_publish() {
    let cluster = Cluster::start().await;
    let victim = cluster.driver().await;
    let victim_id = victim.client().client_id().as_str().to_owned();
    let mut big_inbox = victim
        .client()
        .subscribe(&TopicFilter::new("events.big").unwrap())
        .await
        .unwrap();
    let small_hello = proto::Hello {
        max_frame_bytes: SMALL_LIMIT as u32,
        ..hello("small")
    };
    let (mut small, _) = RawClient::connect(cluster.socket(), small_hello)
        .await
        .unwrap();
    small.subscribe(1, "events.small", "", 0).await.unwrap();
    let (mut attacker, welcome) = RawClient::connect(cluster.socket(), hello("mallory"))
        .await
        .unwrap();
    let full = publish_filling("events.big", welcome.max_frame_bytes as usize);
    let full_len = frame_len(&Kind::Publish(full.clone()));
    let too_big = attacker.publish_confirmed(full).await;
    let for_small = attacker
        .publish_to("events.small", vec![b'x'; SMALL_LIMIT])
        .await;
    attacker
        .send(Kind::Publish(proto::Publish {
            message: Some(e2e::hostile::message(
                "events.small",
                vec![b'x'; SMALL_LIMIT],
            )),
            ..Default::default()
        }))
        .await
        .unwrap();
    attacker.publish_to("events.big", "fits").await.unwrap();
    attacker.publish_to("events.small", "fits").await.unwrap();
    let next = std::future::poll_fn(|cx| Pin::new(&mut big_inbox).poll_next(cx));
    let first_big = tokio::time::timeout(DEADLINE, next).await.unwrap().unwrap();
    let first_small = small.next_delivery(DEADLINE).await.unwrap();
    let small_payload = first_small.message.unwrap_or_default().payload;
    assert!(
        too_big.is_err() && first_big.payload() == "fits",
        "a {full_len}-byte publish to a 1 MiB reader: {too_big:?}; the reader's next message \
         is {} bytes",
        first_big.payload().len()
    );
    let refusal = too_big.unwrap_err();
    assert_eq!(
        refusal.code(),
        Some(ErrorCode::FrameTooLarge),
        "{refusal:?}"
    );
    assert_eq!(refusal.detail("receiver"), victim_id);
    assert_eq!(
        small_payload, "fits",
        "the 2 KiB reader's next message; the 2 KiB publish was {for_small:?}"
    );
    assert_refused(
        for_small,
        ErrorCode::FrameTooLarge,
        "2 KiB to a 2 KiB reader",
    );
    let errors = attacker.take(|f| matches!(&f.kind, Some(Kind::Error(e)) if e.seq == 0));
    assert_eq!(errors.len(), 1, "the fire-and-forget refusal: {errors:?}");
}

/// Connections that send nonsense, at once.
const GARBAGE_CONNECTIONS: u64 = 24;
/// Rounds of random frames each of them sends after its hello, while the
/// victim's tasks run: each round learns where the broker's ids are, then
/// sends its frames.
const GARBAGE_ROUNDS: usize = 20;
/// Random frames per round.
const GARBAGE_FRAMES: usize = 30;

/// Proves that no connection, whatever it sends, takes the broker or
/// anyone else down (a panic while handling one connection's frames closes
/// only that connection): while a victim runs 100 tasks, 24 connections
/// send, from a printed seed, bytes that are not frames, or a hello
/// followed by up to 20 rounds of 30 frames of every kind with random
/// fields (ids around the
/// live ones, so acks, cancels and replies name other clients' deliveries
/// and requests; invalid names and modes; frames only a broker sends; a
/// second hello);
/// every task completes, the broker process is the same and still running,
/// and its stats answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_nonsense_from_many_connections_never_takes_the_broker_down() {
    let mut cluster = Cluster::start().await;
    // 20 ms per task: the victim's 100 tasks outlast the nonsense.
    let _collector = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1).delay_ms(20))
        .await;
    let driver = cluster.driver().await;
    let pid = cluster.broker().pid();
    let seed = e2e::rng::seed_from_env();
    println!("seed: {seed} (replay with {}={seed})", e2e::rng::SEED_ENV);
    let root = Rng::new(seed);
    let history = e2e::History::new();
    let run = tokio::spawn({
        let (driver, history) = (driver.clone(), history.clone());
        async move {
            let options = RunOptions::default().concurrency(4);
            driver
                .run_tasks(
                    CollectorKind::Process,
                    task_ids("victim", 100),
                    options,
                    &history,
                )
                .await
        }
    });
    wait_until("the victim's tasks run", DEADLINE, || async {
        driver
            .queue_stats(CollectorKind::Process)
            .await
            .is_some_and(|q| q.delivered >= 1)
    })
    .await
    .unwrap();
    let victim_done = Arc::new(AtomicBool::new(false));
    let mut attackers = tokio::task::JoinSet::new();
    for n in 0..GARBAGE_CONNECTIONS {
        let mut rng = root.fork(n);
        let socket = cluster.socket().to_owned();
        let victim_done = victim_done.clone();
        attackers.spawn(async move {
            let mut client = RawClient::open(&socket).await.unwrap();
            if n % 3 == 0 {
                let _ = client.send_bytes(&broken_bytes(&mut rng)).await;
            } else if client.hello(hello(&format!("garbage-{n}"))).await.is_ok() {
                // The probes' seqs stay clear of the nonsense's.
                client.set_next_seq(1 << 62);
                'rounds: for _ in 0..GARBAGE_ROUNDS {
                    if victim_done.load(Ordering::Relaxed) {
                        break;
                    }
                    // Where the broker's ids are: the nonsense names live ones.
                    let Ok(probe) = client.publish_to("events.probe", "x").await else {
                        break;
                    };
                    for _ in 0..GARBAGE_FRAMES {
                        if rng.chance(0.002) {
                            // Out of step for good (a frame cut short swallows
                            // whatever follows): the last thing it sends.
                            let _ = client.send_bytes(&broken_bytes(&mut rng)).await;
                            break 'rounds;
                        }
                        if client
                            .send(random_kind(&mut rng, Live(probe)))
                            .await
                            .is_err()
                        {
                            break 'rounds;
                        }
                    }
                }
            }
            // Whatever the broker made of it, it answers or closes.
            let _ = client.closed_within(Duration::from_millis(200)).await;
        });
    }
    let report = run.await.unwrap();
    victim_done.store(true, Ordering::Relaxed);
    while let Some(done) = attackers.join_next().await {
        done.unwrap();
    }
    let exited = cluster.broker_mut().try_exit();
    assert!(
        exited.is_none(),
        "the broker exited: {exited:?} (seed {seed})"
    );
    assert_eq!(cluster.broker().pid(), pid);
    assert!(
        report.failures.is_empty(),
        "seed {seed}: {:?}",
        report.failures
    );
    assert_eq!(report.replies.len(), 100);
    let stats = driver.try_stats().await;
    assert!(
        stats.is_ok(),
        "stats after the nonsense (seed {seed}): {stats:?}"
    );
    victim_tasks_complete(&driver, "after-nonsense", "procmond-1").await;
}
