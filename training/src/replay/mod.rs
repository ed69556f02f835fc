//! `nudge-train replay`: off-policy evaluation of a candidate model + policy
//! on the service's decision logs (IPS, self-normalised IPS and doubly
//! robust, with 95 % intervals), so a model can be judged before it is
//! deployed.
//!
//! # Unit of evaluation: the session
//!
//! A session gets at most one voucher (later Decides answer
//! `ALREADY_OFFERED`), and its outcome (converted, order value) is one per
//! session, so the unit is the session and the action is **the voucher the
//! session was offered** (0 = none):
//!
//! - **Population**: sessions with at least one *randomised* decision: an
//!   eligible (hesitant, enough intent), non-holdout decision that is not
//!   `already_offered`, `session_store_unavailable` or
//!   `budget_unavailable`. Sessions whose visitor is in the **holdout** are
//!   excluded: the holdout is a separate hash of the visitor, independent of
//!   the features, so dropping it leaves a sample of the same population,
//!   and the logging policy on the rest is the plain epsilon-mixture.
//!   Sessions the logging policy never found eligible got "no voucher" with
//!   probability 1: a candidate that would offer there has no support; they
//!   are outside the population and counted as `unsupported_sessions`.
//! - **Logged action** `a_log`: the amount of the session's first `offered`
//!   decision, else 0.
//! - **Propensity** (session level): the logging policy is sequential
//!   greedy (offer at the first moment the rule finds a positive tier) mixed
//!   with a per-session exploration (hash of the session id; the explored
//!   action is uniform over {none, tiers} and taken at the first eligible
//!   moment). With `e` the explore share, `T` the number of tiers and `g*`
//!   the session's greedy action (the first non-zero `policy_tier_cents`
//!   among its eligible non-holdout decisions, else 0):
//!   `mu(a_log) = (1 - e) [a_log = g*] + e / (T + 1)`.
//!   `e` is read from the logged propensities (non-explored randomised
//!   decisions carry `1 - e T / (T + 1)`), and every randomised decision's
//!   logged propensity is checked against the mixture formula
//!   (`propensity_mismatches` must be 0).
//! - **Reward**: `net` (default) = `m · V · y − a_log · y · [V >= min_order]`
//!   (margin on the order minus the voucher, paid only when redeemed, i.e.
//!   on a purchase of at least the voucher's minimum order), or
//!   `conversion` = `y`, with `y` the session's outcome and `V` its order
//!   value (cents).
//!
//! # Candidate
//!
//! Either a model file with the config's policy — exactly what
//! `nudge serve` would decide with that model: at every logged decision
//! moment of the session (in time order) the logged features (by name) and
//! client features are scored, segmented, the uplift arms (if any) replace
//! the prior lifts, and `policy::choose_with_lifts` runs with **lambda 0**;
//! the session's action is the best tier at the first moment with a
//! positive tier (with `policy.offer_on = "exit_intent"`: the first such
//! moment at which the trigger fires, from the logged exit-intent time). Budget, pacing, holdout and exploration of the candidate
//! are out of scope: the estimate is for the unconstrained greedy rule.
//! Or a fixed action (`--fixed-cents N`): `N` to every session of the
//! population (0 = no voucher).
//!
//! # Estimators
//!
//! With `w_i = 1[a_cand,i = a_log,i] / mu_i` (see [`estimate`]):
//! IPS `mean(w r)`; SNIPS `sum(w r) / sum(w)`; DR
//! `mean(q(x, a_cand) + w (r − q(x, a_log)))` with a cross-fitted direct
//! model `q`; intervals `± 1.96 se` (normal approximation of the
//! per-session terms; delta method for SNIPS).
//!
//! Direct model: `q(x, a) = P(y | x, a) · (m·V̂ − a·[V̂ >= min_order])`
//! (`net`) or `P(y | x, a)` (`conversion`), where `P(y | x, a)` is a ridge
//! logistic regression of the outcome on `[1, logit p, ln(V̂ / 100 EUR),
//! [a = tier_k and V̂ >= min_order] for each tier]`, `p` the logged
//! probability at the session's first randomised decision, `V̂` the intent
//! value at its last decision. Cross-fitting: sessions are split into
//! `folds` by their position (`i mod folds`), each fold is predicted by the
//! model fitted on the others.
//!
//! # Files
//! - [`options`]: the reward and the evaluation settings;
//! - [`candidate`]: the policy under evaluation and its action per session;
//! - [`population`]: what one evaluated session carries, and the counts;
//! - [`from_logs`]: log records into the population (actions, propensities,
//!   rewards);
//! - [`direct`]: the cross-fitted direct model of the DR estimator;
//! - [`estimate`]: the estimators and intervals over per-session terms;
//! - [`report`]: the report of a population (per session, per day);
//! - [`render`]: that report as text;
//! - [`warnings`]: when the estimates are too thin to act on.

pub mod candidate;
pub mod direct;
pub mod estimate;
pub mod from_logs;
pub mod options;
pub mod population;
pub mod render;
pub mod report;
pub mod warnings;

pub use candidate::{action_at, features_of, Candidate};
pub use from_logs::{build, build_from_logs};
pub use options::{Options, Reward, Z95};
pub use population::{Coverage, Population, SessionUnit};
pub use render::render_text;
pub use report::{evaluate, Estimates, ReplayReport};

use anyhow::{bail, Result};
use nudge::decision_log::LogRecord;

/// `build` then `evaluate`.
pub fn replay(
    records: &[LogRecord],
    candidate: &Candidate,
    o: &Options,
) -> Result<(Population, ReplayReport)> {
    let pop = build(records, candidate, o)?;
    if pop.units.is_empty() {
        bail!("no session to evaluate (no eligible non-holdout session with an outcome)");
    }
    let r = evaluate(&pop, candidate, o);
    Ok((pop, r))
}

/// [`build_from_logs`] (streamed, bounded memory) then `evaluate`.
pub fn replay_path(
    path: &std::path::Path,
    candidate: &Candidate,
    o: &Options,
) -> Result<(Population, ReplayReport)> {
    let pop = build_from_logs(path, candidate, o)?;
    if pop.units.is_empty() {
        bail!("no session to evaluate (no eligible non-holdout session with an outcome)");
    }
    let r = evaluate(&pop, candidate, o);
    Ok((pop, r))
}

/// The service settings of `--config` (the documented defaults without
/// one): the candidate's policy and the logging policy's tiers and minimum
/// order.
pub fn load_settings(config: Option<&std::path::Path>) -> Result<nudge::config::Settings> {
    use anyhow::Context as _;
    let raw = nudge::config::RawConfig::load(config)?;
    raw.validate().context("invalid config")
}
