//! Fitting a client model from a CSV file and a feature spec
//! ([`crate::spec`]).
//!
//! # Pipeline (`nudge-train fit --spec S --data D`)
//! 1. Stratified held-out split ([`crate::cv::stratified_holdout`],
//!    `--holdout`, default 20 %, `--seed`).
//! 2. On the remaining training rows, stratified k-fold cross-validation
//!    (`--k`, default 5, same seed) for every alpha of the grid
//!    (`--alphas`); in every fold the transforms (log1p, clip quantiles,
//!    standardisation means and deviations, the category levels) are learned
//!    on that fold's training rows only.
//! 3. Alpha = the lowest mean out-of-fold log-loss
//!    ([`crate::cv::select_alpha`]).
//! 4. Final fit on all training rows at that alpha.
//! 5. Segment thresholds from the out-of-fold predictions of the chosen
//!    alpha on the training rows (honest: no row judges a model that saw
//!    it), by the precision / NPV rule of [`crate::fit::choose_thresholds`];
//!    `--hot-at-or-above` / `--cold-below` override them.
//! 6. Held-out evaluation scored by the service's own scorer
//!    ([`nudge::domain::model::Model::score`] on the compiled model file), after
//!    checking it agrees with the trainer's probabilities to 1e-9.
//!
//! Class imbalance (UCI: 15.5 % positives) is not reweighted: an
//! unweighted logistic regression keeps its
//! probabilities calibrated at the observed base rate, which is what the
//! voucher rule's expected-value arithmetic needs. Imbalance is handled
//! where it matters: the segment thresholds come from the precision / NPV
//! rule, never from p = 0.5, and the report shows PR-AUC and calibration
//! next to ROC-AUC.

use crate::cv::{self, CvResult, FoldFit};
use crate::eval::{self, Evaluation};
use crate::fit::{self, apply, fit_logistic, Logistic};
use crate::spec::{Column, ColumnSpec, Table, TransformSpec, Values};
use anyhow::{bail, Context as _, Result};
use ndarray::Array2;
use nudge::domain::logistic::sigmoid;
use nudge::domain::model::{Input, Model, ModelFile, Term, Transform, FORMAT};
use nudge::domain::policy::SegmentThresholds;
use serde_json::json;
use std::time::Instant;

/// One model input (one design-matrix column, one model term).
#[derive(Clone, Debug, PartialEq)]
pub enum Feature {
    /// A numeric or boolean column with its learned transforms.
    Numeric {
        col: usize,
        transforms: Vec<Transform>,
    },
    /// The indicator `column == level`.
    Level { col: usize, level: String },
}

