//! The voucher ledger, with payment-authorisation semantics.
//!
//! - **Authorise** ([`Ledger::reserve`]): issuing an offer reserves its face
//!   value against the campaign's budget of the (local) day. One atomic step
//!   also enforces one live offer per session and campaign: a session that
//!   holds an offer gets it back (`AlreadyOffered`). A voided offer (or a
//!   reserved one past its expiry, which the same step voids) frees the
//!   session: it may be offered again, on the budget as it is then.
//! - **Capture** ([`Ledger::redeem`]): a redemption turns the reserve into
//!   spend, exactly once. The same redemption retried (same code, same
//!   order value) within [`REDEEM_REPLAY_MS`] of the capture is answered
//!   `Accepted` with the same discount again and captures nothing: a shop
//!   whose answer was lost can retry safely.
//! - **Void** ([`Ledger::void_expired`]): an offer past its expiry releases
//!   its reserve.
//!
//! `remaining = cap - captured - reserved`, never below zero, for the day
//! cap and (when set) the campaign's lifetime cap. Reserve and capture are
//! booked on the day the offer was issued, so a redemption tomorrow never
//! takes today's budget over its cap.
//!
//! **Learning budget.** A reservation marked `learning` (an exploration
//! voucher) must also fit the day's learning remainder, `learning_cap -
//! learning reserved - learning captured`
//! ([`CampaignBudget::remaining_learning_cents`]); its amount counts in the
//! main counters too. Offer rows and captures carry the flag, so release,
//! void and capture move learning money exactly like main money.
//!
//! **Caps that change at run time** ([`Ledger::set_budget`]). A campaign's
//! caps may be replaced (or a campaign added) while the service runs: every
//! later reservation and snapshot uses the new caps, and nothing already
//! offered is touched, so a cap lowered under the day's spend only refuses
//! new offers. Changes carry a revision and a lower one than the revision
//! in force is ignored, so a replica that learns of changes late can never
//! undo a newer one. The configured caps are revision 0. Caps are not the
//! ledger's to persist: the settings store keeps them and the service
//! applies them again at start.
//!
//! **Spend history** ([`Ledger::spend_by_day`]): the per-day counters the
//! cap check uses, for a range of budget days.
//!
//! The bookkeeping lives in one place, [`LedgerCore`], a plain in-memory
//! state machine. [`MemoryLedger`] wraps it in a mutex (tests, simulation);
//! [`crate::ledger::sqlite::SqliteLedger`] (the embedded default) owns one on
//! a writer thread and persists every change in SQLite before answering.
//! [`crate::redis::RedisLedger`] (several replicas) does the same
//! bookkeeping in Redis Lua scripts. All three run one conformance suite.

pub mod budget;
pub mod core;
pub mod memory;
pub mod offered;
pub mod sqlite;

pub use budget::{
    check_campaign_id, day_range, Budgets, CampaignBudget, DEFAULT_CAMPAIGN,
    DEFAULT_LEARNING_SHARE, MS_PER_DAY,
};
pub use core::{
    outcome_change, upsert_outcome, upsert_outcome_key, Effect, LedgerCore, OfferRow, OfferState,
    OutcomeRecorded,
};
pub use memory::MemoryLedger;

use async_trait::async_trait;
use serde::Serialize;

/// How long after a capture the same redemption (same code, same order
/// value) is answered `Accepted` again instead of `AlreadyRedeemed`: a day
/// covers any checkout retry after a lost answer, and keeps a code shown
/// again much later from looking fresh.
pub const REDEEM_REPLAY_MS: i64 = 24 * 3_600_000;

/// An offer as the visitor sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Offer {
    pub voucher_code: String,
    pub amount_cents: i64,
    pub expires_at_ms: i64,
}

/// One atomic reservation attempt.
#[derive(Clone, Copy, Debug)]
pub struct ReserveRequest<'a> {
    pub campaign: &'a str,
    pub session_id: &'a str,
    /// Amounts in order of preference; the first that fits is reserved.
    pub candidates: &'a [i64],
    pub now_ms: i64,
    pub expires_at_ms: i64,
    /// An exploration voucher: paid from the learning budget, which it must
    /// fit as well as the main budget.
    pub learning: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved(Offer),
    /// The session already holds this offer; nothing new was reserved.
    AlreadyOffered(Offer),
    /// No candidate fits under the remaining budget (a request that is not
    /// `learning`).
    Exhausted {
        remaining_cents: i64,
    },
    /// A `learning` request no candidate fits under both budgets:
    /// `remaining_cents` is the main remainder, `learning_remaining_cents`
    /// what a learning reservation could still take (never more than
    /// `remaining_cents`).
    LearningExhausted {
        remaining_cents: i64,
        learning_remaining_cents: i64,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct RedeemRequest<'a> {
    /// Canonical code (see [`voucher::normalise`]); its MAC was verified.
    pub code: &'a str,
    pub session_id: &'a str,
    pub order_value_cents: i64,
    pub min_order_cents: i64,
    pub now_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RedeemOutcome {
    Accepted {
        discount_cents: i64,
        /// A retry of a redemption already accepted (same code and order
        /// value within `REDEEM_REPLAY_MS`): nothing new was captured, and
        /// the discount belongs to that same order only.
        replayed: bool,
    },
    /// Unknown code, or a code of another session.
    Invalid,
    Expired,
    AlreadyRedeemed,
    OrderBelowMinimum {
        min_order_cents: i64,
    },
}

/// The budget as ops see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BudgetSnapshot {
    pub campaign: String,
    /// Local day, `YYYY-MM-DD`.
    pub day: String,
    pub cap_cents: i64,
    pub reserved_cents: i64,
    pub captured_cents: i64,
    /// What can still be reserved today (also bounded by the lifetime cap).
    pub remaining_cents: i64,
    pub offers: u64,
    pub total_cap_cents: Option<i64>,
    pub total_reserved_cents: i64,
    pub total_captured_cents: i64,
    /// The day's learning cap (part of `cap_cents`).
    pub learning_cap_cents: i64,
    /// Learning (exploration) vouchers reserved and captured today; also
    /// counted in `reserved_cents` and `captured_cents`.
    pub learning_reserved_cents: i64,
    pub learning_captured_cents: i64,
    /// What a learning reservation can still take today (never more than
    /// `remaining_cents`).
    pub learning_remaining_cents: i64,
}

