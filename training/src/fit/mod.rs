//! Fitting the intent model: transforms, L2-regularised logistic regression
//! (Newton's method), convergence check, segment thresholds and the model
//! file.
//!
//! # Pipeline
//! 1. Rows = decision moments replayed from sessions ([`crate::data::rows`]),
//!    at most `max_points_per_session` per session.
//! 2. Train / held-out split **by session** ([`crate::data::holdout_sessions`]).
//! 3. Regularisation by cross-validation (unless a fixed `alpha` is given,
//!    i.e. `alphas` is empty): the training sessions are split into `k`
//!    folds **by session** ([`session_folds`]: the sessions, labelled by
//!    their outcome, go through [`crate::cv::stratified_folds`] with `seed`,
//!    and every row takes its session's fold, so no session straddles two
//!    folds); for every alpha of the grid, k fits (transforms learned on the
//!    fold's training rows only, as in step 4) give out-of-fold predictions;
//!    alpha = the lowest mean out-of-fold log-loss
//!    ([`crate::cv::select_alpha`], ties to the larger alpha). The same rule
//!    as the CSV path ([`crate::tabular`]). Within a fold the alphas run
//!    from the largest down, each fit warm-started at the previous alpha's
//!    solution; folds run in parallel (the result does not depend on it).
//! 4. Transforms per feature from [`nudge::domain::features::FEATURES`]`[i].scale`,
//!    learned on the training split only:
//!    - `Log`: `clip [min, q]` -> `log1p` -> `standardise`;
//!    - `Linear`: `clip [min, q]` -> `standardise`;
//!    - `Flag`: `standardise`;
//!
//!    where `q` is the `clip_quantile` quantile (default 0.999) of the raw
//!    training values (the maximum if that quantile equals the minimum), so
//!    a served outlier cannot push a term far outside the training range.
//!    Features with (near) zero variance after the transforms are dropped.
//! 5. Final fit on the whole training split at the chosen alpha: logistic
//!    regression with penalty `alpha / 2 * |w|^2` on the summed
//!    log-loss (the intercept is not penalised), by Newton's method
//!    ([`crate::fit::logistic`]). A fit that stops at `max_iterations` is
//!    reported, never taken silently: convergence is checked: the L2 norm of the
//!    gradient of the penalised objective at the solution, divided by the
//!    number of rows, must be at most `gradient_tolerance` (for the final
//!    fit and, per fold, in the lineage's `metrics.cv`).
//! 6. Segment thresholds by the precision / NPV rule of
//!    [`choose_thresholds`] on the **out-of-fold** predictions of the chosen
//!    alpha (no row judges a model that saw it); with a fixed alpha (no CV)
//!    on the in-sample training predictions (the behaviour before CV; with
//!    `--alpha 1` it reproduces models fitted before CV was added).
//! 7. Metrics on the held-out sessions; the model file with lineage (alpha
//!    grid, per-alpha CV log-loss and ROC-AUC per fold, chosen alpha, `k`,
//!    fold seed and rule).
//!
//! # Files
//! [`transforms`] (step 4), [`logistic`] (step 5: the one regression every
//! learner uses), [`thresholds`] (step 6); this file: the options, the
//! session-grouped CV and the pipeline itself.

pub mod logistic;
pub mod thresholds;
pub mod transforms;

pub use logistic::{fit_logistic, fit_logistic_from, gradient_norm, Logistic};
pub use thresholds::{choose_thresholds, segment};
pub use transforms::{apply, learn_transforms};

use crate::cv::{self, CvResult, FoldFit};
use crate::data::{self, Row};
use crate::metrics;
use anyhow::{bail, Context as _, Result};
use ndarray::Array2;
use nudge::domain::features::FEATURES;
use nudge::domain::logistic::sigmoid;
use nudge::domain::model::{Input, ModelFile, Term, Transform, FORMAT};
use nudge::domain::policy::SegmentThresholds;
use nudge::sim::synth::GeneratedSession;
use serde_json::json;
use std::time::Instant;

