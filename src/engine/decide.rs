//! Decide, as its steps: the session's state, the pure assessment, the
//! money step (an existing offer, holdout and exploration, the atomic
//! reservation), then one log record for every answer.
//!
//! The session update and the lookup of the session's existing offer do
//! not depend on each other and run at once: with Redis behind both, a
//! Decide waits for one round trip where it waited for two.
//!
//! Failure policy: open on scoring, closed on money. If the session store is
//! down, the request's own events are scored on a fresh session and no
//! voucher is given (`SESSION_STORE_UNAVAILABLE`), nothing is reserved;
//! if the ledger is down, the score is returned without a voucher
//! (`BUDGET_UNAVAILABLE`). Store failures are logged once per interval with
//! a count (a session flood fails every request).
//!
//! Exploration vouchers are `learning` reservations, paid from the learning
//! budget. Every decision logs the propensity of what was done, at the
//! exploration share in force ([`crate::domain::experiment`]): an explored
//! voucher the budget refuses is logged as "none" with the probability of
//! "none" given the budget at that moment.

use crate::campaigns::Campaign;
use crate::domain::experiment::Experiment;
use crate::domain::model::Model;
use crate::domain::policy::{self, Verdict, MAX_TIERS};
use crate::domain::session::SessionState;
use crate::engine::assess::{assess, Assessment};
use crate::engine::error::ServiceError;
use crate::engine::inputs::DecideInput;
use crate::engine::outputs::{Decision, Reason};
use crate::engine::Engine;
use crate::ledger::{LedgerError, Offer, ReserveOutcome, ReserveRequest};
use crate::store::{SessionUpdate, StoreError};
use crate::throttle::LogThrottle;
use std::time::Duration;

/// Session store failures, logged once per interval with a count: a flood
/// of new sessions that fills the store fails every Track and Decide until
/// it drains, and a line per request would bury the one that matters.
static SESSION_STORE_DOWN: LogThrottle = LogThrottle::new(Duration::from_secs(10));

/// Ledger failures in Decide, logged the same way (no voucher is given
/// while they last).
static LEDGER_DOWN: LogThrottle = LogThrottle::new(Duration::from_secs(10));

fn ledger_down(e: &LedgerError) {
    metrics::counter!("nudge_ledger_errors_total").increment(1);
    if let Some(count) = LEDGER_DOWN.hit() {
        tracing::warn!(count, error = %e, "ledger unavailable: decisions answered without a voucher");
    }
}

/// Logs a session store failure (Decide scores the request alone, Track is
/// refused), throttled.
pub(super) fn session_store_down(e: &StoreError) {
    metrics::counter!("nudge_session_store_errors_total").increment(1);
    if let Some(count) = SESSION_STORE_DOWN.hit() {
        tracing::warn!(count, error = %e, "session store unavailable: decisions scored on the request's own events without a voucher, tracks refused");
    }
}

/// The tiers the money step may still reserve, best first, each with the
/// expected net value it would be answered with.
#[derive(Clone, Copy, Debug, Default)]
struct Candidates {
    amounts: [i64; MAX_TIERS],
    net_cents: [i64; MAX_TIERS],
    len: usize,
}

impl Candidates {
    /// The rule's ranking, as the verdict gives it.
    fn ranked(verdict: &Verdict) -> Self {
        let mut c = Candidates::default();
        if let Verdict::Offer { ranked } = verdict {
            for r in ranked.iter().flatten() {
                c.amounts[c.len] = r.amount_cents;
                c.net_cents[c.len] = r.net_value_cents;
                c.len += 1;
            }
        }
        c
    }

    fn single(amount_cents: i64, net_cents: i64) -> Self {
        let mut c = Candidates::default();
        c.amounts[0] = amount_cents;
        c.net_cents[0] = net_cents;
        c.len = 1;
        c
    }

    fn amounts(&self) -> &[i64] {
        &self.amounts[..self.len]
    }

    fn net_of(&self, amount_cents: i64) -> Option<i64> {
        self.amounts()
            .iter()
            .position(|a| *a == amount_cents)
            .map(|i| self.net_cents[i])
    }
}

