//! Transport limits against the real server: half-sent requests hold a
//! bounded amount of memory and are ended at the body deadline, requests
//! beyond the in-flight limit are shed at once, and connections that send
//! nothing neither exhaust the file descriptors nor make the server spin.

use crate::util::*;
use bytes::Bytes;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::Code;

const MIB: u64 = 1024 * 1024;

/// A field of /proc/<pid>/status, in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(key)).unwrap();
    line[key.len() + 1..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &text[text.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); the name was field 2.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// The server process, killed when the test ends (also when it fails).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary with a config file and a fresh data directory, optionally
/// with a lower open-file limit.
fn spawn_with(config: &str, nofile: Option<u32>) -> (Server, String, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let path = data.path().join("nudge.toml");
    std::fs::write(&path, config).unwrap();
    let bin = env!("CARGO_BIN_EXE_nudge");
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .arg("--config")
    .arg(&path)
    .arg("--data-dir")
    .arg(data.path().join("data"))
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .env("RUST_LOG", "info")
    .stderr(Stdio::piped())
    .stdout(Stdio::null());
    let (child, addr) = spawn_logged(cmd);
    (Server(child), addr, data)
}

/// One HTTP/2 connection with `streams` Decide calls, each announcing a
/// `announced`-byte message and sending `sent` bytes of it, never ending.
/// Returns the responses to wait for; the connection lives as long as they
/// (and the returned send halves) do.
async fn half_sent(
    addr: &str,
    streams: usize,
    announced: u32,
    sent: usize,
) -> Vec<(h2::client::ResponseFuture, h2::SendStream<Bytes>)> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&announced.to_be_bytes());
    frame.resize(5 + sent, 0x55);
    let frame = Bytes::from(frame);
    let mut out = Vec::new();
    for _ in 0..streams {
        client = client.ready().await.unwrap();
        let req = http::Request::post(format!("http://{addr}/nudge.v1.Offers/Decide"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(req, false).unwrap();
        send.send_data(frame.clone(), false).unwrap();
        out.push((response, send));
    }
    out
}

/// The gRPC status of a response that ended without a message.
async fn grpc_code(response: h2::client::ResponseFuture) -> Option<Code> {
    let response = response.await.ok()?;
    let (parts, mut body) = response.into_parts();
    let header = |h: &http::HeaderMap| {
        h.get("grpc-status")
            .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
            .map(Code::from_i32)
    };
    if let Some(code) = header(&parts.headers) {
        return Some(code);
    }
    while body.data().await.is_some() {}
    header(&body.trailers().await.ok()??)
}

async fn decide_once(
    addr: &str,
    id: &str,
) -> Result<nudge::grpc::pb::DecideResponse, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    nudge::grpc::pb::offers_client::OffersClient::new(channel)
        .decide(decide(id, vec![]))
        .await
        .map(|r| r.into_inner())
}

/// Before the limits, 12 connections x 400 streams each announcing 1 MB
/// and never finishing took the server from 224 MB to 4.7 GB. Scaled down:
/// the streams a client may open are capped per connection, what they hold
/// is bounded by the requests in flight x the largest message, and the
/// body deadline ends them; a normal Decide is served during and after.
#[tokio::test]
async fn half_sent_streams_hold_bounded_memory_and_end_at_the_deadline() {
    let config = "[server]\nmax_concurrent_streams = 16\nrequest_timeout_ms = 3000\n";
    let (server, addr, _data) = spawn_with(config, None);
    let pid = server.0.id();
    decide_once(&addr, "warm").await.expect("served before");
    let baseline = status_kib(pid, "VmRSS:");

    // 6 x 16 = 96 streams, each with a whole 1 MiB message bar 4 KiB.
    let announced = 4 * 262_144u32;
    let mut streams = Vec::new();
    for _ in 0..6 {
        streams.extend(half_sent(&addr, 16, announced, announced as usize - 4_096).await);
    }
    let sent_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let during = decide_once(&addr, "during").await;
    assert!(during.is_ok(), "served during the attack: {during:?}");

    let peak = status_kib(pid, "VmHWM:");
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!("baseline {} MiB, peak {} MiB", baseline / 1024, peak / 1024);
    assert!(peak * 1024 < 512 * MIB, "peak {peak} KiB");
    // 96 streams of 1 MiB at most, with room for the allocator.
    assert!(growth_mib < 96 + 64, "grew {growth_mib} MiB");

    // The deadline ends every held stream with DEADLINE_EXCEEDED.
    let mut codes = Vec::new();
    for (response, _send) in streams {
        let code = tokio::time::timeout(Duration::from_secs(10), grpc_code(response))
            .await
            .expect("answered by the deadline");
        codes.push(code);
    }
    let elapsed = sent_at.elapsed();
    assert!(
        codes.iter().all(|c| *c == Some(Code::DeadlineExceeded)),
        "{codes:?}"
    );
    assert!(elapsed >= Duration::from_millis(2_500), "{elapsed:?}");
    let after = decide_once(&addr, "after").await;
    assert!(after.is_ok(), "served after the attack: {after:?}");
    eprintln!("rss after {} MiB", status_kib(pid, "VmRSS:") / 1024);
    drop(server);
}