/// The default alpha grid of cross-validation (the CSV path's default too).
pub const DEFAULT_ALPHAS: [f64; 5] = [0.01, 0.1, 1.0, 10.0, 100.0];

/// Fit settings (the CLI flags of `nudge-train fit`).
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Seeds the decision-point sampling, the split and the CV folds.
    pub seed: u64,
    /// L2 penalty on the summed log-loss when `alphas` is empty (no CV).
    pub alpha: f64,
    /// Alpha grid searched by session-grouped k-fold CV; empty = no CV, fit
    /// with `alpha` and take the thresholds from the training predictions.
    pub alphas: Vec<f64>,
    /// Folds of the cross-validation.
    pub k: usize,
    /// Share of sessions held out.
    pub holdout: f64,
    pub max_iterations: u64,
    /// Convergence: |gradient|_2 / rows at the solution.
    pub gradient_tolerance: f64,
    pub max_points_per_session: usize,
    /// Hot: smallest threshold whose "p >= t" precision reaches this.
    pub hot_precision: f64,
    /// Cold: largest threshold whose "p < t" negative predictive value stays
    /// at or above this.
    pub cold_npv: f64,
    /// A segment rule must keep at least this many training rows.
    pub min_segment_rows: usize,
    pub clip_quantile: f64,
    /// Prefix of the model version (`<prefix>-<yyyymmdd>-<sha8>`).
    pub version_prefix: String,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            seed: 7,
            alpha: 1.0,
            alphas: DEFAULT_ALPHAS.to_vec(),
            k: 5,
            holdout: 0.2,
            max_iterations: 1_000,
            gradient_tolerance: 1e-6,
            max_points_per_session: 3,
            hot_precision: 0.7,
            cold_npv: 0.97,
            min_segment_rows: 50,
            clip_quantile: 0.999,
            version_prefix: "default".into(),
        }
    }
}

/// Where the data came from (for lineage).
#[derive(Clone, Debug)]
pub struct DataInfo {
    /// SHA-256 of the JSONL bytes.
    pub sha256: String,
    /// Human description: a path or `generated: N sessions, seed S`.
    pub source: String,
}

/// Everything a fit produced.
#[derive(Clone, Debug)]
pub struct FitResult {
    pub model: ModelFile,
    pub rows: Vec<Row>,
    /// Fitted probability of each row (same order as `rows`).
    pub p: Vec<f64>,
    /// Whether each row is held out.
    pub held_out: Vec<bool>,
    pub converged: bool,
    /// CV fold of each row (`None`: held out, or no CV).
    pub fold: Vec<Option<usize>>,
    /// Cross-validation per alpha of the grid (empty without CV).
    pub cv: Vec<CvResult>,
    /// Index of the chosen alpha in `cv`.
    pub cv_chosen: Option<usize>,
    /// The alpha of the final fit.
    pub alpha: f64,
    /// Metrics and lineage (also `model.training`).
    pub summary: serde_json::Value,
}

/// Per-feature transforms learned on training rows (step 4 of the module
/// docs).
#[derive(Clone, Debug)]
pub struct SessionEncoder {
    /// `(index into FEATURES, transforms)` of every kept feature.
    pub kept: Vec<(usize, Vec<Transform>)>,
    /// Features dropped for (near) zero variance.
    pub dropped: Vec<&'static str>,
}

impl SessionEncoder {
    pub fn learn(rows: &[&Row], clip_quantile: f64) -> SessionEncoder {
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for (j, def) in FEATURES.iter().enumerate() {
            let raw: Vec<f64> = rows.iter().map(|r| r.features.0[j]).collect();
            match learn_transforms(j, &raw, clip_quantile) {
                Some(ts) => kept.push((j, ts)),
                None => dropped.push(def.name),
            }
        }
        SessionEncoder { kept, dropped }
    }

