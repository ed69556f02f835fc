//! How fast `nudge serve` answers Decide, against a bare tonic server on
//! the same proto that answers a fixed DecideResponse: the bare server is
//! the ceiling of the transport (HTTP/2, protobuf, tonic) on this machine,
//! so the ratio says what nudge's own work costs.
//!
//! ```text
//! cargo build --release --bin nudge --example serve_bench
//! target/release/examples/serve_bench                 # bare, then nudge (SQLite ledger, decision log on)
//! target/release/examples/serve_bench --redis         # also nudge on a private redis-server
//! target/release/examples/serve_bench --json          # also nudge's JSON route (POST /v1/decide)
//! taskset -c 1 target/release/examples/serve_bench --server-cpus 0   # servers and load apart
//! ```
//!
//! Both servers run as their own processes, in turn, in one run, under
//! the same load: the same distinct DecideRequest bodies (whole sessions of
//! about 10 events, encoded once before the run and sent as raw bytes, so
//! the client does no protobuf work), first closed-loop at a fixed
//! concurrency (connections x streams; the maximum rate), then open-loop at
//! a steady rate (default: half the bare server's maximum) from staggered
//! workers, latency counted from each request's scheduled time so that a
//! stall is not hidden. Prints req/s, p50/p99/p99.9 and nudge/bare ratios,
//! and nudge's decision log counts (written, dropped) after each run.
//!
//! With `--json`, nudge also answers the same requests as JSON on
//! `POST /v1/decide` (the proto3 JSON mapping, encoded once before the run
//! too), over HTTP/2 on the same connections x streams, so the JSON and
//! gRPC figures differ only by the route.

use bytes::{Buf, BufMut, Bytes};
use clap::{Parser, Subcommand};
use nudge::grpc::pb;
use prost::Message;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Option<Role>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Role {
    /// The bare server (started by the bench itself).
    Bare {
        #[arg(long)]
        listen: SocketAddr,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The nudge binary.
    #[arg(long, default_value = "target/release/nudge")]
    nudge: PathBuf,
    /// Distinct request bodies.
    #[arg(long, default_value_t = 20_000)]
    bodies: usize,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Concurrent streams per connection.
    #[arg(long, default_value_t = 64)]
    streams: usize,
    /// Seconds measured per phase (after the warm-up).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Warm-up seconds before each measured phase.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// Steady-phase rate, requests per second (default: half the bare
    /// server's maximum in this run).
    #[arg(long)]
    rate: Option<f64>,
    /// Also measure nudge with the Redis ledger and sessions (needs
    /// `redis-server` on PATH).
    #[arg(long)]
    redis: bool,
    /// Also measure nudge's JSON route (`POST /v1/decide`).
    #[arg(long)]
    json: bool,
    /// Run the servers (and redis-server) on these CPUs only (`taskset -c`
    /// list, e.g. `0`); start the bench itself under `taskset -c` on the
    /// others, so that the load generator and the server under test do not
    /// take turns on the same cores (what the latency tail measures then
    /// is the server's, not the scheduler's).
    #[arg(long)]
    server_cpus: Option<String>,
}

/// `program` as a command, under `taskset -c cpus` when given.
fn command(program: &std::ffi::OsStr, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Some(Role::Bare { listen }) => rt.block_on(bare(listen)),
        None => rt.block_on(run(cli.run)),
    }
}

// ---- the bare server ----

struct Fixed;

#[tonic::async_trait]
impl pb::offers_server::Offers for Fixed {
    async fn track(
        &self,
        _: tonic::Request<pb::TrackRequest>,
    ) -> Result<tonic::Response<pb::TrackResponse>, Status> {
        Ok(tonic::Response::new(pb::TrackResponse::default()))
    }
    async fn decide(
        &self,
        r: tonic::Request<pb::DecideRequest>,
    ) -> Result<tonic::Response<pb::DecideResponse>, Status> {
        Ok(tonic::Response::new(pb::DecideResponse {
            session_id: r.into_inner().session_id,
            purchase_probability: 0.3,
            segment: pb::Segment::Hesitant as i32,
            intent_value_cents: 12_900,
            reason: pb::Reason::RoiNotPositive as i32,
            model_version: "bare".into(),
            campaign: "default".into(),
            ..Default::default()
        }))
    }
    async fn redeem(
        &self,
        _: tonic::Request<pb::RedeemRequest>,
    ) -> Result<tonic::Response<pb::RedeemResponse>, Status> {
        Ok(tonic::Response::new(pb::RedeemResponse::default()))
    }
    async fn record_outcome(
        &self,
        _: tonic::Request<pb::RecordOutcomeRequest>,
    ) -> Result<tonic::Response<pb::RecordOutcomeResponse>, Status> {
        Ok(tonic::Response::new(pb::RecordOutcomeResponse::default()))
    }
    async fn budget(
        &self,
        _: tonic::Request<pb::BudgetRequest>,
    ) -> Result<tonic::Response<pb::BudgetResponse>, Status> {
        Ok(tonic::Response::new(pb::BudgetResponse::default()))
    }
    async fn report(
        &self,
        _: tonic::Request<pb::ReportRequest>,
    ) -> Result<tonic::Response<pb::ReportResponse>, Status> {
        Ok(tonic::Response::new(pb::ReportResponse::default()))
    }
}