/// Beyond the in-flight limit a request is answered RESOURCE_EXHAUSTED at
/// once, its body unread (callers show no voucher), and served again once
/// the held requests end at their deadline.
#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_shed_at_once() {
    let s = start(
        settings("[server]\nmax_concurrent_requests = 2\nrequest_timeout_ms = 1000\n"),
        default_model(),
    )
    .await;
    let addr = s.addr.to_string();
    let mut streams = half_sent(&addr, 5, 1_024, 10).await.into_iter();
    let held: Vec<_> = streams.by_ref().take(2).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (response, _send) in streams {
        let code = tokio::time::timeout(Duration::from_millis(900), grpc_code(response))
            .await
            .expect("shed at once");
        assert_eq!(code, Some(Code::ResourceExhausted));
    }
    let shed = s.client().await.decide(decide("busy", vec![])).await;
    assert_eq!(shed.unwrap_err().code(), Code::ResourceExhausted);
    // Health checks and Reports are not shed with the rest: an orchestrator
    // must not see a busy server as dead, and reports have their own pool.
    let health = tonic_health::pb::health_client::HealthClient::new(s.channel().await)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers while busy")
        .into_inner();
    assert_eq!(
        health.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let report = s
        .client()
        .await
        .report(nudge::grpc::pb::ReportRequest { since_ms: 0 })
        .await;
    assert!(
        report.is_ok() || report.as_ref().unwrap_err().code() == Code::FailedPrecondition,
        "a report is not shed by decisions in flight: {report:?}"
    );
    for (response, _send) in held {
        let code = tokio::time::timeout(Duration::from_secs(5), grpc_code(response))
            .await
            .expect("ended by the deadline");
        assert_eq!(code, Some(Code::DeadlineExceeded));
    }
    assert!(s
        .client()
        .await
        .decide(decide("free", vec![]))
        .await
        .is_ok());
    s.stop().await;
}

/// A whole request whose body breaks the gRPC framing: the status code.
async fn framed_badly(addr: &str, body: &'static [u8]) -> Option<Code> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let req = http::Request::post(format!("http://{addr}/nudge.v1.Offers/Track"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(req, false).unwrap();
    send.send_data(Bytes::from_static(body), true).unwrap();
    grpc_code(response).await
}

/// A body that ends inside its message, or carries a flag gRPC does not
/// define, was INTERNAL; it is the caller's mistake.
#[tokio::test]
async fn a_body_ending_inside_its_message_is_invalid_argument() {
    let s = start(settings(""), default_model()).await;
    let addr = s.addr.to_string();
    for body in [
        &[0u8, 0, 0, 0, 9, 0x0a, 0x01][..],
        &[0, 0, 0],
        &[7, 0, 0, 0, 0],
        // No message at all, and a compressed one without its encoding:
        // both were INTERNAL.
        &[],
        &[1, 0, 0, 0, 0],
    ] {
        let code = tokio::time::timeout(Duration::from_secs(5), framed_badly(&addr, body))
            .await
            .unwrap();
        assert_eq!(code, Some(Code::InvalidArgument), "{body:?}");
    }
    assert!(s.client().await.decide(decide("ok", vec![])).await.is_ok());
    s.stop().await;
}

