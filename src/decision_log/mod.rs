//! The decision log format: JSON lines the service appends and nudge-train
//! reads. One record per line, tagged by `type`:
//!
//! - `events`: the validated events of one Track or Decide, in the order they
//!   were applied (so a session can be replayed through the very same
//!   `SessionState::apply` + `features::compute` as at serving time);
//! - `decision`: what Decide saw and did — the features it scored, model
//!   version, probability, segment, eligibility, the action with the
//!   probability (propensity) that the policy took it, holdout and
//!   exploration flags, the pacing multiplier;
//! - `outcome`: the label (converted, order value), joined to decisions by
//!   `session_id`.
//!
//! Why events *and* features: replaying events lets a retrain use new
//! features on old logs, and comparing the replayed features with the logged
//! ones detects training/serving skew.

pub mod entry;
pub mod reader;
pub mod writer;

use crate::domain::session::{Context, Event};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Format tag written in every record's `v` field.
pub const LOG_FORMAT_VERSION: u32 = 1;

// Records are built once and moved into the (boxed) writer queue; boxing
// the large variant would only add an allocation per decision.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogRecord {
    Events(EventsRecord),
    Decision(DecisionRecord),
    Outcome(OutcomeRecord),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventsRecord {
    pub v: u32,
    /// Server time the events were applied.
    pub at_ms: i64,
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    /// Set when the request replaced the session's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    pub events: Vec<Event>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub v: u32,
    /// Server time of the decision (the `now` the features were computed at).
    pub at_ms: i64,
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    /// Campaign whose budget the decision drew on.
    pub campaign: String,
    pub model_version: String,
    /// Session features by name, as scored.
    pub features: BTreeMap<String, f64>,
    /// Client features sent with the request (client models).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub client_features: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub client_categorical: BTreeMap<String, String>,
    pub probability: f64,
    /// "hot" | "hesitant" | "cold".
    pub segment: String,
    pub intent_value_cents: i64,
    /// Hesitant with enough intent: the policy considered a voucher.
    pub eligible: bool,
    /// Tier the greedy policy would pick (0 = none), before holdout,
    /// exploration and budget.
    pub policy_tier_cents: i64,
    /// Voucher actually offered (0 = none).
    pub action_cents: i64,
    /// Probability that the deciding policy took `action_cents` (1.0 for a
    /// deterministic choice; 1/(tiers+1) * explore share + ... when exploring),
    /// at the exploration share in force (the cold share while the model
    /// has no learned response). An explored voucher the budget refused is
    /// `action_cents = 0` with the probability of "none" given the budget
    /// (`Experiment::propensity_of_none_refused`).
    pub propensity: f64,
    pub holdout: bool,
    pub explored: bool,
    /// The offered voucher is paid from the learning budget (an exploration
    /// voucher). Absent in logs written before the learning budget existed.
    #[serde(default)]
    pub learning: bool,
    /// Pacing shadow price on voucher cost at the time (0 = unpaced).
    pub lambda: f64,
    /// The gRPC reason name without prefix, e.g. "offered", "not_hesitant".
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voucher_code: Option<String>,
    /// Time of the session's latest exit-intent signal at the decision
    /// (0: none), so that replay can apply an exit-intent offer trigger.
    /// Absent in logs written before the trigger existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit_intent_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub v: u32,
    pub at_ms: i64,
    pub session_id: String,
    pub converted: bool,
    pub order_value_cents: i64,
}

impl LogRecord {
    /// The format version the record was written in.
    pub fn format_version(&self) -> u32 {
        match self {
            LogRecord::Events(e) => e.v,
            LogRecord::Decision(d) => d.v,
            LogRecord::Outcome(o) => o.v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::session::{EventKind, Signal};

    #[test]
    fn records_round_trip_as_tagged_json_lines() {
        let recs = vec![
            LogRecord::Events(EventsRecord {
                v: LOG_FORMAT_VERSION,
                at_ms: 5,
                session_id: "s".into(),
                visitor_id: None,
                context: Some(Context::default()),
                events: vec![Event {
                    at_ms: 4,
                    kind: EventKind::Interaction {
                        signal: Signal::ExitIntent,
                    },
                }],
            }),
            LogRecord::Outcome(OutcomeRecord {
                v: LOG_FORMAT_VERSION,
                at_ms: 9,
                session_id: "s".into(),
                converted: true,
                order_value_cents: 12_000,
            }),
        ];
        for r in recs {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<LogRecord>(&line).unwrap(), r);
        }
        let line = r#"{"type":"events","v":1,"at_ms":1,"session_id":"a","events":[{"at_ms":1,"type":"interaction","signal":"exit_intent"}]}"#;
        assert!(matches!(
            serde_json::from_str::<LogRecord>(line).unwrap(),
            LogRecord::Events(_)
        ));
    }
}
