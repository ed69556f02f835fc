//! From log records to the evaluation population: the sessions, their
//! logged and candidate actions, propensities and rewards (see the module
//! docs of [`crate::replay`] for the definitions).

use super::candidate::Candidate;
use super::direct::fit_direct;
use super::options::{Options, Reward};
use super::population::{Coverage, Population, SessionUnit};
use crate::logs::MissingOutcome;
use anyhow::{bail, Result};
use nudge::decision_log::{DecisionRecord, LogRecord, OutcomeRecord};
use std::collections::HashMap;

const MS_PER_DAY: f64 = 86_400_000.0;

fn is_randomised(d: &DecisionRecord) -> bool {
    d.eligible
        && !d.holdout
        && !matches!(
            d.reason.as_str(),
            "already_offered" | "session_store_unavailable" | "budget_unavailable"
        )
}

/// The budget (main or learning) refused the voucher the decision chose.
fn refused_by_budget(d: &DecisionRecord) -> bool {
    matches!(
        d.reason.as_str(),
        "budget_exhausted" | "learning_budget_exhausted"
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
                if refused_by_budget(d) {
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
            } else if refused_by_budget(d) {
                // An explored voucher the budget refused: logged as "none"
                // with its probability given the budget at that moment,
                // which the log alone does not tell.
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
