//! The client examples a shop copies (clients/: Node and Python over gRPC,
//! PHP over the JSON API) run against the real binary: each one's whole
//! flow (Track, Decide with an offer, Redeem, RecordOutcome twice), the
//! voucher captured on the server's side, the page going on without a
//! voucher when nudge does not answer in time, and a refused request
//! printed with the field path of its `google.rpc.BadRequest` detail (the
//! JSON body's `field_violations` in PHP). A missing runtime skips
//! its test with a message, except under CI (`CI` set), where `.ci/run`
//! installs them all and a missing one is a failure.

use crate::util::{self, admin_addr, http_get};
use serde_json::Value;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

const SECRET: &str = "clients-test secret, not for production";

/// A generous bound on one example run (a cold `node` or `python3` start
/// and stub generation on a loaded machine), so a hung client fails the
/// test instead of hanging it.
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn clients(dir: &str) -> PathBuf {
    repo().join("clients").join(dir)
}

/// Whether `probe` succeeds. When it does not, the test skips with a
/// message naming what is missing, unless CI is set: there the runtime
/// is part of the environment and its absence fails the test.
fn runtime_present(runtime: &str, install: &str, probe: &mut Command) -> bool {
    let ok = probe
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{runtime} is missing under CI (.ci/run installs it: {install})"
        );
        eprintln!("skipped: {runtime} not found ({install} to run this test)");
    }
    ok
}

