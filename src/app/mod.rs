//! The running service: builds the engine from settings (backends, the
//! voucher secret, restored pacing state), runs its background tasks
//! (reloads included) and serves gRPC until shutdown.

pub mod admission;
pub mod autotrain;
pub mod listener;
pub mod model_cli;
pub mod model_source;
pub mod pacing_state;
pub mod readiness;
pub mod reload;
pub mod report_files;
pub mod rpc_metrics;
pub mod secrets;
pub mod serve;
pub mod tasks;
pub mod tls;
pub mod wiring;

pub use model_source::{load_model, load_model_text, model_file, EMBEDDED_DEFAULT_MODEL};
pub use pacing_state::{load_pacing, pacing_file, save_pacing, PACING_FILE};
pub use report_files::{report_from_files, FileReport};
pub use secrets::{voucher_key, VOUCHER_KEY_FILE};
pub use serve::{run, run_with, run_with_options, run_with_readiness, ServeOptions, DRAIN_GRACE};
pub use tasks::{spawn_sweeper, Background, PACING_TICK, RETENTION_TICK};
pub use wiring::{
    build_engine, build_engine_with, memory_engine, model_registry, settings_store, CAMPAIGNS_FILE,
    LEDGER_FILE, MODELS_FILE,
};

use crate::domain::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("reflection: {0}")]
    Reflection(String),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}
