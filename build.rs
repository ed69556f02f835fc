//! Compiles `proto/nudge/v1/nudge.proto` with protox (a pure-Rust protobuf
//! compiler), so no system `protoc` is needed, and writes the descriptor set
//! that server reflection serves.
use protox::prost::Message as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["nudge/v1/nudge.proto"], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("nudge_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Malformed requests are INVALID_ARGUMENT, not prost's INTERNAL.
        .codec_path("crate::grpc::codec::ProtoCodec")
        .compile_fds(fds)?;
    Ok(())
}
