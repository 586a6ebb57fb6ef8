//! The `mock-collector` binary as a child process: how to start one (its flags,
//! faults included), and the faults a scenario can inflict on it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use rustix::process::Signal;

use crate::binaries;
use crate::process::{LogPaths, Supervised};
use crate::tasks::CollectorKind;
use crate::wait::DEADLINE;

/// How to start a collector: `mock-collector --type <kind> --instance <n>` and
/// the flags set here. Start it with [`Cluster::add_collector`](crate::Cluster::add_collector).
///
/// ```no_run
/// # async fn demo(cluster: &e2e::Cluster) {
/// use e2e::{CollectorBuilder, CollectorKind};
/// let slow = cluster
///     .add_collector(CollectorBuilder::new(CollectorKind::Process, 1).prefetch(1).delay_ms(20))
///     .await;
/// assert_eq!(slow.id(), "procmond-1");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CollectorBuilder {
    kind: CollectorKind,
    instance: u32,
    id: Option<String>,
    args: Vec<OsString>,
}

impl CollectorBuilder {
    /// Instance `instance` of `kind`; its id is `<alias>-<instance>` unless set.
    pub fn new(kind: CollectorKind, instance: u32) -> Self {
        Self {
            kind,
            instance,
            id: None,
            args: Vec::new(),
        }
    }

    fn flag(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.args.push(format!("--{name}={value}").into());
        self
    }

    /// `--id`: the client id instead of `<alias>-<instance>`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        self.id = Some(id.clone());
        self.flag("id", id)
    }

    /// `--prefetch`: most tasks held and run at once.
    pub fn prefetch(self, n: u32) -> Self {
        self.flag("prefetch", n)
    }

    /// `--delay-ms`: a pause before every reply.
    pub fn delay_ms(self, ms: u64) -> Self {
        self.flag("delay-ms", ms)
    }

    /// `--fail-every`: every Nth task gets an error reply.
    pub fn fail_every(self, n: u64) -> Self {
        self.flag("fail-every", n)
    }

    /// `--crash-after`: abort (SIGABRT) on receiving the Nth task.
    pub fn crash_after(self, n: u64) -> Self {
        self.flag("crash-after", n)
    }

    /// `--hang-after`: freeze on receiving the Nth task.
    pub fn hang_after(self, n: u64) -> Self {
        self.flag("hang-after", n)
    }

    /// `--heartbeat-interval-ms` (the collector allows 3 misses).
    pub fn heartbeat_interval(self, interval: Duration) -> Self {
        self.flag("heartbeat-interval-ms", interval.as_millis())
    }

    /// `--emit-interval-ms`: publish a snapshot event this often.
    pub fn emit_interval(self, interval: Duration) -> Self {
        self.flag("emit-interval-ms", interval.as_millis())
    }

    /// Any other flag, passed as given.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts it on `socket`, working in `dir`, where its logs also go.
    pub(crate) async fn start(self, dir: &Path, socket: &Path) -> CollectorProcess {
        let id = self
            .id
            .clone()
            .unwrap_or_else(|| self.kind.default_id(self.instance));
        let mut collector = CollectorProcess {
            logs: LogPaths::in_dir(dir, &id),
            id,
            builder: self,
            bin: binaries::collector_bin(),
            dir: dir.to_owned(),
            socket: socket.to_owned(),
            process: None,
        };
        collector.spawn().await;
        collector
    }
}

/// A running `mock-collector` process, killed and reaped on drop.
///
/// Drop collectors before their [`Cluster`](crate::Cluster) (declare them after
/// it), so their logs are still there if the test fails.
#[derive(Debug)]
pub struct CollectorProcess {
    builder: CollectorBuilder,
    id: String,
    bin: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
    logs: LogPaths,
    process: Option<Supervised>,
}

impl CollectorProcess {
    fn command(&self) -> Command {
        let b = &self.builder;
        let mut command = Command::new(&self.bin);
        command
            .arg(format!("--type={}", b.kind.capability()))
            .arg(format!("--instance={}", b.instance))
            .arg("--socket")
            .arg(&self.socket)
            .args(&b.args)
            .current_dir(&self.dir);
        command
    }

    async fn spawn(&mut self) {
        let (process, ready) = Supervised::spawn(&self.id, self.command(), self.logs.clone()).await;
        if ready["id"].as_str() != Some(self.id.as_str()) {
            process.fail(&format!("announced another id than {}: {ready}", self.id));
        }
        self.process = Some(process);
    }

    fn process(&self) -> &Supervised {
        self.process.as_ref().expect("the collector was started")
    }

    fn process_mut(&mut self) -> &mut Supervised {
        self.process.as_mut().expect("the collector was started")
    }

    /// Its client id (the same across restarts).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its type.
    pub fn kind(&self) -> CollectorKind {
        self.builder.kind
    }

    /// The pid of the current run.
    pub fn pid(&self) -> u32 {
        self.process().pid()
    }

    /// Where its output goes.
    pub fn logs(&self) -> &LogPaths {
        &self.logs
    }

    /// The exit status, if it has exited (reaping it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.process_mut().try_exit()
    }

    /// Waits up to [`DEADLINE`] for it to exit by itself (a crash, a lost
    /// broker); panics past it.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        self.process_mut().wait_exit(DEADLINE).await
    }

    /// SIGKILL and reap: a crash without warning.
    pub fn kill(&mut self) -> ExitStatus {
        self.process_mut().kill()
    }

    /// SIGTERM (and SIGCONT, so a paused process acts on it), then waits up to
    /// [`DEADLINE`] for the exit status (it drains running tasks first, for up
    /// to 5 s).
    pub async fn terminate(&mut self) -> ExitStatus {
        self.process_mut().terminate(DEADLINE).await
    }

    /// SIGSTOP: the collector freezes, heartbeats included, with its socket open.
    pub fn pause(&self) {
        self.process().signal(Signal::STOP);
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.process().signal(Signal::CONT);
    }

    /// Starts it again with the same id, socket and flags, after terminating it
    /// gracefully if it still runs ([`kill`](Self::kill) first for a crash).
    pub async fn restart(&mut self) {
        if let Some(mut old) = self.process.take() {
            old.terminate(DEADLINE).await;
        }
        self.spawn().await;
    }
}