/// The session as Decide sees it: the store's state with the request's
/// events folded in, or, with the store down, the request's events alone.
struct DecisionSession {
    state: SessionState,
    store_down: bool,
}

impl Engine {
    pub async fn decide(&self, input: DecideInput) -> Result<Decision, ServiceError> {
        let now_ms = self.clock.now_ms();
        // The campaign's settings as in force now: this decision finishes
        // on them whatever changes meanwhile.
        let c = self.campaign(&input.campaign)?;
        // Likewise the model: a reload meanwhile does not change the
        // score, the answer's version or the log record of this one.
        let model = self.model();
        // Client-feature mismatches are caller mistakes: refuse before any
        // state changes.
        model.check_client(&input.client)?;
        let (session, existing) = tokio::join!(
            self.decision_session(&input, now_ms),
            self.ledger.offer_for(&c.settings.id, &input.session_id),
        );
        let lambda = c.pacer.lambda();
        let a = assess(
            &session.state,
            &input.client,
            input.intent_value_cents,
            now_ms,
            &model,
            &c.policy,
            lambda,
        )?;
        let mut d = self.answer(&model, &input, c.settings.id.clone(), &a);
        let propensity = if session.store_down {
            d.reason = Reason::SessionStoreUnavailable;
            1.0
        } else {
            self.money_step(&c, &input, &a, existing, now_ms, &mut d)
                .await
        };
        self.log_decision(now_ms, &input, &a, &d, propensity, lambda);
        metrics::counter!("nudge_decisions_total", "reason" => d.reason.as_str(), "segment" => super::outputs::segment_name(d.segment)).increment(1);
        Ok(d)
    }

    async fn decision_session(&self, input: &DecideInput, now_ms: i64) -> DecisionSession {
        let update = SessionUpdate {
            context: input.context,
            events: &input.events,
            now_ms,
        };
        match self.sessions.apply(&input.session_id, update).await {
            Ok(state) => {
                self.log_events(
                    now_ms,
                    &input.session_id,
                    &input.visitor_id,
                    input.context,
                    &input.events,
                );
                DecisionSession {
                    state,
                    store_down: false,
                }
            }
            Err(e) => {
                session_store_down(&e);
                let mut state = SessionState::new(input.context.unwrap_or_default());
                input.events.iter().for_each(|ev| state.apply(ev));
                DecisionSession {
                    state,
                    store_down: true,
                }
            }
        }
    }

    /// The answer as the assessment alone gives it: no offer yet, and the
    /// reason and net value the rule's verdict implies.
    fn answer(
        &self,
        model: &Model,
        input: &DecideInput,
        campaign: String,
        a: &Assessment,
    ) -> Decision {
        let (reason, expected_net_value_cents) = match a.verdict {
            Verdict::NotHesitant => (Reason::NotHesitant, 0),
            Verdict::IntentTooLow => (Reason::IntentTooLow, 0),
            Verdict::AwaitingTrigger => (Reason::AwaitingTrigger, 0),
            Verdict::RoiNotPositive {
                best_net_value_cents,
            } => (Reason::RoiNotPositive, best_net_value_cents),
            Verdict::Paced {
                best_net_value_cents,
            } => (Reason::Paced, best_net_value_cents),
            Verdict::NotLearned {
                best_prior_net_value_cents,
            } => (Reason::ResponseNotLearned, best_prior_net_value_cents),
            // Until the ledger says otherwise.
            Verdict::Offer { ranked } => (
                Reason::NotHesitant,
                ranked[0].map_or(0, |c| c.net_value_cents),
            ),
        };
        Decision {
            session_id: input.session_id.clone(),
            campaign,
            purchase_probability: a.score.probability,
            segment: a.segment,
            intent_value_cents: a.intent_value_cents,
            offer: None,
            reason,
            expected_net_value_cents,
            best_tier_cents: a.greedy_tier(),
            model_version: model.version().to_owned(),
            top_signals: a
                .score
                .top
                .iter()
                .filter_map(|(i, c)| model.term_name(*i).map(|n| (n.to_owned(), *c)))
                .collect(),
            holdout: false,
            explored: false,
        }
    }

