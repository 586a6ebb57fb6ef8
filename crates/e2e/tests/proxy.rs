//! The fault proxy between real clients and a real broker process: every
//! fault it injects, and what the clients and the broker make of it.
//!
//! Timing assertions are lower bounds only (a delay is at least what was set);
//! every wait is a condition polled with a deadline.
#![cfg(target_os = "linux")]
#![forbid(unsafe_code)]

use std::future::poll_fn;
use std::path::Path;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use e2e::ClusterExt as _;
use e2e::{Cluster, CollectorBuilder, CollectorKind, DEADLINE, Direction, FaultProxy, wait_until};
use eventbus::client::{ConnectionEvent, ReconnectPolicy, RequestError};
use eventbus::{Client, ClientId, ClientOptions, Message, Topic, TopicFilter};
use futures_core::Stream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::broadcast;
use tokio::time::Instant;

/// Options for a client on `socket`: a relaxed heartbeat (0.5 s × 20), so only
/// the tests that mean to expire it do.
fn options(socket: &Path, id: &str) -> ClientOptions {
    ClientOptions::new(socket)
        .client_id(ClientId::new(id).unwrap())
        .request_timeout(DEADLINE)
        .heartbeat(Duration::from_millis(500), 20)
}

async fn connect(socket: &Path, id: &str) -> Client {
    Client::connect(options(socket, id))
        .await
        .unwrap_or_else(|e| panic!("{id} cannot connect to {}: {e}", socket.display()))
}

/// A client behind `proxy` subscribed to `ev.#`, and a publisher connected
/// to the broker directly: the setup of the tests that watch events cross
/// the proxy.
async fn watched_link(
    cluster: &Cluster,
    proxy: &FaultProxy,
) -> (Client, Client, eventbus::Subscription) {
    let behind = connect(proxy.socket(), "behind").await;
    let direct = connect(cluster.socket(), "direct").await;
    let events = subscribe(&behind, "ev.#").await;
    (behind, direct, events)
}

fn topic(name: &str) -> Topic {
    Topic::new(name).unwrap()
}

async fn subscribe(client: &Client, filter: &str) -> eventbus::Subscription {
    client
        .subscribe(&TopicFilter::new(filter).unwrap())
        .await
        .expect("subscribe")
}

/// A client straight on the broker answering every request on `name` with
/// `echo:` and the request's payload, from a task of its own.
async fn echo_service(cluster: &Cluster, name: &str) -> Client {
    let client = connect(cluster.socket(), "echo").await;
    let mut requests = subscribe(&client, name).await;
    let replier = client.clone();
    tokio::spawn(async move {
        while let Some(request) = poll_fn(|cx| Pin::new(&mut requests).poll_next(cx)).await {
            let mut payload = b"echo:".to_vec();
            payload.extend_from_slice(request.payload());
            let _ = replier.reply(&request, payload);
        }
    });
    client
}

/// The next item, failing the test after [`DEADLINE`].
async fn next<S: Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(DEADLINE, poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)))
        .await
        .expect("a stream item within the deadline")
        .expect("the stream is open")
}

/// The item the stream has ready now, if any, without waiting.
fn ready_now<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match Pin::new(stream).poll_next(&mut cx) {
        Poll::Ready(item) => item,
        Poll::Pending => None,
    }
}

/// Waits until the proxy holds `n` frames on their way to the client behind
/// it, and checks that none of them reached `events`.
async fn held_toward_client(proxy: &FaultProxy, events: &mut eventbus::Subscription, n: u64) {
    wait_until(&format!("{n} deliveries are held"), DEADLINE, || async {
        proxy.stats().to_client.held >= n
    })
    .await
    .unwrap();
    assert!(
        ready_now(events).is_none(),
        "a message crossed the partition"
    );
}

fn number(message: &Message) -> u32 {
    std::str::from_utf8(message.payload())
        .unwrap()
        .parse()
        .unwrap()
}

/// The next `n` numbered messages, in arrival order.
async fn numbers(subscription: &mut eventbus::Subscription, n: usize) -> Vec<u32> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(number(&next(subscription).await));
    }
    got
}

/// Waits for a connection event that `wanted` accepts, skipping others.
async fn event(
    events: &mut broadcast::Receiver<ConnectionEvent>,
    wanted: impl Fn(&ConnectionEvent) -> bool,
) -> ConnectionEvent {
    let end = Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(end, events.recv()).await {
            Ok(Ok(e)) if wanted(&e) => return e,
            Ok(Ok(_) | Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("connection events ended: {e}"),
            Err(_) => panic!("no such connection event within {DEADLINE:?}"),
        }
    }
}

fn reconnected(e: &ConnectionEvent) -> bool {
    matches!(e, ConnectionEvent::Reconnected { .. })
}

