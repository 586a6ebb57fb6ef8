//! eventbus-harness: prove a system built on eventbus under crashes and
//! faults, with its real processes.
//!
//! Start your own binaries as supervised [`Process`]es (ready on a JSON
//! line, any line, a socket that accepts, or a probe; killed, terminated,
//! paused, resumed and restarted on demand; logs kept in files), around a
//! broker in a [`Cluster`] (the `broker` binary as a process, or one
//! embedded in the test); put a [`FaultProxy`] between a process and the
//! broker; record what happened to every task in a [`History`] and let its
//! checker find lost, duplicated or reordered work.
//!
//! ```no_run
//! # async fn demo() {
//! use eventbus_harness::{Cluster, DEADLINE, History, Order, ProcessBuilder, Ready};
//! let cluster = Cluster::embedded().await;
//! let worker = ProcessBuilder::new("worker-1", "target/debug/my-worker").ready(Ready::JsonLine);
//! let mut worker = cluster.spawn(worker).await;
//! let client = cluster.client("tester").await;
//! let history = History::new();
//! // ... publish tasks, record them; crash the worker mid-way:
//! worker.kill();
//! worker.restart().await.unwrap();
//! // ... wait for the replies, record them ...
//! let verdict = history.check(Order::Any);
//! assert!(verdict.lost.is_empty() && verdict.duplicated_after_ack.is_empty(), "{verdict}");
//! # }
//! ```
//!
//! Map of the crate:
//!
//! - [`process`]: [`ProcessBuilder`] and [`Process`], any program as a child.
//! - [`cluster`]: a [`Cluster`], one broker in a fresh temporary directory,
//!   which starts processes, fault proxies and clients around it.
//! - [`broker`]: the `broker` binary as a process ([`BrokerBuilder`],
//!   [`BrokerProcess`]), with its faults.
//! - [`embedded`]: [`TestBroker`], a broker inside the test's runtime.
//! - [`nats`]: a [`NatsServer`] (`nats-server`, optionally with JetStream)
//!   as a child process, for the bridge's tests.
//! - [`binaries`]: finding (or building, once) a binary of the workspace.
//! - [`proxy`]: a [`FaultProxy`] that delays, paces, drops, duplicates,
//!   holds (partitions) or tears whole frames, usable with any client.
//! - [`nats_cluster`]: a [`NatsCluster`] of real `nats-server` processes
//!   with routes and JetStream, on loopback or in network namespaces.
//! - [`netns`] (Linux): a [`Network`] of [`Host`]s, each a network namespace
//!   with its own address and link, for processes on "other machines",
//!   partitions and `tc netem`.
//! - [`tcp_proxy`]: a [`TcpFaultProxy`] that holds (partitions), delays or
//!   resets a TCP byte stream: the loopback stand-in for a cut link.
//! - [`history`]: what happened to every task, and the checker that turns it
//!   into a [`Verdict`].
//! - [`wait`]: [`wait_until`] a condition, and the [`next`] item of a stream,
//!   with a deadline.
//! - [`rng`]: the seeded random numbers behind every fault choice, so a run
//!   replays from its printed seed.
//!
//! **Invariants:** every child process is killed and reaped, even when a test
//! panics (then its logs are kept and their paths printed); nothing waits for
//! readiness by sleeping: processes are ready when their readiness condition
//! holds, conditions are polled with a deadline. Harness operations panic on
//! failure, with the process logs: they run inside tests, where that is the
//! best report; starting a [`Process`] returns a typed [`StartError`] instead,
//! for the callers that handle it.
//!
//! Signals (terminate gently, pause, resume) need Unix, and so does the fault
//! proxy (Unix sockets); the rest is portable.
//!
//! # Cancel safety
//!
//! Every `async` function of this crate is cancel safe in the sense a test
//! needs, so it can sit in a `select!` or under a `timeout`: the waits
//! ([`wait_until`], [`next`], [`next_within`], [`quiet_for`],
//! [`Process::wait_for_line`], [`Process::wait_exit`]) hold nothing between
//! polls (an item [`quiet_for`] or [`next_within`] took before being
//! cancelled is gone, as with any stream); whatever a start (`start`,
//! `spawn`, `client`, `fault_proxy`, `embedded`) made before it was
//! cancelled is dropped, which kills and reaps a process and closes a
//! client. Two leave a state behind: [`Process::terminate`] cancelled has
//! already asked the child to stop, and a `restart` cancelled after it
//! stopped the old process leaves it stopped (a later `restart` starts it).
#![forbid(unsafe_code)]

pub mod binaries;
pub mod broker;
pub mod cluster;
pub mod embedded;
pub mod history;
pub mod nats;
pub mod nats_cluster;
#[cfg(target_os = "linux")]
pub mod netns;
pub mod process;
#[cfg(unix)]
pub mod proxy;
pub mod rng;
pub mod tcp_proxy;
pub mod wait;

pub use broker::{BrokerBuilder, BrokerProcess};
pub use cluster::Cluster;
pub use embedded::TestBroker;
pub use history::{Event, History, Order, Verdict};
pub use nats::{NatsServer, find_nats_server};
pub use nats_cluster::{ClusterServer, NatsCluster, Placement};
#[cfg(target_os = "linux")]
pub use netns::{Host, Netem, NetnsError, Network};
pub use process::{LogPaths, Output, Process, ProcessBuilder, Ready, StartError};
#[cfg(unix)]
pub use proxy::{Direction, FaultProxy, ProxyStats};
pub use tcp_proxy::TcpFaultProxy;
pub use wait::{
    DEADLINE, WaitTimeout, next, next_within, quiet_for, wait_until, wait_until_blocking,
};
