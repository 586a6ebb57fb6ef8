//! `cargo run -p protogen`: generates the wire types of `eventbus` from
//! `proto/eventbus.proto` into `crates/eventbus/src/proto/eventbus.v1.rs`,
//! with the pure-Rust protobuf compiler `protox` (no system `protoc`).
//!
//! The generated code is committed, so building `eventbus` needs no build
//! script and the published crate needs no `.proto`. This package depends on
//! nothing of the workspace, so it builds while the committed code is stale
//! (and `eventbus` does not compile). Its test fails while the file differs
//! from what it would generate.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// The first line of the generated file.
const HEADER: &str =
    "// @generated from proto/eventbus.proto by `cargo run -p protogen`; do not edit.\n";

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// The committed file.
fn target() -> PathBuf {
    root().join("crates/eventbus/src/proto/eventbus.v1.rs")
}

/// What the committed file should hold.
fn generate() -> Result<String, Box<dyn std::error::Error>> {
    let proto_dir = root().join("proto");
    let descriptors = protox::compile([proto_dir.join("eventbus.proto")], [&proto_dir])?;
    let out = tempfile::tempdir()?;
    prost_build::Config::new()
        .out_dir(out.path())
        // Payloads are `Bytes`: decoding slices the read buffer instead of copying.
        .bytes(["."])
        // Envelopes are large; boxing them keeps frames small to move around the
        // hot path (decode, route, queue, encode) instead of copying ~200 bytes each step.
        .boxed(".eventbus.v1.Publish.message")
        .boxed(".eventbus.v1.Deliver.message")
        .boxed(".eventbus.v1.Reply.message")
        // A stats snapshot is the largest frame and a rare one: boxed, it
        // stays off the size every frame on the hot path pays.
        .boxed(".eventbus.v1.Frame.kind.stats_response")
        .compile_fds(descriptors)?;
    let generated = std::fs::read_to_string(out.path().join("eventbus.v1.rs"))?;
    Ok(format!("{HEADER}{generated}"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let code = generate()?;
    let path = target();
    if std::fs::read_to_string(&path).ok().as_deref() == Some(code.as_str()) {
        eprintln!("{} is up to date", path.display());
    } else {
        std::fs::write(&path, code)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_wire_types_match_the_proto() {
        let committed = std::fs::read_to_string(target()).unwrap_or_default();
        assert!(
            committed == generate().unwrap(),
            "{} is stale: run `cargo run -p protogen` and commit it with the .proto",
            target().display()
        );
    }
}
