//! The smoke suite: what a user does with the bus, step by step, against real
//! processes on one [`Host`]. Each step asserts what it did; the first failure
//! ends the run. Steps build on each other (the broker of the first serves the
//! rest), so they run in order, once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use super::CLI;
use super::host::{Background, Bins, Finished, Host};
use crate::fleet::Proc;

/// The topic filesystem collectors take tasks on.
const TASK_TOPIC: &str = "control.collector.task.filesystem";

/// The topic process collectors take tasks on.
const PROCESS_TOPIC: &str = "control.collector.task.process";

/// How long a process may take to print its ready line (Wine starts slowly).
const START_DEADLINE: Duration = Duration::from_secs(60);

/// How long a one-shot command may run.
const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// How long a condition polled through the broker's stats may take.
const CONDITION_DEADLINE: Duration = Duration::from_secs(60);

/// How long a process may take to exit after its graceful stop.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// Tasks the queue group shares.
const SHARED_TASKS: u32 = 20;

/// The suite's steps, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The broker is ready on its socket (a named pipe under Wine) and answers stats.
    BrokerReady,
    /// A subscriber with a `+` wildcard gets the matching messages, in order, and no other.
    PubSubWildcard,
    /// Two filesystem collectors in one queue group share the tasks; every task is answered.
    QueueGroup,
    /// A request gets the collector's real reply; a request nobody takes is `NoResponders`.
    RequestReply,
    /// A process collector answers: with data on Linux, with the documented
    /// `unsupported on this platform` error reply elsewhere.
    ProcessCollector,
    /// A collector killed while holding a task: the task is redelivered to another member.
    CollectorKilled,
    /// The broker dies and a new one starts; the collectors reconnect and serve again.
    BrokerRestart,
    /// The graceful stop (SIGTERM, or Ctrl-C under Wine) ends every process with exit 0.
    Shutdown,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 8] = [
        Step::BrokerReady,
        Step::PubSubWildcard,
        Step::QueueGroup,
        Step::RequestReply,
        Step::ProcessCollector,
        Step::CollectorKilled,
        Step::BrokerRestart,
        Step::Shutdown,
    ];

    /// The step's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Step::BrokerReady => "broker-ready",
            Step::PubSubWildcard => "pubsub-wildcard",
            Step::QueueGroup => "queue-group",
            Step::RequestReply => "request-reply",
            Step::ProcessCollector => "process-collector",
            Step::CollectorKilled => "collector-killed",
            Step::BrokerRestart => "broker-restart",
            Step::Shutdown => "shutdown",
        }
    }
}

/// What the filesystem collectors walk: a small tree the suite writes, so the
/// reply can be checked exactly.
#[derive(Debug, Clone, Copy)]
struct Tree {
    files: u64,
    dirs: u64,
    bytes: u64,
}

/// Writes the tree under `dir`: 4 directories of 5 files, file `i` of `i + 1`
/// KiB.
fn write_tree(dir: &Path) -> Result<Tree> {
    let mut tree = Tree {
        files: 0,
        dirs: 0,
        bytes: 0,
    };
    for d in 0..4 {
        let sub = dir.join(format!("dir{d}"));
        std::fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
        tree.dirs += 1;
        for f in 0..5u64 {
            let size = (f + 1) * 1024;
            std::fs::write(sub.join(format!("file{f}.bin")), vec![b'x'; size as usize])?;
            tree.files += 1;
            tree.bytes += size;
        }
    }
    Ok(tree)
}

/// A run of the suite: the host, the binaries, the running processes.
pub struct Suite<'a> {
    host: &'a Host,
    bins: &'a Bins,
    /// Where every process logs.
    logs: PathBuf,
    /// The collectors' working directory, holding the tree they walk.
    data: PathBuf,
    tree: Tree,
    /// The broker's socket path (its file name names the pipe on Windows).
    socket: PathBuf,
    broker: Option<Proc>,
    /// The collectors still running, by client id.
    collectors: Vec<(String, Proc)>,
    /// One-shot commands run so far, to name their logs.
    commands: u32,
}

impl<'a> Suite<'a> {
    /// Prepares a run in `dir` (logs and data go there) on `socket`.
    pub fn new(host: &'a Host, bins: &'a Bins, dir: &Path, socket: PathBuf) -> Result<Self> {
        let logs = dir.join("logs");
        let data = dir.join("data");
        std::fs::create_dir_all(&logs)?;
        let tree = write_tree(&data)?;
        Ok(Self {
            host,
            bins,
            logs,
            data,
            tree,
            socket,
            broker: None,
            collectors: Vec::new(),
            commands: 0,
        })
    }

