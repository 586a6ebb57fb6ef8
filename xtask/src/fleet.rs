//! Child processes that announce themselves with a JSON ready line on stdout
//! and log to files: the broker and the collectors of `cargo xtask demo` and
//! of the `cargo xtask windows` smoke suite. Each is an
//! `eventbus_harness::Process` (the one supervised child of the workspace);
//! [`Proc`] adds what these tasks need on top: errors as `anyhow`, the ready
//! line without a pid check (under Wine it carries the Windows pid, not the
//! child's), and stopping several at once.
//!
//! **Invariant:** every child is reaped. A `Process` kills and waits for its
//! child when dropped, so an error or a panic anywhere leaves no process
//! behind; [`stop_all`] is the graceful way: SIGTERM, a grace period, then
//! SIGKILL.
//!
//! On Unix each child runs in its own process group, so the terminal's Ctrl-C
//! reaches only the parent, which then stops the children in order (collectors
//! first, so they can drain and leave, then the broker).

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use eventbus_harness::{Process, ProcessBuilder, Ready};
use serde_json::Value;

/// Lines of a child's stderr shown when it fails.
const STDERR_TAIL_LINES: usize = 15;

/// A child process, reaped on drop.
#[derive(Debug)]
pub struct Proc {
    process: Process,
    /// The parsed ready line.
    ready: Value,
}

/// How a child ended when it was asked to stop.
#[derive(Debug)]
pub enum Stopped {
    /// It exited by itself within the grace period.
    Exited(ExitStatus),
    /// It was still running at the deadline and was killed.
    Killed,
}

/// Whether `line` is a JSON ready line.
fn is_ready_line(line: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|v| v["event"] == "ready")
}

impl Proc {
    /// Starts `cmd` as the child `name` and waits up to `deadline` for its
    /// ready line: a JSON object with `"event":"ready"` on stdout.
    ///
    /// Stdout goes to `<logs>/<name>.stdout.log`, stderr to
    /// `<logs>/<name>.stderr.log`. Gives up early when `interrupted` says so.
    pub fn start(
        name: &str,
        cmd: Command,
        logs: &Path,
        deadline: Duration,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Self> {
        let process = ProcessBuilder::from_command(name, &cmd)
            .logs_in(logs)
            .ready(Ready::line(is_ready_line))
            .ready_timeout(deadline)
            .own_process_group()
            .start_blocking_unless(interrupted)?;
        let line = process.ready_line().context("started on its ready line")?;
        let ready = serde_json::from_str(line).context("the ready line is JSON")?;
        Ok(Self { process, ready })
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        self.process.name()
    }

    /// The parsed ready line.
    pub fn ready(&self) -> &Value {
        &self.ready
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Where the child's stderr goes.
    pub fn stderr_log(&self) -> &Path {
        &self.process.logs().stderr
    }

    /// The exit status if the child has exited (reaping it), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.try_exit()
    }

    /// Waits for the child to exit until `until`, or until `hurry` says to
    /// stop waiting; its status if it exited.
    pub fn wait_until(&mut self, until: Instant, hurry: &dyn Fn() -> bool) -> Option<ExitStatus> {
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= until || hurry() {
                return None;
            }
            std::thread::sleep(eventbus_harness::wait::POLL_INTERVAL);
        }
    }

    /// Asks the child to stop: SIGTERM on Unix; elsewhere there is no gentle
    /// way, so it is killed.
    pub fn terminate(&mut self) {
        self.process.request_stop();
    }

    /// Sends SIGINT (on Unix; elsewhere, like [`Self::terminate`], it kills).
    /// Wine turns SIGINT into a console Ctrl-C event for the Windows process.
    pub fn interrupt(&mut self) {
        self.process.interrupt();
    }

    /// Kills the child (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The last lines of the child's stderr, as a suffix for an error message.
    pub fn stderr_tail(&self) -> String {
        let tail = self.process.logs().stderr_tail(STDERR_TAIL_LINES);
        let log = self.stderr_log().display();
        if tail.is_empty() {
            format!(" (stderr, empty: {log})")
        } else {
            format!(
                "; its stderr ({log}) ends with:\n  {}",
                tail.replace('\n', "\n  ")
            )
        }
    }
}

/// Stops `procs` together: SIGTERM to each, then waits for all until `grace`
/// has passed (or `hurry` says to stop waiting), then kills what still runs.
/// Returns how each one ended, in order.
pub fn stop_all(procs: &mut [Proc], grace: Duration, hurry: &dyn Fn() -> bool) -> Vec<Stopped> {
    for proc in procs.iter_mut() {
        proc.terminate();
    }
    let until = Instant::now() + grace;
    procs
        .iter_mut()
        .map(|proc| match proc.wait_until(until, hurry) {
            Some(status) => Stopped::Exited(status),
            None => {
                proc.kill();
                Stopped::Killed
            }
        })
        .collect()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A shell command printing a ready line.
    const READY: &str = r#"echo '{"event":"ready","id":"x-1","pid":1}'"#;

    /// `sh -c script`.
    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn the_ready_line_is_taken_whatever_pid_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!("echo before; {READY}; exec sleep 30");
        let proc = Proc::start("x-1", sh(&script), dir.path(), DEADLINE, &|| false).unwrap();
        assert_eq!(proc.ready()["id"], "x-1");
    }

    #[test]
    fn an_early_exit_is_reported_with_the_stderr_tail() {
        let dir = tempfile::tempdir().unwrap();
        let proc = Proc::start(
            "x-1",
            sh("echo 'no socket' >&2; exit 3"),
            dir.path(),
            DEADLINE,
            &|| false,
        );
        let error = format!("{:#}", proc.unwrap_err());
        assert!(error.contains("x-1 exited (exit status: 3)"), "{error}");
        assert!(error.contains("no socket"), "{error}");
    }

    #[test]
    fn stop_all_terminates_then_kills() {
        let dir = tempfile::tempdir().unwrap();
        let polite = format!("trap 'exit 0' TERM; {READY}; while :; do sleep 0.05; done");
        let stubborn = format!("trap '' TERM; {READY}; while :; do sleep 0.05; done");
        let mut procs = [("a", &polite), ("b", &stubborn)].map(|(name, script)| {
            Proc::start(name, sh(script), dir.path(), DEADLINE, &|| false).unwrap()
        });
        let stopped = stop_all(&mut procs, Duration::from_millis(500), &|| false);
        assert!(
            matches!(stopped[0], Stopped::Exited(status) if status.success()),
            "{stopped:?}"
        );
        assert!(matches!(stopped[1], Stopped::Killed), "{stopped:?}");
        assert!(procs.iter_mut().all(|proc| proc.exited().is_some()));
    }

    const DEADLINE: Duration = Duration::from_secs(10);
}
