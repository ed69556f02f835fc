//! The ledger in memory (tests, simulation, single-process demos).

use super::{
    check_campaign_id, upsert_outcome, BudgetSnapshot, Budgets, CampaignBudget, Captured, DaySpend,
    Ledger, LedgerCore, LedgerError, Offer, OfferRow, Outcome, OutcomeRecorded, RedeemOutcome,
    RedeemRequest, ReserveOutcome, ReserveRequest,
};
use crate::domain::voucher::VoucherKey;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

/// In-memory ledger: the core behind a mutex, held only for the in-memory
/// step (never across an `.await`).
pub struct MemoryLedger {
    core: Mutex<LedgerCore>,
    outcomes: Mutex<HashMap<String, Outcome>>,
}

impl MemoryLedger {
    pub fn new(budgets: Budgets, key: VoucherKey) -> Self {
        MemoryLedger {
            core: Mutex::new(LedgerCore::new(budgets, key)),
            outcomes: Mutex::new(HashMap::new()),
        }
    }

    /// A single `default` campaign with a daily cap and a random key.
    pub fn with_daily_cap(cap_cents: i64) -> Self {
        Self::new(Budgets::single(cap_cents), VoucherKey::random())
    }

    fn core(&self) -> Result<std::sync::MutexGuard<'_, LedgerCore>, LedgerError> {
        self.core
            .lock()
            .map_err(|_| LedgerError::Unavailable("ledger lock poisoned".into()))
    }

    pub fn rows(&self) -> Result<Vec<OfferRow>, LedgerError> {
        Ok(self.core()?.rows())
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn reserve(&self, req: ReserveRequest<'_>) -> Result<ReserveOutcome, LedgerError> {
        Ok(self.core()?.reserve(&req)?.0)
    }

    async fn offer_for(
        &self,
        campaign: &str,
        session_id: &str,
    ) -> Result<Option<Offer>, LedgerError> {
        Ok(self.core()?.offer_for(campaign, session_id))
    }

    async fn redeem(&self, req: RedeemRequest<'_>) -> Result<RedeemOutcome, LedgerError> {
        Ok(self.core()?.redeem(&req).0)
    }

    async fn void_expired(&self, now_ms: i64) -> Result<u64, LedgerError> {
        Ok(self.core()?.void_expired(now_ms).len() as u64)
    }

    async fn snapshot(&self, campaign: &str, now_ms: i64) -> Result<BudgetSnapshot, LedgerError> {
        self.core()?.snapshot(campaign, now_ms)
    }

    async fn record_outcome(&self, outcome: Outcome) -> Result<OutcomeRecorded, LedgerError> {
        let mut map = self
            .outcomes
            .lock()
            .map_err(|_| LedgerError::Unavailable("outcome lock poisoned".into()))?;
        Ok(upsert_outcome(&mut map, outcome))
    }

    async fn captured(&self, since_ms: i64) -> Result<Vec<Captured>, LedgerError> {
        Ok(self.core()?.captured(since_ms))
    }

    async fn outcomes(&self, since_ms: i64) -> Result<Vec<Outcome>, LedgerError> {
        let map = self
            .outcomes
            .lock()
            .map_err(|_| LedgerError::Unavailable("outcome lock poisoned".into()))?;
        let mut v: Vec<Outcome> = map
            .values()
            .filter(|o| o.at_ms >= since_ms)
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.at_ms, &a.session_id).cmp(&(b.at_ms, &b.session_id)));
        Ok(v)
    }

    /// Under the same lock as reservations: a reservation after this
    /// returns sees the new caps.
    async fn set_budget(
        &self,
        campaign: &str,
        budget: CampaignBudget,
        revision: u64,
    ) -> Result<bool, LedgerError> {
        check_campaign_id(campaign)?;
        budget.check()?;
        Ok(self.core()?.set_budget(campaign, budget, revision))
    }

    async fn spend_by_day(
        &self,
        campaign: &str,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<DaySpend>, LedgerError> {
        self.core()?.spend_by_day(campaign, from_day, to_day)
    }
}
