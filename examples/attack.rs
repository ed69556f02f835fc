//! Reproduces two attacks on a running `nudge serve` and prints what the
//! server went through (it reads the server's /proc entry, so run it on the
//! same machine):
//!
//! ```text
//! cargo run --release --example attack -- half-open --addr 127.0.0.1:50051 --pid <server pid>
//! cargo run --release --example attack -- idle --addr 127.0.0.1:50051 --pid <server pid> --connections 20000
//! ```
//!
//! `half-open`: connections each opening streams that announce a large
//! gRPC message, send most of it and never finish; prints the server's peak
//! memory and how the streams ended. `idle`: TCP connections that send
//! nothing; prints the server's CPU use, whether a fresh client is served
//! within 1 s, and how many of the silent connections the server closed.
//! Both probe a normal Decide once a second while they run.

use bytes::Bytes;
use clap::{Parser, Subcommand};
use nudge::grpc::pb;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    attack: Attack,
}

#[derive(Subcommand)]
enum Attack {
    /// Streams that announce a message and never finish it.
    HalfOpen {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 12)]
        connections: usize,
        #[arg(long, default_value_t = 400)]
        streams: usize,
        /// Announced message size, bytes.
        #[arg(long, default_value_t = 1_000_000)]
        message_bytes: u32,
        /// How long the attack holds its streams open.
        #[arg(long, default_value_t = 16)]
        hold_secs: u64,
    },
    /// TCP connections that send nothing.
    Idle {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 20_000)]
        connections: usize,
        #[arg(long, default_value_t = 40)]
        hold_secs: u64,
    },
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            let l = t.lines().find(|l| l.starts_with(key))?.to_owned();
            l[key.len()..].split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(i) = text.rfind(')') else { return 0 };
    let f: Vec<&str> = text[i + 2..].split_whitespace().collect();
    let n = |k: usize| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// One Decide on a fresh connection within 1 s: "served", or what went wrong.
async fn probe(addr: &str) -> String {
    let call = async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        pb::offers_client::OffersClient::new(channel)
            .decide(pb::DecideRequest {
                session_id: "probe".into(),
                ..Default::default()
            })
            .await
            .map(|_| "served".to_owned())
            .map_err(|s| format!("{:?}", s.code()))
    };
    match tokio::time::timeout(Duration::from_secs(1), call).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => e,
        Err(_) => "no answer within 1 s".to_owned(),
    }
}

/// Probes once a second until `stop` fires; returns the outcomes counted.
fn spawn_prober(
    addr: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<BTreeMap<String, u32>> {
    tokio::spawn(async move {
        let mut seen = BTreeMap::new();
        loop {
            *seen.entry(probe(&addr).await).or_insert(0) += 1;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => break,
            }
        }
        seen
    })
}

