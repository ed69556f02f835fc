//! TLS for both ports (`[tls]`): the certificate and key read and checked
//! once at start, one rustls configuration per port (gRPC offers ALPN `h2`
//! only; the admin server `h2` and `http/1.1`), and the admin server's
//! accept loop over TLS. The gRPC port's handshake happens in its own
//! accept loop ([`crate::app::listener`]).
//!
//! Each handshake runs on its connection's own task under the handshake
//! timeout (`server.handshake_timeout_secs`), so a client that connects and
//! says nothing holds one connection for that long and never the accept
//! loop.

use crate::config::TlsFiles;
use crate::throttle::LogThrottle;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

static HANDSHAKE_FAILED: LogThrottle = LogThrottle::new(Duration::from_secs(10));

/// The `[tls]` files cannot be used; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert_file {path}: {message}")]
    Cert { path: String, message: String },
    #[error("tls.key_file {path}: {message}")]
    Key { path: String, message: String },
}

/// The server's TLS configurations, one per port.
#[derive(Clone)]
pub struct ServerTls {
    /// gRPC: ALPN `h2`.
    pub grpc: TlsAcceptor,
    /// Admin HTTP: ALPN `h2` and `http/1.1`.
    pub admin: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// Reads the PEM certificate chain and key; checks that they parse and
    /// belong together.
    pub fn load(files: &TlsFiles) -> Result<ServerTls, TlsError> {
        let cert_path = files.cert_file.display().to_string();
        let key_path = files.key_file.display().to_string();
        let cert_err = |message: String| TlsError::Cert {
            path: cert_path.clone(),
            message,
        };
        let key_err = |message: String| TlsError::Key {
            path: key_path.clone(),
            message,
        };
        let pem = std::fs::read(&files.cert_file).map_err(|e| cert_err(e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_err(format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(cert_err("no certificate in the file".into()));
        }
        let pem = std::fs::read(&files.key_file).map_err(|e| key_err(e.to_string()))?;
        // The error text of a key parse never holds key material.
        let key = PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| key_err(format!("no usable PEM private key: {e}")))?;
        let config = |alpn: &[&[u8]]| -> Result<TlsAcceptor, TlsError> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut c = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| cert_err(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(certs.clone(), key.clone_key())
                .map_err(|e| key_err(format!("does not fit the certificate: {e}")))?;
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsAcceptor::from(Arc::new(c)))
        };
        Ok(ServerTls {
            // HTTP/1.1 too: the JSON API and gRPC-Web share the gRPC port.
            grpc: config(&[b"h2", b"http/1.1"])?,
            admin: config(&[b"h2", b"http/1.1"])?,
        })
    }
}

/// Counts and logs (throttled) a failed or timed-out handshake.
pub fn handshake_failed(port: &'static str, error: &std::io::Error) {
    metrics::counter!("nudge_tls_handshakes_failed_total", "port" => port).increment(1);
    if let Some(count) = HANDSHAKE_FAILED.hit() {
        tracing::info!(count, port, error = %error, "tls handshakes failed");
    }
}

/// Serves `router` on `listener` until `shutdown` resolves: plain HTTP
/// through axum, or, with `tls`, each connection's handshake on its own
/// task (bounded by `handshake_timeout`), then HTTP/1.1 or HTTP/2 as ALPN
/// chose. On shutdown open connections finish their requests for up to
/// [`crate::app::DRAIN_GRACE`].
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(acceptor) = tls else {
        return axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors or memory: pause rather than spin.
                    tracing::warn!(error = %e, "admin cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return handshake_failed("admin", &e),
                Err(_) => {
                    return handshake_failed(
                        "admin",
                        &std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no handshake within the handshake timeout",
                        ),
                    )
                }
            };
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn = builder
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(crate::app::DRAIN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = crate::app::DRAIN_GRACE.as_millis() as u64,
            "admin drain deadline passed, closing remaining connections"
        );
    }
    Ok(())
}
