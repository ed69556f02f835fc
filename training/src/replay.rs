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

pub mod estimate;

use crate::logs::MissingOutcome;
use anyhow::{bail, Result};
use estimate::{Interval, Unit};
use nudge::decision_log::{DecisionRecord, LogRecord, OutcomeRecord};
use nudge::domain::features::{self, Features, N_FEATURES};
use nudge::domain::model::{ClientFeatures, Model};
use nudge::domain::policy::{self, OfferTrigger, Policy, Verdict};
use serde::Serialize;
use std::collections::HashMap;

/// 97.5 % quantile of the standard normal.
pub const Z95: f64 = 1.959_963_984_540_054;
const MS_PER_DAY: f64 = 86_400_000.0;

/// What a session is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reward {
    /// Net margin: margin_rate · order value − voucher cost, in cents.
    Net,
    /// Converted (0 / 1).
    Conversion,
}

/// The policy under evaluation.
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
    fn rule_action(model: &Model, policy: &Policy, decisions: &[&DecisionRecord]) -> Result<i64> {
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
            let score = model
                .score(&f, &client)
                .map_err(|e| anyhow::anyhow!("session {} at {}: {e}", d.session_id, d.at_ms))?;
            let seg = policy::segment(score.probability, model.segments());
            let lifts = if model.has_uplift() {
                Some(
                    model
                        .lifts(&f, &client, &policy.tiers)
                        .map_err(|e| anyhow::anyhow!("session {}: {e}", d.session_id))?,
                )
            } else {
                None
            };
            let v = policy::choose_with_lifts(
                score.probability,
                seg,
                d.intent_value_cents,
                policy,
                0.0,
                lifts.as_ref(),
            );
            if let Verdict::Offer { ranked } = v {
                if let Some(c) = ranked[0] {
                    return Ok(c.amount_cents);
                }
            }
        }
        Ok(0)
    }
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

/// Evaluation settings (from the config and the flags).
#[derive(Clone, Debug)]
pub struct Options {
    pub reward: Reward,
    pub margin_rate: f64,
    pub min_order_cents: i64,
    /// The logging policy's tiers (cents), i.e. the action space.
    pub tiers: Vec<i64>,
    /// Override of the explore share read from the logs.
    pub explore_share: Option<f64>,
    pub missing: MissingOutcome,
    /// Cross-fitting folds of the direct model (>= 2).
    pub folds: usize,
    /// Ridge penalty of the direct model.
    pub alpha: f64,
    /// Days the logs cover (default: span of the decision times).
    pub days: Option<f64>,
    pub z: f64,
}

impl Options {
    pub fn new(policy: &Policy, min_order_cents: i64, reward: Reward) -> Self {
        Options {
            reward,
            margin_rate: policy.margin_rate,
            min_order_cents,
            tiers: policy.tiers.iter().map(|t| t.amount_cents).collect(),
            explore_share: None,
            missing: MissingOutcome::Skip,
            folds: 5,
            alpha: 1.0,
            days: None,
            z: Z95,
        }
    }
}

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

fn is_randomised(d: &DecisionRecord) -> bool {
    d.eligible
        && !d.holdout
        && !matches!(
            d.reason.as_str(),
            "already_offered" | "session_store_unavailable" | "budget_unavailable"
        )
}