async fn bare(listen: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    tonic::transport::Server::builder()
        .add_service(pb::offers_server::OffersServer::new(Fixed))
        .serve(listen)
        .await?;
    Ok(())
}

// ---- the load ----

/// Sends pre-encoded bodies as they are and keeps answers as bytes.
#[derive(Clone, Copy, Default)]
struct Raw;
struct RawEncoder;
struct RawDecoder;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// Whole sessions of about 10 events, spread over the last ten minutes.
fn requests(n: usize) -> Vec<pb::DecideRequest> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let now = chrono::Utc::now().timestamp_millis();
    (0..n)
        .map(|i| {
            let events = rng.random_range(6..14);
            let mut t = now - 600_000;
            let mut out = Vec::with_capacity(events);
            for e in 0..events {
                t += rng.random_range(5_000..40_000);
                use pb::event::Kind;
                let kind = match (e, rng.random_range(0..10)) {
                    (0, _) | (_, 0..=5) => Kind::PageView(pb::PageView {
                        page_kind: pb::PageKind::Product as i32,
                        product_id: format!("p{}", rng.random_range(0..500)),
                        price_cents: rng.random_range(2_000..40_000),
                        dwell_ms: rng.random_range(2_000..90_000),
                        scroll_depth: rng.random_range(0.0..1.0),
                    }),
                    (_, 6..=7) => Kind::CartAdd(pb::CartChange {
                        product_id: format!("p{}", rng.random_range(0..500)),
                        unit_price_cents: rng.random_range(2_000..40_000),
                        quantity: 1,
                    }),
                    _ => Kind::Interaction(pb::Interaction {
                        signal: rng.random_range(1..8),
                    }),
                };
                out.push(pb::Event {
                    at_ms: t,
                    kind: Some(kind),
                });
            }
            pb::DecideRequest {
                session_id: format!("bench-{i}"),
                visitor_id: format!("v-{i}"),
                events: out,
                ..Default::default()
            }
        })
        .collect()
}

/// The requests as gRPC bodies (protobuf) or JSON bodies (the proto3 JSON
/// mapping the JSON route reads).
fn encode(requests: &[pb::DecideRequest], route: Route) -> Vec<Bytes> {
    requests
        .iter()
        .map(|r| match route {
            Route::Grpc => Bytes::from(r.encode_to_vec()),
            Route::Json => Bytes::from(serde_json::to_vec(r).expect("JSON body")),
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Route {
    Grpc,
    Json,
}

#[derive(Default)]
struct Phase {
    ok: u64,
    errors: u64,
    secs: f64,
    /// Microseconds, sorted.
    latencies: Vec<u32>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }
    fn quantile(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        f64::from(self.latencies[i]) / 1000.0
    }
    fn line(&self, name: &str) -> String {
        format!(
            "{name:<22} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  errors {}",
            self.rate(),
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(0.999),
            self.errors
        )
    }
}

/// One client connection: a tonic channel for gRPC, an HTTP/2 connection
/// for JSON.
#[derive(Clone)]
enum Conn {
    Grpc(tonic::transport::Channel),
    Json(h2::client::SendRequest<Bytes>, http::Uri),
}

async fn channels(addr: SocketAddr, n: usize, route: Route) -> Vec<Conn> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(match route {
            Route::Grpc => Conn::Grpc(
                tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .expect("address")
                    .connect()
                    .await
                    .expect("connect"),
            ),
            Route::Json => {
                let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                tcp.set_nodelay(true).expect("nodelay");
                let (send, conn) = h2::client::handshake(tcp).await.expect("HTTP/2");
                tokio::spawn(conn);
                let uri = format!("http://{addr}/v1/decide").parse().expect("uri");
                Conn::Json(send, uri)
            }
        });
    }
    out
}

