use crate::util::*;
use nudge::grpc::pb::{self, event::Kind, PageKind};
use tonic::Code;

async fn expect_invalid<T: std::fmt::Debug>(r: Result<T, tonic::Status>, field: &str) {
    let status = r.expect_err("must be rejected");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "message {:?} should name {field}",
        status.message()
    );
    use tonic_types::StatusExt;
    let bad = status
        .get_details_bad_request()
        .expect("a BadRequest detail");
    assert_eq!(bad.field_violations[0].field, field);
}

fn bad_price_event() -> pb::Event {
    product(10, "p", -500, 10, 0.5)
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field_and_changes_nothing() {
    let s = start(settings(""), default_model()).await;
    let mut c = s.client().await;
    // Accepted state first.
    let t = c
        .track(pb::TrackRequest {
            session_id: "s".into(),
            events: vec![page(0, PageKind::Home, 5), product(5, "p", 12_000, 30, 0.5)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.session_events, 2);
    let before = c.decide(decide("s", vec![])).await.unwrap().into_inner();

    // Each bad request carries a good event first: it must not be applied.
    let good = page(20, PageKind::Category, 5);
    let with = |bad: pb::Event| vec![good.clone(), bad];
    expect_invalid(c.decide(decide("", vec![])).await, "session_id").await;
    expect_invalid(
        c.decide(decide("s", with(bad_price_event()))).await,
        "events[1].page_view.price_cents",
    )
    .await;
    expect_invalid(
        c.decide(decide("s", with(product(10, "p", 10_000_000_000, 10, 0.5))))
            .await,
        "events[1].page_view.price_cents",
    )
    .await;
    expect_invalid(
        c.decide(decide(
            "s",
            with(pb::Event {
                at_ms: NOW_MS,
                kind: Some(Kind::Interaction(pb::Interaction { signal: 77 })),
            }),
        ))
        .await,
        "events[1].interaction.signal",
    )
    .await;
    expect_invalid(
        c.decide(decide(
            "s",
            with(pb::Event {
                at_ms: NOW_MS,
                kind: Some(Kind::PageView(pb::PageView {
                    page_kind: 99,
                    ..Default::default()
                })),
            }),
        ))
        .await,
        "events[1].page_view.page_kind",
    )
    .await;
    let mut ctx = decide("s", vec![good.clone()]);
    ctx.context.as_mut().unwrap().traffic_source = 1234;
    expect_invalid(c.decide(ctx).await, "context.traffic_source").await;
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut req = decide("s", vec![good.clone()]);
        req.features.insert("PageValues".into(), v);
        expect_invalid(c.decide(req).await, "features[PageValues]").await;
    }
    expect_invalid(
        c.decide(decide("s", vec![good.clone(); 257])).await,
        "events",
    )
    .await;
    expect_invalid(
        c.track(pb::TrackRequest {
            session_id: "s".into(),
            events: with(bad_price_event()),
            ..Default::default()
        })
        .await,
        "events[1].page_view.price_cents",
    )
    .await;
    // Oversized: under the event-count limit but over the byte limit.
    let mut big = decide("s", vec![good.clone()]);
    for i in 0..5_000 {
        big.features.insert(format!("f{i:0>100}"), 1.0);
    }
    let status = c.decide(big).await.expect_err("oversized");
    assert!(matches!(status.code(), Code::InvalidArgument), "{status:?}");
    assert!(
        status.message().starts_with("request: ") || status.message().starts_with("features: "),
        "{status:?}"
    );

    // Nothing of the rejected requests was applied.
    let after = c.decide(decide("s", vec![])).await.unwrap().into_inner();
    assert_eq!(after.purchase_probability, before.purchase_probability);
    let t = c
        .track(pb::TrackRequest {
            session_id: "s".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        t.session_events, 2,
        "rejected requests must not change the session"
    );
    s.stop().await;
}

#[tokio::test]
async fn far_beyond_transport_limit_is_rejected_without_killing_the_server() {
    let s = start(settings(""), default_model()).await;
    let mut c = s.client().await;
    let mut huge = decide("s", vec![]);
    huge.visitor_id = "v".repeat(2 * 1024 * 1024);
    let status = c.decide(huge).await.expect_err("too large");
    assert!(
        matches!(
            status.code(),
            Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted
        ),
        "{status:?}"
    );
    // The server is still fine.
    assert!(c.decide(decide("ok", vec![])).await.is_ok());
    s.stop().await;
}

/// Events dated 1970, sent in seconds, older than the session's idle TTL or
/// beyond the allowed clock skew were scored; they are now refused, naming
/// the event, and the request changes nothing.
#[tokio::test]
async fn event_times_outside_the_session_window_are_refused() {
    let s = start(settings(""), default_model()).await;
    let mut c = s.client().await;
    let search = |at_ms| pb::Event {
        at_ms,
        kind: Some(Kind::Search(pb::Search { results: 3 })),
    };
    let good = page(0, PageKind::Home, 5);
    let idle_ttl_ms = 1_800_000;
    for (at_ms, why) in [
        (86_400_000, "before 2000"),
        (NOW_MS / 1_000, "looks like seconds"),
        (NOW_MS - idle_ttl_ms - 1, "older than the session idle TTL"),
        (NOW_MS + 5 * 60 * 1_000 + 1, "ahead of the server clock"),
        (NOW_MS * 1_000, "ahead of the server clock"),
    ] {
        let r = c
            .decide(decide("t", vec![good.clone(), search(at_ms)]))
            .await;
        assert!(
            r.as_ref().is_err_and(|e| e.message().contains(why)),
            "{at_ms}: {r:?}"
        );
        expect_invalid(r, "events[1].at_ms").await;
        expect_invalid(
            c.track(pb::TrackRequest {
                session_id: "t".into(),
                events: vec![search(at_ms)],
                ..Default::default()
            })
            .await,
            "events[0].at_ms",
        )
        .await;
    }
    // The edges of the window are accepted, and 0 means "now".
    let t = c
        .track(pb::TrackRequest {
            session_id: "t".into(),
            events: vec![
                search(NOW_MS - idle_ttl_ms),
                search(NOW_MS + 5 * 60 * 1_000),
                search(0),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.session_events, 3, "only the accepted events were applied");
    s.stop().await;
}

/// Budget neither checked nor bounded its campaign name: a 100 KB name came
/// back inside the error and overflowed the response metadata. It is now
/// checked exactly as Decide checks it, with the same answers.
#[tokio::test]
async fn budget_checks_the_campaign_exactly_like_decide() {
    let s = start(settings(""), default_model()).await;
    let mut c = s.client().await;
    let budget = |campaign: &str| pb::BudgetRequest {
        campaign: campaign.into(),
    };
    for name in ["x".repeat(100 * 1024), "two words".into(), "é".into()] {
        let b = c.budget(budget(&name)).await;
        let mut req = decide("b", vec![]);
        req.campaign = name.clone();
        let d = c.decide(req).await;
        let (b, d) = (b.unwrap_err(), d.unwrap_err());
        assert_eq!(b.message(), d.message());
        assert!(b.message().len() < 200, "{}", b.message());
        expect_invalid(Err::<(), _>(b), "campaign").await;
    }
    // Unknown: the same answer as Decide's.
    let b = c.budget(budget("nope")).await.unwrap_err();
    let mut req = decide("b", vec![]);
    req.campaign = "nope".into();
    let d = c.decide(req).await.unwrap_err();
    assert_eq!((b.code(), b.message()), (d.code(), d.message()));
    expect_invalid(Err::<(), _>(b), "campaign").await;
    // Empty: the default campaign, as in Decide.
    let b = c.budget(budget("")).await.unwrap().into_inner();
    assert_eq!(b.campaign, "default");
    s.stop().await;
}
