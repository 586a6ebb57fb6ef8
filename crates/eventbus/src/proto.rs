//! Wire types generated from `proto/eventbus.proto` (package `eventbus.v1`).
//!
//! These are plain data; the rest of the crate wraps them in validated types
//! before trusting any field.

#![allow(missing_docs, clippy::doc_markdown, clippy::doc_lazy_continuation)]

include!(concat!(env!("OUT_DIR"), "/eventbus.v1.rs"));

/// Protocol version spoken by this build, carried in `Hello` and `Welcome`.
pub const PROTOCOL_VERSION: u32 = 1;
