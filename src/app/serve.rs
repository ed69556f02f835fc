//! Serves gRPC (Offers, health, reflection), gRPC-Web and the JSON API
//! ([`crate::grpc::web`]) on one listener until the shutdown future
//! resolves, then drains in-flight calls. HTTP/1.1 is accepted beside
//! HTTP/2 for the browser and JSON clients; gRPC-Web is translated to gRPC
//! before every other layer, so auth, admission and metrics treat it as
//! gRPC, and JSON calls pass the same layers under their gRPC method. The transport
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
    /// The browser origins of the JSON API and gRPC-Web (`[http]`).
    pub cors: crate::config::CorsOrigins,
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
        cors,
    } = options;
    let max_message = engine.limits.max_message_bytes();
    // The in-flight bound is validated against the configured message size;
    // an engine built with other limits gets the bound that fits its own.
    let in_flight = server
        .max_concurrent_requests
        .min((crate::config::MAX_IN_FLIGHT_BYTES / max_message).max(1));
    let offers = pb::offers_server::OffersServer::new(OffersService::new(engine.clone()))
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
        tracing::info!(%addr, max_connections, max_concurrent_requests = in_flight, tls = tls.is_some(), auth = !tokens.is_off(), cors = ?cors, "serving grpc, grpc-web and json");
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
    let routes = tonic::service::Routes::new(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(offers)
        .into_axum_router();
    let routes = tonic::service::Routes::from(crate::grpc::web::with_json_routes(routes, engine));
    let serve = tonic::transport::Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(server.max_concurrent_streams)
        .max_frame_size(server.max_frame_size)
        .http2_max_header_list_size(server.max_header_list_size)
        .http2_keepalive_interval(Some(server.keepalive_interval))
        .http2_keepalive_timeout(Some(server.keepalive_timeout))
        // Streams a client resets before the server accepts them, and
        // streams the server resets for protocol errors, are bounded too.
        .http2_max_pending_accept_reset_streams(Some(server.max_concurrent_streams as usize))
        // Preflights are answered before anything else (no token, no permit).
        .layer(tower::util::option_layer(cors_layer(&cors)))
        .layer(GrpcWebFrontLayer)
        .layer(crate::app::rpc_metrics::RpcMetricsLayer)
        // Before admission: a refused call holds no in-flight permit.
        .layer(crate::app::admission::GrpcAuthLayer::new(tokens))
        .layer(AdmissionLayer::new(in_flight, server.request_timeout))
        .add_routes(routes)
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

/// The CORS layer of `[http] cors_allow_origins`; none without origins.
/// Without credentials: callers authenticate with a bearer token.
pub fn cors_layer(origins: &crate::config::CorsOrigins) -> Option<tower_http::cors::CorsLayer> {
    use http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = match origins {
        crate::config::CorsOrigins::None => return None,
        crate::config::CorsOrigins::Any => AllowOrigin::any(),
        crate::config::CorsOrigins::List(list) => AllowOrigin::list(
            // Validated as origins, so each is a header value.
            list.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
        ),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("x-grpc-web"),
                HeaderName::from_static("x-user-agent"),
                HeaderName::from_static("grpc-timeout"),
            ])
            .expose_headers([
                HeaderName::from_static("grpc-status"),
                HeaderName::from_static("grpc-message"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Sends gRPC-Web requests through tonic-web's translation and every other
/// request (gRPC, JSON) past it: tonic-web refuses HTTP/1.1 requests that
/// are not gRPC-Web, and the JSON API speaks HTTP/1.1.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcWebFrontLayer;

impl<S: Clone> tower::Layer<S> for GrpcWebFrontLayer {
    type Service = GrpcWebFront<S>;

    fn layer(&self, inner: S) -> GrpcWebFront<S> {
        GrpcWebFront {
            web: tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), inner.clone()),
            plain: inner,
        }
    }
}

/// See [`GrpcWebFrontLayer`].
#[derive(Clone)]
pub struct GrpcWebFront<S> {
    web: tonic_web::GrpcWebService<S>,
    plain: S,
}

/// `application/grpc-web`, `application/grpc-web+proto`,
/// `application/grpc-web-text`...
fn is_grpc_web(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc-web"))
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for GrpcWebFront<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, S::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.plain.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        use tower::ServiceExt as _;
        if is_grpc_web(req.headers()) {
            req.extensions_mut()
                .insert(crate::app::rpc_metrics::Protocol::GrpcWeb);
            Box::pin(self.web.clone().oneshot(req))
        } else {
            Box::pin(self.plain.call(req))
        }
    }
}
