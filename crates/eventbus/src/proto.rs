//! Wire types generated from `proto/eventbus.proto` (package `eventbus.v1`).
//!
//! These are plain data; the rest of the crate wraps them in validated types
//! before trusting any field.
//!
//! The generated code is committed (`proto/eventbus.v1.rs`), so building the
//! crate needs no protobuf compiler and no build script, and the published
//! crate builds without the `.proto`. After editing the `.proto`, run
//! `cargo run -p protogen` and commit both; a test of `protogen` fails while
//! they differ.

#![allow(missing_docs, clippy::doc_markdown, clippy::doc_lazy_continuation)]

include!("proto/eventbus.v1.rs");

/// Protocol version spoken by this build, carried in `Hello` and `Welcome`.
pub const PROTOCOL_VERSION: u32 = 1;
