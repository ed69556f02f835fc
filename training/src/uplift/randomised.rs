//! Uplift from the service's logs: one randomised row per session (see the
//! module docs of [`crate::uplift`] for which rows and why unweighted),
//! fitted into the model file's `uplift` section.

use super::alpha::{choose_alpha, AlphaCv};
use super::arms::{fit_with_learner, split, ArmRows};
use super::evaluation::{evaluate, Evaluation};
use super::options::{check_opts, UpliftOptions};
use crate::fit::{apply, learn_transforms};
use crate::logs::{self, MissingOutcome};
use anyhow::{bail, Context as _, Result};
use ndarray::Array2;
use nudge::decision_log::{DecisionRecord, LogRecord};
use nudge::domain::features::{Features, FEATURES};
use nudge::domain::model::{Term, Transform, UpliftArm, UpliftFile};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};

/// One randomised session.
#[derive(Clone, Debug)]
pub struct RandomisedRow {
    pub session_id: String,
    pub at_ms: i64,
    pub features: Features,
    /// Arm: the voucher offered (0 = none: holdout or explored "none").
    pub amount_cents: i64,
    pub holdout: bool,
    pub converted: bool,
}

/// What the selection of randomised rows kept and dropped.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Selection {
    /// Sessions with at least one decision (and a label, see the log read).
    pub labelled_sessions: usize,
    /// Sessions with an eligible decision but no randomised one (greedy).
    pub greedy_sessions_excluded: usize,
    pub holdout_sessions: usize,
    pub explored_sessions: usize,
    /// Explored sessions whose drawn voucher was not delivered, by reason.
    pub explored_not_delivered: BTreeMap<String, usize>,
    /// Rows kept per arm (amount in cents).
    pub rows_per_arm: BTreeMap<i64, usize>,
}

/// Replays `records` and keeps one randomised row per session (see the
/// module docs).
pub fn randomised_rows(
    records: &[LogRecord],
    missing: MissingOutcome,
) -> Result<(Vec<RandomisedRow>, logs::LogSummary, Selection)> {
    let (rows, summary) = logs::replay(records, missing);
    // Decisions per session in replay order (stable sort by time).
    let mut decisions: HashMap<&str, Vec<&DecisionRecord>> = HashMap::new();
    for r in records {
        if let LogRecord::Decision(d) = r {
            decisions.entry(d.session_id.as_str()).or_default().push(d);
        }
    }
    for v in decisions.values_mut() {
        v.sort_by_key(|d| d.at_ms);
    }
    let mut next: HashMap<&str, usize> = HashMap::new();
    let mut done: HashMap<String, ()> = HashMap::new();
    let mut eligible_seen: HashMap<String, ()> = HashMap::new();
    let mut sel = Selection::default();
    let mut out = Vec::new();
    for r in &rows {
        let list = decisions
            .get(r.session_id.as_str())
            .context("replayed row without a decision record")?;
        let k = next.entry(list[0].session_id.as_str()).or_insert(0);
        let d = list[*k];
        *k += 1;
        if d.at_ms != r.at_ms {
            bail!(
                "session {}: replayed decision at {} does not match the logged one at {}",
                r.session_id,
                r.at_ms,
                d.at_ms
            );
        }
        if *k == 1 {
            sel.labelled_sessions += 1;
        }
        if d.eligible {
            eligible_seen.insert(r.session_id.clone(), ());
        }
        if done.contains_key(&r.session_id) || !(d.holdout || d.explored) {
            continue;
        }
        done.insert(r.session_id.clone(), ());
        let amount = if d.holdout {
            sel.holdout_sessions += 1;
            0
        } else {
            sel.explored_sessions += 1;
            match d.reason.as_str() {
                "exploration_no_voucher" => 0,
                "offered" if d.action_cents > 0 => d.action_cents,
                other => {
                    *sel.explored_not_delivered
                        .entry(other.to_owned())
                        .or_default() += 1;
                    continue;
                }
            }
        };
        *sel.rows_per_arm.entry(amount).or_default() += 1;
        out.push(RandomisedRow {
            session_id: r.session_id.clone(),
            at_ms: r.at_ms,
            features: r.row.features,
            amount_cents: amount,
            holdout: d.holdout,
            converted: r.row.converted,
        });
    }
    sel.greedy_sessions_excluded = eligible_seen
        .keys()
        .filter(|s| !done.contains_key(*s))
        .count();
    Ok((out, summary, sel))
}

/// Result of a fit on randomised log rows.
#[derive(Clone, Debug)]
pub struct LogsUplift {
    pub uplift: UpliftFile,
    pub evaluation: Evaluation,
    /// Arm amounts, control first.
    pub amounts: Vec<i64>,
    pub dropped_features: Vec<String>,
    /// The penalty of the fit (chosen by CV when a grid was given).
    pub alpha: f64,
    pub alpha_cv: Vec<AlphaCv>,
}