    /// An existing offer (`existing`: the ledger's lookup), then holdout
    /// and exploration, then the reservation. Returns the logged action's
    /// propensity.
    async fn money_step(
        &self,
        c: &Campaign,
        input: &DecideInput,
        a: &Assessment,
        existing: Result<Option<Offer>, LedgerError>,
        now_ms: i64,
        d: &mut Decision,
    ) -> f64 {
        // A session that already holds an offer keeps seeing it (one live
        // offer per session and campaign, stable answers), whatever it
        // scores now. An expired offer frees the session: the reservation
        // below voids it, once, and may offer anew.
        match existing {
            Ok(Some(offer)) if offer.expires_at_ms > now_ms => {
                d.offer = Some(offer);
                d.reason = Reason::AlreadyOffered;
                d.expected_net_value_cents = 0;
                return 1.0;
            }
            Ok(_) => {}
            Err(e) => {
                ledger_down(&e);
                if a.eligible() {
                    d.reason = Reason::BudgetUnavailable;
                }
                return 1.0;
            }
        }
        // A paused campaign, or one outside its schedule, gives no new
        // voucher: no holdout or exploration draw either (these decisions
        // are not part of the experiment, see `log_decision`).
        if a.eligible() {
            if c.settings.paused {
                d.reason = Reason::Paused;
                return 1.0;
            }
            if !c.settings.in_schedule(now_ms) {
                d.reason = Reason::OutsideSchedule;
                return 1.0;
            }
        }
        let mut candidates = Candidates::ranked(&a.verdict);
        let propensity = if a.eligible() {
            self.randomise(c, input, a, &mut candidates, d)
        } else {
            1.0
        };
        if candidates.len == 0 {
            return propensity;
        }
        self.reserve(c, input, a, &candidates, now_ms, d, propensity)
            .await
    }

    /// Holdout and exploration for an eligible session: may empty or
    /// replace the candidates. Returns the propensity of the action taken.
    fn randomise(
        &self,
        c: &Campaign,
        input: &DecideInput,
        a: &Assessment,
        candidates: &mut Candidates,
        d: &mut Decision,
    ) -> f64 {
        let tiers = c.policy.tiers.len();
        let key = input.visitor_id.as_deref().unwrap_or(&input.session_id);
        let greedy = c.policy.action_index(a.greedy_tier());
        if c.experiment.in_holdout(key) {
            d.holdout = true;
            d.reason = Reason::Holdout;
            *candidates = Candidates::default();
            return 1.0;
        }
        let share = c.experiment.share(a.learned);
        let Some(action) = c.experiment.explore(&input.session_id, tiers, share) else {
            return Experiment::propensity(greedy, greedy, tiers, share);
        };
        d.explored = true;
        let propensity = Experiment::propensity(action, greedy, tiers, share);
        if action == 0 {
            d.reason = Reason::ExplorationNoVoucher;
            *candidates = Candidates::default();
            return propensity;
        }
        let mut tier = c.policy.tiers[action - 1];
        if let Some(l) = a.lifts.filter(|l| l[action - 1].is_finite()) {
            tier.lift = l[action - 1];
        }
        let (env, _) = policy::expected_net_value(
            a.score.probability,
            a.intent_value_cents,
            c.policy.margin_rate,
            tier,
        );
        d.expected_net_value_cents = env.round() as i64;
        // Once reserved, a tier the rule also ranked is answered with the
        // rule's (paced) figure.
        let net = candidates
            .net_of(tier.amount_cents)
            .unwrap_or(d.expected_net_value_cents);
        *candidates = Candidates::single(tier.amount_cents, net);
        propensity
    }