/// A campaign's spend on one local budget day. Learning amounts are also
/// counted in `reserved_cents` and `captured_cents`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DaySpend {
    /// Local day, `YYYY-MM-DD`.
    pub day: String,
    pub reserved_cents: i64,
    pub captured_cents: i64,
    /// Offers issued that day, whatever became of them.
    pub offers: u64,
    pub learning_reserved_cents: i64,
    pub learning_captured_cents: i64,
}

/// A redeemed voucher (for the ROI report).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Captured {
    pub campaign: String,
    pub session_id: String,
    pub amount_cents: i64,
    pub captured_ms: i64,
    /// Paid from the learning budget (an exploration voucher).
    pub learning: bool,
}

/// The label of a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub session_id: String,
    pub converted: bool,
    pub order_value_cents: i64,
    pub at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    #[error("unknown campaign {0:?}")]
    UnknownCampaign(String),
    /// The caller's mistake, naming the offending argument.
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
}

#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Authorise: see the module docs. Never reserves beyond a cap.
    async fn reserve(&self, req: ReserveRequest<'_>) -> Result<ReserveOutcome, LedgerError>;
    /// The session's offer in a campaign, if any and not voided.
    async fn offer_for(
        &self,
        campaign: &str,
        session_id: &str,
    ) -> Result<Option<Offer>, LedgerError>;
    /// Capture, exactly once.
    async fn redeem(&self, req: RedeemRequest<'_>) -> Result<RedeemOutcome, LedgerError>;
    /// Void every reserved offer whose expiry is at or before `now_ms`;
    /// returns how many.
    async fn void_expired(&self, now_ms: i64) -> Result<u64, LedgerError>;
    /// Today's budget of a campaign.
    async fn snapshot(&self, campaign: &str, now_ms: i64) -> Result<BudgetSnapshot, LedgerError>;
    /// Records a session's outcome by [`outcome_change`]: idempotent, "not
    /// converted" may become "converted" once, a converted outcome is final.
    async fn record_outcome(&self, outcome: Outcome) -> Result<OutcomeRecorded, LedgerError>;
    /// Redemptions captured at or after `since_ms`.
    async fn captured(&self, since_ms: i64) -> Result<Vec<Captured>, LedgerError>;
    /// Outcomes recorded at or after `since_ms`.
    async fn outcomes(&self, since_ms: i64) -> Result<Vec<Outcome>, LedgerError>;
    /// Adds or replaces a campaign's caps. Every later reservation and snapshot uses
    /// them; no offer already given is touched (a cap lowered under today's spend
    /// refuses new offers, never cancels one). `revision` orders changes: a change
    /// with a revision lower than the one in force is ignored (a stale replica
    /// cannot undo a newer change). Returns whether it was applied.
    async fn set_budget(
        &self,
        campaign: &str,
        budget: CampaignBudget,
        revision: u64,
    ) -> Result<bool, LedgerError>;
    /// Spend per local budget day of a campaign, for the days `from_day..=to_day`
    /// (`YYYY-MM-DD`, at most 366 days apart) that have any offer, oldest first.
    async fn spend_by_day(
        &self,
        campaign: &str,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<DaySpend>, LedgerError>;

    /// A cheap probe that the ledger answers (readiness). In memory it
    /// always does.
    async fn ping(&self) -> Result<(), LedgerError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_follow_the_configured_time_zone() {
        let mut b = Budgets::single(100);
        // 2026-11-22T23:30:00Z is already the 23rd in Berlin (UTC+1).
        let t = 1_795_390_200_000;
        assert_eq!(b.day_of(t), "2026-11-22");
        b.timezone = chrono_tz::Europe::Berlin;
        assert_eq!(b.day_of(t), "2026-11-23");
        assert!((b.day_fraction(t) - 0.5 / 24.0).abs() < 1e-9);
        // DST change day (2026-03-29 in Berlin has 23 hours): noon local is
        // 11/23 of the day.
        let noon_local = 1_774_778_400_000; // 2026-03-29T10:00:00Z = 12:00 CEST
        assert!((b.day_fraction(noon_local) - 11.0 / 23.0).abs() < 1e-9);
    }
}
