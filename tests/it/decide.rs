use crate::util::*;
use nudge::grpc::pb::{self, PageKind, Reason, Segment, Signal};

/// Deep checkout: cart, address, shipping, payment steps. Buys anyway.
pub fn hot_session() -> Vec<pb::Event> {
    let mut e = vec![
        page(0, PageKind::Home, 8),
        product(20, "sofa", 45_000, 120, 0.9),
        signal(140, Signal::ReviewsOpened),
        cart_add(150, "sofa", 45_000, 1),
        page(160, PageKind::Cart, 20),
    ];
    for s in 1..=4 {
        e.push(page(180 + 30 * s as i64, PageKind::Checkout, 25));
        e.push(step(200 + 30 * s as i64, s));
    }
    e
}

/// One page, two seconds, gone.
pub fn cold_session() -> Vec<pb::Event> {
    vec![page(0, PageKind::Home, 2), signal(3, Signal::ExitIntent)]
}

/// Compares two jackets, adds one to the cart, looks at the cart, focuses
/// the coupon field and moves to leave: the undecided visitor.
pub fn hesitant_session(price_cents: i64) -> Vec<pb::Event> {
    vec![
        page(0, PageKind::Category, 10),
        product(15, "jacket-a", price_cents, 40, 0.6),
        product(60, "jacket-b", price_cents + 2_000, 30, 0.5),
        cart_add(95, "jacket-a", price_cents, 1),
        page(100, PageKind::Cart, 15),
        signal(116, Signal::CouponFieldFocus),
        signal(120, Signal::ExitIntent),
    ]
}

async fn server() -> TestServer {
    start(settings(""), default_model()).await
}

#[tokio::test]
async fn hot_session_gets_no_offer() {
    let s = server().await;
    let r = s
        .client()
        .await
        .decide(decide("hot", hot_session()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(segment(&r), Segment::Hot, "{r:?}");
    assert_eq!(reason(&r), Reason::NotHesitant);
    assert!(r.offer.is_none());
    s.stop().await;
}

#[tokio::test]
async fn cold_bounce_gets_no_offer() {
    let s = server().await;
    let r = s
        .client()
        .await
        .decide(decide("cold", cold_session()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(segment(&r), Segment::Cold, "{r:?}");
    assert_eq!(reason(&r), Reason::NotHesitant);
    assert!(r.offer.is_none());
    s.stop().await;
}

#[tokio::test]
async fn hesitant_high_intent_gets_a_configured_tier_once() {
    let s = server().await;
    let mut c = s.client().await;
    let r = c
        .decide(decide("hes", hesitant_session(15_000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(segment(&r), Segment::Hesitant, "{r:?}");
    assert_eq!(r.intent_value_cents, 15_000);
    assert_eq!(reason(&r), Reason::Offered, "{r:?}");
    let offer = r.offer.clone().expect("an offer");
    assert!([500, 1_000, 2_000].contains(&offer.amount_cents));
    assert!(r.expected_net_value_cents > 0);
    assert!(offer.expires_at_ms > NOW_MS);
    assert_eq!(r.top_signals.len(), 3);
    assert!(!r.model_version.is_empty());

    // Asking again (with or without new events) returns the same offer.
    let again = c.decide(decide("hes", vec![])).await.unwrap().into_inner();
    assert_eq!(reason(&again), Reason::AlreadyOffered);
    assert_eq!(again.offer, Some(offer.clone()));
    let third = c
        .decide(decide("hes", vec![signal(400, Signal::TabHidden)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(third.offer, Some(offer));
    s.stop().await;
}

#[tokio::test]
async fn hesitant_low_intent_never_gets_an_offer() {
    let s = server().await;
    let mut c = s.client().await;
    let mut hesitant = 0;
    for (i, price) in [1_000, 5_000, 9_899].into_iter().enumerate() {
        let r = c
            .decide(decide(&format!("low{i}"), hesitant_session(price)))
            .await
            .unwrap()
            .into_inner();
        assert!(r.offer.is_none(), "{r:?}");
        assert!(r.intent_value_cents < 9_900);
        if segment(&r) == Segment::Hesitant {
            assert_eq!(reason(&r), Reason::IntentTooLow);
            hesitant += 1;
        }
    }
    assert!(hesitant > 0, "the low-intent archetype should be hesitant");
    s.stop().await;
}

#[tokio::test]
async fn probabilities_are_within_unit_interval() {
    let s = server().await;
    let mut c = s.client().await;
    let sessions = [
        hot_session(),
        cold_session(),
        hesitant_session(15_000),
        vec![],
    ];
    for (i, events) in sessions.into_iter().enumerate() {
        let r = c
            .decide(decide(&format!("p{i}"), events))
            .await
            .unwrap()
            .into_inner();
        assert!((0.0..=1.0).contains(&r.purchase_probability), "{r:?}");
    }
    s.stop().await;
}

#[tokio::test]
async fn track_then_decide_equals_one_round_trip() {
    let s = server().await;
    let mut c = s.client().await;
    let t = c
        .track(pb::TrackRequest {
            session_id: "split".into(),
            visitor_id: String::new(),
            context: decide("x", vec![]).context,
            events: hesitant_session(15_000),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.accepted, 7);
    assert_eq!(t.session_events, 7);
    let split = c
        .decide(decide("split", vec![]))
        .await
        .unwrap()
        .into_inner();
    let once = c
        .decide(decide("once", hesitant_session(15_000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(split.purchase_probability, once.purchase_probability);
    assert_eq!(split.segment, once.segment);
    s.stop().await;
}
