//! Wire types generated from `proto/eventbus.proto` (package `eventbus.v1`).
//!
//! These are plain data; the rest of the crate wraps them in validated types
//! before trusting any field.
//!
//! The generated code is committed (`proto/eventbus.v1.rs`), so building the
//! crate needs no protobuf compiler and no build script, and the published
//! crate builds without the `.proto`. The test below regenerates it with the
//! pure-Rust compiler `protox` and fails when the committed file is stale,
//! rewriting it: after editing the `.proto`, run
//! `cargo test -p eventbus generated_wire_types` twice and commit both files.

#![allow(missing_docs, clippy::doc_markdown, clippy::doc_lazy_continuation)]

include!("proto/eventbus.v1.rs");

/// Protocol version spoken by this build, carried in `Hello` and `Welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The first line of the committed file.
    const HEADER: &str = "// @generated from proto/eventbus.proto by the test \
                          `proto::tests::generated_wire_types_match_the_proto`; do not edit.\n";

    #[test]
    fn generated_wire_types_match_the_proto() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let proto_dir = manifest.join("../../proto");
        let descriptors = protox::compile([proto_dir.join("eventbus.proto")], [&proto_dir])
            .expect("the .proto compiles");
        let out = tempfile::tempdir().unwrap();
        prost_build::Config::new()
            .out_dir(out.path())
            // Payloads are `Bytes`: decoding slices the read buffer instead of copying.
            .bytes(["."])
            // Envelopes are large; boxing them keeps frames small to move around the
            // hot path (decode, route, queue, encode) instead of copying ~200 bytes each step.
            .boxed(".eventbus.v1.Publish.message")
            .boxed(".eventbus.v1.Deliver.message")
            .boxed(".eventbus.v1.Reply.message")
            .compile_fds(descriptors)
            .expect("prost generates the types");
        let generated = std::fs::read_to_string(out.path().join("eventbus.v1.rs")).unwrap();
        let expected = format!("{HEADER}{generated}");
        let committed_path = manifest.join("src/proto/eventbus.v1.rs");
        let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
        if committed != expected {
            std::fs::write(&committed_path, &expected).unwrap();
            panic!(
                "{} was stale and has been regenerated: rebuild, and commit it with the .proto",
                committed_path.display()
            );
        }
    }
}
