//! The gRPC adapter: handlers, validation of protobuf input, conversions
//! both ways and the one mapping of engine errors to `tonic::Status`.
pub mod codec;
pub mod convert;
pub mod service;
pub mod status;
pub mod validate;

/// Generated protobuf and gRPC code for `nudge.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("nudge.v1");

    /// Encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/nudge_descriptor.bin"));
}
