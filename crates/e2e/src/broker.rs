//! The `broker` binary as a child process: how to start it, and the faults a
//! scenario can inflict on it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use rustix::process::Signal;

use crate::binaries;
use crate::process::{LogPaths, Supervised};
use crate::wait::DEADLINE;

/// How to start a broker: flags passed through to `broker`.
///
/// ```no_run
/// # async fn demo() {
/// use std::time::Duration;
/// use e2e::{BrokerBuilder, Cluster};
/// let cluster = Cluster::start_with(
///     BrokerBuilder::new()
///         .heartbeat(Duration::from_millis(50), 3)
///         .config_toml("[queue]\nmax_len = 100\noverflow = \"reject\"\n"),
/// )
/// .await;
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct BrokerBuilder {
    heartbeat_interval: Option<Duration>,
    heartbeat_misses: Option<u32>,
    config_toml: Option<String>,
    args: Vec<OsString>,
}

impl BrokerBuilder {
    /// A broker with its defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// `--heartbeat-interval-ms` and `--heartbeat-misses`: the defaults offered
    /// to clients that do not ask for their own.
    pub fn heartbeat(mut self, interval: Duration, misses: u32) -> Self {
        self.heartbeat_interval = Some(interval);
        self.heartbeat_misses = Some(misses);
        self
    }

    /// A configuration file with this TOML, written to the cluster directory
    /// and passed as `--config`.
    pub fn config_toml(mut self, toml: impl Into<String>) -> Self {
        self.config_toml = Some(toml.into());
        self
    }

    /// Any other flag, passed as given.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts the broker on `socket`, with its config file and logs in `dir`.
    pub(crate) async fn start(self, dir: &Path, socket: &Path) -> BrokerProcess {
        let config = self.config_toml.as_ref().map(|toml| {
            let path = dir.join("broker.toml");
            std::fs::write(&path, toml)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            path
        });
        let mut broker = BrokerProcess {
            builder: self,
            bin: binaries::broker_bin(),
            socket: socket.to_owned(),
            config,
            logs: LogPaths::in_dir(dir, "broker"),
            process: None,
            version: String::new(),
        };
        broker.spawn().await;
        broker
    }
}

/// A running `broker` process, killed and reaped on drop.
#[derive(Debug)]
pub struct BrokerProcess {
    builder: BrokerBuilder,
    bin: PathBuf,
    socket: PathBuf,
    config: Option<PathBuf>,
    logs: LogPaths,
    process: Option<Supervised>,
    version: String,
}

impl BrokerProcess {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.bin);
        command.arg("--socket").arg(&self.socket);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        if let Some(interval) = self.builder.heartbeat_interval {
            command.arg(format!("--heartbeat-interval-ms={}", interval.as_millis()));
        }
        if let Some(misses) = self.builder.heartbeat_misses {
            command.arg(format!("--heartbeat-misses={misses}"));
        }
        command.args(&self.builder.args);
        command
    }

    async fn spawn(&mut self) {
        let (process, ready) = Supervised::spawn("broker", self.command(), self.logs.clone()).await;
        if ready["socket"].as_str() != self.socket.to_str() {
            process.fail(&format!("announced another socket: {ready}"));
        }
        self.version = ready["version"].as_str().unwrap_or_default().to_owned();
        self.process = Some(process);
    }

    fn process(&self) -> &Supervised {
        self.process.as_ref().expect("the broker was started")
    }

    fn process_mut(&mut self) -> &mut Supervised {
        self.process.as_mut().expect("the broker was started")
    }

    /// The pid of the current run.
    pub fn pid(&self) -> u32 {
        self.process().pid()
    }

    /// The socket it listens on (the same across restarts).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The version from its ready line.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where its output goes.
    pub fn logs(&self) -> &LogPaths {
        &self.logs
    }

    /// The exit status, if it has exited (reaping it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.process_mut().try_exit()
    }

    /// SIGKILL and reap: a crash. Its socket file stays behind, as after a crash.
    pub fn kill(&mut self) -> ExitStatus {
        self.process_mut().kill()
    }

    /// Kills and reaps the current run, if there is one (a restart that failed
    /// half-way leaves none). For drops, which must not panic.
    pub(crate) fn kill_if_started(&mut self) {
        if let Some(process) = &mut self.process {
            process.kill();
        }
    }

    /// SIGTERM (and SIGCONT, so a paused process acts on it), then waits up to
    /// [`DEADLINE`] for the exit status (a graceful shutdown drains in-flight
    /// deliveries for up to its drain timeout).
    pub async fn terminate(&mut self) -> ExitStatus {
        self.process_mut().terminate(DEADLINE).await
    }

    /// SIGSTOP: the broker freezes with its socket open.
    pub fn pause(&self) {
        self.process().signal(Signal::STOP);
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.process().signal(Signal::CONT);
    }

    /// Terminates the broker if it still runs (panicking unless it exits 0),
    /// then starts it again on the same socket with the same flags.
    pub async fn restart(&mut self) {
        if let Some(mut old) = self.process.take() {
            let status = old.terminate(DEADLINE).await;
            if !status.success() && !old_was_killed(&status) {
                old.fail(&format!("exited with {status} on SIGTERM"));
            }
        }
        self.spawn().await;
    }
}

/// A broker killed by the scenario itself before a restart is fine.
fn old_was_killed(status: &ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt as _;
    status.signal() == Some(Signal::KILL.as_raw())
}
