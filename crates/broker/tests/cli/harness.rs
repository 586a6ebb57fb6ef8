//! The CLI tests' fixtures, on the shared harness (`eventbus-harness`): a
//! `broker` process per test, on a socket in its own temporary directory,
//! and `ebctl` children, all killed and reaped even when the test panics.

use std::path::{Path, PathBuf};

use eventbus_harness::embedded::short_temp_dir;
use serde_json::Value;
use tempfile::TempDir;

pub use eventbus_harness::{DEADLINE, Output, Process, ProcessBuilder, Ready};

/// A fresh, short temporary directory (socket paths must stay well under the
/// ~100-byte limit of `sun_path`).
pub fn short_dir() -> TempDir {
    short_temp_dir()
}

/// A broker running as a child process on its own socket.
#[derive(Debug)]
pub struct TestBroker {
    /// The broker process; killed and reaped on drop.
    pub process: Process,
    /// The socket it listens on.
    pub socket: PathBuf,
    /// Its socket and logs; kept when the test fails.
    dir: Option<TempDir>,
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
        let process = ProcessBuilder::new("broker", env!("CARGO_BIN_EXE_broker"))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .env("RUST_LOG", "warn")
            .logs_in(dir.path())
            .ready(Ready::JsonLine)
            .start_blocking()
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            process,
            socket,
            dir: Some(dir),
        }
    }

    /// The parsed ready line.
    pub fn ready(&self) -> &Value {
        self.process.ready().expect("started on its ready line")
    }

    /// An `ebctl` command already pointed at this broker.
    pub fn ebctl(&self) -> assert_cmd::Command {
        ebctl(&self.socket)
    }

    /// `ebctl ARGS...` as a child pointed at this broker, its logs next to
    /// the broker's, running once spawned.
    pub fn spawn_ebctl(&self, name: &str, args: &[&str]) -> Process {
        ProcessBuilder::new(name, env!("CARGO_BIN_EXE_ebctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .logs_in(self.dir.as_ref().expect("the broker's directory").path())
            .start_blocking()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ebctl stats --json`, parsed.
    pub fn stats(&self) -> Value {
        let out = self.ebctl().args(["stats", "--json"]).assert().success();
        serde_json::from_slice(&out.get_output().stdout).expect("stats --json is JSON")
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("broker directory kept: {}", dir.keep().display());
        }
    }
}

/// An `ebctl` command pointed at `socket`.
pub fn ebctl(socket: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("ebctl").expect("the ebctl binary");
    cmd.arg("--socket").arg(socket).timeout(DEADLINE);
    cmd
}

/// Asserts that `stderr` is exactly one line, `<prefix>...`, containing `needle`.
pub fn assert_one_line(stderr: &[u8], prefix: &str, needle: &str) {
    let text = String::from_utf8_lossy(stderr);
    assert_eq!(text.lines().count(), 1, "expected one line: {text:?}");
    assert!(text.starts_with(prefix), "{text:?}");
    assert!(text.contains(needle), "expected {needle:?} in {text:?}");
}
