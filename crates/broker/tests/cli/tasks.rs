//! `ebctl tasks` against a responder written with the eventbus library.

use std::future::poll_fn;
use std::path::Path;
use std::pin::Pin;

use eventbus::{Client, ClientId, ClientOptions, GroupName, TopicFilter};
use futures_core::Stream as _;
use serde_json::Value;

use crate::harness::{TestBroker, assert_one_line};

/// A queue-group member that echoes every request, on its own runtime.
///
/// The runtime's worker threads serve requests while the test thread blocks on
/// a `ebctl` process; dropping the responder shuts them down.
pub struct Responder {
    runtime: Option<tokio::runtime::Runtime>,
    /// Kept so the connection outlives the subscription task.
    _client: Client,
}

impl Responder {
    /// Connects as `id` and joins group `workers` on `topic`; returns once the
    /// broker has registered the membership.
    pub fn start(socket: &Path, topic: &str, id: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let options = ClientOptions::new(socket).client_id(ClientId::new(id).unwrap());
        let client = runtime.block_on(Client::connect(options)).unwrap();
        let filter = TopicFilter::new(topic).unwrap();
        let group = GroupName::new("workers").unwrap();
        let mut members = runtime
            .block_on(client.queue_subscribe(&filter, &group, 8))
            .unwrap();
        runtime.spawn(async move {
            while let Some(delivery) = poll_fn(|cx| Pin::new(&mut members).poll_next(cx)).await {
                let payload = delivery.message().payload().clone();
                delivery.reply(payload).unwrap();
            }
        });
        Self {
            runtime: Some(runtime),
            _client: client,
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[test]
fn tasks_are_all_answered_by_the_responder() {
    let broker = TestBroker::start();
    let _responder = Responder::start(&broker.socket, "work.echo", "responder-1");
    let out = broker
        .ebctl()
        .args([
            "tasks",
            "work.echo",
            "--count",
            "50",
            "--concurrency",
            "4",
            "--json",
        ])
        .assert()
        .success();
    let summary: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(summary["completed"], 50, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["timed_out"], 0, "{summary}");
    assert_eq!(summary["by_source"]["responder-1"], 50, "{summary}");
    let latency = &summary["latency_us"];
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(latency[key].as_u64().unwrap() > 0, "{key} in {summary}");
    }
    assert!(
        latency["p50"].as_u64() <= latency["max"].as_u64(),
        "{summary}"
    );
    assert!(
        summary["throughput_per_s"].as_f64().unwrap() > 0.0,
        "{summary}"
    );

    // The same run through `request`, with the responder's id in the reply.
    let out = broker
        .ebctl()
        .args(["request", "work.echo", "--payload", "ping", "--json"])
        .assert()
        .success();
    let reply: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(reply["source"], "responder-1");
    assert_eq!(reply["payload"], "ping");
    assert!(reply["latency_us"].as_u64().is_some(), "{reply}");
}

#[test]
fn tasks_without_responders_fail_with_exit_1() {
    let broker = TestBroker::start();
    let out = broker
        .ebctl()
        .args([
            "tasks",
            "work.none",
            "--count",
            "5",
            "--concurrency",
            "2",
            "--json",
        ])
        .assert()
        .code(1);
    let output = out.get_output();
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["completed"], 0, "{summary}");
    assert_eq!(summary["failed"], 5, "{summary}");
    assert_one_line(&output.stderr, "ebctl: ", "5 of 5 tasks did not complete");
}