    /// The design matrix of `rows`.
    pub fn design(&self, rows: &[&Row]) -> Array2<f64> {
        Array2::from_shape_fn((rows.len(), self.kept.len()), |(i, k)| {
            let (j, ts) = &self.kept[k];
            apply(ts, rows[i].features.0[*j])
        })
    }
}

/// Learns the transforms on `rows` and fits at `alpha` (from `start`).
fn fit_encoded(
    rows: &[&Row],
    alpha: f64,
    opts: &FitOptions,
    start: Option<&Logistic>,
) -> Result<(SessionEncoder, Logistic)> {
    let enc = SessionEncoder::learn(rows, opts.clip_quantile);
    let x = enc.design(rows);
    let y: Vec<bool> = rows.iter().map(|r| r.converted).collect();
    let m = fit_logistic_from(
        &x,
        &y,
        alpha,
        opts.max_iterations,
        opts.gradient_tolerance,
        start,
    )?;
    Ok((enc, m))
}

fn predict(enc: &SessionEncoder, m: &Logistic, rows: &[&Row]) -> Vec<f64> {
    let x = enc.design(rows);
    x.rows().into_iter().map(|r| sigmoid(m.logit(r))).collect()
}

/// One fold fit of the CV and its solution (the warm start of the next).
type FoldSolution = Option<(FoldFit, Logistic)>;