/// Builds the evaluation population from log records.
pub fn build(records: &[LogRecord], candidate: &Candidate, o: &Options) -> Result<Population> {
    if o.tiers.is_empty() {
        bail!("no tiers configured");
    }
    let t = o.tiers.len();
    let action_index = |cents: i64| -> Result<usize> {
        if cents == 0 {
            return Ok(0);
        }
        match o.tiers.iter().position(|x| *x == cents) {
            Some(i) => Ok(i + 1),
            None => bail!(
                "logged amount {cents} is not a configured tier ({:?}): pass the logging config",
                o.tiers
            ),
        }
    };
    if let Candidate::Fixed { amount_cents } = candidate {
        if *amount_cents != 0 && !o.tiers.contains(amount_cents) {
            bail!(
                "fixed amount {amount_cents} is not a configured tier ({:?}): the logs have no support for it",
                o.tiers
            );
        }
    }
    // Group by session, first-seen order; decisions stable-sorted by time.
    let mut order: Vec<&str> = Vec::new();
    let mut decisions: HashMap<&str, Vec<&DecisionRecord>> = HashMap::new();
    let mut outcomes: HashMap<&str, &OutcomeRecord> = HashMap::new();
    let (mut min_at, mut max_at) = (i64::MAX, i64::MIN);
    let mut cov = Coverage::default();
    for r in records {
        match r {
            LogRecord::Decision(d) => {
                let e = decisions.entry(d.session_id.as_str()).or_default();
                if e.is_empty() {
                    order.push(d.session_id.as_str());
                }
                e.push(d);
                min_at = min_at.min(d.at_ms);
                max_at = max_at.max(d.at_ms);
                cov.decisions += 1;
                if d.lambda > 0.0 {
                    cov.paced_decisions += 1;
                }
                if d.reason == "budget_exhausted" {
                    cov.budget_exhausted_decisions += 1;
                }
            }
            LogRecord::Outcome(x) => {
                // With several, the last one (as in `logs`).
                outcomes.insert(x.session_id.as_str(), x);
            }
            LogRecord::Events(_) => {}
        }
    }
    for v in decisions.values_mut() {
        v.sort_by_key(|d| d.at_ms);
    }
    cov.sessions = order.len();

    // Explore share: from the non-explored randomised decisions, whose
    // propensity is 1 - e T / (T + 1).
    let e = match o.explore_share {
        Some(e) => e,
        None => {
            let qs: Vec<f64> = order
                .iter()
                .flat_map(|s| decisions[s].iter())
                .filter(|d| is_randomised(d) && !d.explored)
                .map(|d| d.propensity)
                .collect();
            let explored_any = order
                .iter()
                .flat_map(|s| decisions[s].iter())
                .any(|d| is_randomised(d) && d.explored);
            match qs.first() {
                Some(&q) => {
                    if let Some(other) = qs.iter().find(|x| (**x - q).abs() > 1e-9) {
                        bail!(
                            "non-explored decisions carry different propensities ({q} and {other}): \
                             the logs mix explore shares; evaluate them separately or pass --explore-share"
                        );
                    }
                    ((1.0 - q) * (t + 1) as f64 / t as f64).clamp(0.0, 1.0)
                }
                None if explored_any => 1.0,
                None => bail!("no eligible non-holdout decisions in the logs: nothing to evaluate"),
            }
        }
    };
    cov.explore_share = e;
    let u = e / (t + 1) as f64;
    let mixture = |a: usize, g: usize| if a == g { 1.0 - e + u } else { u };

    let mut units = Vec::new();
    for sid in &order {
        let ds = &decisions[sid];
        if ds.iter().any(|d| d.holdout) {
            cov.holdout_sessions += 1;
            continue;
        }
        let randomised: Vec<&&DecisionRecord> = ds.iter().filter(|d| is_randomised(d)).collect();
        let cand = match candidate {
            Candidate::Rule { model, policy } => Candidate::rule_action(model, policy, ds)?,
            Candidate::Fixed { amount_cents } => *amount_cents,
        };
        if randomised.is_empty() {
            cov.not_eligible_sessions += 1;
            if matches!(candidate, Candidate::Rule { .. }) && cand != 0 {
                cov.unsupported_sessions += 1;
            }
            continue;
        }
        action_index(cand)?;
        // Check every randomised decision's logged propensity.
        for d in &randomised {
            let g = action_index(d.policy_tier_cents)?;
            let expected = if !d.explored {
                Some(mixture(g, g))
            } else if d.reason == "budget_exhausted" {
                None
            } else {
                Some(mixture(action_index(d.action_cents)?, g))
            };
            if let Some(x) = expected {
                if (x - d.propensity).abs() > 1e-9 {
                    cov.propensity_mismatches += 1;
                }
            }
        }
        let a_log = ds
            .iter()
            .find(|d| d.reason == "offered")
            .map_or(0, |d| d.action_cents);
        let explored = randomised.iter().any(|d| d.explored);
        if explored {
            cov.explored_sessions += 1;
        }
        let g_star = ds
            .iter()
            .filter(|d| d.eligible && !d.holdout && d.reason != "session_store_unavailable")
            .map(|d| d.policy_tier_cents)
            .find(|c| *c != 0)
            .unwrap_or(0);
        let propensity = if explored {
            mixture(action_index(a_log)?, action_index(g_star)?)
        } else {
            // Greedy (including a budget fallback): the greedy share.
            mixture(0, 0)
        };
        let (converted, order_value_cents) = match (outcomes.get(sid), o.missing) {
            (Some(x), _) => (x.converted, x.order_value_cents),
            (None, MissingOutcome::Negative) => (false, 0),
            (None, MissingOutcome::Skip) => {
                cov.sessions_without_outcome += 1;
                continue;
            }
        };
        let y = f64::from(u8::from(converted));
        let reward = match o.reward {
            Reward::Conversion => y,
            Reward::Net => {
                let redeemable = order_value_cents >= o.min_order_cents;
                o.margin_rate * order_value_cents as f64 * y
                    - if converted && redeemable {
                        a_log as f64
                    } else {
                        0.0
                    }
            }
        };
        units.push(SessionUnit {
            session_id: sid.to_string(),
            first_at_ms: ds[0].at_ms,
            logged_action_cents: a_log,
            candidate_action_cents: cand,
            propensity,
            explored,
            converted,
            order_value_cents,
            reward,
            logged_probability: randomised[0].probability,
            value_hint_cents: ds.last().map_or(0, |d| d.intent_value_cents),
            q_candidate: f64::NAN,
            q_logged: f64::NAN,
        });
    }
    cov.evaluated = units.len();
    cov.days = o.days.unwrap_or(if max_at > min_at {
        (max_at - min_at) as f64 / MS_PER_DAY
    } else {
        0.0
    });
    fit_direct(&mut units, o);
    Ok(Population {
        units,
        coverage: cov,
    })
}

