//! Wiring: builds the engine from settings and serves gRPC (Offers, health,
//! reflection) on a listener until the shutdown future resolves.

use crate::clock::{Clock, SystemClock};
use crate::config::{Settings, DEFAULT_MODEL};
use crate::engine::Engine;
use crate::ledger::MemoryLedger;
use crate::model::{Model, ModelError, ModelFile};
use crate::pb;
use crate::service::OffersService;
use crate::store::MemorySessionStore;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// The default model, embedded at build time so `nudge serve` works from any
/// directory with zero set-up.
pub const EMBEDDED_DEFAULT_MODEL: &str = include_str!("../models/default.json");

/// Hard cap on a decoded gRPC message, above the validated limit so that a
/// too-large request usually gets a field-naming INVALID_ARGUMENT from
/// validation rather than a transport error.
const TRANSPORT_SIZE_FACTOR: usize = 4;

/// How long shutdown waits for in-flight calls and open connections.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("reflection: {0}")]
    Reflection(String),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Loads the configured model; with no model configured, `models/default.json`
/// if present, else the embedded copy. Returns the model and where it came from.
pub fn load_model(settings: &Settings) -> Result<(Model, String), ModelError> {
    if let Some(path) = &settings.model {
        return Ok((Model::load(path)?, path.display().to_string()));
    }
    let default = std::path::Path::new(DEFAULT_MODEL);
    if default.exists() {
        return Ok((Model::load(default)?, DEFAULT_MODEL.to_owned()));
    }
    let file: ModelFile =
        serde_json::from_str(EMBEDDED_DEFAULT_MODEL).map_err(|source| ModelError::Parse {
            path: "<embedded>".into(),
            source,
        })?;
    Ok((file.compile()?, "<embedded default>".to_owned()))
}

/// The embedded engine: in-memory sessions and budget, real clock.
pub fn embedded_engine(settings: &Settings, model: Model) -> Engine {
    embedded_engine_with_clock(settings, model, Arc::new(SystemClock))
}

pub fn embedded_engine_with_clock(
    settings: &Settings,
    model: Model,
    clock: Arc<dyn Clock>,
) -> Engine {
    Engine::new(
        settings,
        Arc::new(model),
        Arc::new(MemorySessionStore::new(
            settings.idle_ttl,
            settings.max_sessions,
        )),
        Arc::new(MemoryLedger::new(settings.daily_cap_cents)),
        clock,
    )
}

/// Serves until `shutdown` resolves, then drains in-flight calls.
pub async fn run(
    listener: TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let max_message = engine.limits.max_request_bytes * TRANSPORT_SIZE_FACTOR;
    let offers = pb::offers_server::OffersServer::new(OffersService::new(engine))
        .max_decoding_message_size(max_message);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::offers_server::OffersServer<OffersService>>()
        .await;

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;

    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving grpc");
    }
    // Graceful: on shutdown stop accepting, let in-flight calls finish, but
    // never wait more than DRAIN_GRACE for clients that keep connections open.
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = fired_tx.send(());
    };
    let serve = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(offers)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal);
    let deadline = async move {
        if fired_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(DRAIN_GRACE).await;
    };
    tokio::select! {
        r = serve => r?,
        _ = deadline => tracing::warn!(grace_ms = DRAIN_GRACE.as_millis() as u64, "drain deadline passed, closing remaining connections"),
    }
    tracing::info!("server stopped");
    Ok(())
}
