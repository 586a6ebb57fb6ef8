//! The `broker` binary: readiness, the socket, shutdown and configuration.

use std::os::unix::fs::PermissionsExt as _;

use eventbus::BrokerConfig;

use crate::harness::{TestBroker, assert_one_line, short_dir};

#[test]
fn ready_line_names_socket_pid_and_version_and_the_socket_is_private() {
    let broker = TestBroker::start();
    let ready = broker.ready();
    assert_eq!(ready["event"], "ready");
    assert_eq!(ready["socket"], broker.socket.to_str().unwrap());
    assert_eq!(ready["pid"], broker.process.pid());
    assert_eq!(ready["version"], env!("CARGO_PKG_VERSION"));
    let mode = std::fs::metadata(&broker.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
}

#[test]
fn sigterm_exits_zero_and_removes_the_socket() {
    let mut broker = TestBroker::start();
    let status = broker.process.terminate_blocking(crate::harness::DEADLINE);
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(!broker.socket.exists(), "socket file left behind");
}

#[test]
fn a_second_broker_on_a_live_socket_refuses_to_start() {
    let broker = TestBroker::start();
    let out = assert_cmd::Command::cargo_bin("broker")
        .unwrap()
        .arg("--socket")
        .arg(&broker.socket)
        .timeout(crate::harness::DEADLINE)
        .assert()
        .failure();
    let out = out.get_output();
    assert!(out.stdout.is_empty(), "no ready line expected");
    assert_one_line(&out.stderr, "broker: ", "another broker is listening");
    // The first broker still serves.
    broker.ebctl().arg("stats").assert().success();
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = short_dir();
    let path = dir.path().join("b.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "the stale socket file stays behind");
    let broker = TestBroker::start_in(dir, &[]);
    assert_eq!(broker.socket, path);
    broker.ebctl().arg("stats").assert().success();
}

#[test]
fn generate_config_prints_the_defaults_as_toml_that_the_broker_accepts() {
    let out = assert_cmd::Command::cargo_bin("broker")
        .unwrap()
        .arg("generate-config")
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("# ")),
        "comments expected"
    );
    // `[http]` is the binary's (the process check below reads it); the rest
    // is the library's configuration.
    let mut table: toml::Table = toml::from_str(&text).unwrap();
    assert!(table.remove("http").is_some(), "an [http] section");
    assert_eq!(
        BrokerConfig::from_toml(&toml::to_string(&table).unwrap()).unwrap(),
        BrokerConfig::default()
    );

    let dir = short_dir();
    let file = dir.path().join("broker.toml");
    std::fs::write(&file, &text).unwrap();
    let broker = TestBroker::start_in(dir, &["--config", file.to_str().unwrap()]);
    broker.ebctl().arg("stats").assert().success();
}

#[test]
fn a_bad_config_fails_with_one_line_and_usage_errors_exit_2() {
    let dir = short_dir();
    let file = dir.path().join("broker.toml");
    std::fs::write(&file, "heartbeat_misses = \"often\"\n").unwrap();
    let broker = || {
        let mut cmd = assert_cmd::Command::cargo_bin("broker").unwrap();
        cmd.arg("--socket").arg(dir.path().join("b.sock"));
        cmd.timeout(crate::harness::DEADLINE);
        cmd
    };
    let out = broker().arg("--config").arg(&file).assert().code(1);
    assert_one_line(&out.get_output().stderr, "broker: ", "heartbeat_misses");
    let out = broker().args(["--max-connections", "0"]).assert().code(1);
    assert_one_line(&out.get_output().stderr, "broker: ", "max_connections");
    broker().arg("--no-such-flag").assert().code(2);
}