/// Transforms learned on training rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoder {
    pub features: Vec<Feature>,
    /// Columns dropped because they were constant on the training rows.
    pub dropped: Vec<String>,
    /// Category levels folded away by `min_count` (`column=level`).
    pub folded: Vec<String>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = (q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[pos]
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

const MIN_STD: f64 = 1e-12;

impl Encoder {
    /// Learns the transforms and levels from `rows` of `table`.
    pub fn learn(table: &Table, rows: &[usize]) -> Encoder {
        let mut features = Vec::new();
        let mut dropped = Vec::new();
        let mut folded = Vec::new();
        for (c, col) in table.columns.iter().enumerate() {
            match (&col.spec, &col.values) {
                (
                    ColumnSpec::Numeric { transforms } | ColumnSpec::Boolean { transforms },
                    Values::Numeric(v),
                ) => {
                    let mut vals: Vec<f64> = rows.iter().map(|&i| v[i]).collect();
                    let mut ts = Vec::new();
                    let mut constant = false;
                    for t in transforms {
                        let step = match *t {
                            TransformSpec::Log1p => Transform::Log1p,
                            TransformSpec::Clip { lo, hi } => Transform::Clip { lo, hi },
                            TransformSpec::ClipQuantile { lo, hi } => {
                                let mut s = vals.clone();
                                s.sort_by(f64::total_cmp);
                                Transform::Clip {
                                    lo: quantile(&s, lo),
                                    hi: quantile(&s, hi),
                                }
                            }
                            TransformSpec::Standardise => {
                                let (mean, std) = mean_std(&vals);
                                if std.is_nan() || std <= MIN_STD {
                                    constant = true;
                                    break;
                                }
                                Transform::Standardise { mean, std }
                            }
                        };
                        vals.iter_mut()
                            .for_each(|x| *x = apply(std::slice::from_ref(&step), *x));
                        ts.push(step);
                    }
                    if constant || mean_std(&vals).1 <= MIN_STD {
                        dropped.push(col.name.clone());
                    } else {
                        features.push(Feature::Numeric {
                            col: c,
                            transforms: ts,
                        });
                    }
                }
                (ColumnSpec::Categorical { min_count }, Values::Categorical(v)) => {
                    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
                    for &i in rows {
                        *counts.entry(v[i].as_str()).or_default() += 1;
                    }
                    for (level, n) in counts {
                        if n >= *min_count {
                            features.push(Feature::Level {
                                col: c,
                                level: level.to_owned(),
                            });
                        } else {
                            folded.push(format!("{}={level}", col.name));
                        }
                    }
                }
                _ => unreachable!("values match the column kind"),
            }
        }
        Encoder {
            features,
            dropped,
            folded,
        }
    }

    fn value(&self, table: &Table, k: usize, i: usize) -> f64 {
        match &self.features[k] {
            Feature::Numeric { col, transforms } => match &table.columns[*col].values {
                Values::Numeric(v) => apply(transforms, v[i]),
                Values::Categorical(_) => unreachable!(),
            },
            Feature::Level { col, level } => match &table.columns[*col].values {
                Values::Categorical(v) => f64::from(u8::from(v[i] == *level)),
                Values::Numeric(_) => unreachable!(),
            },
        }
    }

    /// The design matrix of `rows`.
    pub fn design(&self, table: &Table, rows: &[usize]) -> Array2<f64> {
        Array2::from_shape_fn((rows.len(), self.features.len()), |(r, k)| {
            self.value(table, k, rows[r])
        })
    }

    /// Model terms for fitted coefficients (same order as `features`).
    pub fn terms(&self, columns: &[Column], coefs: &[f64]) -> Vec<Term> {
        self.features
            .iter()
            .zip(coefs)
            .map(|(f, &coef)| match f {
                Feature::Numeric { col, transforms } => Term {
                    feature: columns[*col].name.clone(),
                    category: None,
                    transforms: transforms.clone(),
                    times: None,
                    coef,
                },
                Feature::Level { col, level } => Term {
                    feature: columns[*col].name.clone(),
                    category: Some(level.clone()),
                    transforms: vec![],
                    times: None,
                    coef,
                },
            })
            .collect()
    }
}

/// Solver settings shared by CV, the final fit and the bench.
#[derive(Clone, Debug)]
pub struct Solver {
    pub max_iterations: u64,
    pub gradient_tolerance: f64,
}

impl Solver {
    /// [`fit_logistic`] with these settings at `alpha`.
    pub fn fit(&self, x: &Array2<f64>, y: &[bool], alpha: f64) -> Result<Logistic> {
        fit_logistic(x, y, alpha, self.max_iterations, self.gradient_tolerance)
    }
}

impl Default for Solver {
    fn default() -> Self {
        Solver {
            max_iterations: 1_000,
            gradient_tolerance: 1e-6,
        }
    }
}

/// Learns the encoder on `train`, fits, and returns both.
pub fn fit_rows(
    table: &Table,
    train: &[usize],
    alpha: f64,
    solver: &Solver,
) -> Result<(Encoder, Logistic)> {
    let enc = Encoder::learn(table, train);
    if enc.features.is_empty() {
        bail!("no usable feature: every column is constant or ignored");
    }
    let x = enc.design(table, train);
    let y: Vec<bool> = train.iter().map(|&i| table.y[i]).collect();
    let m = solver.fit(&x, &y, alpha)?;
    Ok((enc, m))
}

/// Probabilities of `rows` under an encoder and a fitted model.
pub fn predict_rows(table: &Table, enc: &Encoder, m: &Logistic, rows: &[usize]) -> Vec<f64> {
    let x = enc.design(table, rows);
    x.rows().into_iter().map(|r| sigmoid(m.logit(r))).collect()
}

/// k-fold CV of `rows` at `alpha` with `fold` (one entry per row of `rows`).
pub fn cross_validate(
    table: &Table,
    rows: &[usize],
    fold: &[usize],
    k: usize,
    alpha: f64,
    solver: &Solver,
) -> Result<CvResult> {
    cv::cross_validate(&table.y, rows, fold, k, alpha, |train, valid, alpha| {
        let t0 = Instant::now();
        let (enc, m) = fit_rows(table, train, alpha, solver)?;
        let fit_seconds = t0.elapsed().as_secs_f64();
        Ok(FoldFit {
            p_valid: predict_rows(table, &enc, &m, valid),
            fit_seconds,
            converged: m.gradient_norm_per_row <= solver.gradient_tolerance,
        })
    })
}

/// Settings of a CSV fit (`nudge-train fit --spec`).
#[derive(Clone, Debug)]
pub struct CsvFitOptions {
    pub seed: u64,
    pub k: usize,
    pub alphas: Vec<f64>,
    pub holdout: f64,
    pub solver: Solver,
    pub hot_precision: f64,
    pub cold_npv: f64,
    pub min_segment_rows: usize,
    /// Overrides the rule's hot threshold.
    pub hot_at_or_above: Option<f64>,
    /// Overrides the rule's cold threshold.
    pub cold_below: Option<f64>,
    pub version_prefix: String,
}

impl Default for CsvFitOptions {
    fn default() -> Self {
        CsvFitOptions {
            seed: 42,
            k: 5,
            alphas: vec![0.01, 0.1, 1.0, 10.0, 100.0],
            holdout: 0.2,
            solver: Solver::default(),
            hot_precision: 0.7,
            cold_npv: 0.97,
            min_segment_rows: 50,
            hot_at_or_above: None,
            cold_below: None,
            version_prefix: "uci".into(),
        }
    }
}

/// Lineage inputs of a CSV fit.
#[derive(Clone, Debug)]
pub struct CsvInfo {
    pub data_sha256: String,
    pub data_source: String,
    pub spec_sha256: String,
    pub spec_source: String,
}

/// What a CSV fit produced.
#[derive(Clone, Debug)]
pub struct CsvFit {
    pub model: ModelFile,
    pub cv: Vec<CvResult>,
    pub chosen: usize,
    /// Held-out evaluation (None with `holdout = 0`).
    pub holdout: Option<Evaluation>,
    /// Held-out rows and their probabilities (service scorer).
    pub held_rows: Vec<usize>,
    pub held_p: Vec<f64>,
    pub converged: bool,
}

/// Scores `rows` of `table` with the service's scorer. Only the keys the
/// model reads are sent; a key the model reads that the table lacks is an
/// error naming it.
pub fn score_table(model: &Model, table: &Table, rows: &[usize]) -> Result<Vec<f64>> {
    let numeric: Vec<&str> = model.numeric_features().collect();
    let categorical: Vec<&str> = model.categorical_features().collect();
    for k in &numeric {
        match table.columns.iter().find(|c| c.name == *k) {
            Some(c) if matches!(c.values, Values::Numeric(_)) => {}
            Some(_) => bail!(
                "model {} reads numeric feature {k:?}, the spec makes it categorical",
                model.version()
            ),
            None => bail!(
                "model {} reads feature {k:?}, which the data/spec does not provide",
                model.version()
            ),
        }
    }
    for k in &categorical {
        match table.columns.iter().find(|c| c.name == *k) {
            Some(c) if matches!(c.values, Values::Categorical(_)) => {}
            Some(_) => bail!(
                "model {} reads categorical feature {k:?}, the spec makes it numeric",
                model.version()
            ),
            None => bail!(
                "model {} reads categorical feature {k:?}, which the data/spec does not provide",
                model.version()
            ),
        }
    }
    let empty = nudge::domain::features::Features([0.0; nudge::domain::features::N_FEATURES]);
    rows.iter()
        .map(|&i| {
            let mut c = table.client_features(i);
            c.numeric.retain(|k, _| numeric.contains(&k.as_str()));
            c.categorical
                .retain(|k, _| categorical.contains(&k.as_str()));
            model
                .check_client(&c)
                .map_err(|e| anyhow::anyhow!("CSV line {}: {e}", table.lines[i]))?;
            Ok(model
                .score(&empty, &c)
                .map_err(|e| anyhow::anyhow!("CSV line {}: {e}", table.lines[i]))?
                .probability)
        })
        .collect()
}

/// Fits a client model on `table` (see the module docs).
pub fn fit_csv(
    table: &Table,
    info: &CsvInfo,
    opts: &CsvFitOptions,
    command: &str,
    created_at: &str,
) -> Result<CsvFit> {
    if !(0.0..1.0).contains(&opts.holdout) {
        bail!("--holdout must be in [0, 1)");
    }
    if opts.k < 2 {
        bail!("--k must be >= 2");
    }
    if opts.alphas.is_empty() || opts.alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
        bail!("--alphas must be positive numbers");
    }
    let held = cv::stratified_holdout(&table.y, opts.holdout, opts.seed);
    let train: Vec<usize> = (0..table.len()).filter(|&i| !held[i]).collect();
    let held_rows: Vec<usize> = (0..table.len()).filter(|&i| held[i]).collect();
    let y_train: Vec<bool> = train.iter().map(|&i| table.y[i]).collect();
    if y_train.iter().all(|v| *v) || !y_train.iter().any(|v| *v) {
        bail!("the training split has a single class");
    }
    let fold = cv::stratified_folds(&y_train, opts.k, opts.seed);
    let cv_results = opts
        .alphas
        .iter()
        .map(|&a| cross_validate(table, &train, &fold, opts.k, a, &opts.solver))
        .collect::<Result<Vec<_>>>()?;
    let chosen = cv::select_alpha(&cv_results);
    let alpha = cv_results[chosen].alpha;

    let (enc, m) = fit_rows(table, &train, alpha, &opts.solver)?;
    let converged = m.gradient_norm_per_row <= opts.solver.gradient_tolerance;
    let rule = fit::choose_thresholds(
        &cv_results[chosen].oof,
        &y_train,
        opts.hot_precision,
        opts.cold_npv,
        opts.min_segment_rows,
    );
    let thresholds = SegmentThresholds {
        hot_at_or_above: opts.hot_at_or_above.unwrap_or(rule.hot_at_or_above),
        cold_below: opts.cold_below.unwrap_or(rule.cold_below),
    };
    let terms = enc.terms(&table.columns, &m.coefs);
    let mut model = ModelFile {
        format: FORMAT.into(),
        version: format!(
            "{}-{}-{}",
            opts.version_prefix,
            created_at
                .chars()
                .filter(char::is_ascii_digit)
                .collect::<String>(),
            &info.data_sha256[..8.min(info.data_sha256.len())]
        ),
        input: Input::Client,
        terms,
        intercept: m.intercept,
        segments: thresholds,
        training: serde_json::Value::Null,
        uplift: None,
    };
    let compiled = model.compile().context("fitted model does not validate")?;

    // The service's scorer must reproduce the trainer's probabilities.
    let check_rows: Vec<usize> = if held_rows.is_empty() {
        train.clone()
    } else {
        held_rows.clone()
    };
    let p_service = score_table(&compiled, table, &check_rows)?;
    let p_trainer = predict_rows(table, &enc, &m, &check_rows);
    if let Some((i, (a, b))) = p_service
        .iter()
        .zip(&p_trainer)
        .enumerate()
        .find(|(_, (a, b))| (*a - *b).abs() > 1e-9)
    {
        bail!(
            "service scorer disagrees with the trainer on CSV line {}: {a} vs {b}",
            table.lines[check_rows[i]]
        );
    }
    let holdout_eval = (!held_rows.is_empty()).then(|| {
        let y: Vec<bool> = held_rows.iter().map(|&i| table.y[i]).collect();
        eval::evaluate(&p_service, &y, thresholds)
    });
    let p_train = predict_rows(table, &enc, &m, &train);
    let train_eval = eval::evaluate(&p_train, &y_train, thresholds);
    let oof_eval = eval::evaluate(&cv_results[chosen].oof, &y_train, thresholds);

    let positives = table.y.iter().filter(|v| **v).count();
    model.training = json!({
        "trainer": "nudge-train",
        "crate_version": env!("CARGO_PKG_VERSION"),
        "created_at": created_at,
        "command": command,
        "data_sha256": info.data_sha256,
        "data_source": info.data_source,
        "spec_sha256": info.spec_sha256,
        "spec_source": info.spec_source,
        "rows": table.len(),
        "positives": positives,
        "label": "label column of the spec (positive values = converted)",
        "seed": opts.seed,
        "holdout": opts.holdout,
        "k": opts.k,
        "fold_rule": "stratified: per class Fisher-Yates shuffle (ChaCha8, seed), i-th row of a class -> fold i % k; held-out split first (stratified, seed ^ const)",
        "alphas": opts.alphas,
        "alpha": alpha,
        "alpha_rule": "lowest mean out-of-fold log-loss over the grid (ties: larger alpha)",
        "objective": "sum of log-losses + alpha/2 |w|^2 (intercept not penalised); alpha = 1/C of scikit-learn",
        "class_weights": "none (unweighted: probabilities stay calibrated at the base rate)",
        "max_iterations": opts.solver.max_iterations,
        "gradient_tolerance": opts.solver.gradient_tolerance,
        "gradient_norm_per_row": m.gradient_norm_per_row,
        "converged": converged,
        "dropped_features": enc.dropped,
        "folded_levels": enc.folded,
        "unseen_categories": "reference level: all indicators 0 (as the service scores them)",
        "segment_rule": {
            "hot_at_or_above": format!(
                "smallest t with precision(p >= t) >= {} on the out-of-fold training predictions (>= {} rows)",
                opts.hot_precision, opts.min_segment_rows
            ),
            "cold_below": format!(
                "largest t with NPV(p < t) >= {} on the out-of-fold training predictions (>= {} rows)",
                opts.cold_npv, opts.min_segment_rows
            ),
            "hot_precision": opts.hot_precision,
            "cold_npv": opts.cold_npv,
            "rule_thresholds": rule,
            "overridden": opts.hot_at_or_above.is_some() || opts.cold_below.is_some(),
        },
        "metrics": {
            "cv": cv_results,
            "cv_chosen": chosen,
            "out_of_fold": oof_eval,
            "holdout": holdout_eval,
            "train": train_eval,
        },
    });
    model.compile().context("fitted model does not validate")?;
    Ok(CsvFit {
        model,
        cv: cv_results,
        chosen,
        holdout: holdout_eval,
        held_rows,
        held_p: p_service,
        converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{read_csv, Spec};

    pub(crate) fn toy_csv(n: usize) -> (Spec, Vec<u8>) {
        let spec = Spec::parse(
            r#"
format = "nudge-spec/1"
[label]
column = "y"
positive = ["1"]
negative = ["0"]
[columns.x]
kind = "numeric"
transforms = ["log1p", "standardise"]
[columns.c]
kind = "categorical"
min_count = 5
[columns.b]
kind = "boolean"
[columns.k]
kind = "numeric"
transforms = ["standardise"]
"#,
            "toy",
        )
        .unwrap();
        let mut s = String::from("x,c,b,k,y\n");
        for i in 0..n {
            let u = ((i as f64) * 0.618_033_988_75).fract();
            let v = ((i as f64) * 0.414_213_562_37).fract();
            let x = (u * 100.0).round();
            let c = ["a", "b", "c"][i % 3];
            let c = if i == 7 { "rare" } else { c };
            let b = i % 2 == 0;
            let z = 0.05 * x - 2.5 + if c == "a" { 1.0 } else { 0.0 } + if b { 0.5 } else { 0.0 };
            let y = v < sigmoid(z);
            s.push_str(&format!(
                "{x},{c},{},3,{}\n",
                if b { "TRUE" } else { "FALSE" },
                u8::from(y)
            ));
        }
        (spec, s.into_bytes())
    }

    #[test]
    fn encoder_learns_levels_folds_rare_ones_and_drops_constants() {
        let (spec, csv) = toy_csv(300);
        let t = read_csv(&csv, &spec, true).unwrap();
        let rows: Vec<usize> = (0..t.len()).collect();
        let e = Encoder::learn(&t, &rows);
        assert_eq!(e.dropped, vec!["k".to_string()]);
        assert_eq!(e.folded, vec!["c=rare".to_string()]);
        let levels: Vec<_> = e
            .features
            .iter()
            .filter_map(|f| match f {
                Feature::Level { level, .. } => Some(level.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(levels, ["a", "b", "c"]);
        let x = e.design(&t, &rows);
        // log1p + standardise: mean 0 on the learning rows.
        let col0: f64 = x.column(0).sum() / x.nrows() as f64;
        assert!(col0.abs() < 1e-9);
        // The rare level is the reference: all indicators 0.
        assert!(x.row(7).iter().skip(1).take(3).all(|v| *v == 0.0));
    }

    #[test]
    fn csv_fit_model_scores_like_the_trainer_and_carries_lineage() {
        let (spec, csv) = toy_csv(600);
        let t = read_csv(&csv, &spec, true).unwrap();
        let info = CsvInfo {
            data_sha256: crate::data::sha256_hex(&csv),
            data_source: "toy".into(),
            spec_sha256: "s".into(),
            spec_source: "toy".into(),
        };
        let opts = CsvFitOptions {
            alphas: vec![0.1, 10.0],
            k: 3,
            min_segment_rows: 10,
            ..CsvFitOptions::default()
        };
        let r = fit_csv(&t, &info, &opts, "test", "2024-01-02").unwrap();
        assert!(r.converged);
        assert_eq!(r.cv.len(), 2);
        assert_eq!(r.model.input, Input::Client);
        assert!(r.model.version.starts_with("uci-20240102-"));
        let h = r.holdout.as_ref().unwrap();
        assert_eq!(h.rows, 120);
        assert!(h.roc_auc.unwrap() > 0.7, "{h:?}");
        for key in [
            "data_sha256",
            "spec_sha256",
            "alpha",
            "command",
            "created_at",
            "crate_version",
            "metrics",
        ] {
            assert!(!r.model.training[key].is_null(), "{key}");
        }
        // Unseen category through the service: scores as reference.
        let m = r.model.compile().unwrap();
        let names: Vec<_> = m.categorical_features().collect();
        assert_eq!(names, ["c"]);
        let mut over = std::collections::BTreeMap::new();
        over.insert(
            "c",
            r.model
                .terms
                .iter()
                .filter(|t| t.category.is_some())
                .count(),
        );
        assert_eq!(over["c"], 3);
        // Thresholds override.
        let opts2 = CsvFitOptions {
            hot_at_or_above: Some(0.9),
            cold_below: Some(0.05),
            ..opts
        };
        let r2 = fit_csv(&t, &info, &opts2, "test", "2024-01-02").unwrap();
        assert_eq!(r2.model.segments.hot_at_or_above, 0.9);
        assert_eq!(r2.model.segments.cold_below, 0.05);
    }
}
