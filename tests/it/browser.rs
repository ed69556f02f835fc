//! The admin status page in a real headless Chromium, driven over
//! WebDriver (Debian's chromedriver): the page as rendered, its token
//! handling and the PATCH requests its controls send. A tiny axum server
//! here serves the page with its CSP and records what the page sends, so
//! these tests need no API; [`browser`] and the [`Browser`] helpers serve
//! end-to-end tests against the real `nudge serve` too.
//!
//! Without chromium and chromedriver the tests are skipped with a message,
//! except under CI (`CI` set), where .ci/run installs them and their
//! absence fails.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use nudge::admin::page::{self, AuditView, CampaignView, ModelRow, ModelsView, StatusView};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session and the chromedriver behind it (in its own
/// process group, Chromium included, killed on drop).
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// Starts chromedriver on a free port and opens a headless Chromium
/// session with a fresh profile; None (after saying why) when chromium or
/// chromedriver is not installed, a failure under CI.
pub async fn browser() -> Option<Browser> {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(bin).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{bin} is needed under CI (.ci/run installs chromium and chromium-driver)"
            );
            eprintln!(
                "skipped: {bin} not found; apt-get install chromium chromium-driver to run the browser tests"
            );
            return None;
        }
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().unwrap().port()
    };
    let driver = {
        use std::os::unix::process::CommandExt;
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group: Chromium's processes join it and die with it.
            .process_group(0)
            .spawn()
            .expect("start chromedriver")
    };
    let profile = tempfile::tempdir().unwrap();
    match connect(port, profile.path()).await {
        Ok(client) => Some(Browser {
            client,
            driver,
            _profile: profile,
        }),
        Err(e) => {
            kill_group(driver.id());
            panic!("no WebDriver session: {e}");
        }
    }
}

/// Waits for chromedriver to answer, then opens the session.
async fn connect(port: u16, profile: &Path) -> Result<Client, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("chromedriver did not listen on port {port}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let options = json!({
        "binary": CHROMIUM,
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            // Without these Chromium keeps calling home over this
            // machine's closed network.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            format!("--user-data-dir={}", profile.display()),
            "--window-size=1280,1600",
        ],
    });
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    // chromedriver speaks plain HTTP on loopback: no TLS stack needed.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .map_err(|e| e.to_string())
}

