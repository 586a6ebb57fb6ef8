//! Generates the wire types from `proto/eventbus.proto` with a pure-Rust protobuf
//! compiler (`protox`), so a fresh machine builds with cargo alone: no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../../proto";
    let proto = "../../proto/eventbus.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], [proto_dir])?;
    prost_build::Config::new()
        // Payloads are `Bytes`: decoding slices the read buffer instead of copying.
        .bytes(["."])
        // Envelopes are large; boxing them keeps frames small to move around the
        // hot path (decode, route, queue, encode) instead of copying ~200 bytes each step.
        .boxed(".eventbus.v1.Publish.message")
        .boxed(".eventbus.v1.Deliver.message")
        .boxed(".eventbus.v1.Reply.message")
        .compile_fds(descriptors)?;
    Ok(())
}
