//! The decision engine: validated inputs in, decisions out. The gRPC
//! handlers are thin wrappers over the methods here.
//!
//! Decide is split in two:
//! - [`assess`], pure and allocation-light: features -> score -> segment ->
//!   voucher verdict (with the pacing shadow price). This is the in-process
//!   decision path the benchmarks measure.
//! - the money step: holdout, exploration, then the ledger atomically
//!   returns the session's existing offer or reserves the chosen tier. The
//!   offer is durable before Decide returns it.
//!
//! Every Decide is logged (features, model version, probability, segment,
//! eligibility, the greedy tier, the action and its propensity, holdout and
//! exploration flags, lambda) for retraining and the ROI report.
//!
//! Failure policy: open on scoring, closed on money. If the session store is
//! down, the request's own events are scored on a fresh session and no
//! voucher is given (`SESSION_STORE_UNAVAILABLE`); if the ledger is down, the
//! score is returned without a voucher (`BUDGET_UNAVAILABLE`).

use crate::clock::Clock;
use crate::config::{Limits, Settings};
use crate::decision_log::{
    DecisionRecord, EventsRecord, LogRecord, OutcomeRecord, LOG_FORMAT_VERSION,
};
use crate::error::ServiceError;
use crate::experiment::Experiment;
use crate::features::{self, Features, FEATURES};
use crate::ledger::{
    BudgetSnapshot, Budgets, Ledger, Offer, Outcome, RedeemOutcome, RedeemRequest, ReserveOutcome,
    ReserveRequest,
};
use crate::log_writer::DecisionLog;
use crate::model::{ClientFeatures, Model, Score, ScoreError};
use crate::pacing::{self, Pacer};
use crate::policy::{self, Policy, Segment, Verdict, MAX_TIERS};
use crate::session::SessionState;
use crate::store::{SessionStore, SessionUpdate};
use crate::validate::{DecideInput, OutcomeInput, RedeemInput, TrackInput};
use crate::voucher::{self, VoucherKey};
use std::collections::HashMap;
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
    Holdout,
    ExplorationNoVoucher,
    AwaitingTrigger,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Offered => "offered",
            Reason::NotHesitant => "not_hesitant",
            Reason::IntentTooLow => "intent_too_low",
            Reason::RoiNotPositive => "roi_not_positive",
            Reason::Paced => "paced",
            Reason::BudgetExhausted => "budget_exhausted",
            Reason::AlreadyOffered => "already_offered",
            Reason::BudgetUnavailable => "budget_unavailable",
            Reason::SessionStoreUnavailable => "session_store_unavailable",
            Reason::Holdout => "holdout",
            Reason::ExplorationNoVoucher => "exploration_no_voucher",
            Reason::AwaitingTrigger => "awaiting_trigger",
        }
    }
}

pub fn segment_name(s: Segment) -> &'static str {
    match s {
        Segment::Hot => "hot",
        Segment::Hesitant => "hesitant",
        Segment::Cold => "cold",
    }
}

/// The pure part of a decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Assessment {
    pub features: Features,
    pub score: Score,
    pub segment: Segment,
    pub intent_value_cents: i64,
    pub verdict: Verdict,
    /// Learned per-tier lifts (aligned with the policy's tiers; NaN = prior).
    pub lifts: Option<[f64; MAX_TIERS]>,
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
    let lifts = if model.has_uplift() {
        Some(model.lifts(&features, client, &policy.tiers)?)
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
    })
}

/// What Decide answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub session_id: String,
    pub campaign: String,
    pub purchase_probability: f64,
    pub segment: Segment,
    pub intent_value_cents: i64,
    pub offer: Option<Offer>,
    pub reason: Reason,
    pub expected_net_value_cents: i64,
    pub best_tier_cents: i64,
    pub model_version: String,
    pub top_signals: Vec<(String, f64)>,
    pub holdout: bool,
    pub explored: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub accepted: u32,
    pub session_events: u32,
}

/// Result of a redemption, with the voucher's minimum order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redeemed {
    pub outcome: RedeemOutcome,
    pub min_order_cents: i64,
}

/// Budget plus pacing state, for ops.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetView {
    pub snapshot: BudgetSnapshot,
    pub lambda: f64,
    pub target_fraction: f64,
}

