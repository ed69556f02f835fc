//! The status page of the real binary in headless Chromium: sign in with
//! an operator token, pause the campaign through the page's form, and
//! Decide answers PAUSED; resume, and it offers again.

use crate::browser::{browser, PAGE_WAIT};
use crate::crash::eligible;
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
    let config = dir.path().join("nudge.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"tests/fixtures/flat_hesitant.json\"\n\
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

    b.close().await;
    let _ = child.kill();
    let _ = child.wait();
}
