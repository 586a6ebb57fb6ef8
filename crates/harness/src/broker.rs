//! The `broker` binary as a child process: how to start it, and the faults a
//! test can inflict on it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::binaries;
use crate::process::{LogPaths, Process, ProcessBuilder, Ready};
use crate::wait::DEADLINE;

/// How to start a broker: flags passed through to `broker`.
///
/// ```no_run
/// # async fn demo() {
/// use std::time::Duration;
/// use eventbus_harness::{BrokerBuilder, Cluster};
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
    bin: Option<PathBuf>,
    heartbeat_interval: Option<Duration>,
    heartbeat_misses: Option<u32>,
    config_toml: Option<String>,
    args: Vec<OsString>,
    /// A wrapper that execs the broker (`ip netns exec NAME`), and its arguments.
    wrapper: Option<(OsString, Vec<OsString>)>,
}

impl BrokerBuilder {
    /// A broker with its defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `broker` binary to run [default: [`binaries::broker_bin`]].
    pub fn bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
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

    /// Runs the broker through `wrapper`, which must exec it (see
    /// [`ProcessBuilder::wrap_in`]): `ip netns exec NAME` puts it on another
    /// network host.
    pub fn wrap_in<I, S>(mut self, wrapper: impl Into<OsString>, wrapper_args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.wrapper = Some((
            wrapper.into(),
            wrapper_args.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Starts the broker on `socket`, with its config file and logs in
    /// `dir`, and waits for its ready line. Panics, with its logs, if it
    /// does not start.
    pub(crate) async fn start(self, dir: &Path, socket: &Path) -> BrokerProcess {
        let config = self.config_toml.as_ref().map(|toml| {
            let path = dir.join("broker.toml");
            std::fs::write(&path, toml)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            path
        });
        let bin = self.bin.clone().unwrap_or_else(binaries::broker_bin);
        let mut command = ProcessBuilder::new("broker", bin)
            .arg("--socket")
            .arg(socket)
            .logs_in(dir)
            .ready(Ready::JsonLine);
        if let Some(config) = &config {
            command = command.arg("--config").arg(config);
        }
        if let Some(interval) = self.heartbeat_interval {
            command = command.arg(format!("--heartbeat-interval-ms={}", interval.as_millis()));
        }
        if let Some(misses) = self.heartbeat_misses {
            command = command.arg(format!("--heartbeat-misses={misses}"));
        }
        command = command.args(&self.args);
        if let Some((wrapper, args)) = &self.wrapper {
            command = command.wrap_in(wrapper, args);
        }
        let process = command.start().await.unwrap_or_else(|e| panic!("{e}"));
        let broker = BrokerProcess {
            socket: socket.to_owned(),
            process,
        };
        broker.check_ready_line();
        broker
    }
}

/// A running `broker` process, killed and reaped on drop.
#[derive(Debug)]
pub struct BrokerProcess {
    socket: PathBuf,
    process: Process,
}

impl BrokerProcess {
    fn check_ready_line(&self) {
        let ready = self
            .process
            .ready()
            .expect("started on its JSON ready line");
        if ready["socket"].as_str() != self.socket.to_str() {
            self.process
                .fail(&format!("announced another socket: {ready}"));
        }
    }

    /// The pid of the current run.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The socket it listens on (the same across restarts).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The version from its ready line.
    pub fn version(&self) -> &str {
        self.process
            .ready()
            .and_then(|r| r["version"].as_str())
            .unwrap_or_default()
    }

    /// Where its output goes.
    pub fn logs(&self) -> &LogPaths {
        self.process.logs()
    }

    /// The process itself, for anything else.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The exit status, if it has exited (reaping it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.process.try_exit()
    }

    /// SIGKILL and reap: a crash. Its socket file stays behind, as after a crash.
    pub fn kill(&mut self) -> ExitStatus {
        self.process.kill()
    }

    /// SIGTERM (and SIGCONT, so a paused process acts on it), then waits up to
    /// [`DEADLINE`] for the exit status (a graceful shutdown drains in-flight
    /// deliveries for up to its drain timeout).
    pub async fn terminate(&mut self) -> ExitStatus {
        self.process.terminate(DEADLINE).await
    }

    /// SIGSTOP: the broker freezes with its socket open.
    #[cfg(unix)]
    pub fn pause(&self) {
        self.process.pause();
    }

    /// SIGCONT after [`pause`](Self::pause).
    #[cfg(unix)]
    pub fn resume(&self) {
        self.process.resume();
    }

    /// Terminates the broker if it still runs (panicking unless it exits 0),
    /// then starts it again on the same socket with the same flags.
    pub async fn restart(&mut self) {
        if self.process.try_exit().is_none() {
            let status = self.process.terminate(DEADLINE).await;
            if !status.success() {
                self.process
                    .fail(&format!("exited with {status} on SIGTERM"));
            }
        }
        self.process
            .restart()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        self.check_ready_line();
    }
}