/// Before, 20,000 connections sending nothing exhausted the file
/// descriptors and the accept loop spun at 100 % CPU. Scaled down: with an
/// open-file limit of 256 and a connection cap above it, 400 silent
/// connections make accepting fail; the server backs off instead of
/// spinning, closes the silent connections after the handshake timeout and
/// serves a fresh client.
#[tokio::test]
async fn silent_connections_neither_exhaust_descriptors_nor_spin() {
    let config = "[server]\nmax_connections = 1000\nhandshake_timeout_secs = 2\nidle_timeout_secs = 4\nkeepalive_interval_secs = 1\n";
    let (server, addr, _data) = spawn_with(config, Some(256));
    let pid = server.0.id();
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // A fresh client arrives while accepting fails: it waits in the
    // listen backlog until silent connections are closed.
    let started = Instant::now();
    let fresh = tokio::spawn({
        let addr = addr.clone();
        async move { decide_once(&addr, "fresh").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_ticks(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticks = cpu_ticks(pid) - before;
    let wall_ticks = t0.elapsed().as_secs_f64() * 100.0;
    eprintln!("cpu {ticks} ticks over {wall_ticks:.0}");
    assert!(
        (ticks as f64) < wall_ticks * 0.5,
        "{ticks} ticks in {wall_ticks:.0}: spinning"
    );
    let fresh = fresh.await.unwrap();
    assert!(fresh.is_ok(), "{fresh:?}");
    eprintln!("fresh client served in {:?}", started.elapsed());

    // Every silent connection is closed by the server (after its SETTINGS).
    use tokio::io::AsyncReadExt;
    let deadline = Instant::now() + Duration::from_secs(20);
    for mut c in idle {
        let mut buf = [0u8; 256];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, c.read(&mut buf))
                .await
                .expect("closed by the server")
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    assert!(decide_once(&addr, "later").await.is_ok());
    drop(server);
}

/// The admin port has its own connection cap and closes silent
/// connections, like the gRPC port: 300 silent connections, the 44 beyond
/// the cap of 256 are closed at once and counted, the rest after the
/// handshake timeout, and a scraper is served afterwards.
#[tokio::test]
async fn the_admin_port_caps_connections_and_closes_silent_ones() {
    use tokio::io::AsyncReadExt;
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("nudge.toml");
    std::fs::write(
        &config,
        "[server]\nhandshake_timeout_secs = 2\nidle_timeout_secs = 4\nkeepalive_interval_secs = 1\n",
    )
    .unwrap();
    let (child, _addr, logs) = spawn_nudge_with_logs(
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--data-dir".as_ref(),
            data.path().join("data").as_os_str(),
        ],
        &[],
    );
    let _server = Server(child);
    let admin = admin_addr(&logs);
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(tokio::net::TcpStream::connect(&admin).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // All looked at together, well inside the handshake timeout.
    let looks: Vec<_> = silent
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                match tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await {
                    Err(_) => Some(c),
                    Ok(Ok(0) | Err(_)) => None,
                    Ok(Ok(n)) => panic!("the admin server sent {n} bytes unasked"),
                }
            })
        })
        .collect();
    let mut open = Vec::new();
    let mut closed_at_once = 0;
    for look in looks {
        match look.await.unwrap() {
            Some(c) => open.push(c),
            None => closed_at_once += 1,
        }
    }
    assert_eq!((closed_at_once, open.len()), (44, 256));
    let deadline = Instant::now() + Duration::from_secs(15);
    for mut c in open {
        let mut buf = [0u8; 64];
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, c.read(&mut buf))
            .await
            .expect("a silent connection is closed by the server");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let (code, metrics) = tokio::task::spawn_blocking(move || http_get(&admin, "/metrics"))
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("nudge_connections_refused_total{port=\"admin\"} 44"),
        "{metrics}"
    );
}
