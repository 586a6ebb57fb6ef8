//! The JSON API against a real broker process: every endpoint's shape, and
//! numbers that agree with the traffic the test made: tasks through two
//! collectors, a dead letter, a slow consumer.

use std::time::Duration;

use e2e::ClusterExt as _;
use e2e::{CollectorBuilder, CollectorKind, DEADLINE, History, RunOptions, task_ids, wait_until};
use eventbus::{GroupName, Topic, TopicFilter};
use futures_core::Stream as _;
use serde_json::{Value, json};

use crate::support::{Stalled, cluster_with_http, get, get_json, raw};

const TASKS: usize = 30;
const NEWS: usize = 3000;

fn find<'a>(list: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|v| v[key] == value)
}

#[tokio::test]
async fn every_endpoint_reports_the_traffic_the_test_made() {
    let (cluster, addr) = cluster_with_http("[subscriber]\nmax_len = 16\n").await;
    let _one = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 1))
        .await;
    let _two = cluster
        .add_collector(CollectorBuilder::new(CollectorKind::Process, 2))
        .await;
    let driver = cluster.driver().await;
    let history = History::default();
    let report = driver
        .run_tasks(
            CollectorKind::Process,
            task_ids("t", TASKS),
            RunOptions::default().concurrency(4),
            &history,
        )
        .await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);

    // A dead letter: a member refuses a message.
    let client = driver.client();
    let group = GroupName::new("doomed").unwrap();
    let mut doomed = client
        .queue_subscribe(&TopicFilter::new("jobs.doomed").unwrap(), &group, 1)
        .await
        .unwrap();
    client
        .publish_confirmed(&Topic::new("jobs.doomed").unwrap(), "x")
        .await
        .unwrap();
    let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut doomed).poll_next(cx));
    let delivery = tokio::time::timeout(DEADLINE, next).await.unwrap().unwrap();
    delivery.nack(false).unwrap();

    // A slow consumer: subscribed, never reading.
    let _stalled = Stalled::subscribe(cluster.socket(), "stalled-1", "news.#").await;
    let news = Topic::new("news.flash").unwrap();
    for _ in 0..NEWS {
        client.publish_wait(&news, vec![b'n'; 1024]).await.unwrap();
    }

    // `publish_wait` returns once the client queued a message: wait for the
    // broker to have taken them all, and for the slow consumer's drops.
    wait_until("the broker took every news message", DEADLINE, || async {
        let topics = get_json(addr, "/api/v1/topics").await;
        find(&topics["topics"], "topic", "news.flash")
            .is_some_and(|t| t["published"].as_u64() == Some(NEWS as u64))
    })
    .await
    .unwrap();
    wait_until("the monitor sees the slow consumer", DEADLINE, || async {
        let clients = get_json(addr, "/api/v1/clients").await;
        find(&clients["clients"], "id", "stalled-1")
            .is_some_and(|c| c["dropped"].as_u64() > Some(0))
    })
    .await
    .unwrap();

    let health = get(addr, "/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ready", "{}", health.body);

    let clients = get_json(addr, "/api/v1/clients").await;
    let one = find(&clients["clients"], "id", "procmond-1").expect("procmond-1 listed");
    assert_eq!(one["kind"], "collector");
    assert!(one["identity"].as_str().unwrap().starts_with("uid:"));
    assert_eq!(one["capabilities"][0], "process");
    assert!(one["pid"].as_u64() > Some(0) && one["connected_at_ms"].as_u64() > Some(0));
    let stalled = find(&clients["clients"], "id", "stalled-1").unwrap();
    assert!(
        stalled["slow_consumer_events"].as_u64() >= Some(1),
        "{stalled}"
    );
    let body = clients.to_string();
    assert!(
        !body.contains("resume") && !body.contains("secret"),
        "{body}"
    );

    let queues = get_json(addr, "/api/v1/queues").await;
    let process = find(
        &queues["queues"],
        "filter",
        "control.collector.task.process",
    )
    .expect("the process group");
    assert_eq!(process["acked"], TASKS as u64, "{process}");
    assert_eq!(process["delivered"], TASKS as u64);
    assert_eq!(process["members"].as_array().unwrap().len(), 2);
    let members_acked: u64 = process["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["acked"].as_u64().unwrap())
        .sum();
    assert_eq!(members_acked, TASKS as u64);
    let dead = find(&queues["queues"], "group", "doomed").unwrap();
    assert_eq!(dead["dead_lettered"], 1);

    let workers = get_json(addr, "/api/v1/workers").await;
    let ok: u64 = ["procmond-1", "procmond-2"]
        .iter()
        .map(|id| {
            let w = find(&workers["workers"], "client_id", id).expect("a worker row");
            assert!(w["latency_p50_us"].as_u64().is_some(), "{w}");
            assert!(w["score"].as_u64() <= Some(100));
            w["ok"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(ok, TASKS as u64);

    let tasks = get_json(
        addr,
        "/api/v1/tasks?topic=control.collector.task.%23&limit=1000",
    )
    .await;
    let done: Vec<&Value> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["outcome"] == "acked")
        .collect();
    assert_eq!(done.len(), TASKS, "{tasks}");
    assert!(done.iter().all(|t| {
        t["attempts"][0]["collector"]
            .as_str()
            .unwrap()
            .starts_with("procmond-")
    }));
    let dead = get_json(addr, "/api/v1/tasks?outcome=dead_lettered").await;
    assert_eq!(dead["tasks"][0]["reason"], "rejected by the consumer");
    assert_eq!(dead["tasks"][0]["group"], "doomed");
    let by_one = get_json(addr, "/api/v1/tasks?collector=procmond-1&limit=1000").await;
    let by_two = get_json(addr, "/api/v1/tasks?collector=procmond-2&limit=1000").await;
    let (n1, n2) = (
        by_one["tasks"].as_array().unwrap().len(),
        by_two["tasks"].as_array().unwrap().len(),
    );
    assert_eq!(n1 + n2, TASKS, "every task went to one of them");

    let subs = get_json(addr, "/api/v1/subscriptions").await;
    let s = find(&subs["subscriptions"], "client_id", "stalled-1").unwrap();
    assert_eq!(
        (s["filter"].as_str(), s["group"].as_str()),
        (Some("news.#"), None)
    );

    let topics = get_json(addr, "/api/v1/topics").await;
    let flash = find(&topics["topics"], "topic", "news.flash").unwrap();
    assert_eq!(flash["published"], NEWS as u64);

    let stats = get_json(addr, "/api/v1/stats").await;
    for key in [
        "uptime_ms",
        "published",
        "delivered",
        "dropped",
        "rss_bytes",
        "connections",
        "queues",
        "topics",
    ] {
        assert!(
            stats.get(key).is_some(),
            "/api/v1/stats lacks {key}: {stats}"
        );
    }
    assert!(stats["published"].as_u64() >= Some((TASKS + NEWS + 1) as u64));

    // A sample taken after all of it.
    let total = stats["published"].as_u64().unwrap();
    wait_until("a sample after the traffic", DEADLINE, || async {
        let history = get_json(addr, "/api/v1/history?window=1m").await;
        history["samples"]
            .as_array()
            .and_then(|s| s.last())
            .is_some_and(|s| s["published"].as_u64() >= Some(total))
    })
    .await
    .unwrap();
    let history = get_json(addr, "/api/v1/history?window=1m").await;
    let samples = history["samples"].as_array().unwrap();
    assert!(
        samples
            .iter()
            .any(|s| s["publish_rate"].as_f64() > Some(0.0)),
        "{history}"
    );
    let overview = get_json(addr, "/api/v1/overview").await;
    assert_eq!(
        overview["connections"],
        clients["clients"].as_array().unwrap().len()
    );

    // A bridge announces its status: the API has it, parsed.
    let bridge = eventbus::Client::connect(
        eventbus::ClientOptions::new(cluster.socket())
            .client_id(eventbus::ClientId::new("bridge-n1").unwrap())
            .kind(eventbus::topic::BRIDGE_KIND),
    )
    .await
    .unwrap();
    bridge
        .publish_confirmed(
            &Topic::new("_sys.bridge.n1").unwrap(),
            r#"{"name":"n1","nats":"connected","exported":5}"#,
        )
        .await
        .unwrap();
    let bridges = get_json(addr, "/api/v1/bridges").await;
    let b = find(&bridges["bridges"], "name", "n1").unwrap();
    assert_eq!(
        (&b["client_id"], &b["connected"], &b["status"]["exported"]),
        (&json!("bridge-n1"), &json!(true), &json!(5)),
        "{bridges}"
    );

    let stats = get_json(addr, "/api/v1/stats").await;
    assert_eq!(stats["bridges"][0]["name"], "n1", "{stats}");
}

#[tokio::test]
async fn bad_requests_are_json_errors_and_the_listener_is_bounded() {
    let config = "[http]\nmax_connections = 3\nheader_timeout_ms = 30000\n";
    let (cluster, addr) = cluster_with_http(config).await;
    for (path, status) in [
        ("/api/v1/tasks?limit=abc", 400),
        ("/api/v1/tasks?limit=0", 400),
        ("/api/v1/tasks?outcome=maybe", 400),
        ("/api/v1/tasks?topic=Bad..Topic", 400),
        ("/api/v1/tasks?collector=no%20spaces", 400),
        ("/api/v1/tasks?limit=1&limit=2", 400),
        ("/api/v1/tasks?unknown=1", 400),
        ("/api/v1/history?window=5d", 400),
        ("/api/v1/history?window=100h", 400),
        ("/api/v1/history?window=", 400),
        ("/api/v1/clients?x", 400),
        ("/api/v1/nothing", 404),
        ("/api/v2/clients", 404),
        ("/../../etc/passwd", 404),
    ] {
        let response = get(addr, path).await;
        assert_eq!(response.status, status, "{path}: {}", response.body);
        let error = response.json();
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {error}"
        );
        assert_eq!(error["status"], status);
    }
    let post = raw(addr, format!("POST /api/v1/clients HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc").as_bytes()).await;
    assert_eq!(post.status, 405, "{}", post.body);
    // A page whose name was rebound to 127.0.0.1 names itself in `Host`.
    let request = "GET /healthz HTTP/1.1\r\nHost: attacker.example:80\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(addr, request.as_bytes()).await.status, 403);

    // A request head over max_request_bytes is refused, not buffered.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
        "x".repeat(64 * 1024)
    );
    let refused = raw_lossy(addr, huge.as_bytes()).await;
    assert!(
        refused
            .as_ref()
            .is_none_or(|status| *status == 431 || *status == 400),
        "{refused:?}"
    );

    // max_connections: three idle connections hold every slot; a fourth
    // request waits until one of them goes.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let waiting = tokio::spawn(async move { get(addr, "/healthz").await });
    // Not served while the slots are held: a bounded look, since nothing
    // can be polled for what does not happen (a loaded machine can only
    // make this pass, never fail, wrongly).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a fourth connection was served");
    held.pop();
    let served = tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(served.status, 200);
    drop(cluster);
}

/// Sends `request`; the status if a response came before the server closed.
async fn raw_lossy(addr: std::net::SocketAddr, request: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = stream.write_all(request).await;
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut bytes)).await;
    let text = String::from_utf8_lossy(&bytes);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok())
}