/// Fits the arms on randomised rows and evaluates them (see the module
/// docs). `lineage` is merged into `uplift.training`.
pub fn fit_logs(
    rows: &[RandomisedRow],
    opts: &UpliftOptions,
    lineage: serde_json::Value,
) -> Result<LogsUplift> {
    check_opts(opts)?;
    let mut amounts: Vec<i64> = rows.iter().map(|r| r.amount_cents).collect();
    amounts.sort_unstable();
    amounts.dedup();
    if amounts.first() != Some(&0) {
        bail!(
            "no control rows (holdout or explored without a voucher) in the randomised decisions"
        );
    }
    if amounts.len() < 2 {
        bail!("no treated rows (explored decisions with a voucher) in the randomised decisions");
    }
    let arm: Vec<usize> = rows
        .iter()
        .map(|r| {
            amounts
                .binary_search(&r.amount_cents)
                .expect("amount listed")
        })
        .collect();
    let y: Vec<bool> = rows.iter().map(|r| r.converted).collect();
    let held = split(&arm, &y, opts.holdout, opts.seed);
    let train: Vec<usize> = (0..rows.len()).filter(|&i| !held[i]).collect();
    let held_rows: Vec<usize> = (0..rows.len()).filter(|&i| held[i]).collect();
    // Transforms on the pooled training rows of all arms.
    let mut kept: Vec<(usize, Vec<Transform>)> = Vec::new();
    let mut dropped = Vec::new();
    for (j, def) in FEATURES.iter().enumerate() {
        let raw: Vec<f64> = train.iter().map(|&i| rows[i].features.0[j]).collect();
        match learn_transforms(j, &raw, opts.clip_quantile) {
            Some(ts) => kept.push((j, ts)),
            None => dropped.push(def.name.to_owned()),
        }
    }
    let x = Array2::from_shape_fn((rows.len(), kept.len()), |(i, c)| {
        let (j, ts) = &kept[c];
        apply(ts, rows[i].features.0[*j])
    });
    let names: Vec<String> = amounts
        .iter()
        .map(|a| {
            if *a == 0 {
                "none".to_owned()
            } else {
                format!("{a} cents")
            }
        })
        .collect();
    let arm_rows = ArmRows::new(&x, &arm, &y, &names);
    let (chosen, alpha_cv) = choose_alpha(&arm_rows, &train, opts)?;
    let opts = &chosen;
    let fits = fit_with_learner(&arm_rows, &train, opts)?;
    let evaluation = evaluate(&x, &arm, &y, &held_rows, &fits, Some(&amounts));
    let arms = fits
        .iter()
        .zip(&amounts)
        .map(|(f, &amount_cents)| UpliftArm {
            amount_cents,
            intercept: f.model.intercept,
            terms: kept
                .iter()
                .zip(&f.model.coefs)
                .map(|((j, ts), &coef)| Term {
                    feature: FEATURES[*j].name.to_owned(),
                    category: None,
                    transforms: ts.clone(),
                    times: None,
                    coef,
                })
                .collect(),
            covariance: None,
        })
        .collect();
    let mut training = json!({
        "method": opts.learner.method(),
        "learner": opts.learner,
        "rows": "randomised decisions only (holdout + exploration), one per session (its first randomised decision), unweighted: the arms are uniform random subsets of the eligible decisions",
        "label": "session converted",
        "alpha": opts.alpha,
        "alpha_cv": alpha_cv,
        "cv_folds": if alpha_cv.is_empty() { None } else { Some(opts.cv_folds) },
        "holdout": opts.holdout,
        "seed": opts.seed,
        "clip_quantile": opts.clip_quantile,
        "max_iterations": opts.max_iterations,
        "gradient_tolerance": opts.gradient_tolerance,
        "dropped_features": dropped,
        "rows_per_arm": amounts.iter().enumerate().map(|(a, amt)| {
            json!({
                "amount_cents": amt,
                "rows": arm.iter().filter(|&&v| v == a).count(),
                "train_rows": fits[a].train_rows,
                "train_positives": fits[a].train_positives,
                "converged": fits[a].converged,
            })
        }).collect::<Vec<_>>(),
        "holdout_metrics": evaluation,
    });
    if let (Some(t), serde_json::Value::Object(extra)) = (training.as_object_mut(), lineage) {
        for (k, v) in extra {
            t.insert(k, v);
        }
    }
    Ok(LogsUplift {
        uplift: UpliftFile {
            arms,
            lower_bound_z: None,
            training,
        },
        evaluation,
        amounts,
        dropped_features: dropped,
        alpha: opts.alpha,
        alpha_cv,
    })
}
