//! nudge: per-session voucher decisions.
//!
//! The web tier streams a session's events and asks for a decision; nudge
//! answers with a purchase probability, a segment and, only when it pays and
//! the budget allows, a voucher.
//!
//! # Layout
//! - [`pb`]: generated protobuf/gRPC types (`proto/nudge/v1/nudge.proto`).
//! - [`session`]: validated domain events and the fixed-size per-session aggregate.
//! - [`features`]: the feature table computed from a session (serving and training).
//! - [`model`]: the model file format, validated at load; scoring.
//! - [`policy`]: segments and the voucher rule (expected net value), pure.
//! - [`pacing`]: the budget pacing controller (shadow price on voucher cost).
//! - [`report`]: the incremental ROI report (treatment versus holdout).
//! - [`ledger`]: the voucher budget trait and its in-memory implementation.
//! - [`simulate`]: the policy simulator (none, blanket, heat-tier, nudge, oracle) on generated traffic.
//! - [`store`]: the session store trait and its in-memory (moka) implementation.
//! - [`redis_backend`]: the Redis session store and ledger (shared state for several replicas).
//! - [`clock`]: injected time (system and manual clocks).
//! - [`decision_log`]: the JSON-lines decision/event/outcome log format (written by the service, read by nudge-train).
//! - [`config`]: the TOML configuration, validated once into settings.
//! - [`validate`]: request validation, protobuf in, domain values out.
//! - [`error`]: the service error enum and its mapping to gRPC codes.
//! - [`engine`]: the decision engine the handlers call (assess + money step).
//! - [`service`]: thin gRPC handlers.
//! - [`server`]: wiring, health, reflection, serve with graceful shutdown.
//! - [`synth`]: the seeded synthetic session generator with a ground-truth behaviour model.
pub mod clock;
pub mod config;
pub mod decision_log;
pub mod engine;
pub mod error;
pub mod experiment;
pub mod features;
pub mod ledger;
pub mod ledger_sqlite;
pub mod log_writer;
pub mod model;
pub mod pacing;
pub mod policy;
pub mod redis_backend;
pub mod report;
pub mod server;
pub mod service;
pub mod session;
pub mod simulate;
pub mod store;
pub mod synth;
pub mod validate;
pub mod voucher;

/// Generated protobuf and gRPC code for `nudge.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("nudge.v1");

    /// Encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/nudge_descriptor.bin"));
}
