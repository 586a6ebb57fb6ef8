//! Spawning the child: its output into the log files, and the thread that
//! copies its stdout and spots the ready line.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::Value;

use super::{LogPaths, ProcessBuilder, Ready, StartError};

/// What the stdout copier found: the line that made the process ready.
pub(super) type ReadySlot = Arc<Mutex<Option<String>>>;

pub(super) fn spawn_child(
    builder: &ProcessBuilder,
    logs: &LogPaths,
) -> Result<(Child, JoinHandle<()>, ReadySlot), StartError> {
    let stderr = append(&logs.stderr)?;
    let stdout_log = append(&logs.stdout)?;
    let mut command = Command::new(&builder.program);
    command
        .args(&builder.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    for (key, value) in &builder.env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    if let Some(dir) = &builder.current_dir {
        command.current_dir(dir);
    }
    #[cfg(unix)]
    if builder.own_process_group {
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
    }
    #[cfg(unix)]
    if let Some((uid, gid)) = builder.user {
        use std::os::unix::process::CommandExt as _;
        command.uid(uid).gid(gid);
    }
    let mut child = command.spawn().map_err(|source| StartError::Spawn {
        name: builder.name.clone(),
        program: builder.program.to_string_lossy().into_owned(),
        source,
    })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let slot: ReadySlot = Arc::default();
    let matcher = match &builder.ready {
        Ready::JsonLine => Some(Matcher::Json),
        Ready::Line(f) => Some(Matcher::Line(f.clone())),
        _ => None,
    };
    let found = slot.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("{}-stdout", builder.name))
        .spawn(move || copy_stdout(stdout, stdout_log, matcher, &found));
    match spawned {
        Ok(copier) => Ok((child, copier, slot)),
        Err(source) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(StartError::Log {
                path: logs.stdout.clone(),
                source,
            })
        }
    }
}

/// Which stdout line makes the process ready.
enum Matcher {
    Json,
    Line(Arc<dyn Fn(&str) -> bool + Send + Sync>),
}

impl Matcher {
    fn matches(&self, line: &str) -> bool {
        match self {
            Matcher::Json => serde_json::from_str::<Value>(line)
                .is_ok_and(|v| v.get("event").and_then(Value::as_str) == Some("ready")),
            Matcher::Line(f) => f(line),
        }
    }
}

/// Copies every stdout line to the log until the child closes its stdout,
/// and hands over the first line the matcher accepts.
fn copy_stdout(
    stdout: ChildStdout,
    mut log: File,
    mut matcher: Option<Matcher>,
    found: &ReadySlot,
) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { return };
        let _ = writeln!(log, "{line}");
        if matcher.as_ref().is_some_and(|m| m.matches(&line)) {
            matcher = None;
            *found.lock().unwrap_or_else(|p| p.into_inner()) = Some(line);
        }
    }
}

fn append(path: &Path) -> Result<File, StartError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| StartError::Log {
            path: path.to_owned(),
            source,
        })
}
