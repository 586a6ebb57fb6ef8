//! Process tests for the `broker` and `busctl` binaries: each test runs its own
//! broker on a socket in a fresh temporary directory.
#![cfg(unix)]

mod broker;
mod busctl;
mod harness;
mod tasks;
