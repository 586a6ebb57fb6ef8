//! Emit tests: every collector type, run as a real process against a real
//! workload, must report real rows with populated fields, both as task replies
//! and as periodic events.
//!
//! The tripwire at the bottom fails when a type in `KNOWN_COLLECTORS` has no emit
//! test listed in [`EMIT_TESTS`] (or a listed test does not exist in this file)
//! and no documented carve-out in [`CARVE_OUTS`].

mod common;

use common::{Collector, ProcessBuilder, TestBroker, ask, next, wait_until};
use eventbus::TopicFilter;
use mock_collector::KNOWN_COLLECTORS;
use serde_json::json;

/// (collector capability, name of a test function in this file that checks it).
const EMIT_TESTS: &[(&str, &str)] = &[
    ("process", "process_collector_samples_a_busy_child"),
    ("process", "process_collector_emits_snapshots"),
    ("network", "network_collector_sees_a_listening_port"),
    ("network", "network_collector_emits_socket_counts"),
    ("filesystem", "filesystem_collector_counts_a_known_tree"),
    ("filesystem", "filesystem_collector_emits_usage"),
];

/// (collector capability, why it has no emit test). Empty: every type has one.
const CARVE_OUTS: &[(&str, &str)] = &[];

/// Three files of 10, 20 and 30 bytes, one of them in a subdirectory.
fn known_tree() -> tempfile::TempDir {
    let dir = common::temp_dir();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("ten"), [b'a'; 10]).unwrap();
    std::fs::write(dir.path().join("twenty"), [b'b'; 20]).unwrap();
    std::fs::write(dir.path().join("sub/thirty"), [b'c'; 30]).unwrap();
    dir
}

