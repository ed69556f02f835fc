//! The gRPC `Offers` service: thin handlers that validate, call the engine
//! and convert the answer. No decision logic lives here.

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
        let campaign = validate::budget(request.get_ref())?;
        let b = self.engine.budget(&campaign).await?;
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
            learning_cap_cents: s.learning_cap_cents,
            learning_reserved_cents: s.learning_reserved_cents,
            learning_captured_cents: s.learning_captured_cents,
            learning_remaining_cents: s.learning_remaining_cents,
            paused: b.paused,
            active: b.active,
            model_version: self.engine.model().version().to_owned(),
        }))
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let since = request.get_ref().since_ms;
        if since < 0 {
            return Err(crate::engine::error::ServiceError::invalid(
                "since_ms",
                "must not be negative",
            )
            .into());
        }
        let answer = self.engine.report(since).await?;
        let (report, json, table) = &*answer;
        Ok(Response::new(pb::ReportResponse {
            json: json.clone(),
            table: table.clone(),
            campaigns: report_pb(report),
            margin_rate: report.margin_rate,
            unmatched_outcomes: report.unmatched_outcomes,
            sessions_without_outcome: report.sessions_without_outcome,
        }))
    }
}