/// Design row of the direct model for a session and an action.
fn design(s: &SessionUnit, a: i64, o: &Options) -> Vec<f64> {
    let p = s.logged_probability.clamp(1e-6, 1.0 - 1e-6);
    let v = s.value_hint_cents.max(100) as f64;
    let redeemable = s.value_hint_cents >= o.min_order_cents;
    let mut x = vec![1.0, nudge::domain::logistic::logit(p), (v / 10_000.0).ln()];
    x.extend(
        o.tiers
            .iter()
            .map(|t| f64::from(u8::from(*t == a && redeemable))),
    );
    x
}

fn q_value(s: &SessionUnit, a: i64, beta: &[f64], o: &Options) -> f64 {
    let p = estimate::predict(beta, &design(s, a, o));
    match o.reward {
        Reward::Conversion => p,
        Reward::Net => {
            let v = s.value_hint_cents as f64;
            let cost = if s.value_hint_cents >= o.min_order_cents {
                a as f64
            } else {
                0.0
            };
            p * (o.margin_rate * v - cost)
        }
    }
}

/// Cross-fitted direct model: fills `q_candidate` and `q_logged`.
fn fit_direct(units: &mut [SessionUnit], o: &Options) {
    let k = o.folds.max(2);
    let n = units.len();
    for f in 0..k {
        let train: Vec<usize> = (0..n).filter(|i| i % k != f).collect();
        let x: Vec<Vec<f64>> = train
            .iter()
            .map(|&i| design(&units[i], units[i].logged_action_cents, o))
            .collect();
        let y: Vec<bool> = train.iter().map(|&i| units[i].converted).collect();
        let beta = estimate::fit_logistic(&x, &y, o.alpha);
        for i in (f..n).step_by(k) {
            let s = &units[i];
            let qc = q_value(s, s.candidate_action_cents, &beta, o);
            let ql = q_value(s, s.logged_action_cents, &beta, o);
            units[i].q_candidate = qc;
            units[i].q_logged = ql;
        }
    }
}

/// The estimates, per session or per day.
#[derive(Clone, Debug, Serialize)]
pub struct Estimates {
    pub ips: Interval,
    pub snips: Interval,
    pub dr: Interval,
    /// Direct model alone (interval: spread of predictions only).
    pub direct: Interval,
    /// The logging policy's own value (observed mean reward).
    pub logged: Interval,
}

impl Estimates {
    fn scaled(&self, k: f64) -> Self {
        Estimates {
            ips: self.ips.scaled(k),
            snips: self.snips.scaled(k),
            dr: self.dr.scaled(k),
            direct: self.direct.scaled(k),
            logged: self.logged.scaled(k),
        }
    }
}

/// The result of `nudge-train replay`.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    pub candidate: String,
    pub reward: Reward,
    /// "cents" (net) or "conversions".
    pub unit: &'static str,
    pub sessions: usize,
    /// Sessions where the candidate's action equals the logged one.
    pub matches: usize,
    pub effective_sample_size: f64,
    pub max_weight: f64,
    pub per_session: Estimates,
    /// Per-session values times evaluated sessions per day (None when the
    /// logs span no time).
    pub per_day: Option<Estimates>,
    pub sessions_per_day: Option<f64>,
    /// `(amount_cents, logged sessions, candidate sessions)`.
    pub actions: Vec<(i64, usize, usize)>,
    pub coverage: Coverage,
    pub definitions: Vec<&'static str>,
}

const DEFINITIONS: &[&str] = &[
    "Unit: a non-holdout session with at least one eligible decision; action: the voucher it was offered (0 = none).",
    "Propensity: (1 - e) [a_log = g*] + e / (T + 1), g* the session's greedy tier, e the explore share, T the tiers.",
    "Candidate: the model's greedy rule (lambda 0, no budget, no holdout/exploration) at each logged moment; first positive tier.",
    "Reward net: margin_rate * order_value * converted - voucher * converted * [order_value >= min_order] (cents); conversion: converted.",
    "IPS: mean(w r), w = 1[a_cand = a_log] / propensity; SNIPS: sum(w r) / sum(w); DR: mean(q(x, a_cand) + w (r - q(x, a_log))).",
    "Intervals: estimate +- 1.96 se, se from the per-session terms (delta method for SNIPS).",
    "Per day: per-session value times evaluated sessions / days covered by the logs.",
];

