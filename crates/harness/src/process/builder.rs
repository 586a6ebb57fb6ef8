//! [`ProcessBuilder`]: what to run, and when it counts as started.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::child::spawn_child;
use super::{LogPaths, Process, Ready, StartError};
use crate::wait::{DEADLINE, POLL_INTERVAL};

/// How to start a [`Process`]: a program, its arguments and environment,
/// where its logs go, and when it is ready.
///
/// ```no_run
/// # async fn demo() -> Result<(), eventbus_harness::StartError> {
/// use eventbus_harness::{ProcessBuilder, Ready};
/// let worker = ProcessBuilder::new("worker-1", "target/debug/my-worker")
///     .args(["--group", "resize"])
///     .env("RUST_LOG", "debug")
///     .ready(Ready::line(|line| line.contains("listening")))
///     .start()
///     .await?;
/// println!("worker pid {}, logs in {}", worker.pid(), worker.logs().stderr.display());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ProcessBuilder {
    pub(super) name: String,
    pub(super) program: OsString,
    pub(super) args: Vec<OsString>,
    pub(super) env: Vec<(OsString, Option<OsString>)>,
    pub(super) current_dir: Option<PathBuf>,
    pub(super) log_dir: Option<PathBuf>,
    pub(super) ready: Ready,
    pub(super) ready_timeout: Duration,
    pub(super) own_process_group: bool,
    /// The user and group to run as (Unix), when not this process's.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(super) user: Option<(u32, u32)>,
}

impl ProcessBuilder {
    /// The process `name` (used in messages and log file names) running
    /// `program`. Ready once spawned, unless [`ready`](Self::ready) says otherwise.
    pub fn new(name: impl Into<String>, program: impl AsRef<OsStr>) -> Self {
        Self {
            name: name.into(),
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            log_dir: None,
            ready: Ready::Spawned,
            ready_timeout: DEADLINE,
            own_process_group: false,
            user: None,
        }
    }

    /// The process `name` running what `command` would: its program,
    /// arguments, environment changes and working directory (its stdio is the
    /// harness's to set).
    pub fn from_command(name: impl Into<String>, command: &std::process::Command) -> Self {
        let mut builder = Self::new(name, command.get_program()).args(command.get_args());
        for (key, value) in command.get_envs() {
            builder = match value {
                Some(value) => builder.env(key, value),
                None => builder.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            builder = builder.current_dir(dir);
        }
        builder
    }

    /// Runs the command through `wrapper` and its `wrapper_args`, which must
    /// `exec` it so that the pid stays the child's: `ip netns exec NAME` (run
    /// it in a network namespace), `taskset -c 0`, `nice -n 10`. The wrapped
    /// program and its arguments follow the wrapper's arguments.
    ///
    /// ```no_run
    /// use eventbus_harness::ProcessBuilder;
    /// let worker = ProcessBuilder::new("worker", "target/debug/my-worker")
    ///     .arg("--fast")
    ///     .wrap_in("taskset", ["-c", "0"]); // taskset -c 0 target/debug/my-worker --fast
    /// ```
    pub fn wrap_in<I, S>(mut self, wrapper: impl AsRef<OsStr>, wrapper_args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args: Vec<OsString> = wrapper_args
            .into_iter()
            .map(|a| a.as_ref().to_owned())
            .collect();
        args.push(std::mem::replace(
            &mut self.program,
            wrapper.as_ref().to_owned(),
        ));
        args.append(&mut self.args);
        self.args = args;
        self
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable (the rest is inherited).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an inherited environment variable.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Whether `key` is set by this builder.
    pub(crate) fn sets_env(&self, key: &str) -> bool {
        self.env.iter().any(|(k, _)| k == key)
    }

    /// The working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Writes the logs to `<dir>/<name>.stdout.log` and `.stderr.log`
    /// [default: a fresh temporary directory, kept].
    pub fn logs_in(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = Some(dir.into());
        self
    }

    /// Whether a log directory was chosen.
    pub(crate) fn has_log_dir(&self) -> bool {
        self.log_dir.is_some()
    }

    /// When the process counts as started.
    pub fn ready(mut self, ready: Ready) -> Self {
        self.ready = ready;
        self
    }

    /// How long to wait for readiness [default: [`DEADLINE`]].
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Runs the child in its own process group (Unix), so a terminal's
    /// Ctrl-C reaches only the parent, which can then stop it in order.
    pub fn own_process_group(mut self) -> Self {
        self.own_process_group = true;
        self
    }

    /// Runs the child as user `uid` and group `gid` (Unix; needs the
    /// privilege to, i.e. root), as another user's program would run. Its
    /// log files are still opened by this process.
    #[cfg(unix)]
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Spawns it and waits until it is ready.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled start kills and reaps the child.
    pub async fn start(self) -> Result<Process, StartError> {
        let mut process = self.spawn()?;
        let end = Instant::now() + process.builder.ready_timeout;
        loop {
            if process.check_ready(end)? {
                return Ok(process);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// [`start`](Self::start) for a plain thread.
    pub fn start_blocking(self) -> Result<Process, StartError> {
        self.start_blocking_unless(&|| false)
    }

    /// [`start_blocking`](Self::start_blocking), giving up (and killing the
    /// child) as soon as `give_up` returns `true`: for a Ctrl-C meanwhile.
    pub fn start_blocking_unless(self, give_up: &dyn Fn() -> bool) -> Result<Process, StartError> {
        let mut process = self.spawn()?;
        let end = Instant::now() + process.builder.ready_timeout;
        loop {
            if process.check_ready(end)? {
                return Ok(process);
            }
            if give_up() {
                process.kill();
                return Err(StartError::GaveUp {
                    name: process.builder.name.clone(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn logs(&self) -> Result<(LogPaths, Option<tempfile::TempDir>), StartError> {
        match &self.log_dir {
            Some(dir) => Ok((LogPaths::in_dir(dir, &self.name), None)),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("eventbus-harness-")
                    .tempdir()
                    .map_err(|source| StartError::Log {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                Ok((LogPaths::in_dir(dir.path(), &self.name), Some(dir)))
            }
        }
    }

    fn spawn(self) -> Result<Process, StartError> {
        let (logs, log_dir) = self.logs()?;
        let (child, copier, line) = spawn_child(&self, &logs)?;
        Ok(Process {
            builder: self,
            logs,
            log_dir,
            child,
            copier: Some(copier),
            line,
            ready_line: None,
            exit: None,
        })
    }
}
