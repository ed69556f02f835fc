//! What a model would earn, estimated on randomised rows: the doubly robust
//! (and IPS) value of the service's rule with that model, so learners,
//! settings and whole models are judged by money and not by a ranking
//! metric alone.
//!
//! - **Units**: randomised rows ([`RandomisedRow`]: one per session, its
//!   first holdout or explored decision), usually rows no fit saw.
//! - **Logged action**: the row's arm (0 = none). **Propensity**: the arm's
//!   share of the evaluated rows. Holdout and exploration draw the arm
//!   independently of the visitor given eligibility, so every arm is a
//!   random subset and its share is its probability (estimated from the
//!   rows themselves, which also removes the chance imbalance of the draw).
//! - **Candidate action**: what the rule decides at the row's moment with
//!   the model ([`crate::replay::action_at`]: score, segment, served lifts,
//!   best positive tier at lambda 0, no budget), from the logged features
//!   and intent value.
//! - **Reward** and **direct model**: as in [`crate::replay`] (net margin
//!   `m V y - a y [V >= min_order]` or conversion; the cross-fitted ridge
//!   logistic `q(x, a)` on these rows).
//! - **Estimates**: DR `mean(q(x, a_cand) + w (r - q(x, a_log)))`, IPS
//!   `mean(w r)`, `w = [a_cand = a_log] / share(a_log)`, intervals
//!   `+- z se`; two policies on the same rows are compared by the mean of
//!   their per-row DR differences ([`paired_difference`]), which cancels
//!   the rows' common noise.
//!
//! The population is the eligible sessions of the logging policy (a
//! session it never found eligible has no randomised row): a model that
//! would offer elsewhere is valued on the sessions both could offer to.

use super::randomised::RandomisedRow;
use crate::replay::estimate::{self, Interval};
use crate::replay::{self, Reward, SessionUnit};
use anyhow::{anyhow, bail, Result};
use nudge::domain::model::{ClientFeatures, Model};
use nudge::domain::policy::Policy;
use serde::Serialize;

/// A policy's value on randomised rows (per session, in the reward's unit:
/// cents or conversions).
#[derive(Clone, Debug, Serialize)]
pub struct PolicyValue {
    pub dr: Interval,
    pub ips: Interval,
    pub sessions: usize,
    /// `(amount_cents, sessions)` the policy gives each action (0 = none).
    pub actions: Vec<(i64, usize)>,
    /// Per-session DR terms (for paired comparisons).
    #[serde(skip)]
    pub terms: Vec<f64>,
}

/// The rule's action at every row with `model` (`z`: another
/// `lower_bound_z` than the model's).
pub fn rule_actions(
    model: &Model,
    policy: &Policy,
    rows: &[&RandomisedRow],
    z: Option<f64>,
) -> Result<Vec<i64>> {
    let client = ClientFeatures::default();
    rows.iter()
        .map(|r| {
            replay::action_at(model, policy, &r.features, &client, r.intent_value_cents, z)
                .map_err(|e| anyhow!("session {}: {e}", r.session_id))
        })
        .collect()
}

/// The value of taking `actions[i]` at `rows[i]` (see the module docs).
pub fn policy_value(
    rows: &[&RandomisedRow],
    actions: &[i64],
    o: &replay::Options,
) -> Result<PolicyValue> {
    if rows.is_empty() || rows.len() != actions.len() {
        bail!("no rows to value a policy on");
    }
    let known = |a: i64| a == 0 || o.tiers.contains(&a);
    if let Some(r) = rows.iter().find(|r| !known(r.amount_cents)) {
        bail!(
            "logged amount {} is not a configured tier ({:?}): pass the logging config",
            r.amount_cents,
            o.tiers
        );
    }
    let n = rows.len() as f64;
    let mut counts: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    for r in rows {
        *counts.entry(r.amount_cents).or_default() += 1;
    }
    let share = |a: i64| counts[&a] as f64 / n;
    let mut units: Vec<SessionUnit> = rows
        .iter()
        .zip(actions)
        .map(|(r, &cand)| {
            let y = f64::from(u8::from(r.converted));
            let reward = match o.reward {
                Reward::Conversion => y,
                Reward::Net => {
                    let redeemable = r.order_value_cents >= o.min_order_cents;
                    o.margin_rate * r.order_value_cents as f64 * y
                        - if r.converted && redeemable {
                            r.amount_cents as f64
                        } else {
                            0.0
                        }
                }
            };
            SessionUnit {
                session_id: r.session_id.clone(),
                first_at_ms: r.at_ms,
                logged_action_cents: r.amount_cents,
                candidate_action_cents: cand,
                propensity: share(r.amount_cents),
                explored: !r.holdout,
                converted: r.converted,
                order_value_cents: r.order_value_cents,
                reward,
                logged_probability: r.probability,
                value_hint_cents: r.intent_value_cents,
                q_candidate: f64::NAN,
                q_logged: f64::NAN,
            }
        })
        .collect();
    replay::direct::fit_direct(&mut units, o);
    let est: Vec<estimate::Unit> = units
        .iter()
        .map(|s| estimate::Unit {
            propensity: s.propensity,
            matched: s.candidate_action_cents == s.logged_action_cents,
            reward: s.reward,
            q_candidate: s.q_candidate,
            q_logged: s.q_logged,
        })
        .collect();
    let terms = estimate::dr_terms(&est);
    let mut actions_n: Vec<(i64, usize)> = std::iter::once(0)
        .chain(o.tiers.iter().copied())
        .map(|a| (a, actions.iter().filter(|&&x| x == a).count()))
        .collect();
    actions_n.sort_by_key(|a| a.0);
    Ok(PolicyValue {
        dr: estimate::mean_interval(&terms, o.z),
        ips: estimate::ips(&est, o.z),
        sessions: rows.len(),
        actions: actions_n,
        terms,
    })
}

/// `a - b` on the same rows: the mean of the per-row DR differences with
/// its interval.
pub fn paired_difference(a: &PolicyValue, b: &PolicyValue, z: f64) -> Interval {
    let d: Vec<f64> = a.terms.iter().zip(&b.terms).map(|(x, y)| x - y).collect();
    estimate::mean_interval(&d, z)
}

/// Sessions the policy offers any voucher.
pub fn offers(v: &PolicyValue) -> usize {
    v.actions.iter().filter(|a| a.0 != 0).map(|a| a.1).sum()
}
