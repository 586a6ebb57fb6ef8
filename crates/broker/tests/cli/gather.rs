//! `ebctl gather`: every recipient's reply as it comes, a summary of who
//! answered, exit 1 when someone did not, typed failures in one line.

use serde_json::Value;

use crate::harness::{DEADLINE, Output, Process, TestBroker, assert_one_line};
use crate::reply::responder;

const TOPIC: &str = "control.collector.snapshot";

/// `ebctl subscribe TOPIC` as a child: a recipient that never answers.
fn silent(broker: &TestBroker) -> (Process, String) {
    let process = broker.spawn_ebctl("silent", &["subscribe", TOPIC]);
    let subscribed = format!("subscribed to {TOPIC}");
    process.wait_for_line_blocking(Output::Stderr, DEADLINE, |l| l == subscribed);
    let id = format!("ebctl-{}", process.pid());
    (process, id)
}

fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn a_gather_prints_every_reply_and_a_summary_and_exits_0_when_all_answered() {
    let broker = TestBroker::start();
    let (_member, member) = responder(&broker, TOPIC, &["--queue", "process", "--echo"]);
    let (_plain, plain) = responder(&broker, TOPIC, &["--echo"]);

    let out = broker
        .ebctl()
        .args(["gather", TOPIC, "--payload", "report", "--json"])
        .assert()
        .success();
    let lines = json_lines(&out.get_output().stdout);
    assert_eq!(lines.len(), 3, "two replies and a summary: {lines:?}");
    let mut sources: Vec<&str> = lines[..2]
        .iter()
        .map(|l| l["source"].as_str().unwrap())
        .collect();
    sources.sort_unstable();
    let mut expected = vec![member.as_str(), plain.as_str()];
    expected.sort_unstable();
    assert_eq!(sources, expected);
    assert!(
        lines[..2].iter().all(|l| l["payload"] == "report"),
        "{lines:?}"
    );
    let summary = &lines[2];
    assert_eq!(
        summary["answered"].as_array().unwrap().len(),
        2,
        "{summary}"
    );
    assert_eq!(summary["missing"], Value::Array(vec![]), "{summary}");

    // Only the members of one group.
    let out = broker
        .ebctl()
        .args(["gather", TOPIC, "--group", "process", "--payload", "x"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert_eq!(text.lines().next(), Some(format!("{member}: x").as_str()));
    assert!(
        text.lines().nth(1).unwrap().starts_with("answered 1/1 in "),
        "{text}"
    );
}

#[test]
fn a_recipient_that_does_not_answer_is_named_and_the_exit_code_is_1() {
    let broker = TestBroker::start();
    let (_answers, answers) = responder(&broker, TOPIC, &["--echo"]);
    let (_silent, silent) = silent(&broker);

    let out = broker
        .ebctl()
        .args(["gather", TOPIC, "--timeout-ms", "300"])
        .assert()
        .code(1);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], format!("{answers}: "));
    assert!(
        lines[1].starts_with("answered 1/2 in ")
            && lines[1].ends_with(&format!("; missing: {silent} (timed out)")),
        "{stdout}"
    );
    assert_one_line(
        &out.get_output().stderr,
        "ebctl: ",
        &format!("1 of 2 recipients did not answer: {silent} (timed out)"),
    );
}

#[test]
fn a_gather_nobody_can_answer_fails_and_bad_arguments_are_usage_errors() {
    let broker = TestBroker::start();
    let out = broker.ebctl().args(["gather", TOPIC]).assert().code(1);
    assert_one_line(&out.get_output().stderr, "ebctl: ", "no responders");

    let out = broker
        .ebctl()
        .args(["gather", TOPIC, "--group", "bad group"])
        .assert()
        .code(2);
    assert_one_line(&out.get_output().stderr, "ebctl: ", "");
    broker
        .ebctl()
        .args(["gather", TOPIC, "--group", "g", "--plain"])
        .assert()
        .code(2);
    let out = broker
        .ebctl()
        .args(["gather", "control.#"])
        .assert()
        .code(2);
    assert_one_line(&out.get_output().stderr, "ebctl: ", "");
}
