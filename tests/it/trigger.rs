//! `policy.offer_on = "exit_intent"`: offers only at a fresh exit-intent
//! signal; other decisions are not eligible (no holdout or exploration is
//! drawn there, so the randomised rows describe the moments the rule acts
//! on).

use crate::decide::hesitant_session;
use crate::util::*;
use nudge::clock::ManualClock;
use nudge::engine::{Engine, Reason};
use nudge::grpc::pb;
use nudge::grpc::validate;
use nudge::ledger::MemoryLedger;
use nudge::store::MemorySessionStore;
use std::sync::Arc;
use std::time::Duration;

fn engine(toml: &str) -> Engine {
    Engine::new(
        &settings(toml),
        Arc::new(fixture_model("flat_hesitant.json")),
        Arc::new(MemorySessionStore::new(Duration::from_secs(3_600), 100)),
        Arc::new(MemoryLedger::with_daily_cap(100_000)),
        Arc::new(ManualClock::new(NOW_MS)),
        nudge::domain::voucher::VoucherKey::random(),
        nudge::decision_log::writer::DecisionLog::disabled(),
    )
}

async fn decide_now(e: &Engine, id: &str, events: Vec<pb::Event>) -> nudge::engine::Decision {
    let req = decide(id, events);
    e.decide(validate::decide(&req, &e.limits, NOW_MS).unwrap())
        .await
        .unwrap()
}

const EXIT_INTENT: &str = "[policy]\noffer_on = \"exit_intent\"\n";

#[tokio::test]
async fn exit_intent_trigger_waits_for_a_fresh_exit_intent_then_offers() {
    let e = engine(EXIT_INTENT);
    // The session's exit intent is 480 s old at the decision: not fresh.
    let d = decide_now(&e, "t", hesitant_session(20_000)).await;
    assert_eq!(d.reason, Reason::AwaitingTrigger, "{d:?}");
    assert!(d.offer.is_none());
    assert!(!d.holdout && !d.explored);
    // The visitor moves to leave again, 2 s before the decision.
    let d = decide_now(&e, "t", vec![signal(598, pb::Signal::ExitIntent)]).await;
    assert_eq!(d.reason, Reason::Offered, "{d:?}");
    assert!(d.offer.is_some());
}

#[tokio::test]
async fn offers_at_any_decision_by_default() {
    let e = engine("");
    let d = decide_now(&e, "t", hesitant_session(20_000)).await;
    assert_eq!(d.reason, Reason::Offered, "{d:?}");
}

#[tokio::test]
async fn no_holdout_is_drawn_while_awaiting_the_trigger() {
    // Nearly everyone is in the holdout once eligible.
    let e = engine(&format!(
        "{EXIT_INTENT}[experiment]\nholdout_share = 0.99\n"
    ));
    let d = decide_now(&e, "h", hesitant_session(20_000)).await;
    assert_eq!(d.reason, Reason::AwaitingTrigger, "{d:?}");
    assert!(!d.holdout);
    let d = decide_now(&e, "h", vec![signal(599, pb::Signal::ExitIntent)]).await;
    assert_eq!(d.reason, Reason::Holdout, "{d:?}");
    assert!(d.holdout);
}

#[tokio::test]
async fn cold_and_low_intent_keep_their_reasons_under_the_trigger() {
    let e = engine(EXIT_INTENT);
    let d = decide_now(&e, "low", hesitant_session(5_000)).await;
    assert_eq!(d.reason, Reason::IntentTooLow, "{d:?}");
}
