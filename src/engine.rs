//! The decision engine: validated inputs in, decisions out. The gRPC
//! handlers are thin wrappers over [`Engine::track`] and [`Engine::decide`].
//!
//! Decide is split in two:
//! - [`assess`], pure and allocation-light: features -> score -> segment ->
//!   voucher verdict. This is the in-process decision path the benchmarks
//!   measure.
//! - the money step: the ledger atomically returns the session's existing
//!   offer or reserves the best affordable tier.
//!
//! Failure policy: open on scoring, closed on money. If the session store is
//! down, the request's own events are scored on a fresh session and no
//! voucher is given (`SESSION_STORE_UNAVAILABLE`); if the ledger is down, the
//! score is returned without a voucher (`BUDGET_UNAVAILABLE`).

use crate::clock::Clock;
use crate::config::{Limits, Settings};
use crate::error::ServiceError;
use crate::features::{self, Features};
use crate::ledger::{Ledger, Offer, ReserveOutcome, ReserveRequest};
use crate::model::{ClientFeatures, Model, Score, ScoreError};
use crate::policy::{self, Policy, Segment, Verdict, MAX_TIERS};
use crate::session::SessionState;
use crate::store::{SessionStore, SessionUpdate};
use crate::validate::{DecideInput, TrackInput};
use rand::Rng;
use std::sync::Arc;

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
}

/// The pure part of a decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Assessment {
    pub features: Features,
    pub score: Score,
    pub segment: Segment,
    pub intent_value_cents: i64,
    pub verdict: Verdict,
}

/// Features, score, segment and voucher verdict of a session at `now_ms`.
/// `intent_override` replaces the session's intent value when the caller
/// knows it better.
pub fn assess(
    state: &SessionState,
    client: &ClientFeatures,
    intent_override: Option<i64>,
    now_ms: i64,
    model: &Model,
    policy: &Policy,
) -> Result<Assessment, ScoreError> {
    let features = features::compute(state, now_ms);
    let score = model.score(&features, client)?;
    let segment = policy::segment(score.probability, model.segments());
    let intent_value_cents = intent_override.unwrap_or_else(|| state.intent_value_cents());
    let verdict = policy::choose(score.probability, segment, intent_value_cents, policy, 0.0);
    Ok(Assessment {
        features,
        score,
        segment,
        intent_value_cents,
        verdict,
    })
}

/// What Decide answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub session_id: String,
    pub purchase_probability: f64,
    pub segment: Segment,
    pub intent_value_cents: i64,
    pub offer: Option<Offer>,
    pub reason: Reason,
    pub expected_net_value_cents: i64,
    pub best_tier_cents: i64,
    pub model_version: String,
    pub top_signals: Vec<(String, f64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub accepted: u32,
    pub session_events: u32,
}

/// Shared, immutable-after-start service state.
pub struct Engine {
    pub sessions: Arc<dyn SessionStore>,
    pub ledger: Arc<dyn Ledger>,
    pub model: Arc<Model>,
    pub policy: Policy,
    pub limits: Limits,
    pub offer_ttl_ms: i64,
    pub clock: Arc<dyn Clock>,
}

/// Alphabet of voucher codes: Crockford base32 (no I, L, O, U), so codes
/// survive being read out and typed.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// 12 symbols = 60 random bits: unguessable by enumeration.
const CODE_SYMBOLS: usize = 12;

/// A fresh random voucher code like `7K3M-QX9D-2HWA`. (Self-verifying HMAC
/// codes come with the durable ledger.)
pub fn new_voucher_code() -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(CODE_SYMBOLS + 2);
    for i in 0..CODE_SYMBOLS {
        if i > 0 && i % 4 == 0 {
            s.push('-');
        }
        s.push(CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char);
    }
    s
}

fn score_error(e: ScoreError) -> ServiceError {
    let field = e.field().to_owned();
    let full = e.to_string();
    // The message already starts with "field: "; keep only the explanation.
    let message = full
        .strip_prefix(&format!("{field}: "))
        .unwrap_or(&full)
        .to_owned();
    ServiceError::InvalidArgument { field, message }
}

