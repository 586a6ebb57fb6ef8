//! A full disk, unprivileged: the test runs itself again as a child under a
//! file size limit (`ulimit -f`, with `SIGXFSZ` ignored so a write past the
//! limit fails with `EFBIG` instead of killing the process), fills it,
//! checks the reports, raises the limit, and goes on; the parent then
//! reopens the journal and checks that exactly the records reported durable
//! are there.
#![cfg(unix)]

use std::path::Path;
use std::process::Command;

use super::support::*;
use crate::broker::journal::{JournalConfig, Lsn};

/// Set in the child: the data dir to fill.
const CHILD_ENV: &str = "EVENTBUS_JOURNAL_DISK_FULL_DIR";
const TEST_NAME: &str = "a_full_disk_fails_exactly_the_unwritten_records_and_recovers_with_space";

#[test]
fn a_full_disk_fails_exactly_the_unwritten_records_and_recovers_with_space() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let dir = temp_dir();
    let data = dir.path().join("data");
    let module = module_path!().split_once("::").unwrap().1;
    let output = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -S -f 16 && trap '' XFSZ && exec "$0" "$@""#)
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", &format!("{module}::{TEST_NAME}")])
        .args(["--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, &data)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran the test: {stdout}"
    );
    let list = |tag: &str| -> Vec<u64> {
        let line = stdout.lines().find_map(|l| l.split_once(tag)).unwrap().1;
        line.split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    let (durable, failed) = (list("DURABLE "), list("FAILED "));
    assert!(!failed.is_empty() && durable.len() > failed.len());
    let recovered = reopen(&child_config(&data));
    assert!(recovered.loss.is_empty(), "{:?}", recovered.loss);
    assert_eq!(ids(queue(&recovered, &key("a", "g"))), durable);
}

fn child_config(dir: &Path) -> JournalConfig {
    let mut config = JournalConfig::new(dir);
    config.segment_bytes = 1 << 20;
    config.max_record_bytes = 1024;
    config
}

/// Runs under the size limit.
fn child(dir: &Path) {
    let (journal, _, reports) = open(&child_config(dir));
    let q = journal.queue(&key("a", "g"));
    let envelope = [5u8; 100];
    let (mut durable, mut failed) = (Vec::new(), Vec::new());
    let mut next = 1u64;
    let mut append_burst = |n: u64, durable: &mut Vec<u64>, failed: &mut Vec<u64>| {
        let lsns: Vec<(u64, Lsn)> = (0..n)
            .map(|_| {
                next += 1;
                (
                    next - 1,
                    journal.append(accepted(q, next - 1, &envelope)).unwrap(),
                )
            })
            .collect();
        wait_durable(&journal, lsns.last().unwrap().1);
        let reports = reports.lock().unwrap();
        for (id, lsn) in lsns {
            let report = reports
                .iter()
                .find(|r| (r.first..=r.last).contains(&lsn))
                .expect("every record is reported");
            if report.is_durable(lsn) {
                durable.push(id);
            } else {
                let failure = report.failed.as_ref().unwrap();
                assert!(failure.error.is_full(), "{:?}", failure.error);
                failed.push(id);
            }
        }
    };
    // Bursts (several records a batch) until the limit is hit.
    while failed.is_empty() {
        append_burst(5, &mut durable, &mut failed);
        assert!(durable.len() < 500, "the limit was never hit");
    }
    assert!(journal.usage().disk_full);
    // Still full: everything fails, nothing is reported durable.
    let before = durable.len();
    append_burst(5, &mut durable, &mut failed);
    assert_eq!(durable.len(), before);
    // Space comes back: the soft limit up to the hard one.
    let unlimited = rustix::process::Rlimit {
        current: None,
        maximum: None,
    };
    rustix::process::setrlimit(rustix::process::Resource::Fsize, unlimited).unwrap();
    append_burst(5, &mut durable, &mut failed);
    assert_eq!(durable.len(), before + 5);
    assert!(!journal.usage().disk_full);
    journal.close().unwrap();
    let join = |ids: &[u64]| ids.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
    println!("DURABLE {}", join(&durable));
    println!("FAILED {}", join(&failed));
}
