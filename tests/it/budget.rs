use crate::util::*;
use nudge::clock::ManualClock;
use nudge::engine::Reason as R;
use nudge::grpc::pb::{self, Reason};
use nudge::grpc::validate;
use proptest::prelude::*;
use std::sync::Arc;

/// Engine-level: many concurrent Decides against one cap.
fn run_concurrent(cap_cents: i64, intents: Vec<i64>) -> (i64, Vec<(R, i64)>, i64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    rt.block_on(async move {
        let settings = settings(&format!("[budget]\ndaily_cap_cents = {cap_cents}\n"));
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let engine = engine(&settings, fixture_model("flat_hesitant.json"), clock);
        let mut tasks = Vec::new();
        for (i, intent) in intents.into_iter().enumerate() {
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                let req = decide(&format!("s{i}"), vec![cart_add(1, "p", intent, 1)]);
                let input = validate::decide(&req, &engine.limits, NOW_MS).unwrap();
                let d = engine.decide(input).await.unwrap();
                (d.reason, d.offer.map_or(0, |o| o.amount_cents))
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        let snap = engine.ledger.snapshot("default", NOW_MS).await.unwrap();
        (snap.reserved_cents, out, snap.remaining_cents)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn concurrent_decides_never_exceed_the_daily_cap(
        cap in 0i64..12_000,
        intents in prop::collection::vec(15_000i64..60_000, 1..120),
    ) {
        let (reserved, results, remaining) = run_concurrent(cap, intents);
        let offered: i64 = results.iter().map(|(_, a)| a).sum();
        prop_assert!(reserved <= cap, "reserved {reserved} > cap {cap}");
        prop_assert_eq!(offered, reserved, "every reserved cent was handed to a client");
        prop_assert_eq!(remaining, cap - reserved);
        for (reason, amount) in &results {
            match reason {
                R::Offered => prop_assert!(*amount > 0),
                R::BudgetExhausted => prop_assert_eq!(*amount, 0),
                other => prop_assert!(false, "unexpected reason {:?}", other),
            }
        }
        // Once the cap can no longer fit the cheapest tier, every
        // further eligible visitor is told BUDGET_EXHAUSTED.
        if results.iter().any(|(r, _)| *r == R::BudgetExhausted) {
            prop_assert!(remaining < 2_000, "exhausted while {remaining} cents remain");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_concurrent_decides_stop_at_the_cap_with_budget_exhausted() {
    let cap = 5_000;
    let s = start(
        settings(&format!("[budget]\ndaily_cap_cents = {cap}\n")),
        fixture_model("flat_hesitant.json"),
    )
    .await;
    let channel = s.channel().await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let mut c = pb::offers_client::OffersClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            c.decide(decide(&format!("g{i}"), vec![cart_add(1, "p", 20_000, 1)]))
                .await
                .unwrap()
                .into_inner()
        }));
    }
    let mut total = 0;
    let mut exhausted = 0;
    for t in tasks {
        let r = t.await.unwrap();
        total += r.offer.as_ref().map_or(0, |o| o.amount_cents);
        if reason(&r) == Reason::BudgetExhausted {
            exhausted += 1;
            assert!(r.offer.is_none());
        }
    }
    assert!(total <= cap, "{total} > {cap}");
    assert!(
        exhausted > 0,
        "64 eligible visitors cannot all fit in {cap} cents"
    );
    let snap = s.engine.ledger.snapshot("default", NOW_MS).await.unwrap();
    assert_eq!(snap.reserved_cents, total);
    // After the cap is reached, a new eligible session is refused.
    let r = s
        .client()
        .await
        .decide(decide("late", vec![cart_add(1, "p", 20_000, 1)]))
        .await
        .unwrap()
        .into_inner();
    if snap.remaining_cents < 500 {
        assert_eq!(reason(&r), Reason::BudgetExhausted);
    }
    s.stop().await;
}
