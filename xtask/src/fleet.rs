//! Child processes that announce themselves with a JSON ready line on stdout
//! and log to files: the broker and the collectors of `cargo xtask demo` and
//! of the `cargo xtask windows` smoke suite.
//!
//! **Invariant:** every child is reaped. A [`Proc`] kills and waits for its
//! child when dropped, so an error or a panic anywhere in the demo leaves no
//! process behind; [`stop_all`] is the graceful way: SIGTERM, a grace period,
//! then SIGKILL.
//!
//! On Unix each child runs in its own process group, so the terminal's Ctrl-C
//! reaches only the parent, which then stops the children in order (collectors
//! first, so they can drain and leave, then the broker).

use std::fs::File;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// How often waits for a ready line or an exit look at their deadline.
const POLL: Duration = Duration::from_millis(20);

/// Lines of a child's stderr shown when it fails to start.
const STDERR_TAIL_LINES: usize = 15;

/// A child process, reaped on drop.
#[derive(Debug)]
pub struct Proc {
    /// Name used in messages and log file names, e.g. `broker`, `procmond-1`.
    name: String,
    /// The running child.
    child: Child,
    /// The parsed ready line.
    ready: Value,
    /// Where the child's stderr goes.
    stderr_log: PathBuf,
    /// The exit status, once reaped.
    status: Option<ExitStatus>,
}

/// How a child ended when it was asked to stop.
#[derive(Debug)]
pub enum Stopped {
    /// It exited by itself within the grace period.
    Exited(ExitStatus),
    /// It was still running at the deadline and was killed.
    Killed,
}