/// Runs the estimators on a population.
pub fn evaluate(pop: &Population, candidate: &Candidate, o: &Options) -> ReplayReport {
    let units: Vec<Unit> = pop
        .units
        .iter()
        .map(|s| Unit {
            propensity: s.propensity,
            matched: s.candidate_action_cents == s.logged_action_cents,
            reward: s.reward,
            q_candidate: s.q_candidate,
            q_logged: s.q_logged,
        })
        .collect();
    let z = o.z;
    let per_session = Estimates {
        ips: estimate::ips(&units, z),
        snips: estimate::snips(&units, z),
        dr: estimate::dr(&units, z),
        direct: estimate::direct(&units, z),
        logged: estimate::on_policy(&units, z),
    };
    let days = pop.coverage.days;
    let spd = (days > 0.0).then(|| units.len() as f64 / days);
    let mut actions: Vec<(i64, usize, usize)> = std::iter::once(0)
        .chain(o.tiers.iter().copied())
        .map(|a| {
            (
                a,
                pop.units
                    .iter()
                    .filter(|s| s.logged_action_cents == a)
                    .count(),
                pop.units
                    .iter()
                    .filter(|s| s.candidate_action_cents == a)
                    .count(),
            )
        })
        .collect();
    actions.sort_by_key(|a| a.0);
    ReplayReport {
        candidate: candidate.name(),
        reward: o.reward,
        unit: match o.reward {
            Reward::Net => "cents",
            Reward::Conversion => "conversions",
        },
        sessions: units.len(),
        matches: units.iter().filter(|u| u.matched).count(),
        effective_sample_size: estimate::effective_sample_size(&units),
        max_weight: units.iter().map(Unit::weight).fold(0.0, f64::max),
        per_day: spd.map(|k| per_session.scaled(k)),
        per_session,
        sessions_per_day: spd,
        actions,
        coverage: pop.coverage.clone(),
        definitions: DEFINITIONS.to_vec(),
    }
}

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

/// The human-readable report.
pub fn render_text(r: &ReplayReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let c = &r.coverage;
    let scale = match r.reward {
        Reward::Net => 0.01,
        Reward::Conversion => 1.0,
    };
    let unit = match r.reward {
        Reward::Net => "EUR",
        Reward::Conversion => "conversions",
    };
    let _ = writeln!(s, "candidate  {}  (reward: {:?})", r.candidate, r.reward);
    let _ = writeln!(
        s,
        "sessions   {} evaluated of {} ({} holdout, {} never eligible of which {} unsupported, {} without outcome); {:.2} days",
        r.sessions,
        c.sessions,
        c.holdout_sessions,
        c.not_eligible_sessions,
        c.unsupported_sessions,
        c.sessions_without_outcome,
        c.days
    );
    let _ = writeln!(
        s,
        "logging    explore share {:.4} ({} explored sessions), propensity mismatches {}, paced decisions {}, budget-exhausted decisions {}",
        c.explore_share,
        c.explored_sessions,
        c.propensity_mismatches,
        c.paced_decisions,
        c.budget_exhausted_decisions
    );
    let _ = writeln!(
        s,
        "overlap    {} matching sessions, effective sample size {:.1}, max weight {:.2}",
        r.matches, r.effective_sample_size, r.max_weight
    );
    let _ = write!(s, "actions    (amount: logged / candidate)");
    for (a, l, k) in &r.actions {
        let _ = write!(s, "  {a}: {l} / {k}");
    }
    let _ = writeln!(s);
    let mut block = |title: &str, e: &Estimates| {
        let _ = writeln!(s, "{title}");
        for (name, i) in [
            ("IPS", &e.ips),
            ("SNIPS", &e.snips),
            ("DR", &e.dr),
            ("direct", &e.direct),
            ("logged", &e.logged),
        ] {
            let _ = writeln!(
                s,
                "  {name:<7} {:>12.4} {unit}  95 % [{:.4}, {:.4}]",
                i.estimate * scale,
                i.lo * scale,
                i.hi * scale
            );
        }
    };
    block("value per session", &r.per_session);
    if let (Some(d), Some(k)) = (&r.per_day, r.sessions_per_day) {
        block(&format!("value per day ({k:.1} sessions/day)"), d);
    }
    s
}

/// The service settings of `--config` (the documented defaults without
/// one): the candidate's policy and the logging policy's tiers and minimum
/// order.
pub fn load_settings(config: Option<&std::path::Path>) -> Result<nudge::config::Settings> {
    use anyhow::Context as _;
    let raw = nudge::config::RawConfig::load(config)?;
    raw.validate().context("invalid config")
}
