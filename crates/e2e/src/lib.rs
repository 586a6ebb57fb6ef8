//! e2e: runs the real broker and collectors as OS processes and checks what they do.
//!
//! The scenario suite is `crates/e2e/tests/scenarios/`; `docs/scenarios.md`
//! lists every scenario, what it proves and how to run it alone. Map of the
//! harness:
//!
//! - [`binaries`]: finding (or building, once) the `broker` and
//!   `mock-collector` binaries.
//! - [`cluster`]: a [`Cluster`], one broker process in a fresh temp directory,
//!   which starts collectors at any time.
//! - [`broker`], [`collector`]: the two processes, their builders
//!   ([`BrokerBuilder`], [`CollectorBuilder`]) and faults: kill, terminate,
//!   pause, resume, restart.
//! - [`tasks`]: the collectors' task protocol: kinds, topics, payloads, replies.
//! - [`hostile`]: a [`RawClient`](hostile::RawClient) that speaks the wire
//!   protocol frame by frame, for the hostile-client scenarios.
//! - [`proxy`]: a [`FaultProxy`] between clients and the broker that delays,
//!   paces, drops, duplicates, holds (partitions) or tears whole frames.
//! - [`driver`]: a [`Driver`] client that sends tasks, collects replies with
//!   bounded concurrency, measures latency and reads the broker's stats.
//! - [`history`]: what happened to every task, and the checker that turns it
//!   into a [`Verdict`].
//! - [`wait`]: [`wait_until`] a condition, with a deadline.
//! - [`chaos`]: fault schedules, the nemesis, workloads, per-second metrics
//!   and success criteria for the chaos scenarios.
//! - [`rng`]: the seeded random numbers behind every fault choice, so a run
//!   replays from its printed seed.
//!
//! **Invariants:** every child process is killed and reaped, even when a test
//! panics (then its logs are kept and their paths printed); nothing waits for
//! readiness by sleeping: processes are ready when they print their ready line,
//! conditions are polled with a deadline. Harness operations panic on failure,
//! with the process logs: they run inside tests, where that is the best report.
//!
//! The process harness needs Unix (signals), the proxy Unix sockets; the other
//! modules are portable.
#![forbid(unsafe_code)]

pub mod binaries;
#[cfg(unix)]
pub mod broker;
#[cfg(unix)]
pub mod chaos;
#[cfg(unix)]
pub mod cluster;
#[cfg(unix)]
pub mod collector;
pub mod driver;
pub mod history;
#[cfg(unix)]
pub mod hostile;
#[cfg(unix)]
pub mod process;
#[cfg(unix)]
pub mod proxy;
pub mod rng;
pub mod tasks;
pub mod wait;

#[cfg(unix)]
pub use broker::{BrokerBuilder, BrokerProcess};
#[cfg(unix)]
pub use cluster::Cluster;
#[cfg(unix)]
pub use collector::{CollectorBuilder, CollectorProcess};
pub use driver::{Driver, RunOptions, RunReport};
pub use history::{Event, History, Order, Verdict};
#[cfg(unix)]
pub use proxy::{Direction, FaultProxy, ProxyStats};
pub use tasks::{CollectorKind, TaskReply, task_ids};
pub use wait::{DEADLINE, WaitTimeout, wait_until};
