//! The fleet suite: several nodes, each a network host of its own, around a
//! cluster of real `nats-server`s. `harness` checks the harness itself
//! (namespaces, links, partitions, the NATS cluster) and needs no bridge; it
//! is quick and runs in the gate. The scenarios need the `eventbus-bridge`
//! binary and run under `cargo xtask e2e --type fleet`; `docs/scenarios.md`
//! lists them with their success criteria.
//!
//! Linux only (network namespaces, `/proc`).
#![cfg(target_os = "linux")]
#![forbid(unsafe_code)]

mod events;
mod harness;
mod loops;
mod nats_loss;
mod partition;
mod progressive;
mod support;
mod tasks;
