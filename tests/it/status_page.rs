//! The status page of the real binary in headless Chromium: sign in with
//! an operator token, pause the campaign through the page's form, and
//! Decide answers PAUSED; resume, and it offers again. Then a second model
//! is published: the page lists both, and its rollback button puts the
//! first back in service.

use crate::browser::{browser, PAGE_WAIT};
use crate::crash::eligible;
use crate::reload::{model_json, write_atomically};
use crate::util::{self, admin_addr, http_get};
use nudge::grpc::pb;
use std::time::{Duration, Instant};

const OPERATOR: &str = "operator-token-for-the-page-test";
const VIEWER: &str = "viewer-token-for-the-page-test";

async fn wait_for_cards(b: &crate::browser::Browser) -> Vec<String> {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let ids = b.campaigns().await;
        if !ids.is_empty() {
            return ids;
        }
        assert!(Instant::now() < deadline, "no campaign card appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the page's model history is `rows` (version, serving),
/// reloading it meanwhile (the page does not refresh by itself).
async fn wait_for_models(b: &crate::browser::Browser, url: &str, rows: &[(&str, bool)]) {
    let want: Vec<(String, bool)> = rows.iter().map(|(v, s)| (v.to_string(), *s)).collect();
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let got = b.models().await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page shows the models {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.goto(url).await;
    }
}

async fn wait_for_label(b: &crate::browser::Browser, campaign: &str, label: &str) {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        if !b.campaigns().await.is_empty() && b.toggle_label(campaign).await == label {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {label:?} for {campaign}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_through_the_status_page_changes_what_decide_answers() {
    let Some(b) = browser().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A copy of the fixture: the service rewrites its model file when a
    // rollback changes the live model.
    let model = dir.path().join("model.json");
    std::fs::write(&model, model_json("page-a")).unwrap();
    let config = dir.path().join("nudge.toml");
    std::fs::write(
        &config,
        format!(
            "model = {model:?}\n\
             [budget]\ndaily_cap_cents = 150000\n\
             [policy]\noffer_on_priors = true\n\
             [experiment]\nholdout_share = 0.0\nexplore_share = 0.0\n\
             [pacing]\nenabled = false\n\
             [admin]\ntokens = [\n  {{ name = \"ops\", token = \"{OPERATOR}\", role = \"operator\" }},\n  \
             {{ name = \"dash\", token = \"{VIEWER}\", role = \"viewer\" }},\n]\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let (mut child, addr, logs) = util::spawn_nudge_with_logs(
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ],
        &[(
            "NUDGE_VOUCHER_SECRET",
            "status-page test secret, not for production",
        )],
    );
    let admin = admin_addr(&logs);
    let mut client = pb::offers_client::OffersClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let authed = |session: &str| {
        let mut r = tonic::Request::new(eligible(session.to_owned()));
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {OPERATOR}").parse().unwrap(),
        );
        r
    };
    let first = client.decide(authed("page-1")).await.unwrap().into_inner();
    assert_eq!(first.reason, pb::Reason::Offered as i32);
    assert_eq!(first.model_version, "page-a");

    // Without a token the page holds no data: only the sign-in form.
    let (status, body) = http_get(&admin, "/");
    assert_eq!(status, 401);
    assert!(!body.contains("data-campaign"), "{body}");

    let url = format!("http://{admin}/");
    b.goto(&url).await;
    b.use_token(OPERATOR).await;
    assert_eq!(wait_for_cards(&b).await, ["default"]);
    assert_eq!(b.toggle_label("default").await, "Pause");
    b.screenshot("status_page_live").await;

    b.mark().await;
    b.toggle_pause("default", "stock-out, from the page").await;
    b.wait_reload().await;
    wait_for_label(&b, "default", "Resume").await;
    let paused = client.decide(authed("page-2")).await.unwrap().into_inner();
    assert_eq!(paused.reason, pb::Reason::Paused as i32);
    b.screenshot("status_page_paused").await;

    // The audit trail names the token, on the page and in the API.
    let page_text = b
        .js("return document.body.innerText;", vec![])
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        page_text.contains("stock-out, from the page"),
        "{page_text}"
    );
    assert!(page_text.contains("ops"), "{page_text}");

    b.mark().await;
    b.toggle_pause("default", "restocked").await;
    b.wait_reload().await;
    wait_for_label(&b, "default", "Pause").await;
    let again = client.decide(authed("page-3")).await.unwrap().into_inner();
    assert_eq!(again.reason, pb::Reason::Offered as i32);

    // A viewer reads the page but its change is refused, shown in the card.
    b.forget_token().await;
    b.goto(&url).await;
    b.use_token(VIEWER).await;
    wait_for_cards(&b).await;
    b.toggle_pause("default", "not allowed").await;
    let alert = b.wait_alert("default").await;
    assert!(alert.to_lowercase().contains("token"), "{alert}");
    let still = client.decide(authed("page-4")).await.unwrap().into_inner();
    assert_eq!(still.reason, pb::Reason::Offered as i32);
    // One model so far: nothing to roll back to.
    assert_eq!(b.models().await, [("page-a".to_owned(), true)]);
    assert!(b.rollback_disabled().await);

    // A second model, published as a retrain's would be: the file replaced.
    write_atomically(&model, &model_json("page-b"));
    let deadline = Instant::now() + Duration::from_secs(15);
    for i in 0.. {
        let d = client
            .decide(authed(&format!("page-b-{i}")))
            .await
            .unwrap()
            .into_inner();
        if d.model_version == "page-b" {
            break;
        }
        assert!(Instant::now() < deadline, "page-b never served: {d:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_models(&b, &url, &[("page-b", true), ("page-a", false)]).await;
    b.screenshot("status_page_models").await;

    // The viewer may not roll back: refused, shown, nothing changes.
    b.roll_back("not allowed").await;
    let refused = b.wait_text("models-error").await;
    assert!(refused.to_lowercase().contains("token"), "{refused}");
    assert_eq!(
        b.models().await,
        [("page-b".to_owned(), true), ("page-a".to_owned(), false)]
    );

    // No reason: the page asks for one and sends nothing.
    b.forget_token().await;
    b.goto(&url).await;
    b.use_token(OPERATOR).await;
    wait_for_models(&b, &url, &[("page-b", true), ("page-a", false)]).await;
    b.roll_back("").await;
    assert!(b.wait_text("models-error").await.contains("Reason"));

    // The operator rolls back: the page reloads with the previous model
    // served and says what happened; Decide answers with it.
    b.mark().await;
    b.roll_back("conversion dropped, from the page").await;
    b.wait_reload().await;
    let result = b.wait_text("models-result").await;
    assert!(
        result.contains("page-a is served again") && result.contains("page-b is out of service"),
        "{result}"
    );
    wait_for_models(&b, &url, &[("page-b", false), ("page-a", true)]).await;
    let page_text = b
        .js(
            "return document.getElementById('models').innerText;",
            vec![],
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        page_text.contains("conversion dropped, from the page") && page_text.contains("ops"),
        "{page_text}"
    );
    let chip = b
        .js(
            "return document.getElementById('model-version').textContent;",
            vec![],
        )
        .await;
    assert_eq!(chip, serde_json::json!("page-a"));
    let back = client.decide(authed("page-5")).await.unwrap().into_inner();
    assert_eq!(back.model_version, "page-a");
    assert_eq!(back.reason, pb::Reason::Offered as i32);
    // Nothing earlier than the first model: the button is off again.
    assert!(b.rollback_disabled().await);
    b.screenshot("status_page_rolled_back").await;

    b.close().await;
    let _ = child.kill();
    let _ = child.wait();
}