async fn request(client: &Client, name: &str, payload: &str) -> Result<Message, RequestError> {
    client
        .request(&topic(name), payload.to_owned(), DEADLINE)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_pass_through_unchanged_both_ways() {
    let cluster = Cluster::start().await;
    let proxy = cluster.fault_proxy(1).await;
    assert!(proxy.socket().starts_with(cluster.dir()));
    let _echo = echo_service(&cluster, "svc.echo").await;
    let behind = connect(proxy.socket(), "behind").await;
    let direct = connect(cluster.socket(), "direct").await;

    let reply = request(&behind, "svc.echo", "ping").await.expect("a reply");
    assert_eq!(&reply.payload()[..], b"echo:ping");

    let mut events = subscribe(&behind, "ev.#").await;
    for i in 0..10 {
        direct.publish(topic("ev.n"), i.to_string()).unwrap();
    }
    assert_eq!(numbers(&mut events, 10).await, (0..10).collect::<Vec<_>>());

    // A driver works behind a proxy like any client.
    let driver = e2e::Driver::connect(proxy.socket()).await.unwrap();
    let stats = driver.stats().await;
    assert!(stats.connections.iter().any(|c| c.id == "behind"));

    let s = proxy.stats();
    assert_eq!(s.connections, 2, "{s:?}");
    assert_eq!(s.open, 2, "{s:?}");
    assert_eq!(s.upstream_failures, 0);
    assert!(s.to_broker.frames >= 4 && s.to_client.frames >= 14, "{s:?}");
    assert!(s.to_client.bytes > s.to_client.frames * 5, "{s:?}");
    for d in [s.to_broker, s.to_client] {
        assert_eq!((d.dropped, d.duplicated), (0, 0), "{s:?}");
    }
    assert_eq!(s.torn, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_every_frame_and_keeps_their_order() {
    let cluster = Cluster::start().await;
    let proxy = cluster.fault_proxy(2).await;
    let _echo = echo_service(&cluster, "svc.echo").await;
    let (behind, direct, mut events) = watched_link(&cluster, &proxy).await;

    let latency = Duration::from_millis(50);
    proxy.set_latency(Direction::Both, latency, Duration::ZERO);
    let sent = Instant::now();
    request(&behind, "svc.echo", "slow").await.expect("a reply");
    assert!(
        sent.elapsed() >= 2 * latency,
        "a round trip through 50 ms each way took {:?}",
        sent.elapsed()
    );

    // Jitter far above the gap between frames would reorder them on a
    // datagram network; on a stream it only bunches them up.
    proxy.set_latency(
        Direction::ToClient,
        Duration::from_millis(2),
        Duration::from_millis(20),
    );
    for i in 0..100 {
        direct.publish(topic("ev.n"), i.to_string()).unwrap();
    }
    assert_eq!(
        numbers(&mut events, 100).await,
        (0..100).collect::<Vec<_>>()
    );
    assert_eq!(proxy.stats().to_client.dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_frames_time_a_request_out_until_cleared() {
    let cluster = Cluster::start().await;
    let proxy = cluster.fault_proxy(3).await;
    let _echo = echo_service(&cluster, "svc.echo").await;
    let behind = connect(proxy.socket(), "behind").await;

    proxy.set_drop(Direction::ToBroker, 1.0);
    let timeout = Duration::from_millis(300);
    let lost = behind
        .request(&topic("svc.echo"), "lost", timeout)
        .await
        .unwrap_err();
    assert_eq!(lost, RequestError::Timeout(timeout));
    let s = proxy.stats();
    assert!(s.to_broker.dropped >= 1, "{s:?}");
    assert_eq!(s.to_client.dropped, 0, "{s:?}");

    proxy.clear();
    let reply = request(&behind, "svc.echo", "back").await.expect("a reply");
    assert_eq!(&reply.payload()[..], b"echo:back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_frames_arrive_twice() {
    let cluster = Cluster::start().await;
    let proxy = cluster.fault_proxy(4).await;
    let (_behind, direct, mut events) = watched_link(&cluster, &proxy).await;

    proxy.set_duplicate(Direction::ToClient, 1.0);
    for i in 0..10 {
        direct.publish(topic("ev.n"), i.to_string()).unwrap();
    }
    let twice: Vec<u32> = (0..10).flat_map(|i| [i, i]).collect();
    assert_eq!(numbers(&mut events, 20).await, twice);
    let s = proxy.stats();
    assert!(s.to_client.duplicated >= 10, "{s:?}");
    assert_eq!(s.to_broker.duplicated, 0, "{s:?}");

    proxy.clear();
    direct.publish(topic("ev.n"), "10").unwrap();
    direct.publish(topic("ev.n"), "11").unwrap();
    assert_eq!(numbers(&mut events, 2).await, vec![10, 11]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_holds_frames_and_heal_releases_them_in_order() {
    let cluster = Cluster::start().await;
    let proxy = cluster.fault_proxy(5).await;
    let (_behind, direct, mut events) = watched_link(&cluster, &proxy).await;

    proxy.partition();
    assert!(proxy.is_partitioned());
    for i in 0..20 {
        direct
            .publish_confirmed(&topic("ev.n"), i.to_string())
            .await
            .unwrap();
    }
    held_toward_client(&proxy, &mut events, 20).await;

    proxy.heal();
    assert!(!proxy.is_partitioned());
    assert_eq!(numbers(&mut events, 20).await, (0..20).collect::<Vec<_>>());
    wait_until("nothing is held any more", DEADLINE, || async {
        let s = proxy.stats();
        s.to_client.held == 0 && s.to_broker.held == 0
    })
    .await
    .unwrap();
    assert_eq!(proxy.stats().connections, 1, "the connection survived");
}

/// One way: what the broker sends the client behind the proxy is held, what
/// that client sends the broker flows; heal releases the held, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_partition_holds_one_direction_and_lets_the_other_flow() {
    let cluster = Cluster::start().await;
    let proxy = cluster.fault_proxy(19).await;
    let (behind, direct, mut events) = watched_link(&cluster, &proxy).await;
    let mut up = subscribe(&direct, "up.#").await;

    proxy.partition_one_way(Direction::ToClient);
    assert!(proxy.is_partitioned());
    for i in 0..10 {
        direct
            .publish_confirmed(&topic("ev.n"), i.to_string())
            .await
            .unwrap();
        behind.publish(topic("up.n"), i.to_string()).unwrap();
    }
    assert_eq!(numbers(&mut up, 10).await, (0..10).collect::<Vec<_>>());
    held_toward_client(&proxy, &mut events, 10).await;

    proxy.heal();
    assert!(!proxy.is_partitioned());
    assert_eq!(numbers(&mut events, 10).await, (0..10).collect::<Vec<_>>());
    assert_eq!(proxy.stats().connections, 1, "the connection survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_past_the_heartbeat_ends_in_a_reconnection_after_heal() {
    let cluster = Cluster::start().await;
    let proxy = cluster.fault_proxy(6).await;
    let driver = cluster.driver().await;
    let behind =
        Client::connect(options(proxy.socket(), "behind").heartbeat(Duration::from_millis(100), 3))
            .await
            .unwrap();
    let mut messages = subscribe(&behind, "ev.#").await;
    let mut connection = behind.connection_events();

    proxy.partition();
    wait_until("the broker drops the silent client", DEADLINE, || async {
        !driver
            .stats()
            .await
            .connections
            .iter()
            .any(|c| c.id == "behind")
    })
    .await
    .unwrap();
    event(&mut connection, |e| {
        matches!(e, ConnectionEvent::Disconnected { .. })
    })
    .await;

    proxy.heal();
    event(&mut connection, reconnected).await;
    assert!(proxy.stats().connections >= 2, "{:?}", proxy.stats());
    driver
        .client()
        .publish(topic("ev.after"), "7")
        .expect("publish");
    assert_eq!(number(&next(&mut messages).await), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_frame_makes_the_broker_drop_the_connection_and_the_client_reconnects() {
    let cluster = Cluster::start().await;
    let proxy = cluster.fault_proxy(7).await;
    let _echo = echo_service(&cluster, "svc.echo").await;
    let behind = connect(proxy.socket(), "behind").await;
    request(&behind, "svc.echo", "before")
        .await
        .expect("a reply");
    let mut connection = behind.connection_events();

    proxy.tear(Direction::ToBroker);
    // The request, or a heartbeat just before it, is the torn frame; either
    // way the request may fail with the connection.
    let _ = request(&behind, "svc.echo", "torn").await;
    wait_until("one frame torn", DEADLINE, || async {
        proxy.stats().torn == 1
    })
    .await
    .unwrap();
    let log = cluster.broker().logs().stderr.clone();
    wait_until(
        "the broker reports the truncated frame",
        DEADLINE,
        || async {
            std::fs::read_to_string(&log).is_ok_and(|text| text.contains("stream ended mid-frame"))
        },
    )
    .await
    .unwrap();
    event(&mut connection, reconnected).await;

    let reply = request(&behind, "svc.echo", "after")
        .await
        .expect("a reply");
    assert_eq!(&reply.payload()[..], b"echo:after");
    let s = proxy.stats();
    assert_eq!(s.torn, 1, "one-shot: {s:?}");
    assert!(s.connections >= 2, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_paces_the_bytes() {
    let cluster = Cluster::start().await;
    let proxy = cluster.fault_proxy(8).await;
    let (_behind, direct, mut events) = watched_link(&cluster, &proxy).await;

    let rate = 256 * 1024;
    proxy.set_bandwidth(Direction::ToClient, Some(rate));
    let chunk = vec![b'x'; 4096];
    let sent = Instant::now();
    for _ in 0..16 {
        direct.publish(topic("ev.bulk"), chunk.clone()).unwrap();
    }
    for _ in 0..16 {
        assert_eq!(next(&mut events).await.payload().len(), 4096);
    }
    // 64 KiB at 256 KiB/s is 0.25 s; the frames' headers only add to it.
    let took = sent.elapsed();
    assert!(took >= Duration::from_millis(200), "64 KiB took {took:?}");
    assert!(proxy.stats().to_client.bytes >= 16 * 4096);

    proxy.set_bandwidth(Direction::ToClient, None);
    direct.publish(topic("ev.bulk"), chunk).unwrap();
    assert_eq!(next(&mut events).await.payload().len(), 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reconnect_through_the_proxy_after_a_broker_restart() {
    let mut cluster = Cluster::start().await;
    let proxy = cluster.fault_proxy(9).await;
    let behind = connect(proxy.socket(), "behind").await;
    let mut messages = subscribe(&behind, "ev.#").await;
    let mut connection = behind.connection_events();

    // A crash first: while the broker is down, every reconnection through the
    // proxy finds no broker behind it and is closed at once.
    cluster.broker_mut().kill();
    wait_until("the proxy fails to reach the broker", DEADLINE, || async {
        proxy.stats().upstream_failures >= 1
    })
    .await
    .unwrap();
    cluster.broker_mut().restart().await;
    event(&mut connection, reconnected).await;

    let direct = connect(cluster.socket(), "direct-1").await;
    direct.publish(topic("ev.after"), "1").unwrap();
    assert_eq!(number(&next(&mut messages).await), 1);
    // Gone before the next restart: a client reconnecting under the same id
    // as the next one would take the id over and close the other's link.
    direct.close().await;

    // Then a graceful restart, with the subscription restored again.
    cluster.broker_mut().restart().await;
    event(&mut connection, reconnected).await;
    let direct = connect(cluster.socket(), "direct-2").await;
    direct.publish(topic("ev.after"), "2").unwrap();
    assert_eq!(number(&next(&mut messages).await), 2);
    wait_until("only the new connection is open", DEADLINE, || async {
        proxy.stats().open == 1
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_process_behind_a_slow_proxy_serves_tasks() {
    let cluster = Cluster::start().await;
    let proxy = cluster.fault_proxy(12).await;
    let collector = cluster
        .add_collector_behind(&proxy, CollectorBuilder::new(CollectorKind::Process, 1))
        .await;
    let driver = cluster.driver().await;
    let latency = Duration::from_millis(30);
    proxy.set_latency(Direction::Both, latency, Duration::ZERO);
    let sent = Instant::now();
    let reply = driver
        .request_task(CollectorKind::Process, "t-1", DEADLINE)
        .await
        .expect("a reply through the proxy");
    // The task goes to the collector and its reply comes back: once each way.
    assert!(sent.elapsed() >= 2 * latency, "{:?}", sent.elapsed());
    assert_eq!(reply.collector_id, collector.id());
    let s = proxy.stats();
    assert_eq!((s.connections, s.open), (1, 1), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_length_prefix_closes_both_sides() {
    let cluster = Cluster::start().await;
    let proxy = cluster.fault_proxy(10).await;
    let mut raw = tokio::net::UnixStream::connect(proxy.socket())
        .await
        .unwrap();
    let len = u32::try_from(e2e::proxy::MAX_FRAME_BYTES + 1).unwrap();
    raw.write_all(&len.to_be_bytes()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(DEADLINE, raw.read(&mut buf))
        .await
        .expect("the proxy closes the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    wait_until("the connection is closed", DEADLINE, || async {
        proxy.stats().open == 0
    })
    .await
    .unwrap();
    let s = proxy.stats();
    assert_eq!((s.to_broker.frames, s.to_broker.bytes), (0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_proxy_closes_its_connections_and_its_socket() {
    let cluster = Cluster::start().await;
    let proxy: FaultProxy = cluster.fault_proxy(11).await;
    let socket = proxy.socket().to_owned();
    let behind = Client::connect(options(&socket, "behind").reconnect(ReconnectPolicy::disabled()))
        .await
        .unwrap();
    drop(proxy);
    tokio::time::timeout(DEADLINE, behind.closed())
        .await
        .expect("the client loses its connection");
    assert!(!socket.exists(), "{} is left behind", socket.display());
}
