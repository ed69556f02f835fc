//! The decision engine: validated inputs in, decisions out. Any front (the
//! gRPC adapter today) validates a request into [`inputs`], calls a method
//! here and converts the answer from [`outputs`]; the engine knows nothing
//! of the transport.
//!
//! Decide ([`decide`]) is the pure [`assess`]ment (features -> score ->
//! segment -> voucher verdict) followed by the money step (an existing
//! offer, holdout, exploration, then the ledger's atomic reservation: the
//! offer is durable before Decide returns it). Every Decide is logged once
//! ([`records`]) for retraining and the ROI report.

pub mod assess;
pub mod campaigns;
pub mod decide;
pub mod error;
pub mod inputs;
pub mod models;
pub mod outputs;
pub mod records;
pub mod report;

pub use assess::{assess, Assessment};
pub use inputs::{DecideInput, OutcomeInput, RedeemInput, TrackInput};
pub use outputs::{segment_name, BudgetView, Decision, Reason, Redeemed, Tracked};

use crate::campaigns::{Base, Campaign, Catalog};
use crate::clock::Clock;
use crate::config::{Limits, Settings};
use crate::decision_log::writer::DecisionLog;
use crate::decision_log::{LogRecord, OutcomeRecord, LOG_FORMAT_VERSION};
use crate::domain::model::Model;
use crate::domain::pacing;
use crate::domain::voucher::{self, VoucherKey};
use crate::engine::error::ServiceError;
use crate::ledger::{Budgets, Ledger, Outcome, OutcomeRecorded, RedeemOutcome, RedeemRequest};
use crate::store::{SessionStore, SessionUpdate};
use arc_swap::ArcSwap;
use std::sync::Arc;

