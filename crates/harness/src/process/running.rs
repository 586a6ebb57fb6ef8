//! [`Process`]: a started child, its output, its faults, its end.

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::child::{ReadySlot, spawn_child};
use super::{COPIER_GRACE, LogPaths, Output, ProcessBuilder, Ready, STDERR_TAIL_LINES, StartError};
use crate::wait::{DEADLINE, POLL_INTERVAL};

/// A running (or exited but reaped) child process, killed and reaped on drop.
///
/// ```no_run
/// # async fn demo() -> Result<(), eventbus_harness::StartError> {
/// use std::time::Duration;
/// use eventbus_harness::{ProcessBuilder, Ready};
/// let mut worker = ProcessBuilder::new("worker", "target/debug/my-worker")
///     .ready(Ready::JsonLine)
///     .start()
///     .await?;
/// worker.kill(); // a crash: SIGKILL, reaped
/// worker.restart().await?; // same program, arguments and readiness
/// worker.terminate(Duration::from_secs(5)).await; // SIGTERM, waits for the exit
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Process {
    pub(super) builder: ProcessBuilder,
    pub(super) logs: LogPaths,
    /// The temporary log directory, when none was chosen.
    pub(super) log_dir: Option<tempfile::TempDir>,
    pub(super) child: Child,
    pub(super) copier: Option<JoinHandle<()>>,
    /// Where the stdout copier puts the ready line.
    pub(super) line: ReadySlot,
    pub(super) ready_line: Option<(String, Option<Value>)>,
    pub(super) exit: Option<ExitStatus>,
}

impl Process {
    /// Whether the child is ready, failing if it exited or `end` passed.
    pub(super) fn check_ready(&mut self, end: Instant) -> Result<bool, StartError> {
        let ready = match &self.builder.ready {
            Ready::Spawned => true,
            Ready::JsonLine | Ready::Line(_) => self.take_line()?,
            Ready::SocketAccepts(path) => socket_accepts(path),
            Ready::Probe(probe) => probe(),
        };
        if ready {
            return Ok(true);
        }
        if let Some(status) = self.try_exit() {
            // The ready line may have come just before the exit.
            if self.builder.ready.by_line() && self.take_line()? {
                return Ok(true);
            }
            return Err(StartError::Exited {
                name: self.builder.name.clone(),
                status,
                stderr_tail: self.logs.stderr_tail(STDERR_TAIL_LINES),
                logs: Box::new(self.logs.clone()),
            });
        }
        if Instant::now() >= end {
            self.kill();
            return Err(StartError::NotReady {
                name: self.builder.name.clone(),
                ready: self.builder.ready.clone(),
                after: self.builder.ready_timeout,
                stderr_tail: self.logs.stderr_tail(STDERR_TAIL_LINES),
                logs: Box::new(self.logs.clone()),
            });
        }
        Ok(false)
    }

