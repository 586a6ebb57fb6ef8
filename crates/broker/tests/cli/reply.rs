//! `ebctl reply` (echo and command responders), headers and payload files on
//! the sending side, `--json` output, completions and man pages.

use serde_json::Value;

use crate::harness::{DEADLINE, Output, Process, TestBroker, assert_one_line};

/// `ebctl reply FILTER ARGS...` as a child, returned once subscribed, with
/// its client id.
pub fn responder(broker: &TestBroker, filter: &str, args: &[&str]) -> (Process, String) {
    let args: Vec<&str> = ["reply", filter]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    // Each its own name: their logs (and the line waited for) are files
    // named after it.
    static RESPONDERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RESPONDERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let process = broker.spawn_ebctl(&format!("responder-{n}"), &args);
    let subscribed = format!("subscribed to {filter}");
    process.wait_for_line_blocking(Output::Stderr, DEADLINE, |l| l == subscribed);
    let id = format!("ebctl-{}", process.pid());
    (process, id)
}

fn json(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout).expect("JSON on stdout")
}

#[test]
fn an_echo_responder_answers_requests_with_their_payload_and_its_headers() {
    let broker = TestBroker::start();
    let (_responder, id) = responder(
        &broker,
        "work.echo",
        &["--queue", "workers", "--echo", "-H", "served-by=echo"],
    );
    let out = broker
        .ebctl()
        .args([
            "request",
            "work.echo",
            "--payload",
            "ping",
            "-H",
            "trace-id=t1",
        ])
        .arg("--json")
        .assert()
        .success();
    let reply = json(&out.get_output().stdout);
    assert_eq!(reply["payload"], "ping", "{reply}");
    assert_eq!(reply["source"], id.as_str(), "{reply}");
    assert_eq!(reply["headers"]["served-by"], "echo", "{reply}");
    let stats = broker.stats();
    let queue = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["topic"] == "work.echo")
        .unwrap_or_else(|| panic!("no work.echo queue in {stats}"));
    assert_eq!(queue["group"], "workers");
    assert_eq!(queue["acked"], 1, "a reply acks: {stats}");
}

#[test]
fn a_command_responder_replies_with_its_output_and_rejects_on_failure() {
    let broker = TestBroker::start();
    // Upper-cases the payload; fails on "fail"; sees the message's facts.
    let script = r#"input=$(cat); [ "$input" != fail ] || exit 3; printf '%s %s' "$EBCTL_TOPIC" "$input" | tr a-z A-Z"#;
    let (_responder, _) = responder(
        &broker,
        "work.cmd",
        &["--queue", "workers", "--command", script],
    );
    let out = broker
        .ebctl()
        .args(["request", "work.cmd", "--payload", "hello"])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout).trim(),
        "WORK.CMD HELLO"
    );
    // A failing command dead-letters the request: its requester fails at
    // once (exit 1), long before its timeout.
    let out = broker
        .ebctl()
        .args(["request", "work.cmd", "--payload", "fail"])
        .args(["--timeout-ms", "60000"])
        .assert()
        .code(1);
    assert_one_line(&out.get_output().stderr, "ebctl: ", "dead-lettered");
    // The responder goes on after a failure.
    broker
        .ebctl()
        .args(["request", "work.cmd", "--payload", "again"])
        .assert()
        .success();
}

#[test]
fn a_command_past_its_timeout_is_killed_and_the_request_rejected() {
    let broker = TestBroker::start();
    let (_responder, _) = responder(
        &broker,
        "work.slow",
        &[
            "--queue",
            "workers",
            "--command",
            "exec sleep 600",
            "--command-timeout-ms",
            "200",
        ],
    );
    let out = broker
        .ebctl()
        .args(["request", "work.slow", "--timeout-ms", "60000"])
        .assert()
        .code(1);
    assert_one_line(&out.get_output().stderr, "ebctl: ", "dead-lettered");
}

#[test]
fn headers_and_a_payload_from_stdin_reach_a_json_subscriber() {
    let broker = TestBroker::start();
    let mut subscriber = broker.spawn_ebctl(
        "subscriber",
        &["subscribe", "t.h", "--count", "1", "--json"],
    );
    subscriber.wait_for_line_blocking(Output::Stderr, DEADLINE, |l| l == "subscribed to t.h");

    let out = broker
        .ebctl()
        .args([
            "publish",
            "t.h",
            "--file",
            "-",
            "-H",
            "trace-id=7f",
            "--json",
        ])
        .write_stdin("{\"pid\":42}")
        .assert()
        .success();
    let published = out.get_output();
    let summary = json(&published.stdout);
    assert_eq!(summary["published"], 1, "{summary}");
    assert_eq!(summary["ids"].as_array().unwrap().len(), 1, "{summary}");

    assert!(subscriber.wait_exit_blocking(DEADLINE).success());
    let output = subscriber.output(Output::Stdout);
    let message: Value = serde_json::from_str(output.trim()).unwrap();
    assert_eq!(message["payload"], "{\"pid\":42}", "{message}");
    assert_eq!(message["headers"]["trace-id"], "7f", "{message}");
    assert_eq!(message["id"], summary["ids"][0], "{message}");
}

#[test]
fn bad_headers_and_unreadable_payload_files_are_usage_errors() {
    let broker = TestBroker::start();
    let out = broker
        .ebctl()
        .args(["publish", "t.x", "-H", "Trace-Id=1"])
        .assert()
        .code(2);
    assert_one_line(&out.get_output().stderr, "ebctl: ", "Trace-Id");
    let out = broker
        .ebctl()
        .args(["publish", "t.x", "--file", "/nonexistent/payload"])
        .assert()
        .code(2);
    assert_one_line(&out.get_output().stderr, "ebctl: ", "/nonexistent/payload");
    let out = broker
        .ebctl()
        .args(["reply", "t.x", "--queue", "Bad Group", "--echo"])
        .assert()
        .code(2);
    assert_one_line(&out.get_output().stderr, "ebctl: ", "Bad Group");
}

#[test]
fn completions_and_man_pages_are_generated_from_the_parser() {
    let broker = TestBroker::start();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = broker
            .ebctl()
            .args(["completions", shell])
            .assert()
            .success();
        let script = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        for command in ["publish", "reply", "subscribe"] {
            assert!(script.contains(command), "{shell}: no {command}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    broker
        .ebctl()
        .args(["man", "--out"])
        .arg(dir.path())
        .assert()
        .success();
    for page in ["ebctl.1", "ebctl-publish.1", "ebctl-reply.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
    assert!(
        !dir.path().join("ebctl-man.1").exists(),
        "the hidden command has no page"
    );
}