async fn half_open(
    addr: String,
    pid: u32,
    connections: usize,
    streams: usize,
    message_bytes: u32,
    hold: Duration,
) {
    let baseline = status_kib(pid, "VmRSS:");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let prober = spawn_prober(addr.clone(), stop_rx);
    let mut frame = vec![0u8];
    frame.extend_from_slice(&message_bytes.to_be_bytes());
    frame.resize(message_bytes as usize + 4, 0x55);
    let frame = Bytes::from(frame);
    let mut held = Vec::new();
    let mut opened = 0usize;
    for _ in 0..connections {
        let Ok(tcp) = tokio::net::TcpStream::connect(&addr).await else {
            continue;
        };
        let Ok((client, conn)) = h2::client::handshake(tcp).await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client;
        for _ in 0..streams {
            // A server that caps streams per connection makes this wait.
            match tokio::time::timeout(Duration::from_millis(500), client.clone().ready()).await {
                Ok(Ok(c)) => client = c,
                _ => break,
            }
            let req = http::Request::post(format!("http://{addr}/nudge.v1.Offers/Decide"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap();
            let Ok((response, mut send)) = client.send_request(req, false) else {
                break;
            };
            let _ = send.send_data(frame.clone(), false);
            opened += 1;
            held.push(tokio::spawn(async move {
                let outcome = match response.await {
                    Ok(r) => r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .map(|c| format!("grpc-status {c}"))
                        .unwrap_or_else(|| format!("http {}", r.status())),
                    Err(e) => format!(
                        "reset: {}",
                        e.reason()
                            .map(|r| format!("{r:?}"))
                            .unwrap_or_else(|| e.to_string())
                    ),
                };
                drop(send);
                outcome
            }));
        }
    }
    println!("opened {opened} streams over {connections} connections, each announcing {message_bytes} bytes and sending all but the last byte");
    let start = Instant::now();
    let mut peak_rss = 0;
    while start.elapsed() < hold {
        peak_rss = peak_rss.max(status_kib(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
    let mut open = 0;
    for h in held {
        if h.is_finished() {
            *outcomes.entry(h.await.unwrap_or_default()).or_insert(0) += 1;
        } else {
            open += 1;
            h.abort();
        }
    }
    let _ = stop_tx.send(true);
    let probes = prober.await.unwrap_or_default();
    let hwm = status_kib(pid, "VmHWM:");
    println!(
        "server rss: baseline {} MiB, peak sampled {} MiB, peak (VmHWM) {} MiB",
        baseline / 1024,
        peak_rss / 1024,
        hwm / 1024
    );
    println!(
        "streams after {} s: {open} still open; ended: {outcomes:?}",
        hold.as_secs()
    );
    println!("probe Decide once a second during the attack: {probes:?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "server rss 5 s after the client left: {} MiB",
        status_kib(pid, "VmRSS:") / 1024
    );
}

/// This process's soft open-file limit.
fn own_file_limit() -> Option<usize> {
    nudge::app::listener::open_file_limit().and_then(|n| usize::try_from(n).ok())
}

async fn idle(addr: String, pid: u32, connections: usize, hold: Duration) {
    // Keep descriptors for the probe's own connections.
    let connections = match own_file_limit() {
        Some(limit) if limit < connections + 64 => {
            println!(
                "this process may open {limit} files: opening {} connections, not {connections}",
                limit - 64
            );
            limit - 64
        }
        _ => connections,
    };
    let mut open = Vec::new();
    let t0 = Instant::now();
    let mut failed = 0;
    let mut in_a_row = 0;
    for _ in 0..connections {
        match tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        {
            Ok(Ok(c)) => {
                open.push(c);
                in_a_row = 0;
            }
            _ => {
                failed += 1;
                in_a_row += 1;
                // The server's backlog is full: more attempts only wait.
                if in_a_row == 20 {
                    break;
                }
            }
        }
    }
    println!("opened {} silent connections in {:?} ({failed} failed: this process's own file limit or the server's backlog)", open.len(), t0.elapsed());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let prober = spawn_prober(addr.clone(), stop_rx);
    let cpu0 = cpu_ticks(pid);
    let w0 = Instant::now();
    tokio::time::sleep(hold).await;
    let cpu = (cpu_ticks(pid) - cpu0) as f64 / 100.0 / w0.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    let probes = prober.await.unwrap_or_default();
    // A connection the server closed reads end-of-file (after its SETTINGS).
    let mut closed = 0;
    for c in &open {
        let mut buf = [0u8; 256];
        loop {
            match c.try_read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed += 1;
                    break;
                }
            }
        }
    }
    println!(
        "server cpu over {} s: {:.0} % of one core",
        hold.as_secs(),
        cpu * 100.0
    );
    println!("probe Decide (fresh connection, 1 s deadline) once a second: {probes:?}");
    println!(
        "silent connections closed by the server after {} s: {closed} of {}",
        hold.as_secs(),
        open.len()
    );
}

#[tokio::main]
async fn main() {
    match Cli::parse().attack {
        Attack::HalfOpen {
            addr,
            pid,
            connections,
            streams,
            message_bytes,
            hold_secs,
        } => {
            half_open(
                addr,
                pid,
                connections,
                streams,
                message_bytes,
                Duration::from_secs(hold_secs),
            )
            .await
        }
        Attack::Idle {
            addr,
            pid,
            connections,
            hold_secs,
        } => idle(addr, pid, connections, Duration::from_secs(hold_secs)).await,
    }
}