    /// Reserves the best affordable candidate atomically (or returns the
    /// session's existing offer). Returns the propensity of the action taken.
    #[allow(clippy::too_many_arguments)]
    async fn reserve(
        &self,
        c: &Campaign,
        input: &DecideInput,
        a: &Assessment,
        candidates: &Candidates,
        now_ms: i64,
        d: &mut Decision,
        propensity: f64,
    ) -> f64 {
        let req = ReserveRequest {
            campaign: &d.campaign,
            session_id: &input.session_id,
            candidates: candidates.amounts(),
            now_ms,
            expires_at_ms: now_ms.saturating_add(self.offer_ttl_ms),
            learning: d.explored,
        };
        let tiers = c.policy.tiers.len();
        match self.ledger.reserve(req).await {
            Ok(ReserveOutcome::Reserved(offer)) => {
                if let Some(net) = candidates.net_of(offer.amount_cents) {
                    d.expected_net_value_cents = net;
                }
                let mut propensity = propensity;
                if !d.explored && offer.amount_cents != a.greedy_tier() {
                    // Budget fallback to a cheaper tier: deterministic given
                    // the budget, so the greedy share of the mixture.
                    let g = c.policy.action_index(offer.amount_cents);
                    let share = c.experiment.share(a.learned);
                    propensity = Experiment::propensity(g, g, tiers, share);
                }
                // Counted, not logged at info: a line per offer would cost
                // every loaded Decide a formatted write (the decision log
                // holds each offer).
                tracing::debug!(session_id = %input.session_id, campaign = %d.campaign, amount_cents = offer.amount_cents, p = a.score.probability, explored = d.explored, "voucher offered");
                let tier = offer.amount_cents.to_string();
                metrics::counter!("nudge_vouchers_offered_total", "campaign" => d.campaign.clone(), "tier" => tier.clone()).increment(1);
                metrics::counter!("nudge_vouchers_offered_cents_total", "campaign" => d.campaign.clone(), "tier" => tier).increment(offer.amount_cents.max(0) as u64);
                d.offer = Some(offer);
                d.reason = Reason::Offered;
                propensity
            }
            Ok(ReserveOutcome::AlreadyOffered(offer)) => {
                d.offer = Some(offer);
                d.reason = Reason::AlreadyOffered;
                d.expected_net_value_cents = 0;
                propensity
            }
            Ok(ReserveOutcome::Exhausted { remaining_cents }) => {
                tracing::debug!(session_id = %input.session_id, remaining_cents, "budget exhausted");
                c.note_exhausted(&self.budgets.day_of(now_ms), remaining_cents);
                d.reason = Reason::BudgetExhausted;
                propensity
            }
            Ok(ReserveOutcome::LearningExhausted {
                remaining_cents,
                learning_remaining_cents,
            }) => {
                let drawn = candidates.amounts().first().copied().unwrap_or(0);
                // The main budget refuses first: that is the plain
                // "exhausted"; else only the learning budget does.
                d.reason = if drawn > remaining_cents {
                    Reason::BudgetExhausted
                } else {
                    Reason::LearningBudgetExhausted
                };
                tracing::debug!(session_id = %input.session_id, remaining_cents, learning_remaining_cents, "learning budget exhausted");
                self.propensity_of_none_refused(c, a, remaining_cents, learning_remaining_cents)
            }
            Err(e) => {
                ledger_down(&e);
                d.reason = Reason::BudgetUnavailable;
                propensity
            }
        }
    }

    /// The logged propensity of an explored decision whose voucher the
    /// budget refused: the probability that this decision ends with no
    /// voucher given the remainders the ledger answered (see
    /// [`Experiment::propensity_of_none_refused`]). The greedy path gives
    /// none when none of its ranked tiers fits the main remainder;
    /// exploration gives none on "none" and on every tier above the
    /// learning remainder.
    fn propensity_of_none_refused(
        &self,
        c: &Campaign,
        a: &Assessment,
        remaining_cents: i64,
        learning_remaining_cents: i64,
    ) -> f64 {
        let greedy_gives_none = Candidates::ranked(&a.verdict)
            .amounts()
            .iter()
            .all(|v| *v > remaining_cents);
        let refused = c
            .policy
            .tiers
            .iter()
            .filter(|t| t.amount_cents > learning_remaining_cents)
            .count();
        Experiment::propensity_of_none_refused(
            greedy_gives_none,
            refused,
            c.policy.tiers.len(),
            c.experiment.share(a.learned),
        )
    }
}
