//! eventbus: a local message bus for processes on one host.
#![forbid(unsafe_code)]

pub mod proto;
pub mod topic;
