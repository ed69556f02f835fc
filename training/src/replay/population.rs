//! What one evaluated session carries and what the read counted, the data
//! every estimator and the report work on.

use serde::Serialize;

/// One session of the population.
#[derive(Clone, Debug, Serialize)]
pub struct SessionUnit {
    pub session_id: String,
    pub first_at_ms: i64,
    pub logged_action_cents: i64,
    pub candidate_action_cents: i64,
    /// Session-level probability of the logged action under the logging
    /// policy.
    pub propensity: f64,
    pub explored: bool,
    pub converted: bool,
    pub order_value_cents: i64,
    pub reward: f64,
    /// Logged probability at the first randomised decision.
    pub logged_probability: f64,
    /// Intent value at the session's last decision (order value proxy).
    pub value_hint_cents: i64,
    pub q_candidate: f64,
    pub q_logged: f64,
}

/// Counts of what was read and what was left out.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Coverage {
    pub sessions: usize,
    pub decisions: usize,
    /// Sessions of the population (evaluated).
    pub evaluated: usize,
    pub holdout_sessions: usize,
    /// Non-holdout sessions the logging policy never found eligible.
    pub not_eligible_sessions: usize,
    /// ... of which the candidate would offer a voucher (no support; not
    /// estimated).
    pub unsupported_sessions: usize,
    pub sessions_without_outcome: usize,
    pub explored_sessions: usize,
    pub explore_share: f64,
    /// Randomised decisions whose logged propensity disagrees with the
    /// mixture formula (must be 0).
    pub propensity_mismatches: usize,
    /// Decisions logged with a pacing multiplier > 0 (the logging policy
    /// was paced; the mixture formula holds for the paced rule).
    pub paced_decisions: usize,
    pub budget_exhausted_decisions: usize,
    pub days: f64,
}

/// The population with the candidate's actions and the direct model.
#[derive(Clone, Debug)]
pub struct Population {
    pub units: Vec<SessionUnit>,
    pub coverage: Coverage,
}
