//! The test harness: a broker process per test, on a socket in its own
//! temporary directory, always killed and reaped, even when the test panics.

use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// How long any awaited condition may take before the test fails. Generous:
/// a loaded machine must slow the tests down, not fail them.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A fresh, short temporary directory (socket paths must stay well under the
/// ~100-byte limit of `sun_path`).
pub fn short_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("eb")
        .tempdir_in("/tmp")
        .expect("create a temporary directory")
}

/// A child process that is killed and reaped when dropped.
#[derive(Debug)]
pub struct Reaped(pub Child);

impl Reaped {
    /// Waits up to [`DEADLINE`] for the process to exit on its own.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("poll the child") {
                return status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "process {} did not exit within {DEADLINE:?}",
                self.0.id()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `stream` line by line on a thread until it closes; the lines arrive
/// on the returned channel.
pub fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits up to [`DEADLINE`] for a line satisfying `want`; panics with every
/// line seen otherwise.
pub fn wait_for_line(rx: &mpsc::Receiver<String>, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + DEADLINE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if want(&line) => return line,
            Ok(line) => seen.push(line),
            Err(e) => panic!("no matching line within {DEADLINE:?} ({e}); saw {seen:?}"),
        }
    }
}

/// Every line still to come on `rx`, up to the moment its stream closes
/// (waiting at most [`DEADLINE`] for that).
pub fn rest_of(rx: &mpsc::Receiver<String>) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    let mut rest = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => rest.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return rest,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("stream still open after {DEADLINE:?}; got {rest:?}")
            }
        }
    }
}

/// A broker running as a child process on its own socket.
#[derive(Debug)]
pub struct TestBroker {
    /// The broker process; killed and reaped on drop.
    pub process: Reaped,
    /// The socket it listens on.
    pub socket: PathBuf,
    /// The parsed ready line.
    pub ready: Value,
    // Dropped after `process` (fields drop in order): the broker goes first.
    _dir: TempDir,
}

impl TestBroker {
    /// Starts a broker on `b.sock` in a fresh temporary directory.
    pub fn start() -> Self {
        Self::start_in(short_dir(), &[])
    }

    /// Starts a broker on `dir/b.sock` with extra arguments, and waits for its
    /// ready line.
    pub fn start_in(dir: TempDir, args: &[&str]) -> Self {
        let socket = dir.path().join("b.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_broker"))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the broker");
        let stdout = child.stdout.take().expect("piped stdout");
        let process = Reaped(child);
        let ready = wait_for_line(&lines(stdout), |_| true);
        let ready: Value = serde_json::from_str(&ready).expect("the ready line is JSON");
        Self {
            process,
            socket,
            ready,
            _dir: dir,
        }
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// A `ebctl` command already pointed at this broker.
    pub fn ebctl(&self) -> assert_cmd::Command {
        ebctl(&self.socket)
    }

    /// `ebctl stats --json`, parsed.
    pub fn stats(&self) -> Value {
        let out = self.ebctl().args(["stats", "--json"]).assert().success();
        serde_json::from_slice(&out.get_output().stdout).expect("stats --json is JSON")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("a live pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("send SIGTERM");
    }
}

/// A `ebctl` command pointed at `socket`.
pub fn ebctl(socket: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("ebctl").expect("the ebctl binary");
    cmd.arg("--socket").arg(socket).timeout(DEADLINE);
    cmd
}

/// Asserts that `stderr` is exactly one line, `ebctl: ...`, containing `needle`.
pub fn assert_one_line(stderr: &[u8], prefix: &str, needle: &str) {
    let text = String::from_utf8_lossy(stderr);
    assert_eq!(text.lines().count(), 1, "expected one line: {text:?}");
    assert!(text.starts_with(prefix), "{text:?}");
    assert!(text.contains(needle), "expected {needle:?} in {text:?}");
}