    /// Takes the ready line if the copier found it, checking a JSON one.
    fn take_line(&mut self) -> Result<bool, StartError> {
        let Some(line) = self.line.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(false);
        };
        let json = match self.builder.ready {
            Ready::JsonLine => {
                let value: Value = serde_json::from_str(&line).expect("matched as JSON");
                let pid = value.get("pid").map(|p| p.as_u64());
                if let Some(pid) = pid
                    && pid != Some(u64::from(self.pid()))
                {
                    self.kill();
                    return Err(StartError::BadReadyLine {
                        name: self.builder.name.clone(),
                        line,
                        why: format!("its pid is not the child's ({})", self.pid()),
                    });
                }
                Some(value)
            }
            _ => None,
        };
        self.ready_line = Some((line, json));
        Ok(true)
    }

    /// The name given to the builder.
    pub fn name(&self) -> &str {
        &self.builder.name
    }

    /// The pid of the current run.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The parsed ready line, with [`Ready::JsonLine`].
    pub fn ready(&self) -> Option<&Value> {
        self.ready_line.as_ref().and_then(|(_, json)| json.as_ref())
    }

    /// The line that made it ready, with [`Ready::JsonLine`] or [`Ready::Line`].
    pub fn ready_line(&self) -> Option<&str> {
        self.ready_line.as_ref().map(|(line, _)| line.as_str())
    }

    /// Where its output goes.
    pub fn logs(&self) -> &LogPaths {
        &self.logs
    }

    /// Everything it printed on `output` so far, every run included.
    pub fn output(&self, output: Output) -> String {
        let path = match output {
            Output::Stdout => &self.logs.stdout,
            Output::Stderr => &self.logs.stderr,
        };
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The first line printed on `output` (since it was started, earlier
    /// runs included) for which `want` is true, waiting up to `deadline`.
    /// Panics, with the logs, past it.
    pub async fn wait_for_line(
        &self,
        output: Output,
        deadline: Duration,
        want: impl Fn(&str) -> bool,
    ) -> String {
        let end = Instant::now() + deadline;
        loop {
            if let Some(line) = self.find_line(output, &want) {
                return line;
            }
            self.check_deadline(end, output, deadline);
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// [`wait_for_line`](Self::wait_for_line) for a plain thread.
    pub fn wait_for_line_blocking(
        &self,
        output: Output,
        deadline: Duration,
        want: impl Fn(&str) -> bool,
    ) -> String {
        let end = Instant::now() + deadline;
        loop {
            if let Some(line) = self.find_line(output, &want) {
                return line;
            }
            self.check_deadline(end, output, deadline);
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn find_line(&self, output: Output, want: &impl Fn(&str) -> bool) -> Option<String> {
        self.output(output)
            .lines()
            .find(|line| want(line))
            .map(str::to_owned)
    }

    fn check_deadline(&self, end: Instant, output: Output, deadline: Duration) {
        if Instant::now() >= end {
            self.fail(&format!(
                "printed no matching line on {output:?} within {deadline:?}"
            ));
        }
    }

    /// Panics with the process's name, logs and the tail of its stderr.
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "{} (pid {}) {what}\nstderr log {}:\n{}",
            self.builder.name,
            self.child.id(),
            self.logs.stderr.display(),
            self.logs.stderr_tail(STDERR_TAIL_LINES)
        )
    }

    /// The exit status, if the child has exited (reaping it). Once it has,
    /// its whole stdout is in the log.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("cannot poll {}: {e}", self.builder.name));
            if self.exit.is_some() {
                self.join_copier();
            }
        }
        self.exit
    }

    /// Waits for the stdout copier to see the pipe close and copy the rest,
    /// unless a grandchild inherited the pipe: then the copier is left to end
    /// with it.
    fn join_copier(&mut self) {
        let Some(copier) = self.copier.take() else {
            return;
        };
        let end = Instant::now() + COPIER_GRACE;
        while !copier.is_finished() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
        if copier.is_finished() {
            let _ = copier.join();
        }
    }

    /// SIGKILL, then reap: a crash without warning. Returns the exit status
    /// (also if it had exited already).
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exit() {
            return status;
        }
        // Fails only if the child is gone already, which `wait` then reports.
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("cannot reap {}: {e}", self.builder.name));
        self.exit = Some(status);
        self.join_copier();
        status
    }

    /// Asks it to stop without waiting: SIGTERM (and SIGCONT, so a paused
    /// process acts on it). Where there are no signals, it is killed.
    pub fn request_stop(&mut self) {
        if self.try_exit().is_some() {
            return;
        }
        #[cfg(unix)]
        {
            self.signal(rustix::process::Signal::TERM);
            self.signal(rustix::process::Signal::CONT);
        }
        #[cfg(not(unix))]
        self.kill();
    }

    /// SIGINT, as a terminal's Ctrl-C (under Wine, a console Ctrl-C event for
    /// the Windows process), without waiting. Where there are no signals, it
    /// is killed.
    pub fn interrupt(&mut self) {
        if self.try_exit().is_some() {
            return;
        }
        #[cfg(unix)]
        self.signal(rustix::process::Signal::INT);
        #[cfg(not(unix))]
        self.kill();
    }

    /// [`request_stop`](Self::request_stop), then waits up to `deadline` for
    /// the exit status; past it, kills the child and panics.
    pub async fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        self.request_stop();
        self.wait_exit(deadline).await
    }

    /// [`terminate`](Self::terminate) for a plain thread.
    pub fn terminate_blocking(&mut self, deadline: Duration) -> ExitStatus {
        self.request_stop();
        self.wait_exit_blocking(deadline)
    }

    /// Waits up to `deadline` for the child to exit by itself; past it,
    /// kills the child and panics.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.exit_by(end, deadline) {
                return status;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// [`wait_exit`](Self::wait_exit) for a plain thread.
    pub fn wait_exit_blocking(&mut self, deadline: Duration) -> ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.exit_by(end, deadline) {
                return status;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until `until` for the exit without failing: `None` if it still runs.
    pub fn exited_by(&mut self, until: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn exit_by(&mut self, end: Instant, deadline: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_exit() {
            return Some(status);
        }
        if Instant::now() >= end {
            self.kill();
            self.fail(&format!("did not exit within {deadline:?}"));
        }
        None
    }

    /// SIGSTOP: it freezes, with its sockets open.
    #[cfg(unix)]
    pub fn pause(&self) {
        self.signal(rustix::process::Signal::STOP);
    }

    /// SIGCONT after [`pause`](Self::pause).
    #[cfg(unix)]
    pub fn resume(&self) {
        self.signal(rustix::process::Signal::CONT);
    }

    /// Sends `signal`. Panics if the child has been reaped already: its pid
    /// may belong to another process by now.
    #[cfg(unix)]
    pub(crate) fn signal(&self, signal: rustix::process::Signal) {
        assert!(
            self.exit.is_none(),
            "{} has exited ({:?}); not signalling a reaped pid",
            self.builder.name,
            self.exit
        );
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("cannot signal {} (pid {pid:?}): {e}", self.builder.name));
    }

    /// Starts it again, same program, arguments, environment and readiness,
    /// logs appended; first terminates it gracefully (up to [`DEADLINE`]) if
    /// it still runs ([`kill`](Self::kill) first for a crash).
    pub async fn restart(&mut self) -> Result<(), StartError> {
        if self.try_exit().is_none() {
            self.terminate(DEADLINE).await;
        }
        let next = self.respawn()?;
        let end = Instant::now() + self.builder.ready_timeout;
        *self = next;
        loop {
            if self.check_ready(end)? {
                return Ok(());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// [`restart`](Self::restart) for a plain thread.
    pub fn restart_blocking(&mut self) -> Result<(), StartError> {
        if self.try_exit().is_none() {
            self.terminate_blocking(DEADLINE);
        }
        let next = self.respawn()?;
        let end = Instant::now() + self.builder.ready_timeout;
        *self = next;
        loop {
            if self.check_ready(end)? {
                return Ok(());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// A new run with the same builder and logs (the old one is reaped).
    fn respawn(&mut self) -> Result<Process, StartError> {
        let (child, copier, line) = spawn_child(&self.builder, &self.logs)?;
        Ok(Process {
            builder: self.builder.clone(),
            logs: self.logs.clone(),
            log_dir: self.log_dir.take(),
            child,
            copier: Some(copier),
            line,
            ready_line: None,
            exit: None,
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Never panics: a panic while unwinding would abort the test run.
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
        self.join_copier();
        if std::thread::panicking() {
            if let Some(dir) = self.log_dir.take() {
                // Keep the logs of a failed test.
                let _ = dir.keep();
            }
            eprintln!(
                "eventbus-harness: {} (pid {}) logs: {} {}",
                self.builder.name,
                self.child.id(),
                self.logs.stderr.display(),
                self.logs.stdout.display()
            );
        }
    }
}

/// Whether a client can connect to the local socket at `path` now.
fn socket_accepts(path: &Path) -> bool {
    #[cfg(unix)]
    {
        std::os::unix::net::UnixStream::connect(path).is_ok()
    }
    #[cfg(not(unix))]
    {
        // Named pipes: ask the transport eventbus itself connects with.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .is_ok_and(|rt| rt.block_on(eventbus::transport::connect(path)).is_ok())
    }
}
