//! The scenario suite: the real `broker` and `mock-collector` binaries as OS
//! processes, driven and judged through the `e2e` harness. `docs/scenarios.md`
//! says what each scenario proves and how to run it alone.
//!
//! Linux only: the collectors' process and network work reads `/proc` (they
//! answer with errors elsewhere), and so do the liveness checks here.
#![cfg(target_os = "linux")]
#![forbid(unsafe_code)]

mod backpressure;
mod broker_restart;
mod chaos;
mod durability;
mod failover;
mod faults;
mod fifo;
mod gather;
mod harness;
mod load;
mod routing;

use std::path::Path;

use e2e::Verdict;

/// Fails unless the history is clean and no attempt failed.
fn assert_clean(verdict: &Verdict) {
    assert!(verdict.is_clean(), "{verdict}");
    assert!(verdict.errors.is_empty(), "{verdict}");
}

/// Whether `pid` is a process, zombies included (a zombie is a child nobody reaped).
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