/// Shared service state.
pub struct Engine {
    pub sessions: Arc<dyn SessionStore>,
    pub ledger: Arc<dyn Ledger>,
    pub model: Arc<Model>,
    pub policy: Policy,
    pub limits: Limits,
    pub offer_ttl_ms: i64,
    pub clock: Arc<dyn Clock>,
    pub key: VoucherKey,
    pub min_order_cents: i64,
    pub experiment: Experiment,
    pub budgets: Budgets,
    pub default_campaign: String,
    /// One pacer per campaign.
    pub pacers: HashMap<String, Pacer>,
    pub log: DecisionLog,
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
        key: VoucherKey,
        log: DecisionLog,
    ) -> Self {
        let pacers = settings
            .budgets
            .campaigns
            .keys()
            .map(|c| (c.clone(), Pacer::new(settings.pacing.clone())))
            .collect();
        Engine {
            sessions,
            ledger,
            model,
            policy: settings.policy.clone(),
            limits: settings.limits,
            offer_ttl_ms: i64::try_from(settings.offer_ttl.as_millis()).unwrap_or(i64::MAX),
            clock,
            key,
            min_order_cents: settings.min_order_cents,
            experiment: settings.experiment.clone(),
            budgets: settings.budgets.clone(),
            default_campaign: settings.default_campaign.clone(),
            pacers,
            log,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn campaign<'a>(&'a self, requested: &'a str) -> Result<&'a str, ServiceError> {
        if requested.is_empty() {
            return Ok(&self.default_campaign);
        }
        if self.budgets.campaigns.contains_key(requested) {
            return Ok(requested);
        }
        let mut known: Vec<&str> = self.budgets.campaigns.keys().map(String::as_str).collect();
        known.sort_unstable();
        Err(ServiceError::invalid(
            "campaign",
            format!(
                "unknown campaign {requested:?} (configured: {})",
                known.join(", ")
            ),
        ))
    }

    fn lambda(&self, campaign: &str) -> f64 {
        self.pacers.get(campaign).map_or(0.0, Pacer::lambda)
    }

    fn log_events(
        &self,
        now_ms: i64,
        session_id: &str,
        visitor_id: &Option<String>,
        context: Option<crate::session::Context>,
        events: &[crate::session::Event],
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
        self.log_events(
            now_ms,
            &input.session_id,
            &input.visitor_id,
            input.context,
            &input.events,
        );
        Ok(Tracked {
            accepted: u32::try_from(input.events.len()).unwrap_or(u32::MAX),
            session_events: state.events,
        })
    }

    pub async fn decide(&self, input: DecideInput) -> Result<Decision, ServiceError> {
        let now_ms = self.clock.now_ms();
        let campaign = self.campaign(&input.campaign)?.to_owned();
        // Client-feature mismatches are caller mistakes: refuse before any
        // state changes.
        self.model
            .check_client(&input.client)
            .map_err(score_error)?;
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
        if !store_down {
            self.log_events(
                now_ms,
                &input.session_id,
                &input.visitor_id,
                input.context,
                &input.events,
            );
        }
        let lambda = self.lambda(&campaign);
        let a = assess(
            &state,
            &input.client,
            input.intent_value_cents,
            now_ms,
            &self.model,
            &self.policy,
            lambda,
        )
        .map_err(score_error)?;

        let mut d = Decision {
            session_id: input.session_id.clone(),
            campaign: campaign.clone(),
            purchase_probability: a.score.probability,
            segment: a.segment,
            intent_value_cents: a.intent_value_cents,
            offer: None,
            reason: Reason::NotHesitant,
            expected_net_value_cents: 0,
            best_tier_cents: a.greedy_tier(),
            model_version: self.model.version().to_owned(),
            top_signals: a
                .score
                .top
                .iter()
                .filter_map(|(i, c)| self.model.term_name(*i).map(|n| (n.to_owned(), *c)))
                .collect(),
            holdout: false,
            explored: false,
        };
        let tiers = self.policy.tiers.len();
        // Action index: 0 = none, i = tier i - 1.
        let action_of = |amount: i64| {
            self.policy
                .tiers
                .iter()
                .position(|t| t.amount_cents == amount)
                .map_or(0, |i| i + 1)
        };
        let mut propensity = 1.0;

        if store_down {
            d.reason = Reason::SessionStoreUnavailable;
            self.log_decision(now_ms, &input, &a, &d, 1.0, lambda);
            return Ok(d);
        }

        // What the rule says, before holdout, exploration and budget.
        let mut candidates = [0i64; MAX_TIERS];
        let mut n = 0;
        match a.verdict {
            Verdict::NotHesitant => d.reason = Reason::NotHesitant,
            Verdict::IntentTooLow => d.reason = Reason::IntentTooLow,
            Verdict::AwaitingTrigger => d.reason = Reason::AwaitingTrigger,
            Verdict::RoiNotPositive {
                best_net_value_cents,
            } => {
                d.reason = Reason::RoiNotPositive;
                d.expected_net_value_cents = best_net_value_cents;
            }
            Verdict::Paced {
                best_net_value_cents,
            } => {
                d.reason = Reason::Paced;
                d.expected_net_value_cents = best_net_value_cents;
            }
            Verdict::Offer { ranked } => {
                for c in ranked.iter().flatten() {
                    candidates[n] = c.amount_cents;
                    n += 1;
                }
                if let Some(best) = ranked[0] {
                    d.expected_net_value_cents = best.net_value_cents;
                }
            }
        }

        // A session that already holds an offer keeps seeing it (one offer
        // per session and campaign, stable answers), whatever it scores now.
        match self.ledger.offer_for(&campaign, &input.session_id).await {
            Ok(Some(offer)) => {
                d.offer = Some(offer);
                d.reason = Reason::AlreadyOffered;
                d.expected_net_value_cents = 0;
                self.log_decision(now_ms, &input, &a, &d, 1.0, lambda);
                return Ok(d);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(session_id = %input.session_id, error = %e, "ledger down, no voucher");
                if a.eligible() {
                    d.reason = Reason::BudgetUnavailable;
                }
                self.log_decision(now_ms, &input, &a, &d, 1.0, lambda);
                return Ok(d);
            }
        }

        if a.eligible() {
            let key = input.visitor_id.as_deref().unwrap_or(&input.session_id);
            let greedy = action_of(a.greedy_tier());
            if self.experiment.in_holdout(key) {
                d.holdout = true;
                d.reason = Reason::Holdout;
                n = 0;
            } else if let Some(action) = self.experiment.explore(&input.session_id, tiers) {
                d.explored = true;
                propensity = self.experiment.propensity(action, greedy, tiers);
                if action == 0 {
                    d.reason = Reason::ExplorationNoVoucher;
                    n = 0;
                } else {
                    let mut tier = self.policy.tiers[action - 1];
                    if let Some(l) = a.lifts.filter(|l| l[action - 1].is_finite()) {
                        tier.lift = l[action - 1];
                    }
                    candidates[0] = tier.amount_cents;
                    n = 1;
                    d.expected_net_value_cents = policy::expected_net_value(
                        a.score.probability,
                        a.intent_value_cents,
                        self.policy.margin_rate,
                        tier,
                    )
                    .0
                    .round() as i64;
                }
            } else {
                propensity = self.experiment.propensity(greedy, greedy, tiers);
            }
        }

        if n == 0 {
            self.log_decision(now_ms, &input, &a, &d, propensity, lambda);
            return Ok(d);
        }

        let req = ReserveRequest {
            campaign: &campaign,
            session_id: &input.session_id,
            candidates: &candidates[..n],
            now_ms,
            expires_at_ms: now_ms.saturating_add(self.offer_ttl_ms),
        };
        match self.ledger.reserve(req).await {
            Ok(ReserveOutcome::Reserved(offer)) => {
                if let Verdict::Offer { ranked } = a.verdict {
                    if let Some(c) = ranked
                        .into_iter()
                        .flatten()
                        .find(|c| c.amount_cents == offer.amount_cents)
                    {
                        d.expected_net_value_cents = c.net_value_cents;
                    }
                }
                if !d.explored && offer.amount_cents != a.greedy_tier() {
                    // Budget fallback to a cheaper tier: deterministic given
                    // the budget, so the greedy share of the mixture.
                    let g = action_of(offer.amount_cents);
                    propensity = self.experiment.propensity(g, g, tiers);
                }
                tracing::info!(session_id = %input.session_id, campaign = %campaign, amount_cents = offer.amount_cents, p = a.score.probability, explored = d.explored, "voucher offered");
                d.offer = Some(offer);
                d.reason = Reason::Offered;
            }
            Ok(ReserveOutcome::AlreadyOffered(offer)) => {
                d.offer = Some(offer);
                d.reason = Reason::AlreadyOffered;
                d.expected_net_value_cents = 0;
            }
            Ok(ReserveOutcome::Exhausted { remaining_cents }) => {
                tracing::debug!(session_id = %input.session_id, remaining_cents, "budget exhausted");
                d.reason = Reason::BudgetExhausted;
            }
            Err(e) => {
                tracing::warn!(session_id = %input.session_id, error = %e, "ledger down, no voucher");
                d.reason = Reason::BudgetUnavailable;
            }
        }
        self.log_decision(now_ms, &input, &a, &d, propensity, lambda);
        Ok(d)
    }

    fn log_decision(
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
        let features = FEATURES
            .iter()
            .zip(a.features.0.iter())
            .map(|(f, v)| (f.name.to_owned(), *v))
            .collect();
        let mut categorical: Vec<(String, String)> = input
            .client
            .categorical
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        categorical.sort();
        self.log.log(LogRecord::Decision(DecisionRecord {
            v: LOG_FORMAT_VERSION,
            at_ms: now_ms,
            session_id: d.session_id.clone(),
            visitor_id: input.visitor_id.clone(),
            campaign: d.campaign.clone(),
            model_version: d.model_version.clone(),
            features,
            client_features: input
                .client
                .numeric
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            client_categorical: categorical.into_iter().collect(),
            probability: d.purchase_probability,
            segment: segment_name(d.segment).to_owned(),
            intent_value_cents: d.intent_value_cents,
            eligible: a.eligible(),
            policy_tier_cents: a.greedy_tier(),
            action_cents: match d.reason {
                Reason::Offered => d.offer.as_ref().map_or(0, |o| o.amount_cents),
                _ => 0,
            },
            propensity,
            holdout: d.holdout,
            explored: d.explored,
            lambda,
            reason: d.reason.as_str().to_owned(),
            voucher_code: d.offer.as_ref().map(|o| o.voucher_code.clone()),
            last_exit_intent_ms: Some(a.last_exit_intent_ms),
        }));
    }

    /// Checks a code and captures it, exactly once.
    pub async fn redeem(&self, input: RedeemInput) -> Result<Redeemed, ServiceError> {
        let now_ms = self.clock.now_ms();
        let done = |outcome| {
            Ok(Redeemed {
                outcome,
                min_order_cents: self.min_order_cents,
            })
        };
        let claims = match voucher::verify(&self.key, &input.voucher_code, &input.session_id) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(session_id = %input.session_id, error = %e, "voucher rejected");
                return done(RedeemOutcome::Invalid);
            }
        };
        let code = voucher::normalise(&input.voucher_code)
            .map_err(|e| ServiceError::Internal(format!("verified code did not normalise: {e}")))?;
        let outcome = self
            .ledger
            .redeem(RedeemRequest {
                code: &code,
                session_id: &input.session_id,
                order_value_cents: input.order_value_cents,
                min_order_cents: self.min_order_cents,
                now_ms,
            })
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        if let RedeemOutcome::Accepted { discount_cents } = outcome {
            tracing::info!(session_id = %input.session_id, discount_cents, "voucher redeemed");
        }
        // A genuine but expired code the ledger no longer knows is still
        // "expired", which tells the shopper more than "invalid".
        if outcome == RedeemOutcome::Invalid && claims.expires_by_ms <= now_ms {
            return done(RedeemOutcome::Expired);
        }
        done(outcome)
    }

    /// Records a session's label; idempotent. Logged once when new/changed.
    pub async fn record_outcome(&self, input: OutcomeInput) -> Result<bool, ServiceError> {
        let now_ms = self.clock.now_ms();
        let outcome = Outcome {
            session_id: input.session_id.clone(),
            converted: input.converted,
            order_value_cents: input.order_value_cents,
            at_ms: now_ms,
        };
        let recorded = self
            .ledger
            .record_outcome(outcome)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        if recorded {
            self.log.log(LogRecord::Outcome(OutcomeRecord {
                v: LOG_FORMAT_VERSION,
                at_ms: now_ms,
                session_id: input.session_id,
                converted: input.converted,
                order_value_cents: input.order_value_cents,
            }));
        }
        Ok(recorded)
    }

    /// Today's budget of a campaign and its pacing state.
    pub async fn budget(&self, campaign: &str) -> Result<BudgetView, ServiceError> {
        let campaign = self.campaign(campaign)?.to_owned();
        let now_ms = self.clock.now_ms();
        let snapshot = self
            .ledger
            .snapshot(&campaign, now_ms)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        let (lambda, target_fraction) = match self.pacers.get(&campaign) {
            Some(p) => (
                p.lambda(),
                pacing::target_fraction(p.config(), self.budgets.day_fraction(now_ms)),
            ),
            None => (0.0, 0.0),
        };
        Ok(BudgetView {
            snapshot,
            lambda,
            target_fraction,
        })
    }

    /// Every campaign's pacing state on today's budget day, to carry over a
    /// restart.
    pub fn save_pacing(&self) -> pacing::SavedPacing {
        let day = self.budgets.day_of(self.clock.now_ms());
        pacing::SavedPacing {
            format: pacing::SAVED_FORMAT.to_owned(),
            campaigns: self
                .pacers
                .iter()
                .map(|(c, p)| (c.clone(), p.save(&day)))
                .collect(),
        }
    }

    /// Restores saved pacing state (see [`Pacer::restore`]); campaigns no
    /// longer configured are skipped. Returns how many pacers were restored.
    pub fn restore_pacing(&self, saved: &pacing::SavedPacing) -> usize {
        let today = self.budgets.day_of(self.clock.now_ms());
        saved
            .campaigns
            .iter()
            .filter(|(c, s)| {
                self.pacers
                    .get(c.as_str())
                    .is_some_and(|p| p.restore(s, &today))
            })
            .count()
    }

    /// Feeds every campaign's pacer with today's spend (called periodically
    /// by the server's pacing task).
    pub async fn update_pacing(&self) {
        let now_ms = self.clock.now_ms();
        let day_fraction = self.budgets.day_fraction(now_ms);
        for (campaign, pacer) in &self.pacers {
            match self.ledger.snapshot(campaign, now_ms).await {
                Ok(s) => {
                    pacer.update(
                        day_fraction,
                        s.reserved_cents + s.captured_cents,
                        s.cap_cents,
                    );
                }
                Err(e) => {
                    tracing::warn!(campaign = %campaign, error = %e, "pacing cannot read the budget")
                }
            }
        }
    }

    /// The ROI report over the decision log (flushed first) and the
    /// ledger's outcomes and captures. Returns (report, JSON, table).
    pub async fn report(
        &self,
        since_ms: i64,
    ) -> Result<(crate::report::RoiReport, String, String), ServiceError> {
        let Some(dir) = self.log.dir().map(std::path::Path::to_owned) else {
            return Err(ServiceError::FailedPrecondition(
                "the decision log is disabled ([log] enabled = false): no report".into(),
            ));
        };
        self.log.flush().await;
        let records = tokio::task::spawn_blocking(move || crate::log_writer::read_dir(&dir))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .map_err(ServiceError::Internal)?;
        let decisions: Vec<DecisionRecord> = records
            .into_iter()
            .filter_map(|r| match r {
                LogRecord::Decision(d) => Some(d),
                _ => None,
            })
            .collect();
        let outcomes: Vec<OutcomeRecord> = self
            .ledger
            .outcomes(0)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?
            .into_iter()
            .map(|o| OutcomeRecord {
                v: LOG_FORMAT_VERSION,
                at_ms: o.at_ms,
                session_id: o.session_id,
                converted: o.converted,
                order_value_cents: o.order_value_cents,
            })
            .collect();
        let captured: Vec<crate::report::Captured> = self
            .ledger
            .captured(0)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?
            .into_iter()
            .map(|c| crate::report::Captured {
                campaign: c.campaign,
                session_id: c.session_id,
                amount_cents: c.amount_cents,
            })
            .collect();
        let report = crate::report::roi_report(&crate::report::ReportInput {
            decisions: &decisions,
            outcomes: &outcomes,
            captured: &captured,
            margin_rate: self.policy.margin_rate,
            since_ms: (since_ms > 0).then_some(since_ms),
        });
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let table = crate::report::render_table(&report);
        Ok((report, json, table))
    }
}
