//! Ops changing campaigns on the running binary through the admin API: a
//! cap, the pause switch, the audit trail, a restart, the config file
//! changed, and two replicas on one Redis.

use crate::crash::eligible;
use crate::util::{self, admin_addr, http_get, http_request};
use nudge::grpc::pb;
use pb::offers_client::OffersClient;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const SECRET: &str = "ops-test secret, not for production";

/// A model and policy under which every `eligible` session is offered a
/// voucher (no holdout, no exploration, no pacing).
fn config(extra_budget: &str) -> String {
    format!(
        "model = \"tests/fixtures/flat_hesitant.json\"\n\
         [budget]\n{extra_budget}\n\
         [policy]\noffer_on_priors = true\n\
         [experiment]\nholdout_share = 0.0\nexplore_share = 0.0\n\
         [pacing]\nenabled = false\n"
    )
}

struct Nudge {
    child: std::process::Child,
    addr: String,
    admin: String,
    logs: util::NudgeLogs,
}

impl Nudge {
    fn start(config: &Path, data: &Path, extra: &[&str]) -> Nudge {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--config".as_ref(),
            config.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ];
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        let (child, addr, logs) =
            util::spawn_nudge_with_logs(&args, &[("NUDGE_VOUCHER_SECRET", SECRET)]);
        let admin = admin_addr(&logs);
        Nudge {
            child,
            addr,
            admin,
            logs,
        }
    }

    async fn client(&self) -> OffersClient<Channel> {
        OffersClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    fn stop(mut self) {
        // SIGTERM: a graceful stop, as an operator restarts it.
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Nudge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn api(admin: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut headers = vec!["Content-Type: application/json"];
    if let Some(a) = &auth {
        headers.push(a);
    }
    let (status, text) = http_request(admin, method, path, &headers, body);
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

async fn decide(client: &mut OffersClient<Channel>, session: &str) -> pb::DecideResponse {
    client
        .decide(eligible(session.to_owned()))
        .await
        .unwrap()
        .into_inner()
}

async fn budget(client: &mut OffersClient<Channel>) -> pb::BudgetResponse {
    client
        .budget(pb::BudgetRequest::default())
        .await
        .unwrap()
        .into_inner()
}

fn reason(r: &pb::DecideResponse) -> pb::Reason {
    pb::Reason::try_from(r.reason).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_and_pause_change_live_are_audited_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("nudge.toml");
    std::fs::write(&config_path, config("daily_cap_cents = 150000")).unwrap();
    let data = dir.path().join("data");
    let mut nudge = Nudge::start(&config_path, &data, &[]);
    let mut client = nudge.client().await;

    let first = decide(&mut client, "ops-1").await;
    assert_eq!(reason(&first), pb::Reason::Offered);
    let offer = first.offer.clone().unwrap();

    // A cap lowered to today's spend: the next Decide gets nothing, the
    // voucher already given stays redeemable.
    let (status, body) = api(
        &nudge.admin,
        "PATCH",
        "/api/v1/campaigns/default",
        None,
        &format!(
            r#"{{"daily_cap_cents": {}, "reason": "spend review"}}"#,
            offer.amount_cents
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["campaign"]["daily_cap_cents"], offer.amount_cents);
    for s in ["ops-2", "ops-2b", "ops-2c"] {
        assert_eq!(
            reason(&decide(&mut client, s).await),
            pb::Reason::BudgetExhausted
        );
    }
    // The run-out is announced once, not once per refused decision.
    let (_, metrics) = http_get(&nudge.admin, "/metrics");
    assert!(
        metrics.contains("nudge_budget_exhausted_total{campaign=\"default\"} 1"),
        "{metrics}"
    );
    let b = budget(&mut client).await;
    assert_eq!((b.cap_cents, b.remaining_cents), (offer.amount_cents, 0));
    let redeemed = client
        .redeem(pb::RedeemRequest {
            voucher_code: offer.voucher_code.clone(),
            session_id: "ops-1".into(),
            order_value_cents: 20_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(redeemed.status, pb::RedeemStatus::Accepted as i32);

    // Pause, then resume with room again.
    let (status, body) = api(
        &nudge.admin,
        "PATCH",
        "/api/v1/campaigns/default",
        None,
        r#"{"daily_cap_cents": 100000, "paused": true, "reason": "stock-out"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        reason(&decide(&mut client, "ops-3").await),
        pb::Reason::Paused
    );
    let (status, _) = api(
        &nudge.admin,
        "PATCH",
        "/api/v1/campaigns/default",
        None,
        r#"{"paused": false, "reason": "restocked"}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        reason(&decide(&mut client, "ops-4").await),
        pb::Reason::Offered
    );

    // Bad changes name the field and change nothing.
    let (status, body) = api(
        &nudge.admin,
        "PATCH",
        "/api/v1/campaigns/default",
        None,
        r#"{"daily_cap_cents": -5}"#,
    );
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("daily_cap_cents")),
        "{body}"
    );
    let (status, body) = api(
        &nudge.admin,
        "PATCH",
        "/api/v1/campaigns/default",
        None,
        r#"{"cap": 1}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("unknown field"),
        "{body}"
    );
    let (status, _) = api(
        &nudge.admin,
        "PATCH",
        "/api/v1/campaigns/nope",
        None,
        r#"{"paused": true}"#,
    );
    assert_eq!(status, 404);
    let (status, _) = http_request(
        &nudge.admin,
        "PATCH",
        "/api/v1/campaigns/default",
        &["Content-Type: application/x-www-form-urlencoded"],
        "paused=true",
    );
    assert_eq!(status, 415, "a form post is not a change");
    let (status, _) = http_request(
        &nudge.admin,
        "PATCH",
        "/api/v1/campaigns/default",
        &[
            "Content-Type: application/json",
            "Origin: http://evil.example",
        ],
        r#"{"paused": true}"#,
    );
    assert_eq!(status, 403, "a cross-site change is refused");

    // A new campaign, used at once.
    let (status, body) = api(
        &nudge.admin,
        "POST",
        "/api/v1/campaigns",
        None,
        r#"{"id": "xmas", "daily_cap_cents": 5000, "tiers": [500, 1000], "reason": "season"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let r = client
        .decide(pb::DecideRequest {
            campaign: "xmas".into(),
            ..eligible("ops-5".into())
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reason(&r), pb::Reason::Offered);
    assert!(
        r.offer.unwrap().amount_cents <= 1_000,
        "only the campaign's tiers"
    );
    let (status, _) = api(
        &nudge.admin,
        "POST",
        "/api/v1/campaigns",
        None,
        r#"{"id": "xmas", "daily_cap_cents": 1}"#,
    );
    assert_eq!(status, 409);

    // The audit trail: newest first, who, when, before, after, why.
    let (status, body) = api(
        &nudge.admin,
        "GET",
        "/api/v1/audit?campaign=default",
        None,
        "",
    );
    assert_eq!(status, 200);
    let entries = body["entries"].as_array().unwrap();
    let reasons: Vec<&str> = entries
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "restocked",
            "stock-out",
            "spend review",
            "set by the config file"
        ]
    );
    let pause = &entries[1];
    assert_eq!(pause["actor"], "local");
    assert_eq!(pause["before"]["paused"], false);
    assert_eq!(pause["after"]["paused"], true);
    assert!(pause["at"].as_str().unwrap().ends_with('Z'), "{pause}");
    assert!(
        pause["changes"]
            .as_str()
            .unwrap()
            .contains("paused: false -> true"),
        "{pause}"
    );

    // Spend history: today's offers are in it.
    let (status, body) = api(
        &nudge.admin,
        "GET",
        "/api/v1/spend?campaign=default",
        None,
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = api(
        &nudge.admin,
        "GET",
        "/api/v1/spend?from=2026-13-01",
        None,
        "",
    );
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("from")),
        "{body}"
    );

    // A restart keeps every change in force.
    let (status, _) = api(
        &nudge.admin,
        "PATCH",
        "/api/v1/campaigns/default",
        None,
        r#"{"daily_cap_cents": 77700, "reason": "before restart"}"#,
    );
    assert_eq!(status, 200);
    let mut logs = std::mem::replace(&mut nudge.logs, util::NudgeLogs::empty());
    let lines = logs.collect(Duration::from_millis(200)).to_vec();
    let count = |what: &str| lines.iter().filter(|l| l.contains(what)).count();
    assert_eq!(count("campaign budget exhausted"), 1, "{lines:#?}");
    assert_eq!(count("campaign paused"), 1, "{lines:#?}");
    nudge.stop();
    let nudge = Nudge::start(&config_path, &data, &[]);
    let mut client = nudge.client().await;
    assert_eq!(budget(&mut client).await.cap_cents, 77_700);
    let (_, body) = api(&nudge.admin, "GET", "/api/v1/campaigns/xmas", None, "");
    assert_eq!(
        body["tiers_cents"],
        serde_json::json!([500, 1000]),
        "{body}"
    );

    // The config file changed for the campaign: it wins, audited.
    nudge.stop();
    std::fs::write(&config_path, config("daily_cap_cents = 120000")).unwrap();
    let nudge = Nudge::start(&config_path, &data, &[]);
    let mut client = nudge.client().await;
    assert_eq!(budget(&mut client).await.cap_cents, 120_000);
    let (_, body) = api(&nudge.admin, "GET", "/api/v1/audit?limit=1", None, "");
    assert_eq!(body["entries"][0]["actor"], "config", "{body}");
    assert!(
        body["entries"][0]["changes"]
            .as_str()
            .unwrap()
            .contains("daily_cap_cents: 77700 -> 120000"),
        "{body}"
    );
    nudge.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_see_a_change_within_a_second_and_never_overspend_together() {
    let Some(redis) = crate::redis::redis_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("nudge.toml");
    let url = redis.settings("ops").url;
    std::fs::write(
        &config_path,
        format!(
            "{}[ledger]\nbackend = \"redis\"\n[sessions]\nbackend = \"redis\"\n\
             [redis]\nurl = \"{url}\"\nkey_prefix = \"ops\"\n",
            config("daily_cap_cents = 10000000")
        ),
    )
    .unwrap();
    let a = Nudge::start(&config_path, &dir.path().join("a"), &[]);
    let b = Nudge::start(&config_path, &dir.path().join("b"), &[]);

    // A pause on one replica reaches the other within a second.
    let t0 = Instant::now();
    let (status, _) = api(
        &a.admin,
        "PATCH",
        "/api/v1/campaigns/default",
        None,
        r#"{"paused": true, "reason": "drill"}"#,
    );
    assert_eq!(status, 200);
    let mut cb = b.client().await;
    let (mut n, mut drill_offered) = (0, 0);
    loop {
        n += 1;
        let r = decide(&mut cb, &format!("drill-{n}")).await;
        drill_offered += r.offer.as_ref().map_or(0, |o| o.amount_cents);
        if reason(&r) == pb::Reason::Paused {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "replica b still offers after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = t0.elapsed();
    let (_, body) = api(&b.admin, "GET", "/api/v1/campaigns/default", None, "");
    assert_eq!(body["paused"], true);
    println!("replica b applied the pause after {seen:?}");
    let (status, _) = api(
        &b.admin,
        "PATCH",
        "/api/v1/campaigns/default",
        None,
        r#"{"paused": false, "reason": "drill over"}"#,
    );
    assert_eq!(status, 200);

    // Both replicas under load while the cap is lowered on one of them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for (r, addr) in [(0, &a.addr), (1, &b.addr), (2, &a.addr), (3, &b.addr)] {
        let addr = addr.clone();
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let mut c = OffersClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
            let (mut i, mut offered) = (0u64, 0i64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let d = decide(&mut c, &format!("load-{r}-{i}")).await;
                offered += d.offer.map_or(0, |o| o.amount_cents);
            }
            offered
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ca = a.client().await;
    let spent = |b: &pb::BudgetResponse| b.reserved_cents + b.captured_cents;
    let before = spent(&budget(&mut ca).await);
    let new_cap = before + 40_000;
    let (status, body) = api(
        &a.admin,
        "PATCH",
        "/api/v1/campaigns/default",
        None,
        &format!(r#"{{"daily_cap_cents": {new_cap}, "reason": "lowered under load"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    let at_change = spent(&budget(&mut ca).await);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut offered = 0;
    for l in load {
        offered += l.await.unwrap();
    }
    let end_a = budget(&mut ca).await;
    let end_b = budget(&mut cb).await;
    assert_eq!(end_a.cap_cents, new_cap);
    assert_eq!(
        end_b.cap_cents, new_cap,
        "replica b reports the lowered cap"
    );
    let end = spent(&end_a);
    assert_eq!(
        end,
        offered + drill_offered,
        "the ledger holds exactly what was offered"
    );
    assert!(
        end <= new_cap.max(at_change),
        "spent {end} over the lowered cap {new_cap} (spent {at_change} when it was set)"
    );
    assert_eq!(end_a.remaining_cents, (new_cap - end).max(0));
    println!("before {before}, at change {at_change}, cap {new_cap}, end {end}");
    drop(a);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_need_an_operator_token_and_the_audit_names_it() {
    const OPS: &str = "operator-token-of-the-ops-test";
    const DASH: &str = "viewer-token-of-the-ops-test";
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("nudge.toml");
    std::fs::write(
        &config_path,
        format!(
            "{}[admin]\ntokens = [\n  {{ name = \"ops\", token = \"{OPS}\", role = \"operator\" }},\n  \
             {{ name = \"dash\", token = \"{DASH}\", role = \"viewer\" }},\n]\n",
            config("daily_cap_cents = 150000")
        ),
    )
    .unwrap();
    let nudge = Nudge::start(&config_path, &dir.path().join("data"), &[]);
    let change = r#"{"paused": true, "reason": "token drill"}"#;
    let path = "/api/v1/campaigns/default";

    let (status, body) = api(&nudge.admin, "PATCH", path, None, change);
    assert_eq!(status, 401, "{body}");
    let (status, _) = api(&nudge.admin, "GET", path, None, "");
    assert_eq!(status, 401, "reads need a token too");
    let (status, _) = api(
        &nudge.admin,
        "PATCH",
        path,
        Some("not-a-token-at-all"),
        change,
    );
    assert_eq!(status, 401);
    let (status, body) = api(&nudge.admin, "PATCH", path, Some(DASH), change);
    assert_eq!(status, 403, "{body}");
    let (status, body) = api(&nudge.admin, "GET", path, Some(DASH), "");
    assert_eq!(
        (status, &body["paused"]),
        (200, &Value::Bool(false)),
        "{body}"
    );
    let (status, body) = api(&nudge.admin, "PATCH", path, Some(OPS), change);
    assert_eq!(status, 200, "{body}");
    // Probes and metrics stay open for orchestrators and Prometheus.
    assert_eq!(http_get(&nudge.admin, "/healthz").0, 200);
    assert_eq!(http_get(&nudge.admin, "/metrics").0, 200);

    let (status, body) = api(&nudge.admin, "GET", "/api/v1/audit?limit=1", Some(DASH), "");
    assert_eq!(status, 200);
    let entry = &body["entries"][0];
    assert_eq!(entry["actor"], "ops", "{entry}");
    assert_eq!(entry["reason"], "token drill");
    assert!(
        !body.to_string().contains(OPS),
        "the audit never holds a token"
    );
}