    /// Runs `step`.
    pub fn run(&mut self, step: Step) -> Result<()> {
        match step {
            Step::BrokerReady => self.broker_ready(),
            Step::PubSubWildcard => self.pubsub_wildcard(),
            Step::QueueGroup => self.queue_group(),
            Step::RequestReply => self.request_reply(),
            Step::ProcessCollector => self.process_collector(),
            Step::CollectorKilled => self.collector_killed(),
            Step::BrokerRestart => self.broker_restart(),
            Step::Shutdown => self.shutdown(),
        }
    }

    fn broker_ready(&mut self) -> Result<()> {
        self.start_broker("broker")?;
        let stats = self.stats()?;
        let ids = connection_ids(&stats);
        ensure!(
            ids.len() == 1 && ids.iter().all(|id| id.starts_with(&format!("{CLI}-"))),
            "a fresh broker should see only the stats command, saw {ids:?}"
        );
        ensure!(
            stats["rss_bytes"].as_u64().unwrap_or(0) > 0,
            "the broker reports no memory figure (rss_bytes {})",
            stats["rss_bytes"]
        );
        Ok(())
    }

    fn pubsub_wildcard(&mut self) -> Result<()> {
        let mut subscriber = self.cli_background(
            "subscribe",
            &[
                "subscribe",
                "smoke.+.start",
                "--count",
                "2",
                "--timeout-ms",
                "60000",
                "--json",
            ],
        )?;
        // It says so on stderr once the broker confirmed the subscription.
        poll("the subscriber to be registered", START_DEADLINE, || {
            if let Some(status) = subscriber.exited() {
                bail!(
                    "the subscriber exited ({status}): {}",
                    subscriber.stderr_so_far()
                );
            }
            Ok(subscriber.stderr_so_far().contains("subscribed to"))
        })?;
        for (topic, payload) in [
            ("smoke.a.start", "one"),
            ("smoke.b.stop", "not for the subscriber"),
            ("smoke.c.start", "two"),
        ] {
            self.cli("publish", &["publish", topic, "--payload", payload])?
                .success("publish")?;
        }
        let out = subscriber
            .finish(COMMAND_DEADLINE)?
            .success("the subscriber")?;
        let got: Vec<(String, String)> = json_lines(&out.stdout)?
            .iter()
            .map(|m| (string(&m["topic"]), string(&m["payload"])))
            .collect();
        let want = [("smoke.a.start", "one"), ("smoke.c.start", "two")]
            .map(|(t, p)| (t.to_owned(), p.to_owned()));
        ensure!(got == want, "the subscriber got {got:?}, expected {want:?}");
        Ok(())
    }

    fn queue_group(&mut self) -> Result<()> {
        self.start_collector("filesystem", 1, &[])?;
        self.start_collector("filesystem", 2, &[])?;
        let count = SHARED_TASKS.to_string();
        let summary = self.tasks(&count, "4")?;
        let by_source = sources(&summary);
        ensure!(
            by_source == BTreeSet::from(["fsmond-1".to_owned(), "fsmond-2".to_owned()]),
            "both collectors should have answered, replies came from {by_source:?}: {summary}"
        );
        Ok(())
    }

    fn request_reply(&mut self) -> Result<()> {
        let payload = self.task_payload("smoke-request");
        let out = self
            .cli(
                "request",
                &["request", TASK_TOPIC, "--payload", &payload, "--json"],
            )?
            .success("the request")?;
        let reply: Value = serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("the reply is not JSON: {}", out.stdout))?;
        let body: Value = serde_json::from_str(reply["payload"].as_str().unwrap_or_default())
            .with_context(|| format!("the reply's payload is not JSON: {reply}"))?;
        let data = &body["data"];
        let (files, dirs, bytes) = (
            data["files"].as_u64(),
            data["dirs"].as_u64(),
            data["bytes"].as_u64(),
        );
        let tree = self.tree;
        ensure!(
            body["status"] == "ok"
                && body["task_id"] == "smoke-request"
                && files == Some(tree.files)
                && dirs == Some(tree.dirs)
                && bytes == Some(tree.bytes),
            "expected {} files, {} dirs, {} bytes; the collector replied {body}",
            tree.files,
            tree.dirs,
            tree.bytes
        );

