//! `Process` against `sh` scripts: readiness of every kind, failures to
//! start, stopping, restarting, and reaping.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::wait::DEADLINE;

/// A shell command printing a ready line with the shell's own pid.
const READY: &str = r#"echo "{\"event\":\"ready\",\"id\":\"x-1\",\"pid\":$$}""#;

fn sh(name: &str, script: &str, dir: &Path) -> ProcessBuilder {
    ProcessBuilder::new(name, "sh")
        .args(["-c", script])
        .logs_in(dir)
        .ready_timeout(Duration::from_secs(10))
}

/// Whether `pid` still names a process (a reaped child's does not, barring reuse).
fn alive(pid: u32) -> bool {
    rustix::process::test_kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap()).is_ok()
}

#[test]
fn the_json_ready_line_is_parsed_and_every_line_logged() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("echo before; {READY}; echo after; exec sleep 30");
    let process = sh("x-1", &script, dir.path())
        .ready(Ready::JsonLine)
        .start_blocking()
        .unwrap();
    assert_eq!(process.ready().unwrap()["id"], "x-1");
    assert!(process.ready_line().unwrap().contains("\"ready\""));
    let after = process.wait_for_line_blocking(Output::Stdout, DEADLINE, |l| l == "after");
    assert_eq!(after, "after");
    assert!(process.output(Output::Stdout).starts_with("before\n"));
    let pid = process.pid();
    drop(process);
    assert!(!alive(pid), "dropped but not reaped");
}

#[test]
fn a_ready_line_with_another_pid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"echo '{"event":"ready","pid":1}'; exec sleep 30"#;
    let error = sh("liar", script, dir.path())
        .ready(Ready::JsonLine)
        .start_blocking()
        .unwrap_err();
    assert!(matches!(error, StartError::BadReadyLine { .. }), "{error}");
}

#[test]
fn an_early_exit_is_reported_with_the_stderr_tail() {
    let dir = tempfile::tempdir().unwrap();
    let error = sh("x-1", "echo 'no socket' >&2; exit 3", dir.path())
        .ready(Ready::JsonLine)
        .start_blocking()
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("x-1 exited (exit status: 3)"), "{text}");
    assert!(text.contains("no socket"), "{text}");
}

#[test]
fn a_missing_ready_line_times_out_and_the_child_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let error = sh("mute", "exec sleep 30", dir.path())
        .ready(Ready::JsonLine)
        .ready_timeout(Duration::from_millis(200))
        .start_blocking()
        .unwrap_err();
    assert!(matches!(error, StartError::NotReady { .. }), "{error}");
    assert!(error.to_string().contains("within 200ms"), "{error}");
}

#[test]
fn a_spawn_failure_names_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let error = ProcessBuilder::new("ghost", "/nonexistent/program")
        .logs_in(dir.path())
        .start_blocking()
        .unwrap_err();
    assert!(matches!(error, StartError::Spawn { .. }), "{error}");
    assert!(
        error.to_string().contains("/nonexistent/program"),
        "{error}"
    );
}

#[test]
fn readiness_by_line_socket_and_probe() {
    let dir = tempfile::tempdir().unwrap();
    let by_line = sh(
        "line",
        "echo starting; echo listening on 7; exec sleep 30",
        dir.path(),
    )
    .ready(Ready::line(|l| l.starts_with("listening")))
    .start_blocking()
    .unwrap();
    assert_eq!(by_line.ready_line(), Some("listening on 7"));
    assert_eq!(by_line.ready(), None);

    let socket = dir.path().join("s.sock");
    let accepts = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::os::unix::net::UnixListener::bind(socket).unwrap()
        })
    };
    let by_socket = sh("socket", "exec sleep 30", dir.path())
        .ready(Ready::SocketAccepts(socket))
        .start_blocking()
        .unwrap();
    let _listener = accepts.join().unwrap();

    let flag = Arc::new(AtomicBool::new(false));
    let raised = flag.clone();
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        raised.store(true, Ordering::SeqCst);
    });
    let probed = sh("probe", "exec sleep 30", dir.path())
        .ready(Ready::probe(move || flag.load(Ordering::SeqCst)))
        .start_blocking()
        .unwrap();
    setter.join().unwrap();
    drop((by_line, by_socket, probed));
}