fn kill_group(pid: u32) {
    // The group chromedriver leads: it and the Chromium it started.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(self.driver.id());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// How long the helpers wait for the page.
pub const PAGE_WAIT: Duration = Duration::from_secs(15);

impl Browser {
    /// Ends the WebDriver session (Chromium quits), then drops the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("load the page");
    }

    /// Runs `script` in the page (`arguments[i]` are `args`).
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script {script:?} failed: {e}"))
    }

    /// The ids of the campaign cards, in page order.
    pub async fn campaigns(&self) -> Vec<String> {
        let v = self
            .js(
                "return Array.from(document.querySelectorAll('[data-campaign]'), e => e.getAttribute('data-campaign'));",
                vec![],
            )
            .await;
        serde_json::from_value(v).expect("a list of ids")
    }

    /// The card of `campaign`, found by comparing attribute values (ids may
    /// hold anything, no CSS quoting).
    pub async fn card(&self, campaign: &str) -> Element {
        let id = self
            .js(
                "const c = Array.from(document.querySelectorAll('[data-campaign]')).find(e => e.getAttribute('data-campaign') === arguments[0]); return c ? c.id : null;",
                vec![json!(campaign)],
            )
            .await;
        let id = id
            .as_str()
            .unwrap_or_else(|| panic!("no card for campaign {campaign:?}"));
        self.client
            .find(Locator::Id(id))
            .await
            .expect("the card by its id")
    }

    /// Types the operator token and clicks "Use token".
    pub async fn use_token(&self, token: &str) {
        let field = self
            .client
            .find(Locator::Id("token"))
            .await
            .expect("the token field");
        field.clear().await.unwrap();
        field.send_keys(token).await.unwrap();
        self.client
            .find(Locator::Id("use-token"))
            .await
            .expect("the Use token button")
            .click()
            .await
            .unwrap();
    }

    /// Clicks "Forget token".
    pub async fn forget_token(&self) {
        self.client
            .find(Locator::Id("forget-token"))
            .await
            .expect("the Forget token button")
            .click()
            .await
            .unwrap();
    }

    /// Types `reason` and clicks the campaign's Pause / Resume button.
    pub async fn toggle_pause(&self, campaign: &str, reason: &str) {
        let card = self.card(campaign).await;
        let group = card
            .find(Locator::Css("[data-action=pause]"))
            .await
            .unwrap();
        let field = group
            .find(Locator::Css("input[name=reason]"))
            .await
            .unwrap();
        field.clear().await.unwrap();
        field.send_keys(reason).await.unwrap();
        group
            .find(Locator::Css("button[name=toggle]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// The label of the campaign's toggle: "Pause" or "Resume".
    pub async fn toggle_label(&self, campaign: &str) -> String {
        let card = self.card(campaign).await;
        card.find(Locator::Css("button[name=toggle]"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Types `eur` as the daily cap with `reason` and clicks "Set cap".
    pub async fn set_cap(&self, campaign: &str, eur: &str, reason: &str) {
        let card = self.card(campaign).await;
        let group = card.find(Locator::Css("[data-action=cap]")).await.unwrap();
        let cap = group
            .find(Locator::Css("input[name=daily_cap_eur]"))
            .await
            .unwrap();
        cap.clear().await.unwrap();
        cap.send_keys(eur).await.unwrap();
        let field = group
            .find(Locator::Css("input[name=reason]"))
            .await
            .unwrap();
        field.clear().await.unwrap();
        field.send_keys(reason).await.unwrap();
        group
            .find(Locator::Css("button[name=set_cap]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// The text of the campaign's `role="alert"` element, "" when none.
    pub async fn alert(&self, campaign: &str) -> String {
        let card = self.card(campaign).await;
        card.find(Locator::Css("[role=alert]"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until the campaign's alert shows something, and returns it.
    pub async fn wait_alert(&self, campaign: &str) -> String {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let text = self.alert(campaign).await;
            if !text.is_empty() {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no alert shown for campaign {campaign:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The model history's rows, newest first: (version, served now).
    pub async fn models(&self) -> Vec<(String, bool)> {
        let v = self
            .js(
                "return Array.from(document.querySelectorAll('#models tr[data-model]'), r => [r.getAttribute('data-model'), r.getAttribute('data-serving') === 'true']);",
                vec![],
            )
            .await;
        serde_json::from_value(v).expect("a list of rows")
    }

    /// Whether "Roll back to the previous model" is disabled.
    pub async fn rollback_disabled(&self) -> bool {
        let v = self
            .js(
                "return document.getElementById('rollback').disabled;",
                vec![],
            )
            .await;
        v.as_bool().expect("a boolean")
    }

    /// Types `reason` and clicks "Roll back to the previous model".
    pub async fn roll_back(&self, reason: &str) {
        let field = self
            .client
            .find(Locator::Id("rollback-reason"))
            .await
            .expect("the rollback reason");
        field.clear().await.unwrap();
        field.send_keys(reason).await.unwrap();
        self.client
            .find(Locator::Id("rollback"))
            .await
            .expect("the rollback button")
            .click()
            .await
            .unwrap();
    }

    /// Waits until the element `id` shows some text, and returns it.
    pub async fn wait_text(&self, id: &str) -> String {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let text = self
                .js(
                    "const e = document.getElementById(arguments[0]); return e ? e.textContent : '';",
                    vec![json!(id)],
                )
                .await;
            let text = text.as_str().unwrap_or_default().to_owned();
            if !text.is_empty() {
                return text;
            }
            assert!(Instant::now() < deadline, "nothing shown in #{id}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Marks the current document, so that [`Browser::wait_reload`] can
    /// tell when it was replaced.
    pub async fn mark(&self) {
        self.js("window.__nudgeMark = true; return null;", vec![])
            .await;
    }

    /// Waits until the marked document was replaced by a fresh load.
    pub async fn wait_reload(&self) {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let v = self
                .client
                .execute(
                    "return document.readyState === 'complete' && window.__nudgeMark === undefined;",
                    vec![],
                )
                .await;
            if v.ok() == Some(Value::Bool(true)) {
                return;
            }
            assert!(Instant::now() < deadline, "the page did not reload");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The tab's session storage entry `key`.
    pub async fn session_storage(&self, key: &str) -> Option<String> {
        let v = self
            .js(
                "return sessionStorage.getItem(arguments[0]);",
                vec![json!(key)],
            )
            .await;
        v.as_str().map(str::to_owned)
    }

    /// Writes a PNG of the viewport to `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

/// `$CARGO_TARGET_DIR/screenshots`, else the crate's `target/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("screenshots")
}

/// The session storage key the page keeps the operator token under.
pub const TOKEN_KEY: &str = "nudge.operator_token";

// --- The page against a recording stand-in for the API ---

/// A campaign id written to break out of markup and attributes.
const HOSTILE: &str = r#"<b>x</b>"'"#;
const TOKEN: &str = "op-7f3a-token";

/// One change the stand-in received: a campaign PATCH or a rollback.
#[derive(Debug, Clone)]
struct Patch {
    /// Empty for a model rollback.
    campaign: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Default)]
struct Api {
    patches: Mutex<Vec<Patch>>,
    /// The answer to the next PATCH: None is 200 `{}`.
    refuse: Mutex<Option<(StatusCode, String)>>,
}

fn campaign(id: &str, paused: bool, cap: i64, spent_share: f64, day_fraction: f64) -> CampaignView {
    let spent = (cap as f64 * spent_share) as i64;
    CampaignView {
        id: id.to_owned(),
        paused,
        schedule: None,
        in_schedule: true,
        daily_cap_cents: cap,
        total_cap_cents: None,
        reserved_cents: spent / 4,
        captured_cents: spent - spent / 4,
        remaining_cents: cap - spent,
        learning_cap_cents: cap / 10,
        learning_spent_cents: cap / 40,
        tiers_cents: vec![500, 1_000, 1_500],
        min_intent_cents: 2_500,
        holdout_share: 0.1,
        explore_share: 0.05,
        day_fraction,
        pacing_curve: (0..=24)
            .map(|h| {
                let x = h as f64 / 24.0;
                // A shop's day: quiet nights, busy evenings.
                (x, x * x * (3.0 - 2.0 * x))
            })
            .collect(),
        lambda: 0.137,
        last_days: (0..7)
            .map(|d| {
                (
                    if d < 5 {
                        format!("2026-11-{:02}", 26 + d)
                    } else {
                        format!("2026-12-{:02}", d - 4)
                    },
                    if d == 6 {
                        spent
                    } else {
                        cap * (70 + 5 * ((d * 7) % 6)) / 100
                    },
                )
            })
            .collect(),
    }
}

fn sample() -> StatusView {
    let mut winter = campaign("winter-sale", false, 50_000, 0.31, 0.43);
    winter.total_cap_cents = Some(1_500_000);
    let mut hostile = campaign(HOSTILE, true, 20_000, 0.12, 0.43);
    hostile.schedule = Some("from 2026-12-24 00:00 UTC to 2026-12-27 00:00 UTC".into());
    hostile.in_schedule = false;
    StatusView {
        generated_at: "2026-12-02 10:15:03 UTC".into(),
        timezone: "Europe/Berlin".into(),
        model_version: "intent-2026-11-30".into(),
        model_metrics: vec![
            ("AUC (held out)".into(), "0.912".into()),
            ("log loss".into(), "0.281".into()),
            ("sessions".into(), "1,204,331".into()),
        ],
        auth_required: true,
        models: ModelsView {
            entries: vec![
                ModelRow {
                    seq: 2,
                    version: "intent-2026-11-30".into(),
                    published_at: "2026-11-30 04:12 UTC".into(),
                    published_by: "cli".into(),
                    reason: "nightly retrain".into(),
                    sha256: "9f2c4e0a7b1d".repeat(5) + "9f2c",
                    serving: true,
                    rolled_back: None,
                },
                ModelRow {
                    seq: 1,
                    version: "intent-2026-11-23".into(),
                    published_at: "2026-11-23 04:09 UTC".into(),
                    published_by: "config".into(),
                    reason: "model file at start".into(),
                    sha256: "41b7d2c09e3a".repeat(5) + "41b7",
                    serving: false,
                    rolled_back: None,
                },
            ],
            rollback_to: Some("intent-2026-11-23".into()),
            error: None,
        },
        campaigns: vec![winter, hostile],
        audit: vec![
            AuditView {
                at: "2026-12-02 09:58:12 UTC".into(),
                actor: "ops-berlin".into(),
                campaign: HOSTILE.into(),
                changes: "paused: false → true".into(),
                reason: "<i>supplier</i> out of stock".into(),
            },
            AuditView {
                at: "2026-12-01 17:03:40 UTC".into(),
                actor: "ops-berlin".into(),
                campaign: "winter-sale".into(),
                changes: "daily_cap_cents: 40000 → 50000".into(),
                reason: "weekend traffic".into(),
            },
        ],
    }
}

/// Serves the sample page at `/` (with its CSP) and records PATCHes.
async fn stand_in() -> (SocketAddr, Arc<Api>) {
    let api = Arc::new(Api::default());
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async {
                (
                    [
                        (header::CONTENT_SECURITY_POLICY, page::PAGE_CSP),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    Html(page::render(&sample())),
                )
            }),
        )
        .route(
            "/api/v1/campaigns/{id}",
            axum::routing::patch(
                |State(api): State<Arc<Api>>,
                 UrlPath(id): UrlPath<String>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    api.patches.lock().unwrap().push(Patch {
                        campaign: id,
                        headers,
                        body,
                    });
                    let answer = api.refuse.lock().unwrap().clone();
                    let (status, body) = answer.unwrap_or((StatusCode::OK, "{}".into()));
                    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
                },
            ),
        )
        .route(
            "/api/v1/models/rollback",
            axum::routing::post(
                |State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes| async move {
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    api.patches.lock().unwrap().push(Patch {
                        campaign: String::new(),
                        headers,
                        body,
                    });
                    let answer = json!({
                        "live": {"seq": 1, "version": "intent-2026-11-23", "live": true},
                        "rolled_back": {"seq": 2, "version": "intent-2026-11-30", "live": false},
                    });
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        answer.to_string(),
                    )
                },
            ),
        )
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, api)
}

async fn wait_patches(api: &Api, n: usize) -> Vec<Patch> {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let got = api.patches.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} PATCH requests, got {}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn header_of<'a>(p: &'a Patch, name: &str) -> &'a str {
    p.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {p:?}"))
}

#[tokio::test]
async fn the_status_page_sends_exact_changes_from_a_real_browser() {
    let Some(b) = browser().await else { return };
    let (addr, api) = stand_in().await;
    let origin = format!("http://{addr}");
    b.goto(&format!("{origin}/")).await;

    // Both cards, the hostile id as text, nothing of it as markup.
    assert_eq!(b.campaigns().await, ["winter-sale", HOSTILE]);
    let title = b
        .card(HOSTILE)
        .await
        .find(Locator::Css("h3"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(title, HOSTILE);
    let injected = b
        .js(
            "return document.querySelectorAll('h3 b, td i').length;",
            vec![],
        )
        .await;
    assert_eq!(injected, json!(0));
    assert_eq!(b.toggle_label("winter-sale").await, "Pause");
    assert_eq!(b.toggle_label(HOSTILE).await, "Resume");
    // The style sheet and the script ran under the page's CSP.
    let background = b
        .js(
            "return getComputedStyle(document.body).backgroundColor;",
            vec![],
        )
        .await;
    assert_eq!(background, json!("rgb(244, 245, 247)"));
    let state = b.client.find(Locator::Id("token-state")).await.unwrap();
    assert_eq!(state.text().await.unwrap(), "No token set");
    let svgs = b
        .js(
            "return document.querySelectorAll('[data-campaign] svg[data-chart=pacing] title').length;",
            vec![],
        )
        .await;
    assert_eq!(svgs, json!(2));
    b.screenshot("status_page").await;

    // No token yet: the page says so and sends nothing.
    b.toggle_pause("winter-sale", "stock low").await;
    assert!(b.wait_alert("winter-sale").await.contains("operator token"));
    assert!(api.patches.lock().unwrap().is_empty());

    // The token lives in session storage only.
    b.use_token(TOKEN).await;
    assert_eq!(b.session_storage(TOKEN_KEY).await.as_deref(), Some(TOKEN));
    assert_eq!(state.text().await.unwrap(), "Token set for this tab");
    let elsewhere = b
        .js(
            "return [document.cookie, localStorage.length, location.href, document.getElementById('token').value];",
            vec![],
        )
        .await;
    assert_eq!(elsewhere, json!(["", 0, format!("{origin}/"), ""]));

    // Pause: one PATCH, exact JSON, the bearer header, same origin; then
    // the page reloads.
    b.mark().await;
    b.toggle_pause("winter-sale", "stock low").await;
    let got = wait_patches(&api, 1).await;
    b.wait_reload().await;
    assert_eq!(got.len(), 1);
    let p = &got[0];
    assert_eq!(p.campaign, "winter-sale");
    assert_eq!(p.body, json!({"paused": true, "reason": "stock low"}));
    assert_eq!(header_of(p, "content-type"), "application/json");
    assert_eq!(header_of(p, "authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(header_of(p, "origin"), origin);
    assert_eq!(header_of(p, "sec-fetch-site"), "same-origin");
    assert!(p.headers.get("cookie").is_none());
    // The token outlives the reload: same tab.
    assert_eq!(b.session_storage(TOKEN_KEY).await.as_deref(), Some(TOKEN));

    // Resume on the paused (hostile) campaign, then a cap in exact cents.
    b.mark().await;
    b.toggle_pause(HOSTILE, "back in stock").await;
    wait_patches(&api, 2).await;
    b.wait_reload().await;
    b.mark().await;
    b.set_cap(HOSTILE, "12.34", "holiday budget").await;
    let got = wait_patches(&api, 3).await;
    b.wait_reload().await;
    assert_eq!(got[1].campaign, HOSTILE);
    assert_eq!(
        got[1].body,
        json!({"paused": false, "reason": "back in stock"})
    );
    assert_eq!(got[2].campaign, HOSTILE);
    assert_eq!(
        got[2].body,
        json!({"daily_cap_cents": 1234, "reason": "holiday budget"})
    );
    assert_eq!(
        got[2].body["daily_cap_cents"].as_i64(),
        Some(1234),
        "an integer"
    );

    // Amounts the page refuses: never sent.
    for bad in ["12.345", "-1"] {
        b.js(
            "document.querySelectorAll('[role=alert]').forEach(a => a.textContent = ''); return null;",
            vec![],
        )
        .await;
        b.set_cap("winter-sale", bad, "typo").await;
        let shown = b.wait_alert("winter-sale").await;
        assert!(shown.contains("Daily cap (EUR)"), "{bad}: {shown}");
    }
    b.set_cap("winter-sale", "300", "").await;
    assert!(b.wait_alert("winter-sale").await.contains("Reason"));
    assert_eq!(api.patches.lock().unwrap().len(), 3);

    // The API's refusal is shown as it said it.
    *api.refuse.lock().unwrap() = Some((
        StatusCode::FORBIDDEN,
        json!({"error": "daily_cap_cents: above the configured limit of 1000000"}).to_string(),
    ));
    b.set_cap("winter-sale", "99999.99", "black friday").await;
    let got = wait_patches(&api, 4).await;
    assert_eq!(
        got[3].body,
        json!({"daily_cap_cents": 9_999_999, "reason": "black friday"})
    );
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let shown = b.alert("winter-sale").await;
        if shown == "daily_cap_cents: above the configured limit of 1000000" {
            break;
        }
        assert!(Instant::now() < deadline, "alert shows {shown:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Roll back the model: one POST, the reason as JSON, the same headers
    // as a campaign change; after the reload the page says what happened.
    assert_eq!(
        b.models().await,
        [
            ("intent-2026-11-30".to_owned(), true),
            ("intent-2026-11-23".to_owned(), false)
        ]
    );
    b.mark().await;
    b.roll_back("conversion dropped").await;
    let got = wait_patches(&api, 5).await;
    b.wait_reload().await;
    let p = &got[4];
    assert_eq!(p.campaign, "");
    assert_eq!(p.body, json!({"reason": "conversion dropped"}));
    assert_eq!(header_of(p, "content-type"), "application/json");
    assert_eq!(header_of(p, "authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(header_of(p, "origin"), origin);
    assert_eq!(header_of(p, "sec-fetch-site"), "same-origin");
    assert_eq!(
        b.wait_text("models-result").await,
        "Rolled back: intent-2026-11-23 is served again, intent-2026-11-30 is out of service."
    );
    // Shown once: the next load does not repeat it.
    b.goto(&format!("{origin}/")).await;
    assert_eq!(
        b.js(
            "return document.getElementById('models-result').textContent;",
            vec![]
        )
        .await,
        json!("")
    );

    // Forget token: gone from the tab.
    b.forget_token().await;
    assert_eq!(b.session_storage(TOKEN_KEY).await, None);
    b.close().await;
}

#[tokio::test]
async fn the_status_page_fits_a_phone() {
    let Some(b) = browser().await else { return };
    let (addr, _api) = stand_in().await;
    b.client.set_window_size(390, 844).await.unwrap();
    b.goto(&format!("http://{addr}/")).await;
    // Nothing wider than the screen: no sideways scrolling.
    let widths = b
        .js(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
            vec![],
        )
        .await;
    assert_eq!(widths[0], widths[1], "page wider than the phone: {widths}");
    b.screenshot("status_page_phone").await;
    b.close().await;
}
