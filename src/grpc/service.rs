//! The `Offers` service: one function per RPC that validates, calls the
//! engine and converts the answer. The gRPC handlers and the JSON front
//! ([`crate::grpc::web`]) both call these functions, so both protocols
//! share validation, errors and limits. No decision logic lives here.

use crate::engine::Engine;
use crate::grpc::convert::{decision_pb, redeem_pb, report_pb};
use crate::grpc::pb;
use crate::grpc::validate;
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

/// Track: validates the events and appends them to the session.
pub async fn track(engine: &Engine, req: &pb::TrackRequest) -> Result<pb::TrackResponse, Status> {
    let input = validate::track(req, &engine.limits, engine.now_ms())?;
    let t = engine.track(input).await?;
    Ok(pb::TrackResponse {
        accepted: t.accepted,
        session_events: t.session_events,
    })
}

/// Decide: applies the events, scores and maybe reserves a voucher.
pub async fn decide(
    engine: &Engine,
    req: &pb::DecideRequest,
) -> Result<pb::DecideResponse, Status> {
    let input = validate::decide(req, &engine.limits, engine.now_ms())?;
    let d = engine.decide(input).await?;
    Ok(decision_pb(d))
}

/// Redeem: captures a voucher at checkout, exactly once.
pub async fn redeem(
    engine: &Engine,
    req: &pb::RedeemRequest,
) -> Result<pb::RedeemResponse, Status> {
    let input = validate::redeem(req)?;
    let r = engine.redeem(input).await?;
    Ok(redeem_pb(r.outcome, r.min_order_cents))
}

/// RecordOutcome: gives a session its label.
pub async fn record_outcome(
    engine: &Engine,
    req: &pb::RecordOutcomeRequest,
) -> Result<pb::RecordOutcomeResponse, Status> {
    let input = validate::outcome(req)?;
    let recorded = engine.record_outcome(input).await?;
    Ok(pb::RecordOutcomeResponse { recorded })
}

/// Budget: a campaign's budget for today.
pub async fn budget(
    engine: &Engine,
    req: &pb::BudgetRequest,
) -> Result<pb::BudgetResponse, Status> {
    let campaign = validate::budget(req)?;
    let b = engine.budget(&campaign).await?;
    let s = b.snapshot;
    Ok(pb::BudgetResponse {
        campaign: s.campaign,
        day: s.day,
        cap_cents: s.cap_cents,
        reserved_cents: s.reserved_cents,
        captured_cents: s.captured_cents,
        remaining_cents: s.remaining_cents,
        offers: s.offers,
        pacing_lambda: b.lambda,
        pacing_target_fraction: b.target_fraction,
        learning_cap_cents: s.learning_cap_cents,
        learning_reserved_cents: s.learning_reserved_cents,
        learning_captured_cents: s.learning_captured_cents,
        learning_remaining_cents: s.learning_remaining_cents,
        paused: b.paused,
        active: b.active,
        model_version: engine.model().version().to_owned(),
    })
}

/// Report: the incremental ROI report.
pub async fn report(
    engine: &Engine,
    req: &pb::ReportRequest,
) -> Result<pb::ReportResponse, Status> {
    let since = req.since_ms;
    if since < 0 {
        return Err(crate::engine::error::ServiceError::invalid(
            "since_ms",
            "must not be negative",
        )
        .into());
    }
    let answer = engine.report(since).await?;
    let (report, json, table) = &*answer;
    Ok(pb::ReportResponse {
        json: json.clone(),
        table: table.clone(),
        campaigns: report_pb(report),
        margin_rate: report.margin_rate,
        unmatched_outcomes: report.unmatched_outcomes,
        sessions_without_outcome: report.sessions_without_outcome,
    })
}

#[tonic::async_trait]
impl pb::offers_server::Offers for OffersService {
    async fn track(
        &self,
        request: Request<pb::TrackRequest>,
    ) -> Result<Response<pb::TrackResponse>, Status> {
        track(&self.engine, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideResponse>, Status> {
        decide(&self.engine, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn redeem(
        &self,
        request: Request<pb::RedeemRequest>,
    ) -> Result<Response<pb::RedeemResponse>, Status> {
        redeem(&self.engine, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn record_outcome(
        &self,
        request: Request<pb::RecordOutcomeRequest>,
    ) -> Result<Response<pb::RecordOutcomeResponse>, Status> {
        record_outcome(&self.engine, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn budget(
        &self,
        request: Request<pb::BudgetRequest>,
    ) -> Result<Response<pb::BudgetResponse>, Status> {
        budget(&self.engine, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        report(&self.engine, request.get_ref())
            .await
            .map(Response::new)
    }
}