/// Decides answered without error since the last reset (warm-ups included):
/// what the server's decision log must hold.
static ANSWERED: AtomicU64 = AtomicU64::new(0);

async fn call(conn: Conn, body: Bytes) -> bool {
    let ok = match conn {
        Conn::Grpc(ch) => grpc_call(ch, body).await,
        Conn::Json(send, uri) => json_call(send, uri, body).await.unwrap_or(false),
    };
    if ok {
        ANSWERED.fetch_add(1, Ordering::Relaxed);
    }
    ok
}

async fn grpc_call(ch: tonic::transport::Channel, body: Bytes) -> bool {
    let mut grpc = tonic::client::Grpc::new(ch);
    if grpc.ready().await.is_err() {
        return false;
    }
    let path = http::uri::PathAndQuery::from_static("/nudge.v1.Offers/Decide");
    grpc.unary(tonic::Request::new(body), path, Raw)
        .await
        .is_ok()
}

/// `POST /v1/decide` with a JSON body; the answer is read whole (and
/// counted only when it is 200), as a client would before using it.
async fn json_call(
    send: h2::client::SendRequest<Bytes>,
    uri: http::Uri,
    body: Bytes,
) -> Result<bool, h2::Error> {
    let mut send = send.ready().await?;
    let request = http::Request::post(uri)
        .header("content-type", "application/json")
        .body(())
        .expect("request");
    let (answer, mut stream) = send.send_request(request, false)?;
    stream.send_data(body, true)?;
    let answer = answer.await?;
    let ok = answer.status() == http::StatusCode::OK;
    let mut body = answer.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok(ok)
}

/// Closed loop: every worker sends its next request as soon as the last
/// one is answered.
async fn closed_loop(
    addr: SocketAddr,
    a: &RunArgs,
    bodies: &Arc<Vec<Bytes>>,
    route: Route,
) -> Phase {
    let chans = channels(addr, a.connections, route).await;
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(a.warmup_secs);
    let end = measure_from + Duration::from_secs(a.secs);
    let mut tasks = Vec::new();
    for w in 0..a.connections * a.streams {
        let ch = chans[w % chans.len()].clone();
        let (next, errors, bodies) = (next.clone(), errors.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let body = bodies[next.fetch_add(1, Ordering::Relaxed) % bodies.len()].clone();
                let ok = call(ch.clone(), body).await;
                if t0 >= measure_from {
                    if ok {
                        lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    collect(tasks, errors, measure_from).await
}

/// Open loop at `rate`: staggered workers, each on its own schedule;
/// latency from the scheduled send time.
async fn steady(
    addr: SocketAddr,
    a: &RunArgs,
    bodies: &Arc<Vec<Bytes>>,
    rate: f64,
    route: Route,
) -> Phase {
    let chans = channels(addr, a.connections, route).await;
    let workers = a.connections * a.streams;
    let interval = Duration::from_secs_f64(workers as f64 / rate);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(a.warmup_secs);
    let end = measure_from + Duration::from_secs(a.secs);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let ch = chans[w % chans.len()].clone();
        let (next, errors, bodies) = (next.clone(), errors.clone(), bodies.clone());
        let offset = interval.mul_f64(w as f64 / workers as f64);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut due = start + offset;
            while due < end {
                tokio::time::sleep_until(due.into()).await;
                let body = bodies[next.fetch_add(1, Ordering::Relaxed) % bodies.len()].clone();
                let ok = call(ch.clone(), body).await;
                if due >= measure_from {
                    if ok {
                        lat.push(due.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                due += interval;
            }
            lat
        }));
    }
    collect(tasks, errors, measure_from).await
}

/// Gathers the workers' latencies. The rate is over the time from the
/// measured phase's start to the last answer: a server that falls behind
/// an open-loop schedule finishes late and shows a lower rate.
async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Vec<u32>>>,
    errors: Arc<AtomicU64>,
    measure_from: Instant,
) -> Phase {
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap_or_default());
    }
    let secs = measure_from.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Phase {
        ok: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        secs,
        latencies,
    }
}

