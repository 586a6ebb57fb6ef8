//! One child process of a scenario: its output goes to log files, it is ready
//! once it prints its JSON ready line, and it is always killed and reaped.
//!
//! **Invariant:** every child spawned here is reaped: by an explicit `kill`,
//! `terminate` or `wait_exit`, else by `Drop` (SIGKILL, then wait), which runs
//! during a panic too and then prints where the logs are.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::wait::{DEADLINE, POLL_INTERVAL};

/// Where a child's output goes. Files are appended to, so a restarted process
/// keeps the log of its earlier runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPaths {
    /// Everything printed on stdout, the ready line included.
    pub stdout: PathBuf,
    /// Everything printed on stderr.
    pub stderr: PathBuf,
}

impl LogPaths {
    /// `<dir>/<name>.stdout.log` and `<dir>/<name>.stderr.log`.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            stdout: dir.join(format!("{name}.stdout.log")),
            stderr: dir.join(format!("{name}.stderr.log")),
        }
    }

    /// The last `n` lines of the stderr log, for failure messages.
    pub fn stderr_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// A running (or exited but reaped) child process.
#[derive(Debug)]
pub(crate) struct Supervised {
    name: String,
    child: Child,
    logs: LogPaths,
    copier: Option<JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

impl Supervised {
    /// Spawns `command` with its output in `logs` and waits up to [`DEADLINE`]
    /// for its ready line: JSON with `"event":"ready"` and the child's pid.
    /// Panics (after reaping the child) if none comes.
    pub async fn spawn(name: &str, mut command: Command, logs: LogPaths) -> (Self, Value) {
        let stderr = append(&logs.stderr);
        let stdout_log = append(&logs.stdout);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({command:?}): {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (ready_tx, ready_rx) = oneshot::channel();
        let copier = std::thread::Builder::new()
            .name(format!("{name}-stdout"))
            .spawn(move || copy_stdout(stdout, stdout_log, ready_tx))
            .expect("spawn the stdout copier");
        let mut process = Self {
            name: name.to_owned(),
            child,
            logs,
            copier: Some(copier),
            exit: None,
        };
        let line = match tokio::time::timeout(DEADLINE, ready_rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => {
                let status = process.kill();
                process.fail(&format!("exited ({status}) before its ready line"))
            }
            Err(_) => {
                process.kill();
                process.fail(&format!("printed no ready line within {DEADLINE:?}"))
            }
        };
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| process.fail(&format!("ready line {line:?} is not JSON: {e}")));
        if ready["event"] != "ready" || ready["pid"].as_u64() != Some(u64::from(process.pid())) {
            process.fail(&format!("unexpected ready line {line:?}"));
        }
        (process, ready)
    }

    /// Panics with the process's name, logs and the tail of its stderr.
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "{} (pid {}) {what}\nstderr log {}:\n{}",
            self.name,
            self.child.id(),
            self.logs.stderr.display(),
            self.logs.stderr_tail(40)
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal`. Panics if the child has been reaped already: its pid may
    /// belong to another process by now.
    pub fn signal(&self, signal: Signal) {
        assert!(
            self.exit.is_none(),
            "{} has exited ({:?}); not signalling a reaped pid",
            self.name,
            self.exit
        );
        let pid = Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("cannot signal {} (pid {pid:?}): {e}", self.name));
    }

    /// The exit status, if the child has exited (reaping it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("cannot poll {}: {e}", self.name));
        }
        self.exit
    }

    /// SIGKILL, then reap. Returns the exit status (also if it had exited already).
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exit() {
            return status;
        }
        // Fails only if the child is gone already, which `wait` then reports.
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("cannot reap {}: {e}", self.name));
        self.exit = Some(status);
        status
    }

    /// SIGTERM (and SIGCONT, so a paused process acts on it), then waits up to
    /// `deadline` for the exit status; past it, kills the child and panics.
    pub async fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        if let Some(status) = self.try_exit() {
            return status;
        }
        self.signal(Signal::TERM);
        self.signal(Signal::CONT);
        self.wait_exit(deadline).await
    }

    /// Waits up to `deadline` for the child to exit by itself; past it, kills
    /// the child and panics.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            if tokio::time::Instant::now() >= end {
                self.kill();
                self.fail(&format!("did not exit within {deadline:?}"));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // Never panics: a panic while unwinding would abort the test run.
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
        if let Some(copier) = self.copier.take() {
            // The child is gone, so its stdout is closed and the copier ends.
            let _ = copier.join();
        }
        if std::thread::panicking() {
            eprintln!(
                "e2e: {} (pid {}) logs: {} {}",
                self.name,
                self.child.id(),
                self.logs.stderr.display(),
                self.logs.stdout.display()
            );
        }
    }
}

fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open the log {}: {e}", path.display()))
}

/// Hands the first stdout line to the spawner, and copies every line to the log
/// until the child closes its stdout.
fn copy_stdout(stdout: ChildStdout, mut log: File, ready: oneshot::Sender<String>) {
    let mut ready = Some(ready);
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { return };
        let _ = writeln!(log, "{line}");
        if let Some(tx) = ready.take() {
            let _ = tx.send(line);
        }
    }
}
