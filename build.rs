//! Compiles `proto/nudge/v1/nudge.proto` with protox (a pure-Rust protobuf
//! compiler), so no system `protoc` is needed, writes the descriptor set
//! that server reflection serves, and generates the proto3 JSON mapping
//! (pbjson) of the same messages for the JSON API.
use protox::prost::Message as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["nudge/v1/nudge.proto"], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor = fds.encode_to_vec();
    std::fs::write(out.join("nudge_descriptor.bin"), &descriptor)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Malformed requests are INVALID_ARGUMENT, not prost's INTERNAL.
        .codec_path("crate::grpc::codec::ProtoCodec")
        .compile_fds(fds)?;
    // JSON field names are the proto names (as in the error field paths
    // and the docs); both spellings are accepted on input. Zero values are
    // emitted, so a client reads `"offers": "0"` rather than a missing key.
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".nudge.v1"])?;
    Ok(())
}
