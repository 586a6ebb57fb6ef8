//! The hostile-client suite (issue 14): one connected client attacks the
//! others, against a real `broker` process with its default configuration
//! (unless the attack is about a setting), and each scenario asserts that
//! the victim is unaffected (its tasks complete, its requests are
//! answered, its id stays its own) and that the attacker gets a typed
//! refusal. The attacker is an `e2e::hostile::RawClient`, which sends any
//! frame; the victims are `mock-collector` processes and ordinary clients.
//! `docs/scenarios.md` (section *Hostile clients*) lists every scenario,
//! what it proves and how to run it alone: `cargo xtask e2e --type hostile`.
//!
//! Linux only: the collectors' work and the RSS checks read `/proc`.
#![cfg(target_os = "linux")]
#![forbid(unsafe_code)]

mod auth;
mod connections;
mod identity;
mod memory;
mod ownership;
mod quotas;

use e2e::hostile::{RawClient, Refusal};
use e2e::{CollectorKind, Driver, RunOptions, task_ids};
use eventbus::proto::ErrorCode;

/// Process tasks the victims run to show they are unaffected.
const VICTIM_TASKS: usize = 10;

/// Runs [`VICTIM_TASKS`] process tasks through the driver and fails unless
/// every one is answered, successfully, by `collector`.
async fn victim_tasks_complete(driver: &Driver, prefix: &str, collector: &str) {
    let history = e2e::History::new();
    let report = driver
        .run_tasks(
            CollectorKind::Process,
            task_ids(prefix, VICTIM_TASKS),
            RunOptions::default().concurrency(4),
            &history,
        )
        .await;
    assert!(
        report.failures.is_empty(),
        "the victim's tasks failed: {:?}",
        report.failures
    );
    let by: Vec<_> = report.replies.iter().map(|r| r.source.as_str()).collect();
    assert!(
        by.iter().all(|s| *s == collector) && report.replies.iter().all(|r| r.is_ok()),
        "every task answered by {collector}: {:?}",
        report.replies
    );
}

/// Fails unless `got` is an `Error` frame with `code`.
#[track_caller]
fn assert_refused<T: std::fmt::Debug>(got: Result<T, Refusal>, code: ErrorCode, what: &str) {
    match got {
        Err(refusal) if refusal.code() == Some(code) => {}
        other => panic!("{what}: expected a {code:?} refusal, got {other:?}"),
    }
}

/// A raw client registered as `id`; panics if the broker refuses it.
async fn raw(socket: &std::path::Path, id: &str) -> RawClient {
    let (client, _) = RawClient::connect(socket, e2e::hostile::hello(id))
        .await
        .unwrap_or_else(|r| panic!("{id} could not connect: {r:?}"));
    client
}
