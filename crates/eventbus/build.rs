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
        .compile_fds(descriptors)?;
    Ok(())
}