fn ticks(sample: &serde_json::Value) -> u64 {
    sample["utime_ticks"].as_u64().unwrap() + sample["stime_ticks"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_collector_samples_a_busy_child() {
    let broker = TestBroker::start().await;
    let _collector = Collector::start(broker.socket(), "process", 1, &[]).await;
    let busy = ProcessBuilder::new("busy", "sh")
        .args(["-c", "while :; do :; done"])
        .start()
        .await
        .unwrap();
    let client = broker.client("tester").await;
    let task = json!({"task_id": "p1", "pid": busy.pid()});
    let (reply, first) = ask(&client, "process", task.clone()).await;
    assert_eq!(reply.source(), "procmond-1");
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(first["task_id"], "p1");
    let data = &first["data"];
    assert_eq!(data["pid"].as_u64(), Some(u64::from(busy.pid())));
    assert_eq!(data["name"], "sh", "{data}");
    assert_eq!(
        data["ppid"].as_u64(),
        Some(u64::from(std::process::id())),
        "{data}"
    );
    assert!(data["rss_bytes"].as_u64().unwrap() > 0, "{data}");
    assert!(data["threads"].as_u64().unwrap() >= 1, "{data}");
    let timings = &first["timings"];
    assert!(timings["queued_us"].as_u64().unwrap() > 0, "{timings}");
    assert!(
        timings["started_us"].as_u64() <= timings["finished_us"].as_u64(),
        "{timings}"
    );
    let before = ticks(data);
    wait_until(
        "the busy child's CPU ticks advance",
        common::DEADLINE,
        || {
            let (client, task) = (client.clone(), task.clone());
            async move {
                let (_, again) = ask(&client, "process", task).await;
                ticks(&again["data"]) > before
            }
        },
    )
    .await
    .unwrap();
    drop(busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_collector_sees_a_listening_port() {
    let broker = TestBroker::start().await;
    let _collector = Collector::start(broker.socket(), "netmond", 1, &[]).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let client = broker.client("tester").await;
    let (reply, answer) = ask(&client, "network", json!({"task_id": "n1"})).await;
    assert_eq!(reply.source(), "netmond-1");
    assert_eq!(answer["status"], "ok", "{answer}");
    let data = &answer["data"];
    let listening = data["listening"].as_array().unwrap();
    let ours = listening
        .iter()
        .find(|l| l["proto"] == "tcp" && l["port"].as_u64() == Some(u64::from(port)));
    let ours = ours.unwrap_or_else(|| panic!("port {port} not among {listening:?}"));
    assert_eq!(ours["address"], "127.0.0.1");
    assert_eq!(ours["state"], "LISTEN");
    assert!(
        data["tables"]["tcp"]["by_state"]["LISTEN"]
            .as_u64()
            .unwrap()
            >= 1,
        "{data}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_collector_counts_a_known_tree() {
    let broker = TestBroker::start().await;
    let _collector = Collector::start(broker.socket(), "fsmond", 1, &[]).await;
    let tree = known_tree();
    let client = broker.client("tester").await;
    let task = json!({"task_id": "f1", "path": tree.path(), "hash_small_files": true});
    let (reply, answer) = ask(&client, "filesystem", task).await;
    assert_eq!(reply.source(), "fsmond-1");
    assert_eq!(answer["status"], "ok", "{answer}");
    let data = &answer["data"];
    assert_eq!(data["files"], 3, "{data}");
    assert_eq!(data["bytes"], 60, "{data}");
    assert_eq!(data["dirs"], 1, "{data}");
    assert_eq!(data["truncated"], false, "{data}");
    assert_eq!(data["hashed_files"], 3, "{data}");
    assert_eq!(
        data["content_hash"].as_str().map(str::len),
        Some(16),
        "{data}"
    );
}

/// Subscribes to `events.#`, starts a collector emitting every 50 ms and returns
/// the `data` of its first event on `topic` that satisfies `check`.
async fn first_event(
    kind: &str,
    topic: &str,
    extra: &[&str],
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let broker = TestBroker::start().await;
    let client = broker.client("listener").await;
    let mut events = client
        .subscribe(&TopicFilter::new("events.#").unwrap())
        .await
        .unwrap();
    let mut args = vec!["--emit-interval-ms", "50"];
    args.extend_from_slice(extra);
    let collector = Collector::start(broker.socket(), kind, 7, &args).await;
    loop {
        let event = next(&mut events).await.expect("event stream open");
        if event.topic() != topic {
            continue;
        }
        let body: serde_json::Value = serde_json::from_slice(event.payload()).unwrap();
        assert_eq!(
            body["collector_id"].as_str(),
            Some(collector.id.as_str()),
            "{body}"
        );
        assert!(body["timestamp_us"].as_u64().unwrap() > 0, "{body}");
        if check(&body["data"]) {
            return body["data"].clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_collector_emits_snapshots() {
    let data = first_event("process", "events.process.snapshot", &[], |d| {
        d["count"].as_u64() > Some(0)
    })
    .await;
    let top = data["top"].as_array().unwrap();
    assert!(!top.is_empty() && top.len() <= 5, "{data}");
    assert!(top[0]["rss_bytes"].as_u64().unwrap() > 0, "{data}");
    assert!(
        top[0]["name"].as_str().is_some_and(|n| !n.is_empty()),
        "{data}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_collector_emits_socket_counts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = u64::from(listener.local_addr().unwrap().port());
    let data = first_event("network", "events.network.sockets", &[], |d| {
        d["listening"]
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s["port"].as_u64() == Some(port)))
    })
    .await;
    assert!(
        data["tables"]["tcp"]["total"].as_u64().unwrap() >= 1,
        "{data}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_collector_emits_usage() {
    let tree = known_tree();
    let watch = tree.path().to_str().unwrap();
    let data = first_event(
        "filesystem",
        "events.filesystem.usage",
        &["--watch-path", watch],
        |d| d["files"].as_u64() > Some(0),
    )
    .await;
    assert_eq!(
        (data["files"].as_u64(), data["bytes"].as_u64()),
        (Some(3), Some(60)),
        "{data}"
    );
}

/// The attribute every emit test carries, right above its `async fn`.
const TEST_ATTRIBUTE: &str = "#[tokio::test(flavor = \"multi_thread\", worker_threads = 2)]";

/// Tripwire: a collector type added to the registry without an emit test (or a
/// documented carve-out) fails here.
#[test]
fn every_known_collector_has_an_emit_test_or_a_carve_out() {
    let source = include_str!("emit.rs");
    for &(kind, test) in EMIT_TESTS {
        assert!(
            KNOWN_COLLECTORS.iter().any(|t| t.capability() == kind),
            "EMIT_TESTS lists {kind:?}, which is not in KNOWN_COLLECTORS"
        );
        let is_test = source
            .find(&format!("async fn {test}("))
            .is_some_and(|at| source[..at].trim_end().ends_with(TEST_ATTRIBUTE));
        assert!(
            is_test,
            "EMIT_TESTS names {test:?}, which is not a test in this file"
        );
    }
    for &(kind, reason) in CARVE_OUTS {
        assert!(
            !reason.trim().is_empty(),
            "the carve-out for {kind:?} needs a reason"
        );
    }
    let missing: Vec<&str> = KNOWN_COLLECTORS
        .iter()
        .map(|t| t.capability())
        .filter(|kind| !EMIT_TESTS.iter().chain(CARVE_OUTS).any(|(k, _)| k == kind))
        .collect();
    assert!(
        missing.is_empty(),
        "collector types without an emit test or carve-out: {missing:?}"
    );
}