/// Shared service state.
pub struct Engine {
    pub sessions: Arc<dyn SessionStore>,
    pub ledger: Arc<dyn Ledger>,
    /// The served model, swapped whole by a reload ([`crate::app::reload`]);
    /// read it with [`Engine::model`], once per request.
    model: ArcSwap<Model>,
    pub limits: Limits,
    pub offer_ttl_ms: i64,
    pub clock: Arc<dyn Clock>,
    pub key: VoucherKey,
    pub min_order_cents: i64,
    /// The config's budgets: their time zone counts the budget days.
    pub budgets: Budgets,
    pub default_campaign: String,
    /// The campaigns in force with their pacers: one snapshot per request,
    /// swapped whole by a change ([`crate::engine::campaigns`]).
    pub catalog: ArcSwap<Catalog>,
    /// What campaign changes are validated against and built from;
    /// swapped by a reload of the config's policy sections.
    pub base: ArcSwap<Base>,
    pub log: DecisionLog,
    /// The ROI report's maintained state (see [`report`]).
    pub report_state: Arc<report::ReportState>,
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
        let base = Engine::base_of(settings);
        let catalog = Catalog::from_config(&settings.budgets, &base, &settings.campaign_overrides);
        Engine {
            sessions,
            ledger,
            model: ArcSwap::new(model),
            limits: settings.limits,
            offer_ttl_ms: i64::try_from(settings.offer_ttl.as_millis()).unwrap_or(i64::MAX),
            clock,
            key,
            min_order_cents: settings.min_order_cents,
            budgets: settings.budgets.clone(),
            default_campaign: settings.default_campaign.clone(),
            catalog: ArcSwap::from_pointee(catalog),
            base: ArcSwap::from_pointee(base),
            log,
            report_state: Arc::new(report::ReportState::new(
                settings
                    .log
                    .map_or(crate::config::LogConfig::DEFAULT_REPORT_REFRESH, |l| {
                        l.report_refresh
                    }),
                settings
                    .log
                    .map_or(crate::config::LogConfig::DEFAULT_REPORT_MAX_SESSIONS, |l| {
                        l.report_max_sessions
                    }),
            )),
        }
    }

    /// What the config gives every campaign (policy, experiment, pacing).
    pub fn base_of(settings: &Settings) -> Base {
        Base {
            policy: settings.policy.clone(),
            experiment: settings.experiment.clone(),
            learning_share: settings.learning_share,
            pacing: settings.pacing.clone(),
            timezone: settings.budgets.timezone,
            default_campaign: settings.default_campaign.clone(),
        }
    }

    /// The model in force now. A request takes it once and finishes on
    /// that same model whatever a reload swaps in meanwhile.
    pub fn model(&self) -> Arc<Model> {
        self.model.load_full()
    }

    /// Puts `model` in force for the requests that start from now on.
    pub fn set_model(&self, model: Arc<Model>) {
        self.model.store(model);
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The campaign a request names (the default when it names none), as
    /// in force now.
    pub fn campaign(&self, requested: &str) -> Result<Arc<Campaign>, ServiceError> {
        let catalog = self.catalog.load();
        let id = if requested.is_empty() {
            catalog.default_campaign.as_str()
        } else {
            requested
        };
        if let Some(c) = catalog.campaigns.get(id) {
            return Ok(Arc::clone(c));
        }
        let mut known: Vec<&str> = catalog.campaigns.keys().map(String::as_str).collect();
        known.sort_unstable();
        Err(ServiceError::invalid(
            "campaign",
            format!(
                "unknown campaign {requested:?} (configured: {})",
                known.join(", ")
            ),
        ))
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
            .map_err(|e| {
                // Refused, not lost: the caller is told to retry.
                decide::session_store_down(&e);
                ServiceError::Unavailable(e.to_string())
            })?;
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
            .map_err(|e| {
                metrics::counter!("nudge_ledger_errors_total").increment(1);
                ServiceError::Unavailable(e.to_string())
            })?;
        if let RedeemOutcome::Accepted {
            discount_cents,
            replayed,
        } = outcome
        {
            if replayed {
                tracing::info!(session_id = %input.session_id, discount_cents, "voucher redemption retried, answered again");
            } else {
                tracing::info!(session_id = %input.session_id, discount_cents, "voucher redeemed");
                let tier = claims.amount_cents.to_string();
                metrics::counter!("nudge_vouchers_redeemed_total", "tier" => tier.clone())
                    .increment(1);
                metrics::counter!("nudge_vouchers_redeemed_cents_total", "tier" => tier)
                    .increment(discount_cents.max(0) as u64);
            }
        }
        // A genuine but expired code the ledger no longer knows is still
        // "expired", which tells the shopper more than "invalid".
        if outcome == RedeemOutcome::Invalid && claims.expires_by_ms <= now_ms {
            return done(RedeemOutcome::Expired);
        }
        done(outcome)
    }

    /// Records a session's label by the ledger's one outcome rule
    /// ([`crate::ledger::outcome_change`]); true when new or changed (logged
    /// once then), false for a repeat. A change to a converted outcome is
    /// refused naming the session.
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
        match recorded {
            OutcomeRecorded::New => {}
            OutcomeRecorded::Unchanged => return Ok(false),
            OutcomeRecorded::Refused { current } => {
                return Err(ServiceError::FailedPrecondition(format!(
                    "session_id {:?} already converted with an order of {} cents; a converted outcome is final",
                    input.session_id, current.order_value_cents
                )))
            }
        }
        self.log.log(LogRecord::Outcome(OutcomeRecord {
            v: LOG_FORMAT_VERSION,
            at_ms: now_ms,
            session_id: input.session_id,
            converted: input.converted,
            order_value_cents: input.order_value_cents,
        }));
        Ok(true)
    }

    /// Today's budget of a campaign and its pacing state.
    pub async fn budget(&self, campaign: &str) -> Result<BudgetView, ServiceError> {
        let c = self.campaign(campaign)?;
        let now_ms = self.clock.now_ms();
        let snapshot = self
            .ledger
            .snapshot(&c.settings.id, now_ms)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        let lambda = c.pacer.lambda();
        let target_fraction =
            pacing::target_fraction(c.pacer.config(), self.budgets.day_fraction(now_ms));
        Ok(BudgetView {
            snapshot,
            lambda,
            target_fraction,
            paused: c.settings.paused,
            active: !c.settings.paused && c.settings.in_schedule(now_ms),
        })
    }

    /// Every campaign's pacing state on today's budget day, to carry over a
    /// restart.
    pub fn save_pacing(&self) -> pacing::SavedPacing {
        let day = self.budgets.day_of(self.clock.now_ms());
        pacing::SavedPacing {
            format: pacing::SAVED_FORMAT.to_owned(),
            campaigns: self
                .catalog
                .load()
                .campaigns
                .iter()
                .map(|(id, c)| (id.clone(), c.pacer.save(&day)))
                .collect(),
        }
    }

    /// Restores saved pacing state (see [`Pacer::restore`]); campaigns no
    /// longer configured are skipped. Returns how many pacers were restored.
    pub fn restore_pacing(&self, saved: &pacing::SavedPacing) -> usize {
        let today = self.budgets.day_of(self.clock.now_ms());
        let catalog = self.catalog.load();
        saved
            .campaigns
            .iter()
            .filter(|(c, s)| {
                catalog
                    .campaigns
                    .get(c.as_str())
                    .is_some_and(|c| c.pacer.restore(s, &today))
            })
            .count()
    }

    /// Feeds every campaign's pacer with today's spend (called periodically
    /// by the server's pacing task).
    pub async fn update_pacing(&self) {
        let now_ms = self.clock.now_ms();
        let day_fraction = self.budgets.day_fraction(now_ms);
        if let Some(n) = self.sessions.len_hint() {
            metrics::gauge!("nudge_sessions").set(n as f64);
        }
        metrics::gauge!("nudge_decision_log_queue").set(self.log.queued() as f64);
        // A snapshot of its own: no guard is held across the awaits below.
        let catalog = self.catalog.load_full();
        for (campaign, c) in &catalog.campaigns {
            let pacer = &c.pacer;
            metrics::gauge!("nudge_campaign_paused", "campaign" => campaign.clone())
                .set(if c.settings.paused { 1.0 } else { 0.0 });
            match self.ledger.snapshot(campaign, now_ms).await {
                Ok(s) => {
                    pacer.update(
                        day_fraction,
                        s.reserved_cents + s.captured_cents,
                        s.cap_cents,
                    );
                    let c = campaign.clone();
                    metrics::gauge!("nudge_budget_cap_cents", "campaign" => c.clone())
                        .set(s.cap_cents as f64);
                    metrics::gauge!("nudge_budget_reserved_cents", "campaign" => c.clone())
                        .set(s.reserved_cents as f64);
                    metrics::gauge!("nudge_budget_captured_cents", "campaign" => c.clone())
                        .set(s.captured_cents as f64);
                    metrics::gauge!("nudge_budget_remaining_cents", "campaign" => c.clone())
                        .set(s.remaining_cents as f64);
                    metrics::gauge!("nudge_budget_learning_spent_cents", "campaign" => c.clone())
                        .set((s.learning_reserved_cents + s.learning_captured_cents) as f64);
                    metrics::gauge!("nudge_pacing_lambda", "campaign" => c).set(pacer.lambda());
                }
                Err(e) => {
                    metrics::counter!("nudge_ledger_errors_total").increment(1);
                    tracing::warn!(campaign = %campaign, error = %e, "pacing cannot read the budget")
                }
            }
        }
    }
}
