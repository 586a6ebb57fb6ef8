//! e2e: runs the real broker and collectors as OS processes and checks what they do.
//!
//! The scenario suite is `crates/e2e/tests/scenarios/`; `docs/scenarios.md`
//! lists every scenario, what it proves and how to run it alone. The general
//! harness (processes, clusters, the fault proxy, histories, waits) is the
//! `eventbus-harness` crate, re-exported here; this crate adds what is
//! specific to this project's collectors:
//!
//! - [`bench`](mod@bench): what every benchmark role prints (`busbench`, `peerbench`).
//! - [`collector`]: the `mock-collector` process, its builder
//!   ([`CollectorBuilder`]) and faults: kill, terminate, pause, resume,
//!   restart, memory pressure; [`ClusterExt`] starts one in a [`Cluster`].
//! - [`tasks`]: the collectors' task protocol: kinds, topics, payloads, replies.
//! - [`hostile`]: a [`RawClient`](hostile::RawClient) that speaks the wire
//!   protocol frame by frame, for the hostile-client scenarios.
//! - [`driver`]: a [`Driver`] client that sends tasks, collects replies with
//!   bounded concurrency, measures latency and reads the broker's stats.
//! - [`fleet`] (Linux): several nodes (broker, bridge, collectors) on network
//!   hosts of their own around a NATS cluster, and faults across them.
//! - [`chaos`]: fault schedules, the nemesis, workloads, per-second metrics
//!   and success criteria for the chaos scenarios.
//!
//! **Invariants:** those of the harness: every child process is killed and
//! reaped, even when a test panics; nothing waits for readiness by sleeping.
//!
//! The process harness needs Unix (signals), the proxy Unix sockets; the other
//! modules are portable.
#![forbid(unsafe_code)]

pub mod bench;
#[cfg(unix)]
pub mod chaos;
#[cfg(unix)]
pub mod collector;
pub mod driver;
#[cfg(target_os = "linux")]
pub mod fleet;
#[cfg(unix)]
pub mod hostile;
pub mod tasks;

pub use eventbus_harness::{
    BrokerBuilder, BrokerProcess, Cluster, DEADLINE, Event, History, Order, Verdict, WaitTimeout,
    binaries, broker, cluster, history, process, rng, wait, wait_until,
};
#[cfg(unix)]
pub use eventbus_harness::{Direction, FaultProxy, ProxyStats, proxy};

#[cfg(unix)]
pub use collector::{ClusterExt, CollectorBuilder, CollectorProcess};
pub use driver::{Driver, RunOptions, RunReport};
pub use tasks::{CollectorKind, TaskReply, task_ids};
