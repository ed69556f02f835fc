//! The browser collector (clients/browser) in headless Chromium: the demo
//! shop page, served from its own origin, talks to the real `nudge serve`
//! over the JSON API with CORS. A visitor who scrolls, zooms, opens the
//! reviews, adds to cart and focuses the coupon field gets the offer shown
//! on the page, and nudge's decision log holds what the browser did; a
//! Decide that never answers shows nothing and tells the shop.

use crate::browser::{browser, Browser, PAGE_WAIT};
use crate::util;
use axum::extract::Path as UrlPath;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use fantoccini::Locator;
use nudge::clock::{Clock, SystemClock};
use nudge::decision_log::{DecisionRecord, EventsRecord, LogRecord};
use nudge::domain::session::{Device, EventKind, Signal, TrafficSource};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SECRET: &str = "collector test secret, not for production";

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/browser")
}

/// Serves the collector and its demo page on 127.0.0.1:0, an origin other
/// than nudge's, as a shop's web server would.
async fn shop_server() -> SocketAddr {
    let app = axum::Router::new().route(
        "/{*path}",
        axum::routing::get(|UrlPath(path): UrlPath<String>| async move {
            let kind = match path.as_str() {
                "nudge-collector.js" | "nudge-collector.mjs" => "text/javascript",
                "demo/shop.html" => "text/html; charset=utf-8",
                _ => return StatusCode::NOT_FOUND.into_response(),
            };
            match std::fs::read(client_dir().join(&path)) {
                Ok(bytes) => (
                    [
                        (header::CONTENT_TYPE, kind),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    bytes,
                )
                    .into_response(),
                Err(_) => StatusCode::NOT_FOUND.into_response(),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// An address that accepts connections and never answers.
async fn silent_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// Waits until `script` returns something other than null or false.
async fn wait_for(b: &Browser, script: &str, what: &str) -> Value {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let v = b.js(script, vec![]).await;
        if !v.is_null() && v != json!(false) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn click(b: &Browser, css: &str) {
    b.client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

/// SIGTERM, then the exit: the decision log is flushed on the way out.
async fn terminate(child: &mut std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            assert!(code.success(), "graceful exit, got {code:?}");
            return;
        }
        assert!(Instant::now() < deadline, "nudge did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hesitant_visitor_in_chromium_gets_the_offer_and_nudge_logs_what_they_did() {
    let Some(b) = browser().await else {
        return;
    };
    let shop = shop_server().await;
    let origin = format!("http://{shop}");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nudge.toml");
    // Every session is hesitant (p = 0.3) and gets the greedy voucher.
    std::fs::write(
        &config,
        format!(
            "model = \"tests/fixtures/flat_hesitant.json\"\n\
             [budget]\ndaily_cap_cents = 150000\n\
             [policy]\noffer_on_priors = true\n\
             [experiment]\nholdout_share = 0.0\nexplore_share = 0.0\n\
             [pacing]\nenabled = false\n\
             [http]\ncors_allow_origins = [{origin:?}]\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let (mut child, addr, _logs) = util::spawn_nudge_with_logs(
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ],
        &[("NUDGE_VOUCHER_SECRET", SECRET)],
    );

    // Only the coupon field asks for a decision here, so that the cart add
    // before it is scored with the rest; the timer flushes nothing during
    // the test, so each request's events are known.
    b.goto(&format!(
        "{origin}/demo/shop.html?endpoint=http://{addr}&decide_on=coupon_focus&flush=600000"
    ))
    .await;
    wait_for(&b, "return window.nudge ? true : null;", "the collector").await;
    let ids = b
        .js("return [nudge.sessionId, nudge.visitorId];", vec![])
        .await;
    let session = ids[0].as_str().unwrap().to_owned();
    let visitor = ids[1].as_str().unwrap().to_owned();
    assert!(
        session.starts_with("s-") && visitor.starts_with("v-"),
        "{ids}"
    );
    assert_eq!(
        b.session_storage("nudge.session").await.as_deref(),
        Some(session.as_str())
    );
    let page_start_ms = SystemClock.now_ms();

    // Read to the bottom, back up to the picture and the reviews.
    b.js(
        "window.scrollTo(0, document.documentElement.scrollHeight); return null;",
        vec![],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.js("window.scrollTo(0, 0); return null;", vec![]).await;
    click(&b, "#zoom").await;
    click(&b, "#reviews summary").await;
    wait_for(
        &b,
        "return document.getElementById('reviews').open || null;",
        "the reviews to open",
    )
    .await;
    // `toggle` is dispatched after the element opens: wait until the
    // collector has both signals queued before flushing.
    wait_for(
        &b,
        "return nudge.stats().queued >= 2 || null;",
        "the zoom and reviews signals to be queued",
    )
    .await;
    // The two signals go out with Track (flushed now rather than on the
    // timer); the page view is still open.
    let stats = b
        .js("return nudge.flush().then(() => nudge.stats());", vec![])
        .await;
    assert_eq!(
        stats,
        json!({"queued": 0, "dropped": 0, "sent": 2, "offered": false})
    );

    // Some dwell, then the cart and the coupon field, which asks Decide.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    click(&b, "#add-to-cart").await;
    let cart = b
        .client
        .find(Locator::Id("cart-state"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(cart.contains("Trail jacket"), "{cart}");
    click(&b, "#coupon").await;
    wait_for(
        &b,
        "return document.getElementById('offer').className === 'shown' || null;",
        "the offer to be shown",
    )
    .await;
    let shown = b
        .client
        .find(Locator::Id("offer-code"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let demo = b.js("return window.nudgeDemo;", vec![]).await;
    assert_eq!(demo["errors"], json!([]), "{demo}");
    assert_eq!(demo["offers"].as_array().unwrap().len(), 1, "{demo}");
    let offer = &demo["offers"][0];
    assert_eq!(offer["code"], json!(shown));
    assert!(!shown.is_empty());
    assert!(offer["amountCents"].as_i64().unwrap() > 0, "{offer}");
    assert!(
        offer["expiresAtMs"].as_i64().unwrap() > page_start_ms,
        "{offer}"
    );
    assert_eq!(offer["segment"], "hesitant");
    assert!((offer["probability"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    assert_eq!(demo["decisions"][0]["reason"], "REASON_OFFERED");
    assert!(b
        .client
        .find(Locator::Id("offer"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());
    b.screenshot("collector").await;
    // Decide carried the page view, the cart add and the focus.
    let stats = b.js("return nudge.stats();", vec![]).await;
    assert_eq!(
        stats,
        json!({"queued": 0, "dropped": 0, "sent": 5, "offered": true})
    );

    // An offer was made: focusing the field again asks nothing.
    b.js(
        "document.getElementById('coupon').blur(); return null;",
        vec![],
    )
    .await;
    click(&b, "#coupon").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let demo = b.js("return window.nudgeDemo;", vec![]).await;
    assert_eq!(demo["decisions"].as_array().unwrap().len(), 1, "{demo}");
    assert_eq!(demo["offers"].as_array().unwrap().len(), 1, "{demo}");
    // Leaving the page sends that focus with a keepalive Track.
    b.goto("about:blank").await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    b.close().await;

    terminate(&mut child).await;
    let log = nudge::decision_log::reader::read_dir(&data.join("log")).unwrap();
    let decisions: Vec<&DecisionRecord> = log
        .iter()
        .filter_map(|r| match r {
            LogRecord::Decision(d) if d.session_id == session => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let d = decisions[0];
    assert_eq!(d.reason, "offered");
    assert_eq!(d.voucher_code.as_deref(), Some(shown.as_str()));
    assert_eq!(d.visitor_id.as_deref(), Some(visitor.as_str()));
    let f = |name: &str| {
        *d.features
            .get(name)
            .unwrap_or_else(|| panic!("no feature {name}"))
    };
    for (name, expected) in [
        ("page_views", 1.0),
        ("product_views", 1.0),
        ("viewed_price_max_eur", 129.0),
        ("cart_adds", 1.0),
        ("cart_items", 1.0),
        ("cart_value_eur", 129.0),
        ("coupon_field_focus", 1.0),
        ("image_zoom", 1.0),
        ("reviews_opened", 1.0),
        ("exit_intent", 0.0),
        ("tab_hidden", 0.0),
        ("shipping_info", 0.0),
        ("events", 5.0),
        ("device_mobile", 0.0),
        ("returning_visitor", 0.0),
    ] {
        assert_eq!(f(name), expected, "{name}: {:?}", d.features);
    }
    assert_eq!(d.intent_value_cents, 12_900);
    // Visible time up to the decision: the pauses above, well under a minute.
    let dwell = f("dwell_total_s");
    assert!((1.4..60.0).contains(&dwell), "dwell {dwell}");
    assert_eq!(f("product_dwell_s"), dwell);
    assert!(f("scroll_max") > 0.99, "scroll {}", f("scroll_max"));
    // The page view carries the time the page was shown: the session began
    // then, at least its dwell before the decision.
    assert!(f("session_age_s") + 0.05 >= dwell, "{:?}", d.features);

    // Track with the signals, Decide with the rest, Track on leaving.
    let events: Vec<&EventsRecord> = log
        .iter()
        .filter_map(|r| match r {
            LogRecord::Events(e) if e.session_id == session => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    let kinds = |e: &EventsRecord| -> Vec<String> {
        e.events
            .iter()
            .map(|ev| match ev.kind {
                EventKind::PageView { .. } => "page_view".to_owned(),
                EventKind::CartAdd { .. } => "cart_add".to_owned(),
                EventKind::Interaction { signal } => format!("{signal:?}"),
                other => format!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(
        kinds(events[0]),
        [
            format!("{:?}", Signal::ImageZoom),
            format!("{:?}", Signal::ReviewsOpened)
        ]
    );
    assert_eq!(
        kinds(events[1]),
        [
            "page_view".to_owned(),
            "cart_add".to_owned(),
            format!("{:?}", Signal::CouponFieldFocus)
        ]
    );
    // Leaving the page is no hidden tab.
    assert_eq!(
        kinds(events[2]),
        [format!("{:?}", Signal::CouponFieldFocus)]
    );
    // Real client times, in order: the page was shown before the zoom, the
    // zoom before the cart add.
    let view_at = events[1].events[0].at_ms;
    let zoom_at = events[0].events[0].at_ms;
    let cart_at = events[1].events[1].at_ms;
    assert!(view_at <= zoom_at && zoom_at < cart_at, "{events:?}");
    assert!(
        (page_start_ms - 10_000..=page_start_ms).contains(&view_at),
        "page shown at {view_at}, test clock {page_start_ms}"
    );
    let context = events[0].context.as_ref().expect("the context is sent");
    assert_eq!(context.device, Device::Desktop);
    assert_eq!(context.traffic_source, TrafficSource::Direct);
    assert!(!context.returning_visitor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decide_that_never_answers_fails_open() {
    let Some(b) = browser().await else {
        return;
    };
    let shop = shop_server().await;
    let silent = silent_server().await;
    b.goto(&format!(
        "http://{shop}/demo/shop.html?endpoint=http://{silent}&decide_on=exit_intent&timeout=400"
    ))
    .await;
    wait_for(&b, "return window.nudge ? true : null;", "the collector").await;

    // The pointer leaves through the top of the window, twice: one exit
    // intent per page, one decision asked.
    let leave = "document.dispatchEvent(new MouseEvent('mouseout', {clientX: 400, clientY: -2, relatedTarget: null, bubbles: true})); return null;";
    b.js(leave, vec![]).await;
    b.js(leave, vec![]).await;
    wait_for(
        &b,
        "return nudgeDemo.errors.length > 0 || null;",
        "onError after the timeout",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let demo = b.js("return window.nudgeDemo;", vec![]).await;
    let errors: Vec<&Value> = demo["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["moment"].is_null())
        .collect();
    assert_eq!(errors.len(), 1, "{demo}");
    assert_eq!(errors[0]["kind"], "timeout", "{demo}");
    assert_eq!(errors[0]["moment"], "exit_intent", "{demo}");
    assert!(
        errors[0]["message"].as_str().unwrap().contains("400 ms"),
        "{demo}"
    );
    assert_eq!(demo["offers"], json!([]));
    assert_eq!(demo["decisions"], json!([]));

    // On demand: resolves to null within the timeout, never throws.
    let answer = b
        .js(
            "const t = performance.now(); return nudge.decide().then(d => [d, performance.now() - t]);",
            vec![],
        )
        .await;
    assert!(answer[0].is_null(), "{answer}");
    let took = answer[1].as_f64().unwrap();
    assert!((350.0..3_000.0).contains(&took), "decide took {took} ms");

    // The shop's page goes on working, and shows no offer.
    click(&b, "#add-to-cart").await;
    let cart = b
        .client
        .find(Locator::Id("cart-state"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(cart.contains("Trail jacket"), "{cart}");
    assert!(!b
        .client
        .find(Locator::Id("offer"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());
    let demo = b.js("return window.nudgeDemo;", vec![]).await;
    assert_eq!(demo["offers"], json!([]));
    assert_eq!(
        b.js("return nudge.stats().offered;", vec![]).await,
        json!(false)
    );
    b.screenshot("collector_fail_open").await;
    b.close().await;
}