/// `nudge serve` with a config under which every session is hesitant and
/// every eligible visitor gets the greedy offer: the fixture model (p =
/// 0.3 for every session), offers on the configured priors, no holdout,
/// no exploration, no pacing. The examples themselves assume none of it.
struct Server {
    child: std::process::Child,
    addr: String,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("nudge.toml");
        let data = dir.path().join("data");
        let model = repo().join("tests/fixtures/flat_hesitant.json");
        std::fs::write(
            &config,
            format!(
                "model = {model:?}\n\
                 [policy]\noffer_on_priors = true\n\
                 [experiment]\nholdout_share = 0.0\nexplore_share = 0.0\ncold_explore_share = 0.0\n\
                 [pacing]\nenabled = false\n"
            ),
        )
        .unwrap();
        let args: [&OsStr; 4] = [
            "--config".as_ref(),
            config.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ];
        let (child, addr, logs) =
            util::spawn_nudge_with_logs(&args, &[("NUDGE_VOUCHER_SECRET", SECRET)]);
        let admin = admin_addr(&logs);
        Server {
            child,
            addr,
            admin,
            _dir: dir,
        }
    }

    /// Today's captured cents and offers, all campaigns, from the admin
    /// API's spend history.
    fn spend_today(&self) -> (i64, u64) {
        let (status, body) = http_get(&self.admin, "/api/v1/spend");
        assert_eq!(status, 200, "{body}");
        let spend: Value = serde_json::from_str(&body).unwrap();
        let mut captured = 0;
        let mut offers = 0;
        for campaign in spend["campaigns"].as_array().expect("campaigns") {
            for day in campaign["days"].as_array().expect("days") {
                captured += day["captured_cents"].as_i64().expect("captured_cents");
                offers += day["offers"].as_u64().expect("offers");
            }
        }
        (captured, offers)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that takes connections and never answers (the kernel
/// completes the handshakes; nothing reads): every call runs into its
/// deadline, as against a hung nudge. Silent while the listener lives.
fn silent_server() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// The refusing server's answer: a message that names no field, and a
/// `google.rpc.BadRequest` detail that does.
const REFUSAL: &str = "refused by the test server";
const REFUSED_FIELD: &str = "events[3].page_view.price_cents";
const REFUSED_WHY: &str = "must not be negative";

/// A gRPC server that refuses every call of `nudge.v1.Offers` with
/// `INVALID_ARGUMENT`, [`REFUSAL`] as the message and the field path only in
/// the detail: an example that prints [`REFUSED_FIELD`] decoded the
/// `grpc-status-details-bin` trailer, it did not parse the message. It
/// serves until the runtime is dropped.
fn refusing_server() -> (tokio::runtime::Runtime, String) {
    #[derive(Clone)]
    struct Refuse;
    impl tonic::server::NamedService for Refuse {
        const NAME: &'static str = "nudge.v1.Offers";
    }
    impl tower::Service<http::Request<tonic::body::Body>> for Refuse {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
            let details = ErrorDetails::with_bad_request_violation(REFUSED_FIELD, REFUSED_WHY);
            let status = tonic::Status::with_error_details(Code::InvalidArgument, REFUSAL, details);
            std::future::ready(Ok(status.into_http()))
        }
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(Refuse)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (runtime, addr)
}

/// The example `clients/<dir>/<file>` as a shop might break it, `from`
/// replaced by `to`, in a temporary tree laid out as the repository's
/// (`proto/` and any `node_modules` linked in), so that the paths the
/// example finds from its own location still hold. Keep the tree while
/// the copy runs.
fn broken_copy(dir: &str, file: &str, from: &str, to: &str) -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(clients(dir).join(file)).unwrap();
    let broken = text.replace(from, to);
    assert_ne!(
        broken, text,
        "clients/{dir}/{file} computes event times in one place: {from}"
    );
    let tree = tempfile::tempdir().unwrap();
    let copy_dir = tree.path().join("clients").join(dir);
    std::fs::create_dir_all(&copy_dir).unwrap();
    std::os::unix::fs::symlink(repo().join("proto"), tree.path().join("proto")).unwrap();
    let modules = clients(dir).join("node_modules");
    if modules.exists() {
        std::os::unix::fs::symlink(modules, copy_dir.join("node_modules")).unwrap();
    }
    let copy = copy_dir.join(file);
    std::fs::write(&copy, broken).unwrap();
    (tree, copy)
}

/// A gRPC example with event times in seconds, against the real server:
/// Track is refused, the message and the detail's field violation printed.
fn check_refused_seconds(ok: bool, out: &str) {
    assert!(!ok, "a refused request is an error:\n{out}");
    assert!(
        out.contains("track failed: INVALID_ARGUMENT: events[0].at_ms: "),
        "{out}"
    );
    let violation = out
        .lines()
        .find(|l| l.starts_with("  field events[0].at_ms: "))
        .unwrap_or_else(|| panic!("the field violation is printed: {out}"));
    assert!(
        violation.ends_with("looks like seconds since the epoch; event times are milliseconds"),
        "{out}"
    );
}

/// A gRPC example against [`refusing_server`]: the field path and
/// description printed come from the detail, the message has neither.
fn check_refused_detail(ok: bool, out: &str) {
    assert!(!ok, "a refused request is an error:\n{out}");
    assert!(
        out.contains(&format!("track failed: INVALID_ARGUMENT: {REFUSAL}\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("\n  field {REFUSED_FIELD}: {REFUSED_WHY}\n")),
        "the field violation of the google.rpc.BadRequest detail is printed: {out}"
    );
}

/// Runs `cmd` to its end (at most [`RUN_LIMIT`]): success, and stdout and
/// stderr together for the checks and the failure messages.
fn run(mut cmd: Command) -> (bool, String) {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let deadline = Instant::now() + RUN_LIMIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{shown} still running after {RUN_LIMIT:?}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The integer after `key=` on the line starting with `prefix`.
fn number(out: &str, prefix: &str, key: &str) -> i64 {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix(key)))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} ... {key}<n> in:\n{out}"))
}

/// The whole flow as every example prints it, and the capture on the
/// server's side.
fn check_flow(server: &Server, ok: bool, out: &str) {
    assert!(ok, "the example failed:\n{out}");
    assert!(out.contains("track: accepted=8 session_events=8"), "{out}");
    assert!(
        out.contains("segment=SEGMENT_HESITANT reason=REASON_OFFERED"),
        "an offer: {out}"
    );
    let amount = number(out, "offer: code=", "amount_cents=");
    assert!(amount > 0, "{out}");
    assert!(
        out.contains("redeem: status=REDEEM_STATUS_ACCEPTED"),
        "redeem accepted: {out}"
    );
    assert_eq!(number(out, "redeem:", "discount_cents="), amount, "{out}");
    assert_eq!(
        number(out, "redeem:", "to_pay_cents="),
        18_900 - amount,
        "{out}"
    );
    assert!(out.contains("\noutcome: recorded=true\n"), "{out}");
    assert!(
        out.contains("\noutcome again: recorded=false\n"),
        "the replayed outcome records nothing: {out}"
    );
    assert_eq!(
        server.spend_today(),
        (amount, 1),
        "the server captured the one voucher: {out}"
    );
}

/// Against a server that never answers: every call ends at its deadline
/// and fails open, the page shows no voucher and the example ends
/// normally.
fn check_fail_open(ok: bool, out: &str) {
    assert!(ok, "failing open is not a failure:\n{out}");
    let decide = out
        .lines()
        .find(|l| l.starts_with("decide: "))
        .unwrap_or_else(|| panic!("no decide line in:\n{out}"));
    assert!(
        decide.contains("DEADLINE_EXCEEDED") || decide.contains("timed out"),
        "{out}"
    );
    assert!(decide.ends_with("going on without it"), "{out}");
    assert!(
        out.contains("decision: unavailable: no voucher shown"),
        "{out}"
    );
    assert!(
        out.contains("offer: none: no voucher shown, skipping redeem"),
        "{out}"
    );
    assert!(!out.contains("redeem: status="), "{out}");
}

/// Whether node and the Node example's packages are there, running
/// `npm ci` in clients/node first when they are not (the same skip rules
/// as [`runtime_present`]).
fn node_modules_installed() -> bool {
    if !runtime_present(
        "node",
        "install Node.js 18 or newer with npm",
        Command::new("npm").arg("--version"),
    ) {
        return false;
    }
    // The Node tests run in parallel: one `npm ci` at a time, so that two
    // never write node_modules together on a fresh clone.
    static NPM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = NPM.lock().unwrap_or_else(|e| e.into_inner());
    let dir = clients("node");
    if !dir.join("node_modules").exists() {
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir);
        let (ok, out) = run(npm);
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "npm ci failed in clients/node:\n{out}"
            );
            eprintln!("skipped: npm ci failed in clients/node (no registry access?):\n{out}");
            return false;
        }
    }
    true
}

