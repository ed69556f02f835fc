//! The response from the service's logs: every learner setting of the grid
//! fitted on the training rows (alpha by CV), written as the model file's
//! `uplift` section with its covariance, and judged on the validation rows
//! by the doubly robust value of the rule that serves it, next to Qini.
//! The setting with the highest DR value is the one returned.
//!
//! Why by policy value: Qini ranks visitors by predicted uplift, but the
//! rule acts on the lift's *size* (is the tier worth its cost for this
//! visitor?), after the conservative bound and the choice among tiers; a
//! learner can rank well and still offer where it loses money. The DR value
//! is what the served file would earn on sessions it did not see. The
//! chosen setting's validation value is the best of several, so it is
//! optimistic; `nudge-train retrain` judges the written file again on
//! sessions that neither the fit nor this choice saw.

use super::alpha::{choose_alpha, AlphaCv};
use super::arms::{fit_with_learner, split, ArmFit, ArmRows, Voucher};
use super::covariance::add_covariances;
use super::evaluation::{evaluate, Evaluation};
use super::options::{check_opts, Setting, UpliftOptions, PRICE_SIGNALS};
use super::randomised::RandomisedRow;
use super::value::{policy_value, rule_actions, PolicyValue};
use crate::fit::{apply, learn_transforms};
use crate::replay;
use anyhow::{bail, Context as _, Result};
use ndarray::Array2;
use nudge::domain::features::FEATURES;
use nudge::domain::model::VOUCHER_SHARE;
use nudge::domain::model::{Input, ModelFile, Term, Transform, UpliftArm, UpliftFile};
use nudge::domain::policy::Policy;
use serde::Serialize;
use serde_json::json;

/// What the response is judged with: the intent model it extends and the
/// rule and reward of the policy value.
#[derive(Clone, Copy, Debug)]
pub struct Judge<'a> {
    /// The session model the `uplift` section is added to.
    pub base: &'a ModelFile,
    pub policy: &'a Policy,
    pub value: &'a replay::Options,
}

/// One setting of the grid, fitted and judged.
#[derive(Clone, Debug, Serialize)]
pub struct SettingResult {
    pub setting: String,
    #[serde(flatten)]
    pub learner: Setting,
    pub alpha: f64,
    pub alpha_cv: Vec<AlphaCv>,
    /// The rule with the served (conservative) lifts.
    pub value: PolicyValue,
    /// The same with the point estimates (`lower_bound_z` = 0).
    pub value_point: PolicyValue,
    /// Qini coefficient of each treatment arm, validation rows.
    pub qini: Vec<f64>,
    pub converged: bool,
    pub chosen: bool,
}

/// The policies every setting is compared with, same rows.
#[derive(Clone, Debug, Serialize)]
pub struct References {
    pub no_voucher: PolicyValue,
    /// The base model as it is (its own response, or the config priors).
    pub base: PolicyValue,
}

/// Result of a fit on randomised log rows.
#[derive(Clone, Debug)]
pub struct LogsUplift {
    /// The chosen setting's response.
    pub uplift: UpliftFile,
    pub evaluation: Evaluation,
    pub setting: Setting,
    /// Every setting tried, in grid order.
    pub settings: Vec<SettingResult>,
    pub references: References,
    /// Arm amounts, control first.
    pub amounts: Vec<i64>,
    pub dropped_features: Vec<String>,
    /// The chosen setting's penalty.
    pub alpha: f64,
    pub alpha_cv: Vec<AlphaCv>,
    /// Validation rows (the values' sessions).
    pub validation_rows: usize,
}

/// The model file's terms of a fitted arm, in [`ArmFit`]'s coefficient
/// order: the features, the voucher share, the share interactions.
fn arm_terms(f: &ArmFit, kept: &[(usize, Vec<Transform>)]) -> Vec<Term> {
    let term = |c: usize, coef: f64, times: Option<String>| Term {
        feature: FEATURES[kept[c].0].name.to_owned(),
        category: None,
        transforms: kept[c].1.clone(),
        times,
        coef,
    };
    let mut terms: Vec<Term> = f
        .model
        .coefs
        .iter()
        .enumerate()
        .map(|(c, &coef)| term(c, coef, None))
        .collect();
    if let Some(coef) = f.share {
        terms.push(Term {
            feature: VOUCHER_SHARE.into(),
            category: None,
            transforms: vec![],
            times: None,
            coef,
        });
    }
    for &(c, coef) in &f.share_signals {
        terms.push(term(c, coef, Some(VOUCHER_SHARE.into())));
    }
    terms
}

/// A fitted setting before the choice.
struct Tried {
    result: SettingResult,
    uplift: UpliftFile,
    evaluation: Evaluation,
    alpha_cv: Vec<AlphaCv>,
}

