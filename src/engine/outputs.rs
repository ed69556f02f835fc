//! What the engine answers: decisions, reasons and the small result types,
//! free of any transport.

use crate::domain::policy::Segment;
use crate::ledger::{BudgetSnapshot, Offer, RedeemOutcome};

/// Why the decision came out as it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Offered,
    NotHesitant,
    IntentTooLow,
    RoiNotPositive,
    Paced,
    BudgetExhausted,
    AlreadyOffered,
    BudgetUnavailable,
    SessionStoreUnavailable,
    Holdout,
    ExplorationNoVoucher,
    AwaitingTrigger,
    /// Eligible, but only tiers whose response was never learned would pay
    /// (on their prior), and the policy does not offer on priors.
    ResponseNotLearned,
    /// Exploration drew a voucher the day's learning budget cannot pay.
    LearningBudgetExhausted,
    /// Eligible, but the campaign is paused: no new vouchers.
    Paused,
    /// Eligible, but outside the campaign's schedule.
    OutsideSchedule,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Offered => "offered",
            Reason::NotHesitant => "not_hesitant",
            Reason::IntentTooLow => "intent_too_low",
            Reason::RoiNotPositive => "roi_not_positive",
            Reason::Paced => "paced",
            Reason::BudgetExhausted => "budget_exhausted",
            Reason::AlreadyOffered => "already_offered",
            Reason::BudgetUnavailable => "budget_unavailable",
            Reason::SessionStoreUnavailable => "session_store_unavailable",
            Reason::Holdout => "holdout",
            Reason::ExplorationNoVoucher => "exploration_no_voucher",
            Reason::AwaitingTrigger => "awaiting_trigger",
            Reason::ResponseNotLearned => "response_not_learned",
            Reason::LearningBudgetExhausted => "learning_budget_exhausted",
            Reason::Paused => "paused",
            Reason::OutsideSchedule => "outside_schedule",
        }
    }
}

pub fn segment_name(s: Segment) -> &'static str {
    match s {
        Segment::Hot => "hot",
        Segment::Hesitant => "hesitant",
        Segment::Cold => "cold",
    }
}

/// What Decide answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub session_id: String,
    pub campaign: String,
    pub purchase_probability: f64,
    pub segment: Segment,
    pub intent_value_cents: i64,
    pub offer: Option<Offer>,
    pub reason: Reason,
    pub expected_net_value_cents: i64,
    pub best_tier_cents: i64,
    pub model_version: String,
    pub top_signals: Vec<(String, f64)>,
    pub holdout: bool,
    pub explored: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub accepted: u32,
    pub session_events: u32,
}

/// Result of a redemption, with the voucher's minimum order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redeemed {
    pub outcome: RedeemOutcome,
    pub min_order_cents: i64,
}

/// Budget plus pacing state, for ops.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetView {
    pub snapshot: BudgetSnapshot,
    pub lambda: f64,
    pub target_fraction: f64,
    pub paused: bool,
    /// Not paused and within the schedule.
    pub active: bool,
}