/// All CV fits: `[fold][index into opts.alphas]`. Fold `f` trains on the
/// rows of `train` whose `train_fold` is not `f` and predicts the others, in
/// the order [`cv::cross_validate`] uses. Within a fold the alphas run from
/// the largest (fastest) down, each fit starting at the fold's solution for
/// the previous alpha (a warm start: same optimum up to the tolerance, fewer
/// iterations); the folds run on up to [`crate::parallel::threads`]. The
/// result does not depend on the thread count.
fn cv_fold_fits(
    rows: &[Row],
    train: &[usize],
    train_fold: &[usize],
    opts: &FitOptions,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<Vec<FoldSolution>>> {
    let k = opts.k;
    let mut order: Vec<usize> = (0..opts.alphas.len()).collect();
    order.sort_by(|&x, &y| opts.alphas[y].total_cmp(&opts.alphas[x]));
    let run_fold = |f: usize| -> Result<Vec<FoldSolution>> {
        let tr: Vec<&Row> = (0..train.len())
            .filter(|&j| train_fold[j] != f)
            .map(|j| &rows[train[j]])
            .collect();
        let va: Vec<&Row> = (0..train.len())
            .filter(|&j| train_fold[j] == f)
            .map(|j| &rows[train[j]])
            .collect();
        let mut out: Vec<FoldSolution> = (0..opts.alphas.len()).map(|_| None).collect();
        let mut warm: Option<Logistic> = None;
        for &g in &order {
            let t0 = Instant::now();
            let (enc, m) = fit_encoded(&tr, opts.alphas[g], opts, warm.as_ref())
                .with_context(|| format!("CV fold {f}, alpha {}", opts.alphas[g]))?;
            let fit_seconds = t0.elapsed().as_secs_f64();
            let fit = FoldFit {
                p_valid: predict(&enc, &m, &va),
                fit_seconds,
                converged: m.gradient_norm_per_row <= opts.gradient_tolerance,
            };
            warm = Some(m.clone());
            out[g] = Some((fit, m));
            bar.inc(1);
        }
        Ok(out)
    };
    crate::parallel::each_fold(k, run_fold)
        .into_iter()
        .collect()
}

/// The CV fold (`0..k`) of each of `rows[train[j]]`, grouped by session:
/// the distinct sessions of those rows, in order of their first row and
/// labelled by that row's `converted` (a session's outcome), are assigned
/// by [`cv::stratified_folds`]`(labels, k, seed)`, and every row takes its
/// session's fold. So the rows of one session never straddle two folds, and
/// every fold holds `floor` or `ceil` of `1/k` of the converted and of the
/// other sessions.
pub fn session_folds(rows: &[Row], train: &[usize], k: usize, seed: u64) -> Result<Vec<usize>> {
    if k < 2 {
        bail!("--k must be >= 2");
    }
    let mut local = std::collections::HashMap::<usize, usize>::new();
    let mut labels = Vec::new();
    let of_row: Vec<usize> = train
        .iter()
        .map(|&i| {
            let r = &rows[i];
            *local.entry(r.session).or_insert_with(|| {
                labels.push(r.converted);
                labels.len() - 1
            })
        })
        .collect();
    if labels.len() < k {
        bail!(
            "{} training sessions cannot fill {k} CV folds",
            labels.len()
        );
    }
    let session_fold = cv::stratified_folds(&labels, k, seed);
    Ok(of_row.iter().map(|&s| session_fold[s]).collect())
}

fn split_metrics(
    rows: &[&Row],
    p: &[f64],
    thresholds: &SegmentThresholds,
    sessions: usize,
) -> serde_json::Value {
    let y: Vec<bool> = rows.iter().map(|r| r.converted).collect();
    let n = rows.len().max(1) as f64;
    let mut count = [0usize; 3];
    let mut conv = [0usize; 3];
    let mut hesitant_high = 0usize;
    for (r, &pi) in rows.iter().zip(p) {
        let s = segment(pi, thresholds);
        count[s] += 1;
        conv[s] += usize::from(r.converted);
        if s == 1 && r.high_value() {
            hesitant_high += 1;
        }
    }
    let rate = |c: usize, t: usize| {
        if t == 0 {
            serde_json::Value::Null
        } else {
            json!(c as f64 / t as f64)
        }
    };
    json!({
        "sessions": sessions,
        "rows": rows.len(),
        "positives": y.iter().filter(|v| **v).count(),
        "roc_auc": metrics::roc_auc(p, &y),
        "log_loss": metrics::log_loss(p, &y),
        "brier": metrics::brier(p, &y),
        "segment_shares": {
            "hot": count[2] as f64 / n,
            "hesitant": count[1] as f64 / n,
            "cold": count[0] as f64 / n,
        },
        "segment_conversion": {
            "hot": rate(conv[2], count[2]),
            "hesitant": rate(conv[1], count[1]),
            "cold": rate(conv[0], count[0]),
        },
        "hesitant_high_value_share": rate(hesitant_high, count[1]),
        "evaluation": crate::eval::evaluate(p, &y, *thresholds),
    })
}

/// Fits a model on `sessions`. `command` and `created_at` (UTC date,
/// `YYYY-MM-DD`) go into the lineage.
pub fn fit(
    sessions: &[GeneratedSession],
    data: &DataInfo,
    opts: &FitOptions,
    command: &str,
    created_at: &str,
) -> Result<FitResult> {
    let rows = data::rows(sessions, opts.max_points_per_session, opts.seed);
    fit_rows(rows, sessions.len(), data, opts, command, created_at)
}

/// Fits a session model on decision-moment rows (`row.session` indexes
/// `0..n_sessions`), e.g. replayed from logs ([`crate::logs`]).
pub fn fit_rows(
    rows: Vec<Row>,
    n_sessions: usize,
    data: &DataInfo,
    opts: &FitOptions,
    command: &str,
    created_at: &str,
) -> Result<FitResult> {
    if !(0.0..1.0).contains(&opts.holdout) {
        bail!("--holdout must be in [0, 1)");
    }
    if opts.alphas.iter().any(|a| !(a.is_finite() && *a > 0.0))
        || !(opts.alpha.is_finite() && opts.alpha > 0.0)
    {
        bail!("--alpha / --alphas must be positive numbers");
    }
    let session_held = data::holdout_sessions(n_sessions, opts.holdout, opts.seed);
    let held_out: Vec<bool> = rows.iter().map(|r| session_held[r.session]).collect();
    let train_idx: Vec<usize> = (0..rows.len()).filter(|&i| !held_out[i]).collect();
    let train: Vec<&Row> = train_idx.iter().map(|&i| &rows[i]).collect();
    if train.is_empty() {
        bail!("no training rows");
    }
    let y_train: Vec<bool> = train.iter().map(|r| r.converted).collect();

    // Alpha by session-grouped k-fold CV on the training split.
    let use_cv = !opts.alphas.is_empty();
    let mut fold: Vec<Option<usize>> = vec![None; rows.len()];
    let mut cv_results = Vec::new();
    let mut cv_chosen = None;
    let mut final_start: Option<Logistic> = None;
    let alpha = if use_cv {
        let train_fold = session_folds(&rows, &train_idx, opts.k, opts.seed)?;
        for (&i, &f) in train_idx.iter().zip(&train_fold) {
            fold[i] = Some(f);
        }
        let y_all: Vec<bool> = rows.iter().map(|r| r.converted).collect();
        let bar = crate::progress::steps((opts.k * opts.alphas.len()) as u64, "cv fits");
        let fits = cv_fold_fits(&rows, &train_idx, &train_fold, opts, &bar);
        bar.finish_and_clear();
        let mut fits = fits?;
        for (g, &a) in opts.alphas.iter().enumerate() {
            // The fits are done; this collects them (same train / validation
            // rows, in the same order) into cv.rs's per-alpha results.
            let r = cv::cross_validate(&y_all, &train_idx, &train_fold, opts.k, a, |_, va, _| {
                let f = fold[va[0]].expect("validation rows have a fold");
                let (fit, _) = fits[f][g].take().expect("each fold fit is used once");
                debug_assert_eq!(fit.p_valid.len(), va.len());
                Ok(fit)
            })?;
            cv_results.push(r);
        }
        let c = cv::select_alpha(&cv_results);
        cv_chosen = Some(c);
        final_start = fits[0][c].take().map(|(_, m)| m);
        cv_results[c].alpha
    } else {
        opts.alpha
    };

    // Final fit on the whole training split (with CV: warm-started at the
    // chosen alpha's fold-0 solution).
    let bar = crate::progress::spinner("final fit");
    let fitted = fit_encoded(&train, alpha, opts, final_start.as_ref());
    bar.finish_and_clear();
    let (enc, model) = fitted?;
    let converged = model.gradient_norm_per_row <= opts.gradient_tolerance;

    let all: Vec<&Row> = rows.iter().collect();
    let p = predict(&enc, &model, &all);
    let p_train: Vec<f64> = train_idx.iter().map(|&i| p[i]).collect();
    // Thresholds from the out-of-fold predictions (in-sample without CV).
    let (threshold_p, threshold_source) = match cv_chosen {
        Some(c) => (&cv_results[c].oof, "the out-of-fold training predictions"),
        None => (&p_train, "the training split"),
    };
    let thresholds = choose_thresholds(
        threshold_p,
        &y_train,
        opts.hot_precision,
        opts.cold_npv,
        opts.min_segment_rows,
    );
    let held: Vec<&Row> = rows
        .iter()
        .zip(&held_out)
        .filter(|(_, h)| **h)
        .map(|(r, _)| r)
        .collect();
    let p_held: Vec<f64> = p
        .iter()
        .zip(&held_out)
        .filter(|(_, h)| **h)
        .map(|(v, _)| *v)
        .collect();
    let n_held_sessions = session_held.iter().filter(|v| **v).count();
    let train_metrics = split_metrics(&train, &p_train, &thresholds, n_sessions - n_held_sessions);
    let held_metrics = split_metrics(&held, &p_held, &thresholds, n_held_sessions);
    let oof_metrics = cv_chosen.map(|c| {
        split_metrics(
            &train,
            &cv_results[c].oof,
            &thresholds,
            n_sessions - n_held_sessions,
        )
    });
    let cv_summary: Vec<serde_json::Value> = cv_results
        .iter()
        .map(|r| {
            json!({
                "alpha": r.alpha,
                "mean_log_loss": r.mean_log_loss,
                "mean_roc_auc": r.mean_roc_auc,
                "std_roc_auc": r.std_roc_auc,
                "oof_roc_auc": r.oof_roc_auc,
                "mean_fit_seconds": r.mean_fit_seconds,
                "all_folds_converged": r.folds.iter().all(|f| f.converged),
            })
        })
        .collect();

    let terms: Vec<Term> = enc
        .kept
        .iter()
        .zip(&model.coefs)
        .map(|((j, ts), c)| Term {
            feature: FEATURES[*j].name.to_string(),
            category: None,
            transforms: ts.clone(),
            times: None,
            coef: *c,
        })
        .collect();
    let positives = rows.iter().filter(|r| r.converted).count();
    let summary = json!({
        "trainer": "nudge-train",
        "crate_version": env!("CARGO_PKG_VERSION"),
        "created_at": created_at,
        "command": command,
        "data_sha256": data.sha256,
        "data_source": data.source,
        "sessions": n_sessions,
        "rows": rows.len(),
        "positives": positives,
        "label": "session converted without a voucher",
        "max_decision_points_per_session": opts.max_points_per_session,
        "seed": opts.seed,
        "holdout": opts.holdout,
        "alpha": alpha,
        "alpha_selection": if use_cv { "cv" } else { "fixed" },
        "alphas": opts.alphas,
        "alpha_rule": if use_cv {
            "lowest mean out-of-fold log-loss over the grid (ties: larger alpha)"
        } else {
            "fixed by --alpha (no cross-validation)"
        },
        "k": if use_cv { json!(opts.k) } else { serde_json::Value::Null },
        "fold_seed": if use_cv { json!(opts.seed) } else { serde_json::Value::Null },
        "fold_rule": if use_cv {
            json!("grouped by session, stratified by session outcome: the training sessions (order of first row) go through cv::stratified_folds (per class Fisher-Yates shuffle, ChaCha8, fold_seed; i-th session of a class -> fold i % k); every row takes its session's fold; held-out sessions first (data::holdout_sessions, seed)")
        } else {
            serde_json::Value::Null
        },
        "objective": "sum of log-losses + alpha/2 |w|^2 (intercept not penalised); alpha = 1/C of scikit-learn",
        "max_iterations": opts.max_iterations,
        "gradient_tolerance": opts.gradient_tolerance,
        "gradient_norm_per_row": model.gradient_norm_per_row,
        "converged": converged,
        "clip_quantile": opts.clip_quantile,
        "dropped_features": enc.dropped,
        "cv": if use_cv {
            json!({
                "k": opts.k,
                "fold_seed": opts.seed,
                "alphas": opts.alphas,
                "chosen_alpha": alpha,
                "results": cv_summary,
            })
        } else {
            serde_json::Value::Null
        },
        "segment_rule": {
            "hot_at_or_above": format!(
                "smallest t with precision(p >= t) >= {} on {threshold_source} (>= {} rows)",
                opts.hot_precision, opts.min_segment_rows
            ),
            "cold_below": format!(
                "largest t with NPV(p < t) >= {} on {threshold_source} (>= {} rows)",
                opts.cold_npv, opts.min_segment_rows
            ),
            "hot_precision": opts.hot_precision,
            "cold_npv": opts.cold_npv,
        },
        "metrics": {
            "holdout": held_metrics,
            "train": train_metrics,
            "out_of_fold": oof_metrics,
            "cv": cv_results,
            "cv_chosen": cv_chosen,
        },
    });
    let date_compact: String = created_at.chars().filter(char::is_ascii_digit).collect();
    let model_file = ModelFile {
        format: FORMAT.to_string(),
        version: format!(
            "{}-{}-{}",
            opts.version_prefix,
            date_compact,
            &data.sha256[..8.min(data.sha256.len())]
        ),
        input: Input::Session,
        terms,
        intercept: model.intercept,
        segments: thresholds,
        training: summary.clone(),
        uplift: None,
    };
    Ok(FitResult {
        model: model_file,
        rows,
        p,
        held_out,
        converged,
        fold,
        cv: cv_results,
        cv_chosen,
        alpha,
        summary,
    })
}