// ---- the servers under test ----

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{addr} did not open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start_bare(a: &RunArgs) -> Server {
    let addr = free_addr();
    let own = std::env::current_exe().expect("own path");
    let child = command(own.as_os_str(), a.server_cpus.as_deref())
        .args(["bare", "--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the bare server");
    wait_listening(addr).await;
    Server { child, addr }
}

async fn start_nudge(a: &RunArgs, dir: &std::path::Path, config: Option<&str>) -> Server {
    let (addr, admin) = (free_addr(), free_addr());
    let admin = admin.to_string();
    let log = std::fs::File::create(dir.join("nudge.log")).expect("log file");
    let mut cmd = command(a.nudge.as_os_str(), a.server_cpus.as_deref());
    cmd.arg("serve")
        .args(["--listen", &addr.to_string()])
        .args(["--admin-listen", &admin])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env(
            "NUDGE_VOUCHER_SECRET",
            "serve-bench secret, not for production",
        )
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(c) = config {
        let path = dir.join("nudge.toml");
        std::fs::write(&path, c).expect("config");
        cmd.arg("--config").arg(path);
    }
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "start {} ({e}); build it with cargo build --release --bin nudge",
            a.nudge.display()
        )
    });
    wait_listening(addr).await;
    Server { child, addr }
}

/// Stops nudge with SIGTERM (it drains and flushes its decision log) and
/// answers its `decision log flushed` line (records written, dropped).
fn stop_and_count(mut server: Server, dir: &std::path::Path) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let _ = server.child.wait();
    let log = std::fs::read_to_string(dir.join("nudge.log")).unwrap_or_default();
    let line = log
        .lines()
        .find(|l| l.contains("decision log flushed"))
        .unwrap_or("no decision log line");
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "decision log: written {}, dropped {}",
        field("written="),
        field("dropped=")
    )
}

/// The server and its socket folder (removed on drop).
struct RedisChild(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_redis(cpus: Option<&str>) -> (RedisChild, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("redis.sock");
    let child = command("redis-server".as_ref(), cpus)
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .arg("--unixsocket")
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("unix://{}", sock.display());
    (RedisChild(child, dir), url)
}

async fn run(a: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let requests = requests(a.bodies);
    let bodies = Arc::new(encode(&requests, Route::Grpc));
    let json_bodies = Arc::new(encode(&requests, Route::Json));
    let mean = bodies.iter().map(Bytes::len).sum::<usize>() / bodies.len().max(1);
    println!(
        "{} distinct Decide bodies (mean {mean} bytes), {} connections x {} streams, {} s measured after {} s warm-up",
        bodies.len(),
        a.connections,
        a.streams,
        a.secs,
        a.warmup_secs
    );
    if let Some(cpus) = &a.server_cpus {
        println!("servers on CPUs {cpus}, the load generator where it was started");
    }
    let bare_server = start_bare(&a).await;
    let bare_max = closed_loop(bare_server.addr, &a, &bodies, Route::Grpc).await;
    let rate = a.rate.unwrap_or(bare_max.rate() / 2.0);
    let bare_steady = steady(bare_server.addr, &a, &bodies, rate, Route::Grpc).await;
    drop(bare_server);
    println!("{}", bare_max.line("bare max"));
    println!("{}", bare_steady.line(&format!("bare at {rate:.0}/s")));

    let mut runs: Vec<(&str, Option<String>, Route)> = vec![("nudge", None, Route::Grpc)];
    if a.json {
        runs.push(("nudge json", None, Route::Json));
    }
    let redis = if a.redis {
        let (child, url) = start_redis(a.server_cpus.as_deref()).await;
        runs.push((
            "nudge redis",
            Some(format!(
                "[ledger]\nbackend = \"redis\"\n[sessions]\nbackend = \"redis\"\n[redis]\nurl = \"{url}\"\n"
            )),
            Route::Grpc,
        ));
        Some(child)
    } else {
        None
    };
    for (name, config, route) in runs {
        let dir = tempfile::tempdir()?;
        let server = start_nudge(&a, dir.path(), config.as_deref()).await;
        ANSWERED.store(0, Ordering::Relaxed);
        let bodies = match route {
            Route::Grpc => &bodies,
            Route::Json => &json_bodies,
        };
        let max = closed_loop(server.addr, &a, bodies, route).await;
        let at_rate = steady(server.addr, &a, bodies, rate, route).await;
        let counts = stop_and_count(server, dir.path());
        println!("{}", max.line(&format!("{name} max")));
        println!("{}", at_rate.line(&format!("{name} at {rate:.0}/s")));
        println!(
            "{name}: {:.2} of the bare server's req/s; answered {} Decides in all, {counts}",
            max.rate() / bare_max.rate(),
            ANSWERED.load(Ordering::Relaxed)
        );
    }
    drop(redis);
    Ok(())
}