#[test]
fn giving_up_kills_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let error = sh("slow", "exec sleep 30", dir.path())
        .ready(Ready::JsonLine)
        .start_blocking_unless(&|| true)
        .unwrap_err();
    assert!(matches!(error, StartError::GaveUp { .. }), "{error}");
}

#[test]
fn terminate_waits_for_a_polite_exit_and_request_stop_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let polite = format!("trap 'exit 0' TERM; {READY}; while :; do sleep 0.05; done");
    let stubborn = format!("trap '' TERM; {READY}; while :; do sleep 0.05; done");
    let mut a = sh("a", &polite, dir.path())
        .ready(Ready::JsonLine)
        .start_blocking()
        .unwrap();
    let mut b = sh("b", &stubborn, dir.path())
        .ready(Ready::JsonLine)
        .start_blocking()
        .unwrap();
    assert!(a.terminate_blocking(DEADLINE).success());
    b.request_stop();
    assert_eq!(
        b.exited_by(Instant::now() + Duration::from_millis(300)),
        None
    );
    assert!(!b.kill().success());
    assert!(b.try_exit().is_some());
}

#[test]
fn restart_appends_to_the_logs_and_runs_a_new_pid() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("{READY}; trap 'exit 0' TERM; while :; do sleep 0.05; done");
    let mut process = sh("r", &script, dir.path())
        .ready(Ready::JsonLine)
        .start_blocking()
        .unwrap();
    let first = process.pid();
    process.kill();
    process.restart_blocking().unwrap();
    assert_ne!(process.pid(), first);
    assert_eq!(process.ready().unwrap()["pid"], process.pid());
    let stdout = process.output(Output::Stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(process.terminate_blocking(DEADLINE).success());
}

#[cfg(target_os = "linux")]
#[test]
fn pause_freezes_and_resume_thaws() {
    let dir = tempfile::tempdir().unwrap();
    let process = sh("frozen", "exec sleep 30", dir.path())
        .start_blocking()
        .unwrap();
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", process.pid())).unwrap();
        // The state follows the parenthesised command name.
        stat.rsplit(") ").next().unwrap().chars().next().unwrap()
    };
    process.pause();
    crate::wait::wait_until_blocking("stopped", DEADLINE, || state() == 'T').unwrap();
    process.resume();
    crate::wait::wait_until_blocking("running again", DEADLINE, || state() != 'T').unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn the_async_forms_start_wait_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("{READY}; echo ok >&2; trap 'exit 0' TERM; while :; do sleep 0.05; done");
    let mut process = sh("async", &script, dir.path())
        .ready(Ready::JsonLine)
        .start()
        .await
        .unwrap();
    process
        .wait_for_line(Output::Stderr, DEADLINE, |l| l == "ok")
        .await;
    process.restart().await.unwrap();
    assert!(process.terminate(DEADLINE).await.success());
}

#[test]
fn a_child_runs_as_the_user_it_is_given_and_is_still_reaped() {
    const NOBODY: u32 = 65534;
    if rustix::process::geteuid().as_raw() != 0 {
        println!("SKIPPED: running a child as another user needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let process = sh(
        "other",
        "echo \"$(id -u):$(id -g)\"; exec sleep 30",
        dir.path(),
    )
    .user(NOBODY, NOBODY)
    .ready(Ready::line(|l| l.contains(':')))
    .start_blocking()
    .unwrap();
    assert_eq!(process.ready_line(), Some("65534:65534"));
    let pid = process.pid();
    drop(process);
    assert!(!alive(pid), "dropped but not reaped");
}

#[test]
fn a_wrapper_that_execs_keeps_the_pid_and_the_ready_line() {
    let dir = tempfile::tempdir().unwrap();
    // `env NAME=VALUE program ...` execs the program: the ready line's pid is
    // the child's, and the wrapped program sees the wrapper's effect.
    let script = format!("test \"$WRAPPED\" = yes || exit 7; {READY}; exec sleep 30");
    let process = sh("wrapped", &script, dir.path())
        .wrap_in("env", ["WRAPPED=yes"])
        .ready(Ready::JsonLine)
        .start_blocking()
        .unwrap();
    assert_eq!(process.ready().unwrap()["pid"], process.pid());
}
