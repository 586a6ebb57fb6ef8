//! Process tests for the `broker` and `ebctl` binaries: each test runs its own
//! broker on a socket in a fresh temporary directory.
#![cfg(unix)]

mod broker;
mod durable;
mod ebctl;
mod gather;
mod harness;
mod reply;
mod tasks;
