//! The `ebctl` commands against a live broker, and its exit codes.

use serde_json::Value;

use crate::harness::{DEADLINE, Output, TestBroker, assert_one_line, ebctl, short_dir};

#[test]
fn publish_and_subscribe_round_trip() {
    let broker = TestBroker::start();
    let mut subscriber = broker.spawn_ebctl(
        "subscriber",
        &["subscribe", "t.x", "--count", "2", "--json"],
    );
    // Printed once the broker has registered the subscription.
    subscriber.wait_for_line_blocking(Output::Stderr, DEADLINE, |l| l == "subscribed to t.x");
    let id = format!("ebctl-{}", subscriber.pid());
    let stats = broker.stats();
    let connection = stats["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap_or_else(|| panic!("no connection {id} in {stats}"));
    assert_eq!(connection["kind"], "ebctl");

    let out = broker
        .ebctl()
        .args(["publish", "t.x", "--count", "2", "--payload", "hi"])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout).trim(),
        "published 2"
    );

    let status = subscriber.wait_exit_blocking(DEADLINE);
    assert!(status.success(), "{status}");
    let messages: Vec<Value> = subscriber
        .output(Output::Stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    for m in &messages {
        assert_eq!(m["topic"], "t.x");
        assert_eq!(m["payload"], "hi");
        assert_eq!(m["attempt"], 1);
        assert!(m["source"].as_str().unwrap().starts_with("ebctl-"), "{m}");
        assert!(m["id"].as_u64().unwrap() > 0, "{m}");
        assert!(m["timestamp_us"].as_u64().unwrap() > 0, "{m}");
        assert_eq!(m["headers"], serde_json::json!({}), "{m}");
    }
}

#[test]
fn subscribe_times_out_with_exit_1_when_too_few_messages_arrive() {
    let broker = TestBroker::start();
    let out = broker
        .ebctl()
        .args(["subscribe", "t.x", "--count", "1", "--timeout-ms", "100"])
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr:?}");
    assert_eq!(lines[0], "subscribed to t.x");
    assert!(lines[1].starts_with("ebctl: "), "{stderr:?}");
    assert!(lines[1].contains("received 0 of 1"), "{stderr:?}");
}

#[test]
fn a_request_without_responders_exits_1() {
    let broker = TestBroker::start();
    let out = broker
        .ebctl()
        .args(["request", "t.nobody"])
        .assert()
        .code(1);
    assert_one_line(&out.get_output().stderr, "ebctl: ", "no responders");
}

#[test]
fn an_invalid_topic_or_filter_is_a_usage_error() {
    let broker = TestBroker::start();
    for args in [
        &["publish", "Bad.Topic"][..],
        &["request", "a..b"],
        &["subscribe", "a.#.b"],
        &["tasks", "a.+", "--count", "1"],
    ] {
        let out = broker.ebctl().args(args).assert().code(2);
        assert_one_line(&out.get_output().stderr, "ebctl: ", "topic");
    }
}

#[test]
fn a_missing_socket_exits_1() {
    let dir = short_dir();
    let out = ebctl(&dir.path().join("none.sock"))
        .arg("stats")
        .assert()
        .code(1);
    assert_one_line(&out.get_output().stderr, "ebctl: ", "cannot connect");
}

#[test]
fn stats_json_has_every_documented_key() {
    let broker = TestBroker::start();
    let (responder, id) =
        crate::reply::responder(&broker, "work.echo", &["--queue", "workers", "--echo"]);
    broker.ebctl().args(["publish", "t.x"]).assert().success();
    let stats = broker.stats();
    let has = |v: &Value, keys: &[&str]| {
        for key in keys {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
    };
    has(
        &stats,
        &[
            "uptime_ms",
            "published",
            "delivered",
            "dropped",
            "rss_bytes",
            "connections",
            "queues",
            "topics",
            "journal",
        ],
    );
    assert!(stats["journal"].is_null(), "no journal open: {stats}");
    let connection = &stats["connections"][0];
    has(
        connection,
        &[
            "id",
            "pid",
            "kind",
            "published",
            "delivered",
            "acked",
            "in_flight",
            "dropped",
            "outbound_depth",
            "slow_consumer_events",
        ],
    );
    let queue = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["topic"] == "work.echo")
        .unwrap_or_else(|| panic!("no work.echo queue in {stats}"));
    has(
        queue,
        &[
            "topic",
            "group",
            "depth",
            "in_flight",
            "delivered",
            "acked",
            "nacked",
            "redelivered",
            "dropped",
            "rejected",
            "dead_lettered",
            "cancelled",
            "members",
        ],
    );
    let member = &queue["members"][0];
    has(
        member,
        &["client_id", "delivered", "acked", "in_flight", "prefetch"],
    );
    assert_eq!(member["client_id"], id.as_str());
    let topic = stats["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "t.x")
        .unwrap_or_else(|| panic!("no t.x topic in {stats}"));
    has(topic, &["topic", "published", "delivered"]);
    assert_eq!(topic["published"], 1);
    drop(responder);

    // The table form names the same sections.
    let out = broker.ebctl().arg("stats").assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for section in ["CONNECTIONS", "QUEUES", "TOPICS"] {
        assert!(text.contains(section), "{text}");
    }
}

#[test]
fn stats_watch_prints_one_document_per_interval_and_top_needs_a_terminal() {
    let broker = TestBroker::start();
    let out = broker
        .ebctl()
        .args(["stats", "--json", "--watch", "0.1", "--count", "3"])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let documents: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect();
    assert_eq!(documents.len(), 3, "{stdout}");
    let uptimes: Vec<u64> = documents
        .iter()
        .map(|d| d["uptime_ms"].as_u64().unwrap())
        .collect();
    assert!(uptimes.windows(2).all(|w| w[0] < w[1]), "{uptimes:?}");
    // Without a terminal, `top` says what to use instead.
    let out = broker.ebctl().arg("top").assert().code(2);
    assert_one_line(&out.get_output().stderr, "ebctl: ", "stats --watch");
}
