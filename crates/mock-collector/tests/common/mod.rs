//! mock-collector's own test fixtures: a collector process and its task
//! protocol. The rest (an embedded broker, a supervised child with a ready
//! line, waits with a deadline) is the shared harness, `eventbus-harness`.
#![allow(dead_code, unused_imports, missing_docs)]

use std::path::Path;
use std::process::ExitStatus;

use eventbus::{Client, Message, Topic};

use eventbus_harness::Ready;
pub use eventbus_harness::embedded::short_temp_dir as temp_dir;
pub use eventbus_harness::{
    DEADLINE, Output, Process, ProcessBuilder, TestBroker, next, wait_until,
};

/// A running `mock-collector` that has printed its ready line (its pid
/// checked), killed and reaped on drop.
pub struct Collector {
    pub process: Process,
    /// The client id from the ready line.
    pub id: String,
}

impl Collector {
    /// Starts `mock-collector --type <kind> --instance <instance> --socket <socket> <extra>`
    /// and waits for its ready line.
    pub async fn start(socket: &Path, kind: &str, instance: u32, extra: &[&str]) -> Self {
        let process = ProcessBuilder::new(
            format!("{kind}-{instance}"),
            env!("CARGO_BIN_EXE_mock-collector"),
        )
        .args(["--type", kind, "--instance", &instance.to_string()])
        .arg("--socket")
        .arg(socket)
        .args(extra)
        .env("RUST_LOG", "info")
        .ready(Ready::JsonLine)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let id = process.ready().expect("a JSON ready line")["id"]
            .as_str()
            .expect("the ready line has an id")
            .to_owned();
        Self { process, id }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.process.try_exit().is_none()
    }

    /// Waits for it to exit by itself, failing the test after [`DEADLINE`].
    pub async fn wait_exit(&mut self) -> ExitStatus {
        self.process.wait_exit(DEADLINE).await
    }

    /// Sends SIGTERM, without waiting.
    pub fn terminate(&mut self) {
        self.process.request_stop();
    }

    /// What the collector wrote on stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.process
            .output(Output::Stderr)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The task topic of a collector type.
pub fn task_topic(kind: &str) -> Topic {
    Topic::new(format!("control.collector.task.{kind}")).unwrap()
}

/// Sends one task as a request and returns the reply and its JSON payload.
pub async fn ask(
    client: &Client,
    kind: &str,
    task: serde_json::Value,
) -> (Message, serde_json::Value) {
    let reply = client
        .request(task_topic(kind), task.to_string(), DEADLINE)
        .await
        .expect("task reply");
    let json = serde_json::from_slice(reply.payload()).expect("reply is JSON");
    (reply, json)
}
