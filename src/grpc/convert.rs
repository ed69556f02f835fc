//! Conversions between the engine's types and the protobuf messages, both
//! ways out of the engine (requests come in through [`super::validate`]).

use crate::domain::policy::Segment;
use crate::engine::{Decision, Reason};
use crate::grpc::pb;
use crate::ledger::RedeemOutcome;
use crate::report::{ArmStats, CellReport, Interval, RoiReport};

pub fn segment_pb(s: Segment) -> pb::Segment {
    match s {
        Segment::Hot => pb::Segment::Hot,
        Segment::Hesitant => pb::Segment::Hesitant,
        Segment::Cold => pb::Segment::Cold,
    }
}

pub fn reason_pb(r: Reason) -> pb::Reason {
    match r {
        Reason::Offered => pb::Reason::Offered,
        Reason::NotHesitant => pb::Reason::NotHesitant,
        Reason::IntentTooLow => pb::Reason::IntentTooLow,
        Reason::RoiNotPositive => pb::Reason::RoiNotPositive,
        Reason::Paced => pb::Reason::Paced,
        Reason::BudgetExhausted => pb::Reason::BudgetExhausted,
        Reason::AlreadyOffered => pb::Reason::AlreadyOffered,
        Reason::BudgetUnavailable => pb::Reason::BudgetUnavailable,
        Reason::SessionStoreUnavailable => pb::Reason::SessionStoreUnavailable,
        Reason::Holdout => pb::Reason::Holdout,
        Reason::ExplorationNoVoucher => pb::Reason::ExplorationNoVoucher,
        Reason::AwaitingTrigger => pb::Reason::AwaitingTrigger,
        Reason::ResponseNotLearned => pb::Reason::ResponseNotLearned,
        Reason::LearningBudgetExhausted => pb::Reason::LearningBudgetExhausted,
        Reason::Paused => pb::Reason::Paused,
        Reason::OutsideSchedule => pb::Reason::OutsideSchedule,
    }
}

pub fn decision_pb(d: Decision) -> pb::DecideResponse {
    pb::DecideResponse {
        session_id: d.session_id,
        purchase_probability: d.purchase_probability,
        segment: segment_pb(d.segment) as i32,
        intent_value_cents: d.intent_value_cents,
        offer: d.offer.map(|o| pb::Offer {
            voucher_code: o.voucher_code,
            amount_cents: o.amount_cents,
            expires_at_ms: o.expires_at_ms,
        }),
        reason: reason_pb(d.reason) as i32,
        expected_net_value_cents: d.expected_net_value_cents,
        model_version: d.model_version,
        top_signals: d
            .top_signals
            .into_iter()
            .map(|(feature, log_odds)| pb::Contribution { feature, log_odds })
            .collect(),
        best_tier_cents: d.best_tier_cents,
        holdout: d.holdout,
        explored: d.explored,
        campaign: d.campaign,
    }
}

pub fn redeem_pb(o: RedeemOutcome, min_order_cents: i64) -> pb::RedeemResponse {
    let (status, discount_cents, replayed) = match o {
        RedeemOutcome::Accepted {
            discount_cents,
            replayed,
        } => (pb::RedeemStatus::Accepted, discount_cents, replayed),
        RedeemOutcome::Invalid => (pb::RedeemStatus::Invalid, 0, false),
        RedeemOutcome::Expired => (pb::RedeemStatus::Expired, 0, false),
        RedeemOutcome::AlreadyRedeemed => (pb::RedeemStatus::AlreadyRedeemed, 0, false),
        RedeemOutcome::OrderBelowMinimum { .. } => (pb::RedeemStatus::OrderBelowMinimum, 0, false),
    };
    pb::RedeemResponse {
        status: status as i32,
        discount_cents,
        min_order_cents,
        replayed,
    }
}

/// The report as typed protobuf messages (the gRPC `Report` answer carries
/// them beside the JSON and the table).
pub fn report_pb(r: &RoiReport) -> Vec<pb::CampaignReport> {
    let interval = |i: &Option<Interval>| i.map(|i| pb::Interval { lo: i.lo, hi: i.hi });
    let arm = |a: &ArmStats| pb::ReportArm {
        sessions: a.sessions,
        offered: a.offered,
        conversions: a.conversions,
        conversion_rate: a.conversion_rate,
        revenue_cents: a.revenue_cents,
        voucher_cost_cents: a.voucher_cost_cents,
    };
    let cell = |c: &CellReport| pb::ReportCell {
        policy_tier_cents: c.policy_tier_cents,
        segment: c.segment.clone().unwrap_or_default(),
        treatment: Some(arm(&c.treatment)),
        holdout: Some(arm(&c.holdout)),
        incremental: Some(pb::ReportIncremental {
            conversions: c.incremental.conversions,
            margin_cents: c.incremental.margin_cents,
            margin_ci95: interval(&c.incremental.margin_ci95),
            voucher_cost_cents: c.incremental.voucher_cost_cents,
            net_margin_cents: c.incremental.net_margin_cents,
            net_margin_ci95: interval(&c.incremental.net_margin_ci95),
            roi: c.incremental.roi,
        }),
    };
    r.campaigns
        .iter()
        .map(|c| pb::CampaignReport {
            campaign: c.campaign.clone(),
            total: Some(cell(&c.total)),
            cells: c.cells.iter().map(cell).collect(),
            unattributed_cost_cents: c.unattributed_cost_cents,
            learning_cost_cents: c.learning_cost_cents,
            main_cost_cents: c.main_cost_cents,
            sessions_without_outcome: c.sessions_without_outcome,
        })
        .collect()
}
