use crate::decide::hesitant_session;
use crate::util::*;
use async_trait::async_trait;
use nudge::clock::ManualClock;
use nudge::domain::session::SessionState;
use nudge::engine::{Engine, Reason};
use nudge::grpc::validate;
use nudge::ledger::{
    BudgetSnapshot, CampaignBudget, Captured, DaySpend, Ledger, LedgerError, MemoryLedger, Offer,
    Outcome, OutcomeRecorded, RedeemOutcome, RedeemRequest, ReserveOutcome, ReserveRequest,
};
use nudge::store::{MemorySessionStore, SessionStore, SessionUpdate, StoreError};
use std::sync::Arc;
use std::time::Duration;

struct DownStore;
#[async_trait]
impl SessionStore for DownStore {
    async fn apply(&self, _: &str, _: SessionUpdate<'_>) -> Result<SessionState, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
    async fn get_many(&self, _: &[&str], _: i64) -> Result<Vec<Option<SessionState>>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }
}

struct DownLedger;
#[async_trait]
impl Ledger for DownLedger {
    async fn reserve(&self, _: ReserveRequest<'_>) -> Result<ReserveOutcome, LedgerError> {
        Err(LedgerError::Unavailable("connection refused".into()))
    }
    async fn offer_for(&self, _: &str, _: &str) -> Result<Option<Offer>, LedgerError> {
        Err(LedgerError::Unavailable("connection refused".into()))
    }
    async fn redeem(&self, _: RedeemRequest<'_>) -> Result<RedeemOutcome, LedgerError> {
        Err(LedgerError::Unavailable("connection refused".into()))
    }
    async fn void_expired(&self, _: i64) -> Result<u64, LedgerError> {
        Err(LedgerError::Unavailable("connection refused".into()))
    }
    async fn snapshot(&self, _: &str, _: i64) -> Result<BudgetSnapshot, LedgerError> {
        Err(LedgerError::Unavailable("connection refused".into()))
    }
    async fn record_outcome(&self, _: Outcome) -> Result<OutcomeRecorded, LedgerError> {
        Err(LedgerError::Unavailable("connection refused".into()))
    }
    async fn captured(&self, _: i64) -> Result<Vec<Captured>, LedgerError> {
        Err(LedgerError::Unavailable("connection refused".into()))
    }
    async fn outcomes(&self, _: i64) -> Result<Vec<Outcome>, LedgerError> {
        Err(LedgerError::Unavailable("connection refused".into()))
    }
    async fn set_budget(&self, _: &str, _: CampaignBudget, _: u64) -> Result<bool, LedgerError> {
        Err(LedgerError::Unavailable("connection refused".into()))
    }
    async fn spend_by_day(&self, _: &str, _: &str, _: &str) -> Result<Vec<DaySpend>, LedgerError> {
        Err(LedgerError::Unavailable("connection refused".into()))
    }
}

fn engine_with(store: Arc<dyn SessionStore>, ledger: Arc<dyn Ledger>) -> Engine {
    Engine::new(
        &settings(""),
        Arc::new(fixture_model("flat_hesitant.json")),
        store,
        ledger,
        Arc::new(ManualClock::new(NOW_MS)),
        nudge::domain::voucher::VoucherKey::random(),
        nudge::decision_log::writer::DecisionLog::disabled(),
    )
}

async fn decide_hesitant(e: &Engine) -> nudge::engine::Decision {
    let req = decide("f", hesitant_session(20_000));
    e.decide(validate::decide(&req, &e.limits, NOW_MS).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn ledger_down_scores_but_gives_no_voucher() {
    let e = engine_with(
        Arc::new(MemorySessionStore::new(Duration::from_secs(60), 100)),
        Arc::new(DownLedger),
    );
    let d = decide_hesitant(&e).await;
    assert_eq!(d.reason, Reason::BudgetUnavailable);
    assert!(d.offer.is_none());
    assert!((d.purchase_probability - 0.3).abs() < 1e-9);
}

#[tokio::test]
async fn session_store_down_scores_the_request_alone_and_gives_no_voucher() {
    let e = engine_with(
        Arc::new(DownStore),
        Arc::new(MemoryLedger::with_daily_cap(100_000)),
    );
    let d = decide_hesitant(&e).await;
    assert_eq!(d.reason, Reason::SessionStoreUnavailable);
    assert!(d.offer.is_none());
    assert_eq!(
        d.intent_value_cents, 20_000,
        "the request's own events were scored"
    );
    let t = e
        .track(
            validate::track(
                &nudge::grpc::pb::TrackRequest {
                    session_id: "f".into(),
                    ..Default::default()
                },
                &e.limits,
                NOW_MS,
            )
            .unwrap(),
        )
        .await;
    assert!(matches!(
        t,
        Err(nudge::engine::error::ServiceError::Unavailable(_))
    ));
}
