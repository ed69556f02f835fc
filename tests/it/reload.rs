//! The model and the config's policy sections go live in the running
//! binary: a model file replaced on disk, a corrupt one refused, SIGHUP
//! with a changed policy, a setting that needs a restart and an invalid
//! config.

use crate::crash::eligible;
use crate::util::{self, admin_addr, http_get};
use nudge::grpc::pb;
use pb::offers_client::OffersClient;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const SECRET: &str = "reload-test secret, not for production";

/// The fixture model under which every session is hesitant, as version
/// `version`.
pub(crate) fn model_json(version: &str) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flat_hesitant.json"),
    )
    .unwrap();
    text.replace("flat-hesitant-test", version)
}

/// Writes `text` to `path` as a model publisher should: a temporary file
/// renamed over the old one.
pub(crate) fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub(crate) fn config(model: &Path, listen: &str, min_intent_cents: i64) -> String {
    format!(
        "model = {model:?}\nlisten = {listen:?}\n\
         [policy]\noffer_on_priors = true\nmin_intent_cents = {min_intent_cents}\n\
         [experiment]\nholdout_share = 0.0\nexplore_share = 0.0\n\
         [pacing]\nenabled = false\n"
    )
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct Nudge {
    pub child: std::process::Child,
    pub addr: String,
    pub admin: String,
    logs: util::NudgeLogs,
}

impl Nudge {
    /// `nudge serve` on the config file alone, so that a reload sees its
    /// `listen` as the start did.
    pub fn start(config: &Path, data: &Path) -> Nudge {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"));
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .args(["--admin-listen", "127.0.0.1:0"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RUST_LOG", "info")
            .env("NUDGE_VOUCHER_SECRET", SECRET)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        let (child, addr, logs) = util::spawn_logged_with_logs(cmd);
        let admin = admin_addr(&logs);
        Nudge {
            child,
            addr,
            admin,
            logs,
        }
    }

    pub async fn client(&self) -> OffersClient<Channel> {
        OffersClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    fn hangup(&self) {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn still_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the same process serves"
        );
    }

    /// The log lines so far that contain every one of `parts`.
    pub fn lines_with(&mut self, parts: &[&str]) -> Vec<String> {
        self.logs
            .collect(Duration::from_millis(200))
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .cloned()
            .collect()
    }
}

impl Drop for Nudge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn decide(
    client: &mut OffersClient<Channel>,
    session: &str,
) -> pb::DecideResponse {
    client
        .decide(eligible(session.to_owned()))
        .await
        .unwrap()
        .into_inner()
}

fn reason(r: &pb::DecideResponse) -> pb::Reason {
    pb::Reason::try_from(r.reason).unwrap()
}

/// Waits up to `within` for `check` to hold on a fresh Decide.
pub(crate) async fn eventually<F: Fn(&pb::DecideResponse) -> bool>(
    client: &mut OffersClient<Channel>,
    prefix: &str,
    within: Duration,
    check: F,
) -> pb::DecideResponse {
    let deadline = Instant::now() + within;
    for i in 0.. {
        let d = decide(client, &format!("{prefix}-{i}")).await;
        if check(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {d:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replaced_model_file_goes_live_and_a_corrupt_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    std::fs::write(&model, model_json("reload-a")).unwrap();
    let config_path = dir.path().join("nudge.toml");
    std::fs::write(&config_path, config(&model, "127.0.0.1:0", 100)).unwrap();
    let mut nudge = Nudge::start(&config_path, &dir.path().join("data"));
    let mut client = nudge.client().await;
    assert_eq!(decide(&mut client, "first").await.model_version, "reload-a");

    // Callers throughout the swap: none fails, none goes back to A.
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for t in 0..8 {
        let (stop, mut client) = (stop.clone(), nudge.client().await);
        callers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .decide(eligible(format!("caller-{t}-{i}")))
                    .await
                    .expect("no call fails during a reload");
                seen.push(r.into_inner().model_version);
                i += 1;
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_atomically(&model, &model_json("reload-b"));
    let swapped = Instant::now();
    eventually(&mut client, "after", Duration::from_secs(5), |d| {
        d.model_version == "reload-b"
    })
    .await;
    assert!(swapped.elapsed() < Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        let seen = c.await.unwrap();
        assert!(!seen.is_empty());
        let first_b = seen.iter().position(|v| v == "reload-b");
        let first_b = first_b.expect("every caller sees the new model");
        assert!(seen[..first_b].iter().all(|v| v == "reload-a"), "{seen:?}");
        assert!(seen[first_b..].iter().all(|v| v == "reload-b"), "{seen:?}");
    }
    nudge.still_running();
    assert_eq!(
        nudge.lines_with(&["model file reloaded", "reload-b"]).len(),
        1
    );

    // Ops see which model is live.
    let b = client
        .budget(pb::BudgetRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.model_version, "reload-b");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = http_get(&nudge.admin, "/readyz");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        if json["model_version"] == "reload-b" {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, metrics) = http_get(&nudge.admin, "/metrics");
    assert!(
        metrics.contains("nudge_model_info{version=\"reload-b\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("nudge_model_info{version=\"reload-a\"} 0"),
        "{metrics}"
    );

    // A truncated file, written twice, then a model this build refuses:
    // B keeps serving, each reason is logged once with the path.
    let b_text = model_json("reload-b");
    let truncated = &b_text[..b_text.len() / 2];
    write_atomically(&model, truncated);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    write_atomically(&model, &format!("{truncated} "));
    write_atomically(&model, truncated);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        decide(&mut client, "corrupt").await.model_version,
        "reload-b"
    );
    write_atomically(
        &model,
        &model_json("reload-c").replace("nudge-model/1", "nudge-model/999"),
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        decide(&mut client, "invalid").await.model_version,
        "reload-b"
    );
    let path = model.display().to_string();
    let refused = nudge.lines_with(&["model file refused", &path]);
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert!(refused[0].contains("not valid JSON"), "{refused:#?}");
    assert!(refused[1].contains("nudge-model/999"), "{refused:#?}");
    nudge.still_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_the_policy_and_keeps_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.json");
    std::fs::write(&model, model_json("reload-a")).unwrap();
    let config_path = dir.path().join("nudge.toml");
    let listen = format!("127.0.0.1:{}", free_port());
    std::fs::write(&config_path, config(&model, &listen, 100)).unwrap();
    let mut nudge = Nudge::start(&config_path, &dir.path().join("data"));
    assert_eq!(nudge.addr, listen);
    let mut client = nudge.client().await;
    assert_eq!(
        reason(&decide(&mut client, "before").await),
        pb::Reason::Offered
    );

    // The session's intent (20000 cents) is now below the floor; the
    // listen address changed too but needs a restart.
    let elsewhere = format!("127.0.0.1:{}", free_port());
    std::fs::write(&config_path, config(&model, &elsewhere, 50_000)).unwrap();
    nudge.hangup();
    eventually(&mut client, "raised", Duration::from_secs(5), |d| {
        reason(d) == pb::Reason::IntentTooLow
    })
    .await;
    nudge.still_running();
    let warned = nudge.lines_with(&["setting needs a restart", "listen"]);
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(std::net::TcpStream::connect(&elsewhere).is_err());
    let mut again = nudge.client().await;
    assert_eq!(
        reason(&decide(&mut again, "old-address").await),
        pb::Reason::IntentTooLow
    );

    // An invalid config (a lower floor with an unknown field) changes
    // nothing.
    let invalid = format!("{}bogus_setting = 1\n", config(&model, &listen, 100));
    std::fs::write(&config_path, invalid).unwrap();
    nudge.hangup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while nudge.lines_with(&["config reload refused"]).is_empty() {
        assert!(Instant::now() < deadline, "the refusal is logged");
    }
    let refused = nudge.lines_with(&["config reload refused"]);
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(refused[0].contains("bogus_setting"), "{refused:#?}");
    assert_eq!(
        reason(&decide(&mut client, "after-invalid").await),
        pb::Reason::IntentTooLow
    );
    nudge.still_running();
}