impl Proc {
    /// Starts `cmd` as the child `name` and waits up to `deadline` for its
    /// ready line: a JSON object with `"event":"ready"` on stdout.
    ///
    /// Stdout after the ready line goes to `<logs>/<name>.stdout.log`, stderr to
    /// `<logs>/<name>.stderr.log`. Gives up early when `interrupted` says so.
    pub fn start(
        name: &str,
        mut cmd: Command,
        logs: &Path,
        deadline: Duration,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Self> {
        let stdout_log = logs.join(format!("{name}.stdout.log"));
        let stderr_log = logs.join(format!("{name}.stderr.log"));
        let stderr = File::create(&stderr_log)
            .with_context(|| format!("creating {}", stderr_log.display()))?;
        let mut stdout_file = File::create(&stdout_log)
            .with_context(|| format!("creating {}", stdout_log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "starting {name}: {}",
                Path::new(cmd.get_program()).display()
            )
        })?;
        let stdout = child.stdout.take().context("child stdout is piped")?;
        let mut proc = Self {
            name: name.to_owned(),
            child,
            ready: Value::Null,
            stderr_log,
            status: None,
        };

        // A thread reads stdout until the ready line, hands it over, then copies
        // the rest to the log until the child closes its stdout.
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Value>(1);
        thread::Builder::new()
            .name(format!("{name}-stdout"))
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                    match serde_json::from_str::<Value>(&line) {
                        Ok(value) if value["event"] == "ready" => {
                            let _ = ready_tx.send(value);
                            break;
                        }
                        _ => {
                            let _ = stdout_file.write_all(line.as_bytes());
                            line.clear();
                        }
                    }
                }
                drop(ready_tx);
                let _ = std::io::copy(&mut reader, &mut stdout_file);
            })
            .context("starting a stdout reader thread")?;

        let until = Instant::now() + deadline;
        loop {
            match ready_rx.recv_timeout(POLL) {
                Ok(ready) => {
                    proc.ready = ready;
                    return Ok(proc);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Stdout closed without a ready line: the child is exiting.
                    let status =
                        proc.wait_until(Instant::now() + Duration::from_secs(2), &|| false);
                    let how =
                        status.map_or("closed its stdout".to_owned(), |s| format!("exited ({s})"));
                    bail!("{name} {how} before its ready line{}", proc.stderr_tail());
                }
            }
            if let Some(status) = proc.exited() {
                bail!(
                    "{name} exited ({status}) before its ready line{}",
                    proc.stderr_tail()
                );
            }
            if interrupted() {
                bail!("interrupted while waiting for {name} to start");
            }
            if Instant::now() >= until {
                bail!(
                    "{name} printed no ready line within {deadline:?}{}",
                    proc.stderr_tail()
                );
            }
        }
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parsed ready line.
    pub fn ready(&self) -> &Value {
        &self.ready
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the child's stderr goes.
    pub fn stderr_log(&self) -> &Path {
        &self.stderr_log
    }

    /// The exit status if the child has exited (reaping it), without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
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
            thread::sleep(POLL);
        }
    }

    /// Asks the child to stop: SIGTERM on Unix; elsewhere there is no gentle
    /// way, so it is killed.
    pub fn terminate(&mut self) {
        if self.status.is_some() {
            return;
        }
        #[cfg(unix)]
        {
            use rustix::process::{Pid, Signal, kill_process};
            let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
        }
        #[cfg(not(unix))]
        let _ = self.child.kill();
    }

    /// Sends SIGINT (on Unix; elsewhere, like [`Self::terminate`], it kills).
    /// Wine turns SIGINT into a console Ctrl-C event for the Windows process.
    pub fn interrupt(&mut self) {
        if self.status.is_some() {
            return;
        }
        #[cfg(unix)]
        {
            use rustix::process::{Pid, Signal, kill_process};
            let _ = kill_process(Pid::from_child(&self.child), Signal::INT);
        }
        #[cfg(not(unix))]
        let _ = self.child.kill();
    }

    /// Kills the child (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// The last lines of the child's stderr, as a suffix for an error message.
    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..];
        let log = self.stderr_log.display();
        if tail.is_empty() {
            format!(" (stderr, empty: {log})")
        } else {
            format!("; its stderr ({log}) ends with:\n  {}", tail.join("\n  "))
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
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
    const READY: &str = r#"echo '{"event":"ready","id":"x-1"}'"#;

    /// `sh -c script`.
    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    /// Starts `script` as `x-1` with its logs in a fresh directory.
    fn start(script: &str, deadline: Duration) -> (tempfile::TempDir, Result<Proc>) {
        let dir = tempfile::tempdir().unwrap();
        let proc = Proc::start("x-1", sh(script), dir.path(), deadline, &|| false);
        (dir, proc)
    }

    #[test]
    fn the_ready_line_is_parsed_and_the_rest_of_stdout_logged() {
        let script = format!("echo before; {READY}; echo after; exec sleep 30");
        let (dir, proc) = start(&script, Duration::from_secs(10));
        let mut proc = proc.unwrap();
        assert_eq!(proc.ready()["id"], "x-1");
        let log = dir.path().join("x-1.stdout.log");
        let until = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&log).unwrap() != "before\nafter\n" {
            assert!(Instant::now() < until, "stdout log never got both lines");
            thread::sleep(POLL);
        }
        assert!(proc.exited().is_none());
        let pid = proc.pid();
        drop(proc);
        // Reaped: the pid no longer names our child.
        assert!(
            rustix::process::test_kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap())
                .is_err()
        );
    }

    #[test]
    fn an_early_exit_is_reported_with_the_stderr_tail() {
        let (_dir, proc) = start("echo 'no socket' >&2; exit 3", Duration::from_secs(10));
        let error = format!("{:#}", proc.unwrap_err());
        assert!(error.contains("x-1 exited (exit status: 3)"), "{error}");
        assert!(error.contains("no socket"), "{error}");
    }

    #[test]
    fn a_missing_ready_line_times_out() {
        let (_dir, proc) = start("exec sleep 30", Duration::from_millis(200));
        let error = format!("{:#}", proc.unwrap_err());
        assert!(error.contains("no ready line within 200ms"), "{error}");
    }

    #[test]
    fn stop_all_terminates_then_kills() {
        let dir = tempfile::tempdir().unwrap();
        let polite = format!("trap 'exit 0' TERM; {READY}; while :; do sleep 0.05; done");
        let stubborn = format!("trap '' TERM; {READY}; while :; do sleep 0.05; done");
        let mut procs = [("a", &polite), ("b", &stubborn)].map(|(name, script)| {
            Proc::start(
                name,
                sh(script),
                dir.path(),
                Duration::from_secs(10),
                &|| false,
            )
            .unwrap()
        });
        let stopped = stop_all(&mut procs, Duration::from_millis(500), &|| false);
        assert!(
            matches!(stopped[0], Stopped::Exited(status) if status.success()),
            "{stopped:?}"
        );
        assert!(matches!(stopped[1], Stopped::Killed), "{stopped:?}");
        assert!(procs.iter_mut().all(|proc| proc.exited().is_some()));
    }
}
