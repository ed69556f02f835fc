//! Fixtures: a real server on 127.0.0.1:0, clients, event builders.

use nudge::app;
use nudge::clock::{Clock, ManualClock};
use nudge::config::{RawConfig, Settings};
use nudge::domain::model::Model;
use nudge::engine::Engine;
use nudge::grpc::pb;
use nudge::grpc::pb::event::Kind;
use nudge::grpc::pb::offers_client::OffersClient;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tonic::transport::Channel;

/// 2026-11-22T10:00:00Z: a fixed, mid-day "now" for every test.
pub const NOW_MS: i64 = 1_795_341_600_000;

pub struct TestServer {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    pub clock: Arc<ManualClock>,
    /// The data directory (ledger, decision log); removed on drop.
    pub data: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn client(&self) -> OffersClient<Channel> {
        OffersClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    /// Stops serving and flushes the log; keeps the data directory.
    pub async fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task");
        }
        self.engine.log.flush().await;
    }
}

/// Settings from TOML; tests default to no holdout and no exploration so
/// that decisions are deterministic (tests of those set them explicitly).
/// They also offer on the configured priors, with one exploration share
/// whether or not the model learned a response, as the service did before
/// its cold start (the shipped model has no learned response): behaviour
/// tests keep their meaning. Cold-start tests use [`cold_settings`].
pub fn settings(toml: &str) -> Settings {
    let mut raw = RawConfig::from_toml(toml).unwrap();
    raw.experiment.holdout_share.get_or_insert(0.0);
    raw.experiment.explore_share.get_or_insert(0.0);
    raw.policy.offer_on_priors.get_or_insert(true);
    if raw.experiment.cold_explore_share.is_none() {
        raw.experiment.cold_explore_share = raw.experiment.explore_share;
    }
    raw.validate().unwrap()
}

/// Settings from TOML with the shipped defaults for the cold start (no
/// greedy offer on priors, the cold exploration share) and, unless set, no
/// holdout.
pub fn cold_settings(toml: &str) -> Settings {
    let mut raw = RawConfig::from_toml(toml).unwrap();
    raw.experiment.holdout_share.get_or_insert(0.0);
    raw.validate().unwrap()
}

pub fn default_model() -> Model {
    Model::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.json")).unwrap()
}