impl Engine {
    pub fn new(
        settings: &Settings,
        model: Arc<Model>,
        sessions: Arc<dyn SessionStore>,
        ledger: Arc<dyn Ledger>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Engine {
            sessions,
            ledger,
            model,
            policy: settings.policy.clone(),
            limits: settings.limits,
            offer_ttl_ms: i64::try_from(settings.offer_ttl.as_millis()).unwrap_or(i64::MAX),
            clock,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub async fn track(&self, input: TrackInput) -> Result<Tracked, ServiceError> {
        let now_ms = self.clock.now_ms();
        let state = self
            .sessions
            .apply(
                &input.session_id,
                SessionUpdate {
                    context: input.context,
                    events: &input.events,
                    now_ms,
                },
            )
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        Ok(Tracked {
            accepted: u32::try_from(input.events.len()).unwrap_or(u32::MAX),
            session_events: state.events,
        })
    }

    pub async fn decide(&self, input: DecideInput) -> Result<Decision, ServiceError> {
        let now_ms = self.clock.now_ms();
        // Client-feature mismatches are caller mistakes: refuse before any
        // state changes.
        self.model.check_client(&input.client).map_err(score_error)?;
        let update = SessionUpdate {
            context: input.context,
            events: &input.events,
            now_ms,
        };
        let (state, store_down) = match self.sessions.apply(&input.session_id, update).await {
            Ok(s) => (s, false),
            Err(e) => {
                tracing::warn!(session_id = %input.session_id, error = %e, "session store down, scoring this request alone");
                let mut s = SessionState::new(input.context.unwrap_or_default());
                input.events.iter().for_each(|ev| s.apply(ev));
                (s, true)
            }
        };
        let a = assess(
            &state,
            &input.client,
            input.intent_value_cents,
            now_ms,
            &self.model,
            &self.policy,
        )
        .map_err(score_error)?;

        let mut decision = Decision {
            session_id: input.session_id.clone(),
            purchase_probability: a.score.probability,
            segment: a.segment,
            intent_value_cents: a.intent_value_cents,
            offer: None,
            reason: Reason::NotHesitant,
            expected_net_value_cents: 0,
            best_tier_cents: 0,
            model_version: self.model.version().to_owned(),
            top_signals: a
                .score
                .top
                .iter()
                .filter_map(|(i, c)| self.model.term_name(*i).map(|n| (n.to_owned(), *c)))
                .collect(),
        };
        if store_down {
            decision.reason = Reason::SessionStoreUnavailable;
            return Ok(decision);
        }

        let mut candidates = [0i64; MAX_TIERS];
        let mut n = 0;
        match a.verdict {
            Verdict::NotHesitant => decision.reason = Reason::NotHesitant,
            Verdict::IntentTooLow => decision.reason = Reason::IntentTooLow,
            Verdict::RoiNotPositive {
                best_net_value_cents,
            } => {
                decision.reason = Reason::RoiNotPositive;
                decision.expected_net_value_cents = best_net_value_cents;
            }
            Verdict::Paced {
                best_net_value_cents,
            } => {
                decision.reason = Reason::Paced;
                decision.expected_net_value_cents = best_net_value_cents;
            }
            Verdict::Offer { ranked } => {
                for c in ranked.iter().flatten() {
                    candidates[n] = c.amount_cents;
                    n += 1;
                }
                if let Some(best) = ranked[0] {
                    decision.best_tier_cents = best.amount_cents;
                    decision.expected_net_value_cents = best.net_value_cents;
                }
            }
        }

        if n == 0 {
            // Not eligible now; but a session that already holds an offer
            // keeps seeing it (one offer per session, stable answers).
            match self.ledger.offer_for(&input.session_id).await {
                Ok(Some(offer)) => {
                    decision.offer = Some(offer);
                    decision.reason = Reason::AlreadyOffered;
                    decision.expected_net_value_cents = 0;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(session_id = %input.session_id, error = %e, "ledger down while looking up an offer");
                }
            }
            return Ok(decision);
        }

        let req = ReserveRequest {
            session_id: &input.session_id,
            candidates: &candidates[..n],
            voucher_code: new_voucher_code(),
            now_ms,
            expires_at_ms: now_ms.saturating_add(self.offer_ttl_ms),
        };
        match self.ledger.reserve(req).await {
            Ok(ReserveOutcome::Reserved(offer)) => {
                if let Some(c) = match a.verdict {
                    Verdict::Offer { ranked } => ranked
                        .into_iter()
                        .flatten()
                        .find(|c| c.amount_cents == offer.amount_cents),
                    _ => None,
                } {
                    decision.expected_net_value_cents = c.net_value_cents;
                }
                tracing::info!(session_id = %input.session_id, amount_cents = offer.amount_cents, p = a.score.probability, "voucher offered");
                decision.offer = Some(offer);
                decision.reason = Reason::Offered;
            }
            Ok(ReserveOutcome::AlreadyOffered(offer)) => {
                decision.offer = Some(offer);
                decision.reason = Reason::AlreadyOffered;
                decision.expected_net_value_cents = 0;
            }
            Ok(ReserveOutcome::Exhausted { remaining_cents }) => {
                tracing::debug!(session_id = %input.session_id, remaining_cents, "budget exhausted");
                decision.reason = Reason::BudgetExhausted;
            }
            Err(e) => {
                tracing::warn!(session_id = %input.session_id, error = %e, "ledger down, no voucher");
                decision.reason = Reason::BudgetUnavailable;
            }
        }
        Ok(decision)
    }
}
