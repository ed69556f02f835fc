//! The pure part of Decide: features -> score -> segment -> voucher
//! verdict (with the pacing shadow price and the offer trigger). No I/O and
//! allocation-light: this is the in-process decision path the benchmarks
//! measure.

use crate::domain::features::{self, Features};
use crate::domain::model::{ClientFeatures, Model, Score, ScoreError};
use crate::domain::policy::{self, Policy, Segment, Verdict, MAX_TIERS};
use crate::domain::session::SessionState;

/// The pure part of a decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Assessment {
    pub features: Features,
    pub score: Score,
    pub segment: Segment,
    pub intent_value_cents: i64,
    pub verdict: Verdict,
    /// Learned per-tier lifts (aligned with the policy's tiers; NaN =
    /// unlearned).
    pub lifts: Option<[f64; MAX_TIERS]>,
    /// The model carries a learned response for at least one tier (else
    /// cold start: the cold exploration share applies).
    pub learned: bool,
    /// The session's latest exit-intent signal (0: none), as the trigger
    /// read it.
    pub last_exit_intent_ms: i64,
}

impl Assessment {
    /// Hesitant with enough intent: the policy considered a voucher.
    pub fn eligible(&self) -> bool {
        !matches!(
            self.verdict,
            Verdict::NotHesitant | Verdict::IntentTooLow | Verdict::AwaitingTrigger
        )
    }

    /// The tier the greedy policy picks (0 = none), before budget.
    pub fn greedy_tier(&self) -> i64 {
        match self.verdict {
            Verdict::Offer { ranked } => ranked[0].map_or(0, |c| c.amount_cents),
            _ => 0,
        }
    }
}

/// Features, score, segment and voucher verdict of a session at `now_ms`.
/// `intent_override` replaces the session's intent value when the caller
/// knows it better; `lambda` is the pacing shadow price.
pub fn assess(
    state: &SessionState,
    client: &ClientFeatures,
    intent_override: Option<i64>,
    now_ms: i64,
    model: &Model,
    policy: &Policy,
    lambda: f64,
) -> Result<Assessment, ScoreError> {
    let features = features::compute(state, now_ms);
    let score = model.score(&features, client)?;
    let segment = policy::segment(score.probability, model.segments());
    let intent_value_cents = intent_override.unwrap_or_else(|| state.intent_value_cents());
    // A learned voucher response replaces the config priors, per visitor.
    let learned = model.learns_any(&policy.tiers);
    let lifts = if model.has_uplift() {
        Some(model.lifts(&features, client, intent_value_cents, &policy.tiers)?)
    } else {
        None
    };
    let verdict = policy::choose_with_lifts(
        score.probability,
        segment,
        intent_value_cents,
        policy,
        lambda,
        lifts.as_ref(),
    );
    let verdict = match verdict {
        Verdict::NotHesitant | Verdict::IntentTooLow => verdict,
        _ if !policy.trigger.fired(state.last_exit_intent_ms, now_ms) => Verdict::AwaitingTrigger,
        _ => verdict,
    };
    Ok(Assessment {
        last_exit_intent_ms: state.last_exit_intent_ms,
        features,
        score,
        segment,
        intent_value_cents,
        verdict,
        lifts,
        learned,
    })
}
