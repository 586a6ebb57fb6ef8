//! `busbench`'s durable measurement runs end to end, so the figures of
//! `docs/durability.md` can be measured again: its fsync echo (the fsync
//! floor across two processes) syncs what it sends back, and `busbench
//! durable` with small counts reports every load, the recovery and the
//! goals of issue 15.
#![cfg(unix)]
#![forbid(unsafe_code)]

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::process::Command;

use eventbus_harness::binaries::broker_bin;
use eventbus_harness::{ProcessBuilder, Ready};
use serde_json::Value;

const BUSBENCH: &str = env!("CARGO_BIN_EXE_busbench");

/// Runs busbench with `args` to its end; what it printed.
fn finish(args: &[&str]) -> String {
    let out = Command::new(BUSBENCH).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "busbench {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn positive(report: &Value, pointer: &str) -> f64 {
    let value = report.pointer(pointer).and_then(Value::as_f64);
    let value = value.unwrap_or_else(|| panic!("{pointer} missing in {report:#}"));
    assert!(value > 0.0, "{pointer} = {value}");
    value
}

#[test]
fn the_fsync_echo_sends_back_each_chunk_once_it_is_in_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, file) = (dir.path().join("echo.sock"), dir.path().join("echo.dat"));
    let _echo = ProcessBuilder::new("fsync-echo", BUSBENCH)
        .arg("fsync-echo")
        .arg("--listen")
        .arg(&sock)
        .arg("--file")
        .arg(&file)
        .logs_in(dir.path())
        .ready(Ready::JsonLine)
        .start_blocking()
        .unwrap();
    let mut conn = UnixStream::connect(&sock).unwrap();
    let mut back = [0u8; 64];
    for round in 0..3u8 {
        let chunk = [round; 64];
        conn.write_all(&chunk).unwrap();
        conn.read_exact(&mut back).unwrap();
        assert_eq!(back, chunk);
        // Sent back only after it was written (and synced).
        let written = std::fs::read(&file).unwrap();
        assert_eq!(written.len(), 64 * (usize::from(round) + 1));
        assert!(written.ends_with(&chunk));
    }
    drop(conn);
    // The next client is served as the first was, through `raw-rtt`.
    let sock = sock.to_str().unwrap();
    let printed = finish(&[
        "raw-rtt", "--socket", sock, "--count", "20", "--warmup", "2",
    ]);
    let report: Value = serde_json::from_str(printed.trim()).unwrap();
    positive(&report, "/p50_us");
    assert_eq!(std::fs::read(&file).unwrap().len(), 64 * (3 + 22));
}

#[test]
fn the_durable_measurement_reports_every_load_the_recovery_and_the_goals() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_bin();
    let out = dir.path().join("durable.json");
    let printed = finish(&[
        "durable",
        "--broker",
        broker.to_str().unwrap(),
        "--messages",
        "2000",
        "--count",
        "50",
        "--recovery-messages",
        "2000",
        "--dir",
        dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let shown: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(shown, report, "--out holds what was printed");
    for load in ["durable_8x256", "memory_8x256"] {
        assert_eq!(report["confirms"][load]["published"], 2000, "{load}");
        positive(&report, &format!("/confirms/{load}/per_s"));
    }
    for load in ["durable_1x1", "memory_1x1", "fsync_floor_1", "fsync_echo_1"] {
        positive(&report, &format!("/confirms/{load}/p50_us"));
    }
    // Every queued message came back after the SIGKILL.
    assert_eq!(report["recovery"]["recovered"]["depth"], 2000);
    assert_eq!(report["recovery"]["recovered"]["durable"], true);
    positive(&report, "/recovery/spawn_to_ready_s");
    // The goals, with what they were computed from; JetStream's is absent
    // without `--nats-server`.
    let goals = &report["goals"];
    assert!(goals["durable_throughput_vs_jetstream_publish_ack"].is_null());
    let p50 = &goals["durable_1x1_p50_us"];
    let bound = positive(&report, "/confirms/fsync_floor_1/p50_us")
        + 1.5 * positive(&report, "/confirms/memory_1x1/p50_us");
    assert!(
        (p50["bound"].as_f64().unwrap() - bound).abs() < 1e-6,
        "{p50}"
    );
    assert_eq!(
        p50["met"].as_bool().unwrap(),
        p50["value"].as_f64().unwrap() <= bound
    );
    let echo = &goals["durable_1x1_p50_vs_fsync_echo"];
    let ratio = positive(&report, "/confirms/durable_1x1/p50_us")
        / positive(&report, "/confirms/fsync_echo_1/p50_us");
    assert!(
        (echo["ratio"].as_f64().unwrap() - ratio).abs() < 1e-9,
        "{echo}"
    );
    // Nothing is left behind in the directory but the run's own temp dir,
    // which busbench removes.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "durable.json")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
