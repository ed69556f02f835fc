//! Bearer tokens against the real binary: roles on the gRPC methods, the
//! decision calls open until a client token exists, the admin probes open,
//! tokens from the environment merged, and token values never printed.

use crate::util::{self, admin_addr, http_get};
use nudge::grpc::pb;
use nudge::grpc::pb::offers_client::OffersClient;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Code;

const OPS: &str = "ops-token-4d1f0c9a7e2b";
const VIEWER: &str = "viewer-token-9b3e1f7a2c";
const CLIENT: &str = "client-token-6a8d2e4f1b";
const ENV_VIEWER: &str = "env-viewer-token-5c7e9a1d3f";

struct Served {
    child: std::process::Child,
    addr: String,
    logs: util::NudgeLogs,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary with `config` as its config file, a fresh data directory.
fn serve(config: &str, envs: &[(&str, &str)]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nudge.toml");
    std::fs::write(&path, config).unwrap();
    let data = dir.path().join("data");
    let (child, addr, logs) = util::spawn_nudge_with_logs(
        &[
            "--config".as_ref(),
            path.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ],
        envs,
    );
    Served {
        child,
        addr,
        logs,
        _dir: dir,
    }
}

fn tokens_config(with_client: bool) -> String {
    let mut t = format!(
        "[admin]\ntokens = [\n  {{ name = \"ops\", role = \"operator\", token = \"{OPS}\" }},\n  {{ name = \"dash\", role = \"viewer\", token = \"{VIEWER}\" }},\n"
    );
    if with_client {
        t.push_str(&format!(
            "  {{ name = \"web\", role = \"client\", token = \"{CLIENT}\" }},\n"
        ));
    }
    t.push_str("]\n");
    t
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

async fn budget(ch: &Channel, token: Option<&str>) -> Result<pb::BudgetResponse, tonic::Status> {
    OffersClient::new(ch.clone())
        .budget(with_token(pb::BudgetRequest::default(), token))
        .await
        .map(|r| r.into_inner())
}

async fn decide(ch: &Channel, token: Option<&str>) -> Result<pb::DecideResponse, tonic::Status> {
    let req = util::decide(
        "auth-s",
        util::on_system_clock(vec![util::product(0, "jacket-a", 15_000, 20, 0.5)]),
    );
    OffersClient::new(ch.clone())
        .decide(with_token(req, token))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_guard_the_grpc_methods_and_decisions_stay_open_without_a_client_token() {
    let mut s = serve(&tokens_config(false), &[]);
    let ch = channel(&s.addr).await;

    assert_eq!(
        budget(&ch, None).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        budget(&ch, Some("not-a-configured-token-at-all"))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(budget(&ch, Some(VIEWER)).await.unwrap().campaign, "default");
    assert!(budget(&ch, Some(OPS)).await.is_ok());
    // No client token configured: the decision calls need none.
    assert!(decide(&ch, None).await.is_ok());
    // Health stays open.
    let health = tonic_health::pb::health_client::HealthClient::new(ch.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "nudge.v1.Offers".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");

    // The admin probes and metrics stay open (Prometheus scrapes without a
    // token).
    let admin = admin_addr(&s.logs);
    assert_eq!(http_get(&admin, "/healthz").0, 200);
    assert_eq!(http_get(&admin, "/metrics").0, 200);

    let logs = s.logs.collect(Duration::from_millis(300)).join("\n");
    for secret in [OPS, VIEWER] {
        assert!(!logs.contains(secret), "token in the logs:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_token_closes_the_decision_calls_and_env_tokens_merge() {
    let mut s = serve(
        &tokens_config(true),
        &[("NUDGE_ADMIN_TOKENS", &format!("board:viewer:{ENV_VIEWER}"))],
    );
    let ch = channel(&s.addr).await;

    assert_eq!(
        decide(&ch, None).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert!(decide(&ch, Some(CLIENT)).await.is_ok());
    assert!(decide(&ch, Some(OPS)).await.is_ok(), "operators may decide");
    assert_eq!(
        decide(&ch, Some(VIEWER)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let denied = budget(&ch, Some(CLIENT)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("web"), "{}", denied.message());
    assert!(!denied.message().contains(CLIENT));
    // The environment's token works next to the file's.
    assert!(budget(&ch, Some(ENV_VIEWER)).await.is_ok());
    assert!(budget(&ch, Some(VIEWER)).await.is_ok());

    let logs = s.logs.collect(Duration::from_millis(300)).join("\n");
    for secret in [OPS, VIEWER, CLIENT, ENV_VIEWER] {
        assert!(!logs.contains(secret), "token in the logs:\n{logs}");
    }
}

fn nudge(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn check_config_lists_tokens_without_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nudge.toml");
    std::fs::write(&path, tokens_config(true)).unwrap();
    let out = nudge(
        &["check-config", "--config", path.to_str().unwrap()],
        &[("NUDGE_ADMIN_TOKENS", &format!("board:viewer:{ENV_VIEWER}"))],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for secret in [OPS, VIEWER, CLIENT, ENV_VIEWER] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stdout}{stderr}"
        );
    }
    assert!(stdout.contains("name = \"ops\""), "{stdout}");
    assert!(stdout.contains("token = \"<redacted>\""), "{stdout}");
    assert!(stdout.contains("board (viewer)"), "{stdout}");

    // A name in both places is refused, naming the field; the token of
    // neither is shown.
    let out = nudge(
        &["check-config", "--config", path.to_str().unwrap()],
        &[("NUDGE_ADMIN_TOKENS", &format!("ops:viewer:{ENV_VIEWER}"))],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("NUDGE_ADMIN_TOKENS[0].name"), "{stderr}");
    assert!(
        !stderr.contains(ENV_VIEWER) && !stderr.contains(OPS),
        "{stderr}"
    );
}

#[test]
fn an_admin_port_beyond_loopback_needs_a_viewer_or_operator_token() {
    let data = tempfile::tempdir().unwrap();
    let serve = |envs: &[(&str, &str)]| {
        nudge(
            &[
                "check-config",
                "--admin-listen",
                "0.0.0.0:0",
                "--data-dir",
                data.path().to_str().unwrap(),
            ],
            envs,
        )
    };
    let out = serve(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("admin_listen"), "{stderr}");
    // A client token alone does not open the admin port either.
    let out = serve(&[("NUDGE_ADMIN_TOKENS", &format!("web:client:{CLIENT}"))]);
    assert!(!out.status.success());
    let out = serve(&[("NUDGE_ADMIN_TOKENS", &format!("dash:viewer:{VIEWER}"))]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The real start is refused the same way.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
            "--data-dir",
            data.path().to_str().unwrap(),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("admin_listen"), "{stderr}");
}

#[test]
fn grpc_beyond_loopback_without_tokens_is_warned_about() {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"));
    cmd.args([
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.path().to_str().unwrap(),
    ])
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .env("RUST_LOG", "info")
    .stderr(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null());
    let (mut child, _addr, logs) = util::spawn_logged_with_logs(cmd);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        logs.lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("no token configured")),
        "{:#?}",
        logs.lines
    );
}
