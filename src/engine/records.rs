//! What the engine writes to the decision log: the events a session
//! received and every decision with what a retrain needs (features, model
//! version, the action and its propensity, holdout and exploration flags,
//! the pacing price).

use crate::decision_log::entry::DecisionEntry;
use crate::decision_log::{EventsRecord, LogRecord, LOG_FORMAT_VERSION};
use crate::domain::session::{Context, Event};
use crate::engine::assess::Assessment;
use crate::engine::inputs::DecideInput;
use crate::engine::outputs::{segment_name, Decision, Reason};
use crate::engine::Engine;

impl Engine {
    pub(super) fn log_events(
        &self,
        now_ms: i64,
        session_id: &str,
        visitor_id: &Option<String>,
        context: Option<Context>,
        events: &[Event],
    ) {
        if !self.log.enabled() || (events.is_empty() && context.is_none()) {
            return;
        }
        self.log.log(LogRecord::Events(EventsRecord {
            v: LOG_FORMAT_VERSION,
            at_ms: now_ms,
            session_id: session_id.to_owned(),
            visitor_id: visitor_id.clone(),
            context,
            events: events.to_vec(),
        }));
    }

    pub(super) fn log_decision(
        &self,
        now_ms: i64,
        input: &DecideInput,
        a: &Assessment,
        d: &Decision,
        propensity: f64,
        lambda: f64,
    ) {
        if !self.log.enabled() {
            return;
        }
        let mut client_features: Vec<(String, f64)> = input
            .client
            .numeric
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        client_features.sort_by(|a, b| a.0.cmp(&b.0));
        let mut client_categorical: Vec<(String, String)> = input
            .client
            .categorical
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        client_categorical.sort();
        self.log.log_decision(DecisionEntry {
            at_ms: now_ms,
            session_id: d.session_id.clone(),
            visitor_id: input.visitor_id.clone(),
            campaign: d.campaign.clone(),
            model_version: d.model_version.clone(),
            features: a.features,
            client_features,
            client_categorical,
            probability: d.purchase_probability,
            segment: segment_name(d.segment),
            intent_value_cents: d.intent_value_cents,
            // A paused or unscheduled campaign's decisions took no part in
            // the experiment (no holdout or exploration draw): not
            // eligible, so the report and the trainer leave them out.
            eligible: a.eligible() && !matches!(d.reason, Reason::Paused | Reason::OutsideSchedule),
            policy_tier_cents: a.greedy_tier(),
            action_cents: match d.reason {
                Reason::Offered => d.offer.as_ref().map_or(0, |o| o.amount_cents),
                _ => 0,
            },
            propensity,
            holdout: d.holdout,
            explored: d.explored,
            learning: d.explored && d.reason == Reason::Offered,
            lambda,
            reason: d.reason.as_str(),
            voucher_code: d.offer.as_ref().map(|o| o.voucher_code.clone()),
            last_exit_intent_ms: Some(a.last_exit_intent_ms),
        });
    }
}
