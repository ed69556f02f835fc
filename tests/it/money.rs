use crate::decide::hesitant_session;
use crate::util::*;
use nudge::decision_log::LogRecord;
use nudge::grpc::pb::{self, Reason, RedeemStatus};
use tonic::Code;

fn redeem(code: &str, session: &str, order: i64) -> pb::RedeemRequest {
    pb::RedeemRequest {
        voucher_code: code.into(),
        session_id: session.into(),
        order_value_cents: order,
    }
}

fn status(r: &pb::RedeemResponse) -> RedeemStatus {
    RedeemStatus::try_from(r.status).unwrap()
}

async fn offered(s: &TestServer, session: &str) -> pb::Offer {
    let r = s
        .client()
        .await
        .decide(decide(session, vec![cart_add(1, "p", 20_000, 1)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reason(&r), Reason::Offered, "{r:?}");
    r.offer.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_captures_exactly_once_and_a_retry_is_answered_again() {
    let s = start(settings(""), fixture_model("flat_hesitant.json")).await;
    let offer = offered(&s, "r1").await;
    let channel = s.channel().await;
    let mut tasks = Vec::new();
    // Sixteen different orders race for one code: one wins.
    for i in 0..16 {
        let mut c = pb::offers_client::OffersClient::new(channel.clone());
        let code = offer.voucher_code.clone();
        tasks.push(tokio::spawn(async move {
            let order = 20_000 + i;
            let r = c
                .redeem(redeem(&code, "r1", order))
                .await
                .unwrap()
                .into_inner();
            (order, r)
        }));
    }
    let mut winners = Vec::new();
    let mut already = 0;
    for t in tasks {
        let (order, r) = t.await.unwrap();
        match status(&r) {
            RedeemStatus::Accepted => {
                winners.push(order);
                assert_eq!(r.discount_cents, offer.amount_cents);
                assert!(!r.replayed, "the first acceptance is not a retry");
            }
            RedeemStatus::AlreadyRedeemed => already += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((winners.len(), already), (1, 15));
    // The winner's retries (its answer lost) are answered again, sixteen
    // at once, and capture nothing more.
    let mut retries = Vec::new();
    for _ in 0..16 {
        let mut c = pb::offers_client::OffersClient::new(channel.clone());
        let code = offer.voucher_code.clone();
        let order = winners[0];
        retries.push(tokio::spawn(async move {
            c.redeem(redeem(&code, "r1", order))
                .await
                .unwrap()
                .into_inner()
        }));
    }
    for t in retries {
        let r = t.await.unwrap();
        assert_eq!(status(&r), RedeemStatus::Accepted);
        assert_eq!(r.discount_cents, offer.amount_cents);
        assert!(r.replayed, "a retry says it is one");
    }
    let snap = s.engine.ledger.snapshot("default", NOW_MS).await.unwrap();
    assert_eq!(snap.captured_cents, offer.amount_cents);
    assert_eq!(snap.reserved_cents, 0);
    s.stop().await;
}

#[tokio::test]
async fn forged_tampered_expired_and_other_session_codes_are_rejected() {
    let s = start(
        settings("[policy]\noffer_ttl_secs = 3600\n"),
        fixture_model("flat_hesitant.json"),
    )
    .await;
    let mut c = s.client().await;
    let offer = offered(&s, "r2").await;
    let code = offer.voucher_code.clone();

    // Another session's code.
    let r = c
        .redeem(redeem(&code, "someone-else", 20_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(&r), RedeemStatus::Invalid);
    // Tampered: change one symbol.
    let mut t: Vec<char> = code.chars().collect();
    t[0] = if t[0] == '7' { '8' } else { '7' };
    let tampered: String = t.into_iter().collect();
    let r = c
        .redeem(redeem(&tampered, "r2", 20_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(&r), RedeemStatus::Invalid);
    // Forged: a well-formed code minted with another secret.
    let other =
        nudge::domain::voucher::VoucherKey::from_secret("an attacker's guess at the secret");
    let forged =
        nudge::domain::voucher::mint(&other, "r2", offer.amount_cents, offer.expires_at_ms, 1)
            .unwrap();
    let r = c
        .redeem(redeem(&forged, "r2", 20_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(&r), RedeemStatus::Invalid);
    // Garbage.
    let r = c
        .redeem(redeem("HELLO-WORLD", "r2", 20_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(&r), RedeemStatus::Invalid);
    // Below the minimum order.
    let r = c
        .redeem(redeem(&code, "r2", 5_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(&r), RedeemStatus::OrderBelowMinimum);
    assert_eq!(r.min_order_cents, 9_900);
    // Bad input is INVALID_ARGUMENT, not a status.
    let e = c.redeem(redeem(&code, "r2", -1)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("order_value_cents: "));
    // Typed loosely (lower case, spaces): still the same code.
    let typed = code.to_lowercase().replace('-', " ");
    // ...but expired first: one hour and a bit later.
    s.clock.advance(3_600_001);
    let r = c
        .redeem(redeem(&typed, "r2", 20_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(&r), RedeemStatus::Expired);
    let snap = s.engine.ledger.snapshot("default", NOW_MS).await.unwrap();
    assert_eq!(
        (snap.reserved_cents, snap.captured_cents),
        (0, 0),
        "expiry released the reserve"
    );
    s.stop().await;
}

#[tokio::test]
async fn outcomes_are_idempotent() {
    let s = start(settings(""), default_model()).await;
    let mut c = s.client().await;
    let req = pb::RecordOutcomeRequest {
        session_id: "o1".into(),
        converted: true,
        order_value_cents: 12_345,
    };
    assert!(
        c.record_outcome(req.clone())
            .await
            .unwrap()
            .into_inner()
            .recorded
    );
    assert!(
        !c.record_outcome(req.clone())
            .await
            .unwrap()
            .into_inner()
            .recorded
    );
    let bad = pb::RecordOutcomeRequest {
        converted: true,
        order_value_cents: 0,
        ..req
    };
    assert_eq!(
        c.record_outcome(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(s.engine.ledger.outcomes(0).await.unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn holdout_never_gets_a_voucher_but_is_logged_with_the_tier_it_would_have_had() {
    let mut s = start(
        settings("[experiment]\nholdout_share = 0.5\nexplore_share = 0.0\n"),
        fixture_model("flat_hesitant.json"),
    )
    .await;
    let mut c = s.client().await;
    let (mut held, mut treated) = (0, 0);
    for i in 0..40 {
        let r = c
            .decide(decide(&format!("h{i}"), hesitant_session(20_000)))
            .await
            .unwrap()
            .into_inner();
        if r.holdout {
            held += 1;
            assert_eq!(reason(&r), Reason::Holdout);
            assert!(r.offer.is_none());
            assert!(r.best_tier_cents > 0, "would have offered a tier");
        } else {
            treated += 1;
            assert!(r.offer.is_some());
        }
    }
    assert!(
        held > 5 && treated > 5,
        "{held} held out, {treated} treated"
    );
    // The same visitor is always held out (keyed by visitor id).
    let again = c.decide(decide("h0", vec![])).await.unwrap().into_inner();
    let first_is_held = s.engine.base.load().experiment.in_holdout("v-h0");
    assert_eq!(again.holdout, first_is_held);

    s.shutdown().await;
    let log = nudge::decision_log::reader::read_dir(&s.data.path().join("log")).unwrap();
    let decisions: Vec<_> = log
        .iter()
        .filter_map(|r| match r {
            LogRecord::Decision(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(decisions.len(), 41);
    for d in &decisions {
        assert!(d.eligible);
        assert_eq!(d.features.len(), nudge::domain::features::N_FEATURES);
        assert_eq!(d.model_version, "flat-hesitant-test");
        if d.holdout {
            assert_eq!(d.action_cents, 0);
            assert!(d.policy_tier_cents > 0);
            assert_eq!(d.reason, "holdout");
        }
    }
    let events = log
        .iter()
        .filter(|r| matches!(r, LogRecord::Events(_)))
        .count();
    assert_eq!(
        events, 41,
        "every request's events (and context) are logged for replay"
    );
}

#[tokio::test]
async fn exploration_draws_uniform_actions_and_logs_their_propensity() {
    let mut s = start(
        settings("[experiment]\nholdout_share = 0.0\nexplore_share = 1.0\n[budget]\ndaily_cap_cents = 10000000\n"),
        fixture_model("flat_hesitant.json"),
    )
    .await;
    let mut c = s.client().await;
    let mut actions = std::collections::BTreeMap::new();
    for i in 0..200 {
        let r = c
            .decide(decide(&format!("x{i}"), hesitant_session(20_000)))
            .await
            .unwrap()
            .into_inner();
        assert!(r.explored);
        let a = r.offer.as_ref().map_or(0, |o| o.amount_cents);
        if a == 0 {
            assert_eq!(reason(&r), Reason::ExplorationNoVoucher);
        }
        *actions.entry(a).or_insert(0) += 1;
    }
    assert_eq!(
        actions.keys().copied().collect::<Vec<_>>(),
        vec![0, 500, 1_000, 2_000]
    );
    assert!(actions.values().all(|n| *n > 25), "{actions:?}");
    s.shutdown().await;
    let log = nudge::decision_log::reader::read_dir(&s.data.path().join("log")).unwrap();
    for r in log {
        if let LogRecord::Decision(d) = r {
            assert!(d.explored);
            // explore_share = 1: every action has probability 1/4.
            assert!((d.propensity - 0.25).abs() < 1e-12, "{}", d.propensity);
        }
    }
}

#[tokio::test]
async fn budget_rpc_shows_the_day() {
    let s = start(
        settings("[budget]\ndaily_cap_cents = 5000\n"),
        fixture_model("flat_hesitant.json"),
    )
    .await;
    let offer = offered(&s, "b1").await;
    let b = s
        .client()
        .await
        .budget(pb::BudgetRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.campaign, "default");
    assert_eq!(b.day, "2026-11-22");
    assert_eq!(
        (b.cap_cents, b.reserved_cents, b.remaining_cents, b.offers),
        (5_000, offer.amount_cents, 5_000 - offer.amount_cents, 1)
    );
    assert!(
        (b.pacing_target_fraction - 10.0 / 24.0).abs() < 1e-6,
        "{}",
        b.pacing_target_fraction
    );
    let e = s
        .client()
        .await
        .budget(pb::BudgetRequest {
            campaign: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    s.stop().await;
}

/// An expired offer kept being returned as ALREADY_OFFERED, so the session
/// could never get another. Past its expiry the session is decided afresh,
/// on SQLite, with the old reserve released once and the old code expired.
#[tokio::test]
async fn an_expired_offer_frees_the_session_for_a_new_one() {
    let s = start(
        settings("[budget]\ndaily_cap_cents = 5000\n[policy]\noffer_ttl_secs = 3600\n"),
        fixture_model("flat_hesitant.json"),
    )
    .await;
    let mut c = s.client().await;
    let first = offered(&s, "e1").await;
    let again = c.decide(decide("e1", vec![])).await.unwrap().into_inner();
    assert_eq!(reason(&again), Reason::AlreadyOffered);
    assert_eq!(again.offer.as_ref(), Some(&first));

    s.clock.advance(3_600_000);
    let r = c
        .decide(decide("e1", vec![at_now(cart_add(1, "p", 20_000, 1))]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reason(&r), Reason::Offered, "{r:?}");
    let second = r.offer.unwrap();
    assert_ne!(second.voucher_code, first.voucher_code);
    let b = c
        .budget(pb::BudgetRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (b.reserved_cents, b.offers),
        (second.amount_cents, 2),
        "the expired reserve is released, once"
    );
    let old = c
        .redeem(redeem(&first.voucher_code, "e1", 20_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(&old), RedeemStatus::Expired);
    let new = c
        .redeem(redeem(&second.voucher_code, "e1", 20_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(&new), RedeemStatus::Accepted);
    s.stop().await;
}
