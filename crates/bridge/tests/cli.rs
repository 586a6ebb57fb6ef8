//! The `eventbus-bridge` binary as the fleet harness runs it: the contract's
//! command line, ready line, exit codes and status topic. No NATS server is
//! needed: the bridge is ready while NATS is unreachable.

use std::process::Command;

mod support;

use eventbus_bridge::status::Status;
use eventbus_harness::{DEADLINE, TestBroker, next};
use support::{BIN, dead_nats};

fn bridge(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run eventbus-bridge")
}

#[test]
fn generate_config_prints_a_template_that_check_config_accepts() {
    let out = bridge(&["generate-config"]);
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bridge.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let check = bridge(&["check-config", file.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn a_bad_config_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (text, says) in [
        (
            "[nats]\nname = \"n\"\n[[import]]\nsubject = \"Fleet.>\"\n",
            "import rule 0",
        ),
        ("[nats]\nbogus = 1\n", "unknown field"),
        ("not toml at all [", "invalid config"),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        for args in [
            vec!["check-config", file.to_str().unwrap()],
            vec!["--config", file.to_str().unwrap()],
        ] {
            let out = bridge(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?} {text}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
            assert!(stderr.contains(says), "{stderr}");
        }
    }
    assert_eq!(
        bridge(&["check-config", "/nonexistent/x.toml"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(bridge(&[]).status.code(), Some(2));
    assert_eq!(bridge(&["--bogus"]).status.code(), Some(2));
}

#[test]
fn an_unreachable_local_broker_is_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bridge.toml");
    let socket = dir.path().join("nobody.sock");
    std::fs::write(
        &file,
        format!(
            "[local]\nsocket = {:?}\n[nats]\nname = \"n\"\nservers = [{:?}]\n",
            socket.display().to_string(),
            dead_nats()
        ),
    )
    .unwrap();
    let out = bridge(&["--config", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_while_nats_is_away_announces_its_status_and_stops_on_sigterm() {
    let broker = TestBroker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = support::config(
        dir.path(),
        &broker,
        "node1",
        "add_prefix = \"fleet.node1\"\n",
    );
    let watcher = broker.client("watcher").await;
    let mut status = watcher.subscribe("_sys.bridge.node1").await.unwrap();
    let mut process = support::start(&file, dir.path()).await;
    let ready = process.ready().expect("a JSON ready line").clone();
    assert_eq!(ready["event"], "ready");
    assert_eq!(ready["nats"], "connecting");
    assert_eq!(ready["pid"], process.pid());
    // Published events wait in the buffer, and the status says so.
    let publisher = broker.client("publisher").await;
    publisher.publish_confirmed("events.x", "e").await.unwrap();
    loop {
        let message = next(&mut status).await.expect("status announced");
        let s: Status = message.json().unwrap();
        assert_eq!((s.name.as_str(), s.nats.as_str()), ("node1", "connecting"));
        if s.buffered == 1 {
            break;
        }
    }
    // The local bus is untouched meanwhile.
    let mut events = watcher.subscribe("events.#").await.unwrap();
    publisher
        .publish_confirmed("events.y", "local")
        .await
        .unwrap();
    assert_eq!(next(&mut events).await.unwrap().payload(), "local");
    let exit = process.terminate(DEADLINE).await;
    assert!(exit.success(), "exit 0 on SIGTERM: {exit:?}");
}
