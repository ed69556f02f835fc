//! The policy under evaluation and the voucher it would give a logged
//! session: the service's own greedy rule (lambda 0) or a fixed action.

use anyhow::{bail, Result};
use nudge::decision_log::DecisionRecord;
use nudge::domain::features::{self, Features, N_FEATURES};
use nudge::domain::model::{ClientFeatures, Model, ScoreError};
use nudge::domain::policy::{self, OfferTrigger, Policy, Verdict};

/// The policy under evaluation.
// One candidate per evaluation, built once and borrowed: boxing the rule
// would only add an indirection to every session's lookup.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Candidate {
    /// A model with a policy: the service's greedy rule at lambda 0.
    Rule { model: Model, policy: Policy },
    /// The same action for every session of the population.
    Fixed { amount_cents: i64 },
}

impl Candidate {
    pub fn name(&self) -> String {
        match self {
            Candidate::Rule { model, .. } => format!("model {}", model.version()),
            Candidate::Fixed { amount_cents: 0 } => "fixed: no voucher".into(),
            Candidate::Fixed { amount_cents } => format!("fixed: {amount_cents} cents"),
        }
    }

    /// The candidate's voucher for a session given its decisions in time
    /// order (only called for `Rule`): the best tier at the first moment the
    /// rule offers one.
    pub(super) fn rule_action(
        model: &Model,
        policy: &Policy,
        decisions: &[&DecisionRecord],
    ) -> Result<i64> {
        for d in decisions {
            if policy.trigger != OfferTrigger::Any {
                let Some(last_exit) = d.last_exit_intent_ms else {
                    bail!(
                        "session {} at {}: the policy offers only at exit intent, and this log (of an older build) does not record exit-intent times",
                        d.session_id,
                        d.at_ms
                    );
                };
                if !policy.trigger.fired(last_exit, d.at_ms) {
                    continue;
                }
            }
            let f = features_of(d)?;
            let client = ClientFeatures {
                numeric: d.client_features.clone().into_iter().collect(),
                categorical: d.client_categorical.clone().into_iter().collect(),
            };
            let a = action_at(model, policy, &f, &client, d.intent_value_cents, None)
                .map_err(|e| anyhow::anyhow!("session {} at {}: {e}", d.session_id, d.at_ms))?;
            if a != 0 {
                return Ok(a);
            }
        }
        Ok(0)
    }
}

/// What the service's rule (lambda 0, no budget) offers at one decision
/// moment: score, segment, the learned lifts (if any; `z` overrides the
/// model's `lower_bound_z`) and the best positive tier, else 0.
pub fn action_at(
    model: &Model,
    policy: &Policy,
    f: &Features,
    client: &ClientFeatures,
    intent_cents: i64,
    z: Option<f64>,
) -> Result<i64, ScoreError> {
    let score = model.score(f, client)?;
    let seg = policy::segment(score.probability, model.segments());
    let lifts = if model.has_uplift() {
        let z = z.unwrap_or_else(|| model.lower_bound_z());
        Some(model.lifts_with_z(f, client, intent_cents, &policy.tiers, z)?)
    } else {
        None
    };
    let v = policy::choose_with_lifts(
        score.probability,
        seg,
        intent_cents,
        policy,
        0.0,
        lifts.as_ref(),
    );
    Ok(match v {
        Verdict::Offer { ranked } => ranked[0].map_or(0, |c| c.amount_cents),
        _ => 0,
    })
}

/// Rebuilds the feature vector from the logged names.
pub fn features_of(d: &DecisionRecord) -> Result<Features> {
    let mut f = Features([0.0; N_FEATURES]);
    for (i, def) in features::FEATURES.iter().enumerate() {
        match d.features.get(def.name) {
            Some(v) => f.0[i] = *v,
            None => bail!(
                "session {} at {}: logged decision lacks feature {:?} (log of another build?)",
                d.session_id,
                d.at_ms,
                def.name
            ),
        }
    }
    Ok(f)
}
