//! Serves gRPC (Offers, health, reflection) on a listener until the
//! shutdown future resolves, then drains in-flight calls. The transport
//! limits (`[server]`) bound what any client can make the process hold:
//! connections ([`crate::app::listener`]), streams per connection, frame and
//! header sizes, requests in flight and their bodies' deadline
//! ([`crate::app::admission`]). With tokens configured, a call whose
//! method needs a role is refused from its headers alone
//! ([`crate::app::admission::GrpcAuthLayer`]); with TLS, every connection speaks it.

use crate::app::admission::AdmissionLayer;
use crate::app::listener::{connection_cap, Incoming, Timeouts};
use crate::app::readiness::Readiness;
use crate::app::ServerError;
use crate::config::ServerLimits;
use crate::engine::Engine;
use crate::grpc::pb;
use crate::grpc::service::OffersService;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Largest message of the health and reflection services: their requests
/// are a few names.
const SMALL_SERVICE_MESSAGE: usize = 16 * 1024;

/// How long shutdown waits for in-flight calls and open connections.
pub const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves with the default transport limits until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    run_with(listener, engine, ServerLimits::default(), shutdown).await
}

/// Serves until `shutdown` resolves, then drains in-flight calls.
pub async fn run_with(
    listener: TcpListener,
    engine: Arc<Engine>,
    server: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    run_with_readiness(listener, engine, server, None, shutdown).await
}

/// [`run_with`], the Offers service's gRPC health following `readiness`
/// (SERVING while ready, NOT_SERVING while a probe fails).
pub async fn run_with_readiness(
    listener: TcpListener,
    engine: Arc<Engine>,
    server: ServerLimits,
    readiness: Option<tokio::sync::watch::Receiver<Readiness>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let options = ServeOptions {
        server,
        readiness,
        ..ServeOptions::default()
    };
    run_with_options(listener, engine, options, shutdown).await
}

/// How to serve: the transport limits, the readiness gRPC health follows,
/// the tokens and TLS. The default: default limits, always SERVING, auth
/// off, plaintext.
#[derive(Clone, Default)]
pub struct ServeOptions {
    pub server: ServerLimits,
    pub readiness: Option<tokio::sync::watch::Receiver<Readiness>>,
    pub tokens: crate::auth::Tokens,
    /// `None`: plaintext.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serves with every option until `shutdown` resolves, then drains
/// in-flight calls.
pub async fn run_with_options(
    listener: TcpListener,
    engine: Arc<Engine>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let ServeOptions {
        server,
        readiness,
        tokens,
        tls,
    } = options;
    let max_message = engine.limits.max_message_bytes();
    // The in-flight bound is validated against the configured message size;
    // an engine built with other limits gets the bound that fits its own.
    let in_flight = server
        .max_concurrent_requests
        .min((crate::config::MAX_IN_FLIGHT_BYTES / max_message).max(1));
    let offers = pb::offers_server::OffersServer::new(OffersService::new(engine))
        .max_decoding_message_size(max_message);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    let health = health.max_decoding_message_size(SMALL_SERVICE_MESSAGE);
    health_reporter
        .set_serving::<pb::offers_server::OffersServer<OffersService>>()
        .await;
    let follow = readiness.map(|mut rx| {
        tokio::spawn(async move {
            // Ends when the probe stops (its sender is dropped).
            while rx.changed().await.is_ok() {
                let ready = rx.borrow_and_update().ready();
                if ready {
                    health_reporter
                        .set_serving::<pb::offers_server::OffersServer<OffersService>>()
                        .await;
                } else {
                    health_reporter
                        .set_not_serving::<pb::offers_server::OffersServer<OffersService>>()
                        .await;
                }
            }
        })
    });

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?
        .max_decoding_message_size(SMALL_SERVICE_MESSAGE);
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::Reflection(e.to_string()))?
        .max_decoding_message_size(SMALL_SERVICE_MESSAGE);

    let max_connections = connection_cap(server.max_connections);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, max_connections, max_concurrent_requests = in_flight, tls = tls.is_some(), auth = !tokens.is_off(), "serving grpc");
    }
    let incoming = Incoming::new(
        listener,
        max_connections,
        Timeouts {
            handshake: server.handshake_timeout,
            idle: server.idle_timeout,
        },
    )
    .with_tls(tls);
    // Graceful: on shutdown stop accepting, let in-flight calls finish, but
    // never wait more than DRAIN_GRACE for clients that keep connections open.
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = fired_tx.send(());
    };
    let serve = tonic::transport::Server::builder()
        .max_concurrent_streams(server.max_concurrent_streams)
        .max_frame_size(server.max_frame_size)
        .http2_max_header_list_size(server.max_header_list_size)
        .http2_keepalive_interval(Some(server.keepalive_interval))
        .http2_keepalive_timeout(Some(server.keepalive_timeout))
        // Streams a client resets before the server accepts them, and
        // streams the server resets for protocol errors, are bounded too.
        .http2_max_pending_accept_reset_streams(Some(server.max_concurrent_streams as usize))
        .layer(crate::app::rpc_metrics::RpcMetricsLayer)
        // Before admission: a refused call holds no in-flight permit.
        .layer(crate::app::admission::GrpcAuthLayer::new(tokens))
        .layer(AdmissionLayer::new(in_flight, server.request_timeout))
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(offers)
        .serve_with_incoming_shutdown(incoming, signal);
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
    if let Some(f) = follow {
        f.abort();
    }
    tracing::info!("server stopped");
    Ok(())
}
