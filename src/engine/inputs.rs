//! What the engine takes: validated requests, free of any transport.
//!
//! The gRPC adapter (and any other front) builds these after checking every
//! field; the engine trusts them.

use crate::domain::model::ClientFeatures;
use crate::domain::session::{Context, Event};

/// A validated Track.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackInput {
    pub session_id: String,
    pub visitor_id: Option<String>,
    pub context: Option<Context>,
    pub events: Vec<Event>,
}

/// A validated Decide.
#[derive(Clone, Debug, PartialEq)]
pub struct DecideInput {
    pub session_id: String,
    pub visitor_id: Option<String>,
    pub context: Option<Context>,
    pub events: Vec<Event>,
    pub client: ClientFeatures,
    /// Overrides the session's intent value when set.
    pub intent_value_cents: Option<i64>,
    /// Empty = the default campaign.
    pub campaign: String,
}

/// A validated Redeem.
#[derive(Clone, Debug, PartialEq)]
pub struct RedeemInput {
    pub voucher_code: String,
    pub session_id: String,
    pub order_value_cents: i64,
}

/// A validated RecordOutcome.
#[derive(Clone, Debug, PartialEq)]
pub struct OutcomeInput {
    pub session_id: String,
    pub converted: bool,
    pub order_value_cents: i64,
}
