//! The gRPC adapter: handlers, validation of protobuf input, conversions
//! both ways and the one mapping of engine errors to `tonic::Status`; the
//! JSON front ([`web`]) calls the same handlers.
pub mod codec;
pub mod convert;
pub mod service;
pub mod status;
pub mod validate;
pub mod web;

/// Generated protobuf and gRPC code for `nudge.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("nudge.v1");
    // The proto3 JSON mapping (serde) of the same messages.
    include!(concat!(env!("OUT_DIR"), "/nudge.v1.serde.rs"));

    /// Encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/nudge_descriptor.bin"));
}
