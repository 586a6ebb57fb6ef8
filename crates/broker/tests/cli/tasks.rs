//! `ebctl tasks` against an `ebctl reply --echo` queue member.

use serde_json::Value;

use crate::harness::{TestBroker, assert_one_line};
use crate::reply::responder;

#[test]
fn tasks_are_all_answered_by_the_responder() {
    let broker = TestBroker::start();
    let (_responder, id) = responder(&broker, "work.echo", &["--queue", "workers", "--echo"]);
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
    assert_eq!(summary["by_source"][&id], 50, "{summary}");
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
    assert_eq!(reply["source"], id.as_str());
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
