//! TLS for both ports (`[tls]`): the certificate and key read and checked
//! once at start, one rustls configuration per port (both offer ALPN `h2`
//! and `http/1.1`). Both ports' handshakes happen in the accept loop
//! ([`crate::app::listener`]), each on its connection's own task under the
//! handshake timeout (`server.handshake_timeout_secs`), so a client that
//! connects and says nothing holds one connection for that long and never
//! the accept loop.

use crate::config::TlsFiles;
use crate::throttle::LogThrottle;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::Duration;
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
