//! A durable broker from the command line: `broker --durable --data-dir`,
//! `ebctl request --json` naming the request's id, and `ebctl result`
//! fetching its reply again — by the same client id only — also after the
//! broker restarted on the same journal.

use serde_json::Value;

use crate::harness::{TestBroker, assert_one_line, short_dir};
use crate::reply::responder;

fn json(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout).expect("JSON on stdout")
}

#[test]
fn a_durable_requests_reply_is_fetched_again_by_id_after_a_restart() {
    let data = short_dir();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let args = ["--durable", "--data-dir", data_dir.as_str()];
    let broker = TestBroker::start_in(short_dir(), &args);
    let (responder_process, responder_id) =
        responder(&broker, "work.scan", &["--queue", "workers", "--echo"]);

    let out = broker
        .ebctl()
        .args(["--client-id", "agent", "request", "work.scan"])
        .args(["--payload", "/etc", "--json"])
        .assert()
        .success();
    let reply = json(&out.get_output().stdout);
    let id = reply["message_id"].as_u64().expect("a message id");
    assert_eq!(reply["payload"], "/etc", "{reply}");

    // `ebctl stats` shows the journal: a line of text, an object in JSON.
    let out = broker.ebctl().arg("stats").assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("journal  live ")),
        "{text}"
    );
    let journal = &broker.stats()["journal"];
    assert!(journal["records"].as_u64() >= Some(1), "{journal}");
    assert_eq!(journal["disk_full"], false, "{journal}");

    // Again, by id, as the same client id.
    let out = broker
        .ebctl()
        .args(["--client-id", "agent", "result", &id.to_string(), "--json"])
        .assert()
        .success();
    let again = json(&out.get_output().stdout);
    assert_eq!(
        (&again["payload"], &again["source"], &again["message_id"]),
        (
            &Value::from("/etc"),
            &Value::from(responder_id.as_str()),
            &Value::from(id)
        ),
        "{again}"
    );
    // Another client id may not read it.
    let out = broker
        .ebctl()
        .args(["result", &id.to_string()])
        .assert()
        .code(1);
    assert_one_line(&out.get_output().stderr, "ebctl: ", "is not this client's");
    drop(responder_process);

    // The same journal after a restart still has it; an unknown id fails.
    drop(broker);
    let broker = TestBroker::start_in(short_dir(), &args);
    let out = broker
        .ebctl()
        .args(["--client-id", "agent", "result", &id.to_string()])
        .assert()
        .success();
    assert_eq!(String::from_utf8_lossy(&out.get_output().stdout), "/etc\n");
    let out = broker
        .ebctl()
        .args(["--client-id", "agent", "result", "999999999"])
        .assert()
        .code(1);
    assert_one_line(
        &out.get_output().stderr,
        "ebctl: ",
        "no durable request 999999999",
    );
}

#[test]
fn a_bad_message_id_or_client_id_is_a_usage_error() {
    let broker = TestBroker::start();
    let out = broker.ebctl().args(["result", "abc"]).assert().code(2);
    assert!(!out.get_output().stderr.is_empty());
    let out = broker
        .ebctl()
        .args(["--client-id", "Bad Id!", "stats"])
        .assert()
        .code(2);
    assert_one_line(&out.get_output().stderr, "ebctl: ", "invalid --client-id");
}