        let none = self.cli(
            "request-nobody",
            &["request", "smoke.nobody", "--timeout-ms", "10000"],
        )?;
        ensure!(
            none.status.code() == Some(1) && none.stderr.contains("no responders"),
            "a request nobody takes should fail with `no responders` (exit 1), got {} and {:?}",
            none.status,
            none.stderr.trim()
        );
        Ok(())
    }

    fn process_collector(&mut self) -> Result<()> {
        self.start_collector("process", 1, &[])?;
        let payload = serde_json::json!({ "task_id": "smoke-process", "top": 3 }).to_string();
        let out = self
            .cli(
                "request-process",
                &["request", PROCESS_TOPIC, "--payload", &payload, "--json"],
            )?
            .success("the process request")?;
        let reply: Value = serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("the reply is not JSON: {}", out.stdout))?;
        let body: Value = serde_json::from_str(reply["payload"].as_str().unwrap_or_default())
            .with_context(|| format!("the reply's payload is not JSON: {reply}"))?;
        ensure!(
            reply["source"] == "procmond-1" && body["task_id"] == "smoke-process",
            "the process collector's reply: {reply}"
        );
        match self.host {
            Host::Native => ensure!(
                body["status"] == "ok" && body["data"].is_object(),
                "on Linux the process collector reads /proc: {body}"
            ),
            Host::Wine(_) => ensure!(
                body["status"] == "error" && body["error"] == "unsupported on this platform",
                "on Windows the process collector answers `unsupported on this platform`: {body}"
            ),
        }
        Ok(())
    }

    fn collector_killed(&mut self) -> Result<()> {
        // Holds every task it gets for ten minutes: it is mid-task when killed.
        self.start_collector(
            "filesystem",
            3,
            &["--delay-ms", "600000", "--prefetch", "1"],
        )?;
        let payload = self.task_payload("smoke-kill");
        let tasks = self.cli_background(
            "tasks-kill",
            &[
                "tasks",
                TASK_TOPIC,
                "--count",
                "6",
                "--concurrency",
                "6",
                "--payload",
                &payload,
                "--timeout-ms",
                "60000",
                "--json",
            ],
        )?;
        poll("fsmond-3 to hold a task", CONDITION_DEADLINE, || {
            let stats = self.stats()?;
            Ok(member(&stats, "fsmond-3").is_some_and(|m| m["in_flight"].as_u64() >= Some(1)))
        })?;
        let mut victim = self.take_collector("fsmond-3")?;
        victim.kill();
        let out = tasks
            .finish(COMMAND_DEADLINE)?
            .success("the tasks during the kill")?;
        let summary: Value = serde_json::from_str(out.stdout.trim())?;
        ensure!(
            summary["completed"] == 6 && !sources(&summary).contains("fsmond-3"),
            "every task should be answered by the surviving collectors: {summary}"
        );
        let stats = self.stats()?;
        let queue = queue(&stats).context("the queue group is gone")?;
        ensure!(
            queue["redelivered"].as_u64() >= Some(1) && member(&stats, "fsmond-3").is_none(),
            "the killed collector's task should have been redelivered: {queue}"
        );
        Ok(())
    }

    fn broker_restart(&mut self) -> Result<()> {
        let mut old = self.broker.take().context("no broker")?;
        old.kill();
        self.start_broker("broker-2")?;
        poll("the collectors to reconnect", CONDITION_DEADLINE, || {
            let stats = self.stats()?;
            let ids = connection_ids(&stats);
            Ok(["fsmond-1", "fsmond-2"]
                .iter()
                .all(|id| ids.contains(*id) && member(&stats, id).is_some()))
        })?;
        let summary = self.tasks("4", "2")?;
        ensure!(
            summary["completed"] == 4,
            "tasks after the restart: {summary}"
        );
        Ok(())
    }

    fn shutdown(&mut self) -> Result<()> {
        let mut procs: Vec<(String, Proc)> = std::mem::take(&mut self.collectors);
        procs.push((
            "broker".to_owned(),
            self.broker.take().context("no broker")?,
        ));
        // Collectors first, so they leave while the broker still runs.
        for (name, proc) in &mut procs {
            self.host.stop(proc);
            let until = Instant::now() + STOP_DEADLINE;
            match proc.wait_until(until, &|| false) {
                Some(status) if status.success() => {}
                Some(status) => bail!(
                    "{name} exited {status} after {}{}",
                    self.host.stop_name(),
                    proc.stderr_tail()
                ),
                None => bail!(
                    "{name} still ran {STOP_DEADLINE:?} after {}{}",
                    self.host.stop_name(),
                    proc.stderr_tail()
                ),
            }
        }
        let needle = self.socket_needle();
        let left = super::wine::processes_mentioning(&needle);
        ensure!(left.is_empty(), "processes left running: {left:?}");
        Ok(())
    }

    /// What every process of this run has on its command line: the socket.
    pub fn socket_needle(&self) -> String {
        self.socket
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn start_broker(&mut self, name: &str) -> Result<()> {
        let mut cmd = self.host.command(&self.bins.broker);
        cmd.arg("--socket").arg(&self.socket);
        let broker = Proc::start(name, cmd, &self.logs, START_DEADLINE, &|| false)?;
        ensure!(
            broker.ready()["socket"].as_str() == self.socket.to_str(),
            "the broker's ready line names another socket: {}",
            broker.ready()
        );
        self.broker = Some(broker);
        Ok(())
    }

    /// Starts a collector of `kind` (`filesystem` or `process`) in the data directory.
    fn start_collector(&mut self, kind: &str, instance: u32, extra: &[&str]) -> Result<()> {
        let alias = if kind == "process" {
            "procmond"
        } else {
            "fsmond"
        };
        let id = format!("{alias}-{instance}");
        let mut cmd = self.host.command(&self.bins.collector);
        cmd.args(["--type", kind, "--instance", &instance.to_string()])
            .arg("--socket")
            .arg(&self.socket)
            .args(extra)
            .current_dir(&self.data);
        let proc = Proc::start(&id, cmd, &self.logs, START_DEADLINE, &|| false)?;
        ensure!(
            proc.ready()["id"] == id.as_str(),
            "{id} announced itself as {}",
            proc.ready()
        );
        self.collectors.push((id, proc));
        Ok(())
    }

    fn take_collector(&mut self, id: &str) -> Result<Proc> {
        let at = self
            .collectors
            .iter()
            .position(|(name, _)| name == id)
            .with_context(|| format!("{id} is not running"))?;
        Ok(self.collectors.remove(at).1)
    }

    /// A filesystem task over the whole tree (the collectors' cwd).
    fn task_payload(&self, task_id: &str) -> String {
        serde_json::json!({ "task_id": task_id, "path": ".", "max_depth": 4 }).to_string()
    }

    /// `tasks` with `count` requests, `concurrency` at once; every one must be answered.
    fn tasks(&mut self, count: &str, concurrency: &str) -> Result<Value> {
        let payload = self.task_payload("smoke-task");
        let out = self
            .cli(
                "tasks",
                &[
                    "tasks",
                    TASK_TOPIC,
                    "--count",
                    count,
                    "--concurrency",
                    concurrency,
                    "--payload",
                    &payload,
                    "--timeout-ms",
                    "30000",
                    "--json",
                ],
            )?
            .success("tasks")?;
        let summary: Value = serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("tasks printed no JSON summary: {}", out.stdout))?;
        ensure!(
            summary["completed"].as_u64() == count.parse().ok()
                && summary["failed"] == 0
                && summary["timed_out"] == 0,
            "every task should be answered: {summary}"
        );
        Ok(summary)
    }

    /// The broker's stats document.
    fn stats(&mut self) -> Result<Value> {
        let out = self.cli("stats", &["stats", "--json"])?.success("stats")?;
        serde_json::from_str(&out.stdout).with_context(|| format!("stats: {}", out.stdout))
    }

    /// Runs the CLI with `args` to the end (killed at [`COMMAND_DEADLINE`]).
    fn cli(&mut self, label: &str, args: &[&str]) -> Result<Finished> {
        self.cli_background(label, args)?.finish(COMMAND_DEADLINE)
    }

    /// Starts the CLI with `args`; its logs are numbered in start order.
    fn cli_background(&mut self, label: &str, args: &[&str]) -> Result<Background> {
        self.commands += 1;
        let mut cmd = self.host.command(&self.bins.cli);
        cmd.arg("--socket").arg(&self.socket).args(args);
        Background::start(
            &format!("{CLI}-{:03}-{label}", self.commands),
            cmd,
            &self.logs,
        )
    }
}

/// Polls `condition` until it holds, fails, or `deadline` passes.
fn poll(what: &str, deadline: Duration, mut condition: impl FnMut() -> Result<bool>) -> Result<()> {
    let until = Instant::now() + deadline;
    loop {
        if condition()? {
            return Ok(());
        }
        if Instant::now() >= until {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn json_lines(text: &str) -> Result<Vec<Value>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).with_context(|| format!("not JSON: {line}")))
        .collect()
}

fn string(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn connection_ids(stats: &Value) -> BTreeSet<String> {
    stats["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| string(&c["id"]))
        .collect()
}

/// The filesystem queue group in `stats`.
fn queue(stats: &Value) -> Option<&Value> {
    stats["queues"]
        .as_array()?
        .iter()
        .find(|q| q["topic"] == TASK_TOPIC)
}

/// The member `id` of the filesystem queue group.
fn member<'v>(stats: &'v Value, id: &str) -> Option<&'v Value> {
    queue(stats)?["members"]
        .as_array()?
        .iter()
        .find(|m| m["client_id"] == id)
}

/// The client ids that answered, from a tasks summary.
fn sources(summary: &Value) -> BTreeSet<String> {
    summary["by_source"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}
