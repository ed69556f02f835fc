//! Serves gRPC (Offers, health, reflection) on a listener until the
//! shutdown future resolves, then drains in-flight calls.

use crate::app::ServerError;
use crate::engine::Engine;
use crate::grpc::pb;
use crate::grpc::service::OffersService;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// Hard cap on a decoded gRPC message, above the validated limit so that a
/// too-large request usually gets a field-naming INVALID_ARGUMENT from
/// validation rather than a transport error.
const TRANSPORT_SIZE_FACTOR: usize = 4;

/// How long shutdown waits for in-flight calls and open connections.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

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