/// Whether python3 and the Python example's packages are there.
fn python_packages_installed() -> bool {
    runtime_present(
        "python3 with the packages of clients/python/requirements.txt",
        "pip install -r clients/python/requirements.txt",
        Command::new("python3").args([
            "-c",
            "import grpc, grpc_tools.protoc, grpc_status.rpc_status, google.rpc.error_details_pb2",
        ]),
    )
}

#[test]
fn node_example_runs_the_flow_over_grpc() {
    if !node_modules_installed() {
        return;
    }
    let dir = clients("node");
    let server = Server::start();
    let example = |addr: &str| {
        let mut cmd = Command::new("node");
        cmd.arg("example.js").arg(addr).current_dir(&dir);
        run(cmd)
    };
    let (ok, out) = example(&server.addr);
    check_flow(&server, ok, &out);
    let (_silent, addr) = silent_server();
    let (ok, out) = example(&addr);
    check_fail_open(ok, &out);
}

#[test]
fn php_example_runs_the_flow_over_json() {
    if !runtime_present(
        "php with the curl extension",
        "apt-get install php-cli php-curl",
        Command::new("php").args(["-r", "exit(function_exists('curl_init') ? 0 : 1);"]),
    ) {
        return;
    }
    let server = Server::start();
    let example = |addr: &str| {
        let mut cmd = Command::new("php");
        cmd.arg("example.php").arg(addr).current_dir(clients("php"));
        run(cmd)
    };
    let (ok, out) = example(&server.addr);
    check_flow(&server, ok, &out);
    let (_silent, addr) = silent_server();
    let (ok, out) = example(&addr);
    check_fail_open(ok, &out);
}

#[test]
fn php_example_prints_the_field_of_a_refused_request() {
    if !runtime_present(
        "php with the curl extension",
        "apt-get install php-cli php-curl",
        Command::new("php").args(["-r", "exit(function_exists('curl_init') ? 0 : 1);"]),
    ) {
        return;
    }
    // The example as a shop might break it: event times in seconds.
    let text = std::fs::read_to_string(clients("php").join("example.php")).unwrap();
    let broken = text.replace(
        "$now = (int) floor(microtime(true) * 1000);",
        "$now = time();",
    );
    assert_ne!(
        broken, text,
        "the example computes event times in one place"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seconds.php");
    std::fs::write(&file, broken).unwrap();
    let server = Server::start();
    let mut cmd = Command::new("php");
    cmd.arg(&file).arg(&server.addr);
    let (ok, out) = run(cmd);
    assert!(!ok, "a refused request is an error:\n{out}");
    assert!(
        out.contains("track failed: HTTP 400 INVALID_ARGUMENT"),
        "{out}"
    );
    assert!(
        out.contains("  field events[0].at_ms: "),
        "the field violation is printed: {out}"
    );
}

#[test]
fn node_example_prints_the_field_of_a_refused_request() {
    if !node_modules_installed() {
        return;
    }
    // The example as a shop might break it: event times in seconds.
    let (_tree, copy) = broken_copy(
        "node",
        "example.js",
        "const now = Date.now();",
        "const now = Math.floor(Date.now() / 1000);",
    );
    let example = |addr: &str| {
        let mut cmd = Command::new("node");
        cmd.arg(&copy).arg(addr);
        run(cmd)
    };
    let server = Server::start();
    let (ok, out) = example(&server.addr);
    check_refused_seconds(ok, &out);
    let (_runtime, addr) = refusing_server();
    let (ok, out) = example(&addr);
    check_refused_detail(ok, &out);
}

#[test]
fn python_example_prints_the_field_of_a_refused_request() {
    if !python_packages_installed() {
        return;
    }
    // The example as a shop might break it: event times in seconds.
    let (_tree, copy) = broken_copy(
        "python",
        "example.py",
        "now = int(time.time() * 1000)",
        "now = int(time.time())",
    );
    let example = |addr: &str| {
        let mut cmd = Command::new("python3");
        cmd.arg(&copy).arg(addr);
        run(cmd)
    };
    let server = Server::start();
    let (ok, out) = example(&server.addr);
    check_refused_seconds(ok, &out);
    let (_runtime, addr) = refusing_server();
    let (ok, out) = example(&addr);
    check_refused_detail(ok, &out);
}

#[test]
fn python_example_runs_the_flow_over_grpc() {
    if !python_packages_installed() {
        return;
    }
    let server = Server::start();
    let example = |addr: &str| {
        let mut cmd = Command::new("python3");
        cmd.arg("example.py")
            .arg(addr)
            .current_dir(clients("python"));
        run(cmd)
    };
    let (ok, out) = example(&server.addr);
    check_flow(&server, ok, &out);
    let (_silent, addr) = silent_server();
    let (ok, out) = example(&addr);
    check_fail_open(ok, &out);
}
