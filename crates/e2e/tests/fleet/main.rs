//! The fleet suite: several nodes, each a network host of its own, around a
//! cluster of real `nats-server`s. `harness` checks the harness itself
//! (namespaces, links, partitions, the NATS cluster) and needs no bridge; it
//! is quick and runs in the gate. `docs/scenarios.md` lists the rest.
//!
//! Linux only (network namespaces, `/proc`).
#![cfg(target_os = "linux")]
#![forbid(unsafe_code)]

mod harness;
