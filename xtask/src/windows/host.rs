//! Where the smoke suite's processes run: natively on Linux, or as Windows
//! programs under Wine. The steps are written once against [`Host`].
//!
//! **Invariant:** every process started here is reaped: long-running ones are
//! [`Proc`]s or [`Background`]s (killed and waited for on drop), one-shot
//! commands are waited for, and killed at their deadline.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::wine::Prefix;
use crate::fleet::Proc;

/// How often waits look at their deadline.
const POLL: Duration = Duration::from_millis(20);

/// The three programs the suite runs.
#[derive(Debug, Clone)]
pub struct Bins {
    /// The broker daemon.
    pub broker: PathBuf,
    /// The command-line client (see [`super::CLI`]).
    pub cli: PathBuf,
    /// The collector.
    pub collector: PathBuf,
}

/// The platform the suite runs on.
#[derive(Debug)]
pub enum Host {
    /// Linux binaries, run directly.
    Native,
    /// Windows binaries, run by Wine in a prefix of their own.
    Wine(Prefix),
}

impl Host {
    /// A short name for reports: `linux` or `wine`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Native => "linux",
            Self::Wine(_) => "wine",
        }
    }

    /// A command that runs `exe` on this host.
    pub fn command(&self, exe: &Path) -> Command {
        match self {
            Self::Native => Command::new(exe),
            Self::Wine(prefix) => prefix.command(exe),
        }
    }

    /// The graceful stop a service manager would send: SIGTERM on Linux; under
    /// Wine, SIGINT, which Wine delivers to the program as a console Ctrl-C
    /// event (there is no SIGTERM on Windows).
    pub fn stop(&self, proc: &mut Proc) {
        match self {
            Self::Native => proc.terminate(),
            Self::Wine(_) => proc.interrupt(),
        }
    }

    /// What the graceful stop is called in messages.
    pub fn stop_name(&self) -> &'static str {
        match self {
            Self::Native => "SIGTERM",
            Self::Wine(_) => "Ctrl-C",
        }
    }
}

/// What a finished one-shot command left.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Finished {
    /// Fails unless the command exited 0, quoting its stderr.
    pub fn success(self, what: &str) -> Result<Self> {
        if !self.status.success() {
            bail!("{what} failed ({}): {}", self.status, self.stderr.trim());
        }
        Ok(self)
    }
}

/// A command running in the background with its output in two log files;
/// killed and reaped on drop.
#[derive(Debug)]
pub struct Background {
    /// What it is, for messages.
    label: String,
    /// The child, until reaped.
    child: Child,
    /// Its stdout log.
    stdout: PathBuf,
    /// Its stderr log.
    stderr: PathBuf,
    /// Its exit status, once reaped.
    status: Option<ExitStatus>,
}

impl Background {
    /// Starts `cmd` as `label`, logging to `<logs>/<label>.{stdout,stderr}.log`.
    pub fn start(label: &str, mut cmd: Command, logs: &Path) -> Result<Self> {
        let stdout = logs.join(format!("{label}.stdout.log"));
        let stderr = logs.join(format!("{label}.stderr.log"));
        cmd.stdin(Stdio::null())
            .stdout(
                File::create(&stdout).with_context(|| format!("creating {}", stdout.display()))?,
            )
            .stderr(
                File::create(&stderr).with_context(|| format!("creating {}", stderr.display()))?,
            );
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {label}: {:?}", cmd.get_program()))?;
        Ok(Self {
            label: label.to_owned(),
            child,
            stdout,
            stderr,
            status: None,
        })
    }

    /// What it has printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Its exit status if it has exited (reaping it), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for it to exit until `deadline` has passed; killed then, and an error.
    pub fn finish(mut self, deadline: Duration) -> Result<Finished> {
        let until = Instant::now() + deadline;
        let status = loop {
            if let Some(status) = self.exited() {
                break status;
            }
            if Instant::now() >= until {
                self.kill();
                bail!(
                    "{} did not finish within {deadline:?}; killed it (logs: {})",
                    self.label,
                    self.stderr.display()
                );
            }
            thread::sleep(POLL);
        };
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        Ok(Finished {
            status,
            stdout: read(&self.stdout),
            stderr: read(&self.stderr),
        })
    }

    fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.kill();
    }
}
