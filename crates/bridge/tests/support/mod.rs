//! What the tests that run the `eventbus-bridge` binary share: the binary,
//! an unreachable NATS, and a bridge started on a test broker.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};

use eventbus_harness::{Process, ProcessBuilder, Ready, TestBroker};

pub const BIN: &str = env!("CARGO_BIN_EXE_eventbus-bridge");

/// A loopback NATS URL nothing listens on (bound, then released).
pub fn dead_nats() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("nats://{}", listener.local_addr().unwrap())
}

/// Writes `bridge.toml` in `dir`: node `name` on `broker`'s socket, NATS
/// unreachable, exporting `events.#` (with `export` added to the rule).
pub fn config(dir: &Path, broker: &TestBroker, name: &str, export: &str) -> PathBuf {
    let file = dir.join("bridge.toml");
    std::fs::write(
        &file,
        format!(
            "[local]\nsocket = {:?}\n[nats]\nname = \"{name}\"\nservers = [{:?}]\n\
             [[export]]\nfilter = \"events.#\"\n{export}",
            broker.socket().display().to_string(),
            dead_nats()
        ),
    )
    .unwrap();
    file
}

/// Starts the bridge on `file`, its logs in `dir`, once its JSON ready line
/// came.
pub async fn start(file: &Path, dir: &Path) -> Process {
    ProcessBuilder::new("eventbus-bridge", BIN)
        .arg("--config")
        .arg(file)
        .logs_in(dir)
        .ready(Ready::JsonLine)
        .start()
        .await
        .expect("the bridge starts")
}
