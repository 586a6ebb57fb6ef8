//! Shared fixtures: a broker inside the test's runtime on a private socket, real
//! `mock-collector` child processes that are killed and reaped on drop, and
//! waits with a deadline instead of sleeps.
#![allow(dead_code, missing_docs)]

use std::future::poll_fn;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventbus::broker::{Broker, BrokerConfig};
use eventbus::{Client, ClientId, ClientOptions, Message, Topic};
use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};

/// How long any single wait in a test may take before it counts as a failure.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A short temp dir under /tmp, so socket paths stay well under the limit.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mc")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

/// A broker running inside the test's runtime on its own temp socket.
pub struct TestBroker {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestBroker {
    pub async fn start() -> Self {
        let dir = temp_dir();
        let socket = dir.path().join("b.sock");
        let mut config = BrokerConfig::new(&socket);
        // Tests often stop with deliveries unsettled; don't wait the default 5 s.
        config.drain_timeout_ms = 300;
        let broker = Broker::bind(config).expect("bind");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            broker
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("broker run");
        });
        Self {
            dir,
            socket,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn client(&self, id: &str) -> Client {
        let options = ClientOptions::new(&self.socket)
            .client_id(ClientId::new(id).unwrap())
            .request_timeout(DEADLINE);
        Client::connect(options).await.expect("connect")
    }

    /// Stops the broker gracefully and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("broker stops in time")
                .expect("broker task");
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A child process that is killed and reaped when dropped, even on panic.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn spawn(command: &mut Command) -> Self {
        Self(command.spawn().expect("spawn child"))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }

    /// Waits for the child to exit, failing the test after [`DEADLINE`].
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "child {} did not exit in time",
                self.0.id()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `mock-collector` that has printed its ready line.
pub struct Collector {
    pub child: ChildGuard,
    /// The client id from the ready line.
    pub id: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    /// Starts `mock-collector --type <kind> --instance <instance> --socket <socket> <extra>`
    /// and waits for its ready line, which must carry the id and the child's pid.
    pub async fn start(socket: &Path, kind: &str, instance: u32, extra: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mock-collector"));
        command
            .args(["--type", kind, "--instance", &instance.to_string()])
            .arg("--socket")
            .arg(socket)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn(&mut command);
        let stdout = child.0.stdout.take().expect("stdout");
        let stderr = child.0.stderr.take().expect("stderr");
        let (tx, mut lines) = mpsc::channel::<String>(16);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let tag = format!("{kind}-{instance}");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                let mut log = sink.lock().unwrap();
                if log.len() < 10_000 {
                    log.push(line);
                }
            }
        });
        let line = tokio::time::timeout(DEADLINE, lines.recv())
            .await
            .expect("ready line within the deadline")
            .expect("collector exited before its ready line");
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        assert_eq!(ready["event"], "ready", "{line}");
        assert_eq!(
            ready["pid"].as_u64(),
            Some(u64::from(child.pid())),
            "{line}"
        );
        let id = ready["id"]
            .as_str()
            .expect("ready line has an id")
            .to_owned();
        Self {
            child,
            id,
            stderr: log,
        }
    }

    /// Sends SIGTERM.
    #[cfg(unix)]
    pub fn terminate(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.pid() as i32).expect("valid pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("send SIGTERM");
    }

    /// What the collector wrote on stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
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
        .request(&task_topic(kind), task.to_string(), DEADLINE)
        .await
        .expect("task reply");
    let json = serde_json::from_slice(reply.payload()).expect("reply is JSON");
    (reply, json)
}

/// The next item of a stream, failing the test after [`DEADLINE`].
pub async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    tokio::time::timeout(DEADLINE, poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)))
        .await
        .expect("stream item within the deadline")
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