/// Fits every setting of `opts.settings` (or `opts.learner` with
/// `opts.interactions` when empty) and returns the one whose rule has the
/// highest DR value on the validation rows (see the module docs).
/// `lineage` is merged into the chosen `uplift.training`.
pub fn fit_logs(
    rows: &[RandomisedRow],
    opts: &UpliftOptions,
    judge: &Judge,
    lineage: serde_json::Value,
) -> Result<LogsUplift> {
    check_opts(opts)?;
    if judge.base.input != Input::Session {
        bail!("the response is fitted on session features: the base model must have input \"session\"");
    }
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
    let intent: Vec<i64> = rows.iter().map(|r| r.intent_value_cents).collect();
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
    let signals: Vec<usize> = (0..kept.len())
        .filter(|&c| PRICE_SIGNALS.contains(&FEATURES[kept[c].0].name))
        .collect();
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
    let arm_rows = ArmRows::new(&x, &arm, &y, &names).with_voucher(Voucher {
        amounts: &amounts,
        intent_cents: &intent,
        signals: &signals,
    });
    let held_refs: Vec<&RandomisedRow> = held_rows.iter().map(|&i| &rows[i]).collect();
    let value_of = |file: &ModelFile, z: Option<f64>| -> Result<PolicyValue> {
        let model = file
            .compile()
            .context("the model with the learned response")?;
        let actions = rule_actions(&model, judge.policy, &held_refs, z)?;
        policy_value(&held_refs, &actions, judge.value)
    };
    let references = References {
        no_voucher: policy_value(&held_refs, &vec![0; held_refs.len()], judge.value)?,
        base: value_of(judge.base, None)?,
    };
    let grid = if opts.settings.is_empty() {
        vec![Setting {
            learner: opts.learner,
            interactions: opts.interactions,
        }]
    } else {
        opts.settings.clone()
    };
    let mut tried: Vec<Tried> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for s in &grid {
        let o = UpliftOptions {
            learner: s.learner,
            interactions: s.interactions,
            ..opts.clone()
        };
        let fitted = (|| -> Result<Tried> {
            let (o, alpha_cv) = choose_alpha(&arm_rows, &train, &o)?;
            let mut fits = fit_with_learner(&arm_rows, &train, &o)?;
            add_covariances(&arm_rows, &train, &o, &mut fits)?;
            let evaluation = evaluate(&arm_rows, &held_rows, &fits, Some(&amounts));
            let uplift = UpliftFile {
                arms: fits
                    .iter()
                    .zip(&amounts)
                    .map(|(f, &amount_cents)| UpliftArm {
                        amount_cents,
                        intercept: f.model.intercept,
                        terms: arm_terms(f, &kept),
                        covariance: f.covariance.clone(),
                    })
                    .collect(),
                lower_bound_z: Some(o.lower_bound_z),
                training: serde_json::Value::Null,
            };
            let file = ModelFile {
                uplift: Some(uplift.clone()),
                ..judge.base.clone()
            };
            let result = SettingResult {
                setting: s.name(),
                learner: *s,
                alpha: o.alpha,
                alpha_cv: alpha_cv.clone(),
                value: value_of(&file, None)?,
                value_point: value_of(&file, Some(0.0))?,
                qini: evaluation.arms.iter().map(|a| a.qini_coefficient).collect(),
                converged: fits.iter().all(|f| f.converged),
                chosen: false,
            };
            Ok(Tried {
                result,
                uplift,
                evaluation,
                alpha_cv,
            })
        })();
        match fitted {
            Ok(t) => tried.push(t),
            Err(e) if grid.len() > 1 => failed.push(format!("{}: {e:#}", s.name())),
            Err(e) => return Err(e),
        }
    }
    // Highest DR value; ties to the earlier (simpler) setting.
    let Some(best) = (0..tried.len()).reduce(|b, i| {
        if tried[i].result.value.dr.estimate > tried[b].result.value.dr.estimate {
            i
        } else {
            b
        }
    }) else {
        bail!("no learner setting could be fitted: {}", failed.join("; "));
    };
    tried[best].result.chosen = true;
    let settings: Vec<SettingResult> = tried.iter().map(|t| t.result.clone()).collect();
    let Tried {
        result,
        mut uplift,
        evaluation,
        alpha_cv,
    } = tried.swap_remove(best);
    let o = UpliftOptions {
        learner: result.learner.learner,
        interactions: result.learner.interactions,
        alpha: result.alpha,
        ..opts.clone()
    };
    let mut training = json!({
        "method": o.learner.method(),
        "learner": o.learner,
        "interactions": o.interactions,
        "setting": result.setting,
        "price_signals": signals.iter().map(|&c| FEATURES[kept[c].0].name).collect::<Vec<_>>(),
        "selection": "highest doubly robust value of the served rule on the validation rows",
        "settings": settings,
        "settings_failed": failed,
        "references": references,
        "rows": "randomised decisions only (holdout + exploration), one per session (its first randomised decision), unweighted: the arms are uniform random subsets of the eligible decisions",
        "label": "session converted",
        "alpha": o.alpha,
        "alpha_cv": alpha_cv,
        "cv_folds": if alpha_cv.is_empty() { None } else { Some(o.cv_folds) },
        "covariance": "inverse of the penalised Hessian at the fit, standardised design (per arm; pooled: the treated arm's contrast with the control)",
        "lower_bound_z": o.lower_bound_z,
        "holdout": o.holdout,
        "seed": o.seed,
        "clip_quantile": o.clip_quantile,
        "max_iterations": o.max_iterations,
        "gradient_tolerance": o.gradient_tolerance,
        "dropped_features": dropped,
        "rows_per_arm": amounts.iter().enumerate().map(|(a, amt)| {
            json!({
                "amount_cents": amt,
                "rows": arm.iter().filter(|&&v| v == a).count(),
                "train_rows": if a == 0 { evaluation.control_train_rows } else { evaluation.arms[a - 1].train_rows },
            })
        }).collect::<Vec<_>>(),
        "holdout_metrics": evaluation,
    });
    if let (Some(t), serde_json::Value::Object(extra)) = (training.as_object_mut(), lineage) {
        for (k, v) in extra {
            t.insert(k, v);
        }
    }
    uplift.training = training;
    Ok(LogsUplift {
        uplift,
        evaluation,
        setting: result.learner,
        settings,
        references,
        amounts,
        dropped_features: dropped,
        alpha: o.alpha,
        alpha_cv,
        validation_rows: held_refs.len(),
    })
}
