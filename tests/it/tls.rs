//! TLS on both ports of the real binary, with a throw-away CA made by the
//! `openssl` CLI: gRPC and the JSON API over TLS answer, plaintext does
//! not, the admin server answers over HTTPS, and a client that never starts
//! its handshake is dropped after the handshake timeout while others are
//! served.

use crate::util::{self, admin_addr};
use nudge::grpc::pb;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// A CA (`ca.crt`) and a server certificate for `localhost` and 127.0.0.1
/// (`server.crt`, `server.key`) in `dir`; false when `openssl` cannot make
/// them (outside CI the test is then skipped).
pub(crate) fn test_certificates(dir: &Path) -> bool {
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let made = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=nudge-test-ca",
        ][..],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    ]
    .iter()
    .map(|a| openssl(a))
    .collect::<Result<Vec<_>, _>>();
    match made {
        Ok(s) if s.iter().all(|s| s.success()) => true,
        other => {
            assert!(
                std::env::var_os("CI").is_none(),
                "openssl is needed under CI: {other:?}"
            );
            eprintln!("skipped: no openssl to make test certificates ({other:?})");
            false
        }
    }
}

/// A rustls client trusting only the test CA, with `alpn`.
fn client_config(ca_pem: &[u8], alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// `GET path` over HTTPS (HTTP/1.1): the status line and the body.
async fn https_get(addr: &str, ca_pem: &[u8], path: &str) -> (String, String) {
    https(
        addr,
        ca_pem,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// `POST path` with a JSON body over HTTPS (HTTP/1.1): the status line and
/// the body.
async fn https_post_json(addr: &str, ca_pem: &[u8], path: &str, json: &str) -> (String, String) {
    https(
        addr,
        ca_pem,
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        ),
    )
    .await
}

/// One HTTP/1.1 request over TLS, read to the end of the connection.
async fn https(addr: &str, ca_pem: &[u8], request: String) -> (String, String) {
    let connector = tokio_rustls::TlsConnector::from(client_config(ca_pem, &[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("tls handshake");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut raw)).await;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ports_speak_tls_only_and_silent_handshakes_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if !test_certificates(d) {
        return;
    }
    let config = d.join("nudge.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n[server]\nhandshake_timeout_secs = 1\n",
            d.join("server.crt").display(),
            d.join("server.key").display()
        ),
    )
    .unwrap();
    let data = d.join("data");
    let (mut child, addr, mut logs) = util::spawn_nudge_with_logs(
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ],
        &[],
    );
    let ca = std::fs::read(d.join("ca.crt")).unwrap();

    // A client that connects and never sends its ClientHello.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let opened = Instant::now();

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a tls connection");
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "nudge.v1.Offers".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");
    let r = pb::offers_client::OffersClient::new(channel.clone())
        .decide(util::decide(
            "tls-s",
            util::on_system_clock(vec![util::product(0, "jacket-a", 15_000, 20, 0.5)]),
        ))
        .await
        .expect("decide over tls")
        .into_inner();
    assert!(!r.model_version.is_empty());
    // The JSON API on the same port, over TLS too (HTTP/1.1 by ALPN).
    let (status, body) =
        https_post_json(&addr, &ca, "/v1/decide", r#"{"session_id": "tls-s"}"#).await;
    assert!(status.contains("200"), "{status}: {body}");
    assert!(body.contains(&r.model_version), "{body}");

    // Plaintext gets nothing.
    let plain = async {
        let ch = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await?;
        pb::offers_client::OffersClient::new(ch)
            .budget(pb::BudgetRequest::default())
            .await
            .map(|_| ())
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
    };
    let plain: Result<(), Box<dyn std::error::Error>> =
        tokio::time::timeout(Duration::from_secs(10), async {
            plain.await.map_err(|e| e.to_string().into())
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
    assert!(plain.is_err(), "a plaintext call was answered");

    // The admin server speaks HTTPS only, and drops silent clients too.
    let admin = admin_addr(&logs);
    let mut silent_admin = tokio::net::TcpStream::connect(&admin).await.unwrap();
    let (status, body) = https_get(&admin, &ca, "/healthz").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.trim(), "ok");
    let mut plain_admin = tokio::net::TcpStream::connect(&admin).await.unwrap();
    plain_admin
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain_admin.read_to_end(&mut raw)).await;
    assert!(
        !String::from_utf8_lossy(&raw).contains("200 OK"),
        "plaintext admin answered"
    );

    // The silent client was dropped after the 1 s handshake timeout, and
    // the server still serves.
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf)).await;
    let waited = opened.elapsed();
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection stays open: {closed:?}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "closed too early: {waited:?}"
    );
    pb::offers_client::OffersClient::new(channel.clone())
        .budget(pb::BudgetRequest::default())
        .await
        .expect("still serving");
    let closed = tokio::time::timeout(Duration::from_secs(10), silent_admin.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent admin connection stays open: {closed:?}"
    );
    let (status, metrics) = https_get(&admin, &ca, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    assert!(
        metrics.contains("nudge_tls_handshakes_failed_total{port=\"grpc\"}"),
        "{metrics}"
    );

    let lines = logs.collect(Duration::from_millis(500)).join("\n");
    assert!(lines.contains("tls handshakes failed"), "{lines}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn tls_files_are_checked_at_start_and_name_their_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let check = |toml: &str| {
        let config = d.join("nudge.toml");
        std::fs::write(&config, toml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
            .args(["check-config", "--config", config.to_str().unwrap()])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = check("[tls]\ncert_file = \"server.crt\"\n");
    assert!(!ok && err.contains("tls.key_file"), "{err}");
    let missing = d.join("missing.pem").display().to_string();
    let (ok, err) = check(&format!(
        "[tls]\ncert_file = \"{missing}\"\nkey_file = \"{missing}\"\n"
    ));
    assert!(!ok && err.contains("tls.cert_file"), "{err}");
    std::fs::write(d.join("junk.pem"), "not a certificate").unwrap();
    let junk = d.join("junk.pem").display().to_string();
    let (ok, err) = check(&format!(
        "[tls]\ncert_file = \"{junk}\"\nkey_file = \"{junk}\"\n"
    ));
    assert!(!ok && err.contains("tls.cert_file"), "{err}");
}