pub fn fixture_model(name: &str) -> Model {
    Model::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// An in-memory engine (no files) for engine-level tests.
pub fn engine(settings: &Settings, model: Model, clock: Arc<ManualClock>) -> Arc<Engine> {
    Arc::new(app::memory_engine(settings, model, clock as Arc<dyn Clock>))
}

/// The voucher secret of every test server.
pub const TEST_SECRET: &str = "integration-test secret, not for production";

/// Starts a real gRPC server on an ephemeral loopback port, with the
/// embedded default backends (SQLite ledger, decision log) in a fresh
/// temporary data directory.
pub async fn start(settings: Settings, model: Model) -> TestServer {
    let data = tempfile::tempdir().unwrap();
    start_in(settings, model, data).await
}

pub async fn start_in(settings: Settings, model: Model, data: tempfile::TempDir) -> TestServer {
    start_with_disk(settings, model, data, nudge::files::DiskFull::default()).await
}

/// [`start_in`] with a switch that makes the data directory's writers fail
/// as on a full disk while it is on.
pub async fn start_with_disk(
    mut settings: Settings,
    model: Model,
    data: tempfile::TempDir,
    disk_full: nudge::files::DiskFull,
) -> TestServer {
    settings.data_dir = data.path().to_owned();
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let key = app::voucher_key(&settings, Some(TEST_SECRET)).unwrap();
    let engine = Arc::new(
        app::build_engine_with(
            &settings,
            model,
            clock.clone() as Arc<dyn Clock>,
            key,
            disk_full,
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let e = engine.clone();
    let server = settings.server;
    let handle = tokio::spawn(async move {
        app::run_with(listener, e, server, async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    TestServer {
        addr,
        engine,
        clock,
        data,
        stop: Some(tx),
        handle: Some(handle),
    }
}

pub fn ev(offset_s: i64, kind: Kind) -> pb::Event {
    pb::Event {
        at_ms: NOW_MS - 600_000 + offset_s * 1_000,
        kind: Some(kind),
    }
}

/// The event at the server's current time (`at_ms = 0`), for tests that
/// move the clock past the window the fixed event times fall in.
pub fn at_now(e: pb::Event) -> pb::Event {
    pb::Event { at_ms: 0, ..e }
}

/// The events moved from the fixed test "now" ([`NOW_MS`]) to the system
/// clock's, spacing kept: for the real binary, which refuses event times
/// outside the session window of its own clock.
pub fn on_system_clock(events: Vec<pb::Event>) -> Vec<pb::Event> {
    let now_ms = nudge::clock::SystemClock.now_ms();
    events
        .into_iter()
        .map(|e| pb::Event {
            at_ms: e.at_ms - NOW_MS + now_ms,
            ..e
        })
        .collect()
}

pub fn page(offset_s: i64, page_kind: pb::PageKind, dwell_s: u32) -> pb::Event {
    ev(
        offset_s,
        Kind::PageView(pb::PageView {
            page_kind: page_kind as i32,
            product_id: String::new(),
            price_cents: 0,
            dwell_ms: dwell_s * 1_000,
            scroll_depth: 0.4,
        }),
    )
}

pub fn product(offset_s: i64, id: &str, price_cents: i64, dwell_s: u32, scroll: f32) -> pb::Event {
    ev(
        offset_s,
        Kind::PageView(pb::PageView {
            page_kind: pb::PageKind::Product as i32,
            product_id: id.into(),
            price_cents,
            dwell_ms: dwell_s * 1_000,
            scroll_depth: scroll,
        }),
    )
}

pub fn cart_add(offset_s: i64, id: &str, unit_price_cents: i64, quantity: u32) -> pb::Event {
    ev(
        offset_s,
        Kind::CartAdd(pb::CartChange {
            product_id: id.into(),
            unit_price_cents,
            quantity,
        }),
    )
}

pub fn step(offset_s: i64, step: u32) -> pb::Event {
    ev(offset_s, Kind::CheckoutStep(pb::CheckoutStep { step }))
}

pub fn signal(offset_s: i64, s: pb::Signal) -> pb::Event {
    ev(
        offset_s,
        Kind::Interaction(pb::Interaction { signal: s as i32 }),
    )
}

pub fn decide(session_id: &str, events: Vec<pb::Event>) -> pb::DecideRequest {
    pb::DecideRequest {
        session_id: session_id.into(),
        visitor_id: format!("v-{session_id}"),
        context: Some(pb::SessionContext {
            device: pb::Device::Desktop as i32,
            traffic_source: pb::TrafficSource::Search as i32,
            returning_visitor: false,
            prior_orders: 0,
        }),
        events,
        ..Default::default()
    }
}

pub fn reason(r: &pb::DecideResponse) -> pb::Reason {
    pb::Reason::try_from(r.reason).unwrap()
}

pub fn segment(r: &pb::DecideResponse) -> pb::Segment {
    pb::Segment::try_from(r.segment).unwrap()
}

/// Starts the real `nudge` binary with `args` (plus `--listen 127.0.0.1:0`)
/// and `envs`, from the crate root; returns the child and the address it
/// logged. The caller kills and waits for the child.
pub fn spawn_nudge(
    args: &[&std::ffi::OsStr],
    envs: &[(&str, &str)],
) -> (std::process::Child, String) {
    let (child, addr, _) = spawn_nudge_with_logs(args, envs);
    (child, addr)
}

/// [`spawn_nudge`] with another build of the binary (measurements compare
/// builds).
pub fn spawn_nudge_bin(
    bin: &Path,
    args: &[&std::ffi::OsStr],
    envs: &[(&str, &str)],
) -> (std::process::Child, String) {
    spawn_logged(nudge_command(bin, args, envs))
}

/// The log lines of a `nudge` child: those up to its address, and the rest
/// as they come.
pub struct NudgeLogs {
    pub lines: Vec<String>,
    rx: std::sync::mpsc::Receiver<String>,
}

impl NudgeLogs {
    /// Every line so far, after waiting up to `quiet` for each further one.
    pub fn collect(&mut self, quiet: std::time::Duration) -> &[String] {
        while let Ok(line) = self.rx.recv_timeout(quiet) {
            self.lines.push(line);
        }
        &self.lines
    }
}

/// [`spawn_nudge`], also handing back the child's log lines.
pub fn spawn_nudge_with_logs(
    args: &[&std::ffi::OsStr],
    envs: &[(&str, &str)],
) -> (std::process::Child, String, NudgeLogs) {
    // Tests run side by side: the admin server takes a free port too.
    let mut all: Vec<&std::ffi::OsStr> = vec!["--admin-listen".as_ref(), "127.0.0.1:0".as_ref()];
    all.extend_from_slice(args);
    spawn_logged_with_logs(nudge_command(
        env!("CARGO_BIN_EXE_nudge").as_ref(),
        &all,
        envs,
    ))
}

/// The admin address a `nudge` child logged (`serving admin addr=...`,
/// before its gRPC address).
pub fn admin_addr(logs: &NudgeLogs) -> String {
    logs.lines
        .iter()
        .filter(|l| l.contains("serving admin"))
        .find_map(|l| l.split("addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the server logs its admin address")
        .to_owned()
}

/// `GET path` over HTTP/1.1 on a fresh connection: the status code and the
/// body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect to the admin server");
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_owned())
}

/// One HTTP/1.1 request on a fresh connection (`headers` as `Name: value`
/// lines, `body` sent as is): the status code and the body.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect to the admin server");
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).unwrap();
    tcp.write_all(body.as_bytes()).unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_owned())
}

/// `bin serve --listen 127.0.0.1:0 args...` from the crate root, logging at
/// info to a pipe.
fn nudge_command(
    bin: &Path,
    args: &[&std::ffi::OsStr],
    envs: &[(&str, &str)],
) -> std::process::Command {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Spawns `cmd` (which runs `nudge serve` and pipes its stderr) and waits
/// for the address it logs, as [`spawn_nudge`] does.
pub fn spawn_logged(cmd: std::process::Command) -> (std::process::Child, String) {
    let (child, addr, _) = spawn_logged_with_logs(cmd);
    (child, addr)
}

/// [`spawn_logged`], also handing back the child's log lines.
// If start-up fails the test panics and the child dies with its pipes.
#[allow(clippy::zombie_processes)]
pub fn spawn_logged_with_logs(
    mut cmd: std::process::Command,
) -> (std::process::Child, String, NudgeLogs) {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    let mut child = cmd.spawn().expect("spawn nudge");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut logs = NudgeLogs {
        lines: Vec::new(),
        rx,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = logs
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the server logs its address");
        if let Some(rest) = line
            .split("addr=")
            .nth(1)
            .filter(|_| line.contains("serving grpc"))
        {
            let addr = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            logs.lines.push(line);
            return (child, addr, logs);
        }
        logs.lines.push(line);
    }
}
