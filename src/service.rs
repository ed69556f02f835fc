//! The gRPC `Offers` service: thin handlers that validate, call the engine
//! and convert the answer. No decision logic lives here.

use crate::engine::{Decision, Engine, Reason};
use crate::ledger::RedeemOutcome;
use crate::pb;
use crate::policy::Segment;
use crate::validate;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct OffersService {
    engine: Arc<Engine>,
}

impl OffersService {
    pub fn new(engine: Arc<Engine>) -> Self {
        OffersService { engine }
    }
}

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
    let (status, discount_cents) = match o {
        RedeemOutcome::Accepted { discount_cents } => (pb::RedeemStatus::Accepted, discount_cents),
        RedeemOutcome::Invalid => (pb::RedeemStatus::Invalid, 0),
        RedeemOutcome::Expired => (pb::RedeemStatus::Expired, 0),
        RedeemOutcome::AlreadyRedeemed => (pb::RedeemStatus::AlreadyRedeemed, 0),
        RedeemOutcome::OrderBelowMinimum { .. } => (pb::RedeemStatus::OrderBelowMinimum, 0),
    };
    pb::RedeemResponse {
        status: status as i32,
        discount_cents,
        min_order_cents,
    }
}

#[tonic::async_trait]
impl pb::offers_server::Offers for OffersService {
    async fn track(
        &self,
        request: Request<pb::TrackRequest>,
    ) -> Result<Response<pb::TrackResponse>, Status> {
        let input = validate::track(request.get_ref(), &self.engine.limits, self.engine.now_ms())?;
        let t = self.engine.track(input).await?;
        Ok(Response::new(pb::TrackResponse {
            accepted: t.accepted,
            session_events: t.session_events,
        }))
    }

    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideResponse>, Status> {
        let input = validate::decide(request.get_ref(), &self.engine.limits, self.engine.now_ms())?;
        let d = self.engine.decide(input).await?;
        Ok(Response::new(decision_pb(d)))
    }

    async fn redeem(
        &self,
        request: Request<pb::RedeemRequest>,
    ) -> Result<Response<pb::RedeemResponse>, Status> {
        let input = validate::redeem(request.get_ref())?;
        let r = self.engine.redeem(input).await?;
        Ok(Response::new(redeem_pb(r.outcome, r.min_order_cents)))
    }

    async fn record_outcome(
        &self,
        request: Request<pb::RecordOutcomeRequest>,
    ) -> Result<Response<pb::RecordOutcomeResponse>, Status> {
        let input = validate::outcome(request.get_ref())?;
        let recorded = self.engine.record_outcome(input).await?;
        Ok(Response::new(pb::RecordOutcomeResponse { recorded }))
    }

    async fn budget(
        &self,
        request: Request<pb::BudgetRequest>,
    ) -> Result<Response<pb::BudgetResponse>, Status> {
        let b = self.engine.budget(&request.get_ref().campaign).await?;
        let s = b.snapshot;
        Ok(Response::new(pb::BudgetResponse {
            campaign: s.campaign,
            day: s.day,
            cap_cents: s.cap_cents,
            reserved_cents: s.reserved_cents,
            captured_cents: s.captured_cents,
            remaining_cents: s.remaining_cents,
            offers: s.offers,
            pacing_lambda: b.lambda,
            pacing_target_fraction: b.target_fraction,
        }))
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let since = request.get_ref().since_ms;
        if since < 0 {
            return Err(
                crate::error::ServiceError::invalid("since_ms", "must not be negative").into(),
            );
        }
        let (report, json, table) = self.engine.report(since).await?;
        Ok(Response::new(pb::ReportResponse {
            json,
            table,
            campaigns: crate::report::to_proto(&report),
            margin_rate: report.margin_rate,
        }))
    }
}
