//! Fitting the intent model: transforms, L2-regularised logistic regression
//! (linfa-logistic), convergence check, segment thresholds and the model
//! file.
//!
//! # Pipeline
//! 1. Rows = decision moments replayed from sessions ([`crate::data::rows`]),
//!    at most `max_points_per_session` per session.
//! 2. Train / held-out split **by session** ([`crate::data::holdout_sessions`]).
//! 3. Transforms per feature from [`nudge::features::FEATURES`]`[i].scale`,
//!    learned on the training split only:
//!    - `Log`: `clip [min, q]` -> `log1p` -> `standardise`;
//!    - `Linear`: `clip [min, q]` -> `standardise`;
//!    - `Flag`: `standardise`;
//!
//!    where `q` is the `clip_quantile` quantile (default 0.999) of the raw
//!    training values (the maximum if that quantile equals the minimum), so
//!    a served outlier cannot push a term far outside the training range.
//!    Features with (near) zero variance after the transforms are dropped.
//! 4. Logistic regression with penalty `alpha / 2 * |w|^2` on the summed
//!    log-loss (linfa's objective; the intercept is not penalised). linfa
//!    labels the **more frequent** class positive, so when that is `false`
//!    the coefficients and intercept are negated. linfa stops silently at
//!    `max_iterations`, so convergence is checked here: the L2 norm of the
//!    gradient of the penalised objective at the solution, divided by the
//!    number of rows, must be at most `gradient_tolerance`.
//! 5. Segment thresholds from the training predictions (see
//!    [`choose_thresholds`]).
//! 6. Metrics on the held-out sessions; the model file with lineage.

use crate::data::{self, Row};
use crate::metrics;
use anyhow::{bail, Context as _, Result};
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use nudge::features::{Scale, FEATURES};
use nudge::model::{sigmoid, Input, ModelFile, SegmentThresholds, Term, Transform, FORMAT};
use nudge::synth::GeneratedSession;
use serde_json::json;
use std::path::Path;

/// Fit settings (the CLI flags of `nudge-train fit`).
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Seeds the decision-point sampling and the split.
    pub seed: u64,
    /// L2 penalty on the summed log-loss.
    pub alpha: f64,
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
    /// Metrics and lineage (also `model.training`).
    pub summary: serde_json::Value,
}

/// Applies transforms exactly like `nudge::model` does when scoring.
pub fn apply(transforms: &[Transform], x: f64) -> f64 {
    transforms.iter().fold(x, |x, t| match *t {
        Transform::Clip { lo, hi } => x.clamp(lo, hi),
        Transform::Log1p => x.max(0.0).ln_1p(),
        Transform::Standardise { mean, std } => (x - mean) / std,
        Transform::OneHot { value } => {
            if x == value {
                1.0
            } else {
                0.0
            }
        }
    })
}

fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = (q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[pos]
}

/// Learns the transforms of feature `j` from its raw training values;
/// `None` when the feature has (near) zero variance.
pub fn learn_transforms(j: usize, raw: &[f64], clip_quantile: f64) -> Option<Vec<Transform>> {
    if raw.is_empty() {
        return None;
    }
    let mut ts = Vec::new();
    match FEATURES[j].scale {
        Scale::Flag => {}
        scale => {
            let mut sorted = raw.to_vec();
            sorted.sort_by(f64::total_cmp);
            let lo = sorted[0];
            let mut hi = quantile_sorted(&sorted, clip_quantile);
            if hi <= lo {
                hi = sorted[sorted.len() - 1];
            }
            ts.push(Transform::Clip { lo, hi });
            if scale == Scale::Log {
                ts.push(Transform::Log1p);
            }
        }
    }
    let n = raw.len() as f64;
    let vals: Vec<f64> = raw.iter().map(|&x| apply(&ts, x)).collect();
    let mean = vals.iter().sum::<f64>() / n;
    let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let std = var.sqrt();
    if std.is_nan() || std <= 1e-9 {
        return None;
    }
    ts.push(Transform::Standardise { mean, std });
    Some(ts)
}

/// Fitted logistic model in the transformed space.
#[derive(Clone, Debug)]
pub struct Logistic {
    pub coefs: Vec<f64>,
    pub intercept: f64,
    /// |gradient of the penalised objective|_2 / rows at the solution.
    pub gradient_norm_per_row: f64,
}

impl Logistic {
    pub fn logit(&self, x: ndarray::ArrayView1<f64>) -> f64 {
        self.intercept + x.iter().zip(&self.coefs).map(|(a, b)| a * b).sum::<f64>()
    }
}

/// Fits `P(y) = sigmoid(x . w + b)` with linfa-logistic and checks the
/// solution's gradient. The sign is fixed so that `w` always describes the
/// probability of `true`.
pub fn fit_logistic(
    x: &Array2<f64>,
    y: &[bool],
    alpha: f64,
    max_iterations: u64,
    gradient_tolerance: f64,
) -> Result<Logistic> {
    let n = x.nrows();
    if n == 0 || !y.iter().any(|v| *v) || y.iter().all(|v| *v) {
        bail!("need both converted and non-converted rows to fit");
    }
    let ds = Dataset::new(x.clone(), Array1::from(y.to_vec()));
    let fitted = LogisticRegression::default()
        .alpha(alpha)
        .max_iterations(max_iterations)
        // linfa/argmin check the L2 norm of the summed gradient.
        .gradient_tolerance(gradient_tolerance * n as f64 * 0.1)
        .fit(&ds)
        .context("logistic regression failed")?;
    let (mut w, mut b) = (fitted.params().to_vec(), fitted.intercept());
    if !fitted.labels().pos.class {
        // linfa modelled P(false): negate to describe P(true).
        w.iter_mut().for_each(|v| *v = -*v);
        b = -b;
    }
    let mut model = Logistic {
        coefs: w,
        intercept: b,
        gradient_norm_per_row: f64::NAN,
    };
    model.gradient_norm_per_row = gradient_norm(x, y, &model, alpha) / n as f64;
    Ok(model)
}

/// L2 norm of the gradient of `sum logloss + alpha/2 |w|^2` (intercept not
/// penalised) at `m`.
pub fn gradient_norm(x: &Array2<f64>, y: &[bool], m: &Logistic, alpha: f64) -> f64 {
    let mut g = vec![0.0; x.ncols()];
    let mut gb = 0.0;
    for (row, &yi) in x.rows().into_iter().zip(y) {
        let r = sigmoid(m.logit(row)) - if yi { 1.0 } else { 0.0 };
        gb += r;
        for (gj, xj) in g.iter_mut().zip(row.iter()) {
            *gj += r * xj;
        }
    }
    let mut sq = gb * gb;
    for (gj, wj) in g.iter().zip(&m.coefs) {
        let v = gj + alpha * wj;
        sq += v * v;
    }
    sq.sqrt()
}

/// Segment thresholds from predictions `p` and labels `y` (training split):
///
/// - `hot_at_or_above` = the smallest `t` (a predicted value) such that the
///   rows with `p >= t` are at least `min_rows` and converted at a rate
///   (precision) >= `hot_precision`; 1.0 if none;
/// - `cold_below` = the largest `t` such that the rows with `p < t` are at
///   least `min_rows` and did *not* convert at a rate (negative predictive
///   value) >= `cold_npv`; 0.0 if none;
/// - if that would make `cold_below > hot_at_or_above`, `cold_below` is
///   lowered to `hot_at_or_above` (no hesitant band).
pub fn choose_thresholds(
    p: &[f64],
    y: &[bool],
    hot_precision: f64,
    cold_npv: f64,
    min_rows: usize,
) -> SegmentThresholds {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let n = idx.len();
    // below[k] = (rows, negatives) among the k lowest predictions.
    let mut neg_prefix = vec![0usize; n + 1];
    for (k, &i) in idx.iter().enumerate() {
        neg_prefix[k + 1] = neg_prefix[k] + usize::from(!y[i]);
    }
    let total_pos = n - neg_prefix[n];
    let mut hot = 1.0f64;
    let mut cold = 0.0f64;
    // Candidate thresholds are the distinct predicted values; position k is
    // the first row with that value, so "p < t" is idx[..k], "p >= t" idx[k..].
    let mut k = 0;
    let mut hot_found = false;
    while k < n {
        let t = p[idx[k]];
        let below = k;
        let below_neg = neg_prefix[k];
        let above = n - k;
        let above_pos = total_pos - (k - below_neg);
        if !hot_found && above >= min_rows && above_pos as f64 >= hot_precision * above as f64 {
            hot = t;
            hot_found = true;
        }
        if below >= min_rows && below_neg as f64 >= cold_npv * below as f64 {
            cold = t;
        }
        let mut j = k + 1;
        while j < n && p[idx[j]] == t {
            j += 1;
        }
        k = j;
    }
    // All rows below the top value can also be a cold set: "p < +inf" is not
    // a useful rule, so the candidate set above is enough.
    SegmentThresholds {
        hot_at_or_above: hot,
        cold_below: cold.min(hot),
    }
}

/// Segment of one probability: 0 cold, 1 hesitant, 2 hot.
pub fn segment(p: f64, t: &SegmentThresholds) -> usize {
    if p >= t.hot_at_or_above {
        2
    } else if p < t.cold_below {
        0
    } else {
        1
    }
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
    let session_held = data::holdout_sessions(n_sessions, opts.holdout, opts.seed);
    let held_out: Vec<bool> = rows.iter().map(|r| session_held[r.session]).collect();
    let train: Vec<&Row> = rows
        .iter()
        .zip(&held_out)
        .filter(|(_, h)| !**h)
        .map(|(r, _)| r)
        .collect();
    if train.is_empty() {
        bail!("no training rows");
    }

    // Transforms learned on the training split.
    let mut kept: Vec<(usize, Vec<Transform>)> = Vec::new();
    let mut dropped = Vec::new();
    for (j, def) in FEATURES.iter().enumerate() {
        let raw: Vec<f64> = train.iter().map(|r| r.features.0[j]).collect();
        match learn_transforms(j, &raw, opts.clip_quantile) {
            Some(ts) => kept.push((j, ts)),
            None => dropped.push(def.name),
        }
    }
    let design = |rs: &[&Row]| {
        Array2::from_shape_fn((rs.len(), kept.len()), |(i, k)| {
            let (j, ts) = &kept[k];
            apply(ts, rs[i].features.0[*j])
        })
    };
    let x_train = design(&train);
    let y_train: Vec<bool> = train.iter().map(|r| r.converted).collect();
    let model = fit_logistic(
        &x_train,
        &y_train,
        opts.alpha,
        opts.max_iterations,
        opts.gradient_tolerance,
    )?;
    let converged = model.gradient_norm_per_row <= opts.gradient_tolerance;

    let all: Vec<&Row> = rows.iter().collect();
    let x_all = design(&all);
    let p: Vec<f64> = x_all
        .rows()
        .into_iter()
        .map(|r| sigmoid(model.logit(r)))
        .collect();

    let p_train: Vec<f64> = p
        .iter()
        .zip(&held_out)
        .filter(|(_, h)| !**h)
        .map(|(v, _)| *v)
        .collect();
    let thresholds = choose_thresholds(
        &p_train,
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

    let terms: Vec<Term> = kept
        .iter()
        .zip(&model.coefs)
        .map(|((j, ts), c)| Term {
            feature: FEATURES[*j].name.to_string(),
            category: None,
            transforms: ts.clone(),
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
        "alpha": opts.alpha,
        "max_iterations": opts.max_iterations,
        "gradient_tolerance": opts.gradient_tolerance,
        "gradient_norm_per_row": model.gradient_norm_per_row,
        "converged": converged,
        "clip_quantile": opts.clip_quantile,
        "dropped_features": dropped,
        "segment_rule": {
            "hot_at_or_above": format!(
                "smallest t with precision(p >= t) >= {} on the training split (>= {} rows)",
                opts.hot_precision, opts.min_segment_rows
            ),
            "cold_below": format!(
                "largest t with NPV(p < t) >= {} on the training split (>= {} rows)",
                opts.cold_npv, opts.min_segment_rows
            ),
            "hot_precision": opts.hot_precision,
            "cold_npv": opts.cold_npv,
        },
        "metrics": {
            "holdout": held_metrics,
            "train": train_metrics,
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
        summary,
    })
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, flushed to disk, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("write {}", path.display()))
}

/// Serialises a model file as pretty JSON with a trailing newline.
pub fn model_json(model: &ModelFile) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(model)?;
    v.push(b'\n');
    Ok(v)
}

/// `YYYY-MM-DD` (UTC) of a Unix time in seconds.
pub fn utc_date(unix_s: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = unix_s.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Today's UTC date, or the date of `SOURCE_DATE_EPOCH` when set (for
/// reproducible model files).
pub fn created_at() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    utc_date(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_704_067_199), "2023-12-31");
        assert_eq!(utc_date(1_709_251_200), "2024-03-01");
    }

    #[test]
    fn sign_is_fixed_whichever_class_is_more_frequent() {
        // y = true more likely for larger x; try both class balances.
        for pos_share in [0.2, 0.8] {
            let n = 2_000;
            let mut xs = Vec::new();
            let mut ys = Vec::new();
            for i in 0..n {
                let x = (i as f64 / n as f64) * 4.0 - 2.0;
                let p = sigmoid(2.0 * x + crate::fit::tests::logit(pos_share));
                // Deterministic "sampling": label by a low-discrepancy draw.
                let u = ((i as f64) * 0.618_033_988_75).fract();
                xs.push(x);
                ys.push(u < p);
            }
            let x = Array2::from_shape_vec((n, 1), xs).unwrap();
            let m = fit_logistic(&x, &ys, 1e-3, 500, 1e-6).unwrap();
            assert!(
                m.coefs[0] > 1.5 && m.coefs[0] < 2.5,
                "{pos_share}: {:?}",
                m.coefs
            );
            assert!(
                m.gradient_norm_per_row < 1e-6,
                "{}",
                m.gradient_norm_per_row
            );
            let mean_p: f64 = x
                .rows()
                .into_iter()
                .map(|r| sigmoid(m.logit(r)))
                .sum::<f64>()
                / n as f64;
            let base = ys.iter().filter(|v| **v).count() as f64 / n as f64;
            assert!((mean_p - base).abs() < 1e-3, "calibrated in the mean");
        }
    }

    fn logit(p: f64) -> f64 {
        (p / (1.0 - p)).ln()
    }

    #[test]
    fn thresholds_follow_the_rule() {
        // 10 rows per predicted value.
        let mut p = Vec::new();
        let mut y = Vec::new();
        for (v, positives) in [(0.05, 0), (0.1, 0), (0.2, 1), (0.4, 4), (0.7, 7), (0.9, 9)] {
            for k in 0..10 {
                p.push(v);
                y.push(k < positives);
            }
        }
        let t = choose_thresholds(&p, &y, 0.75, 0.97, 10);
        // p >= 0.7: 16/20 = 0.8 >= 0.75; p >= 0.4: 20/30 < 0.75.
        assert_eq!(t.hot_at_or_above, 0.7);
        // p < 0.2: 20/20 negatives; p < 0.4: 29/30 = 0.967 < 0.97.
        assert_eq!(t.cold_below, 0.2);
        assert_eq!(segment(0.1, &t), 0);
        assert_eq!(segment(0.2, &t), 1);
        assert_eq!(segment(0.7, &t), 2);
        // Unreachable targets: no hot, no cold.
        let t = choose_thresholds(&p, &y, 0.99, 1.01, 10);
        assert_eq!((t.hot_at_or_above, t.cold_below), (1.0, 0.0));
    }

    #[test]
    fn transforms_follow_the_scale_hints() {
        let j = nudge::features::index_of("page_views").unwrap();
        let ts = learn_transforms(j, &[0.0, 1.0, 3.0, 100.0], 1.0).unwrap();
        assert!(matches!(ts[0], Transform::Clip { lo, hi } if lo == 0.0 && hi == 100.0));
        assert_eq!(ts[1], Transform::Log1p);
        assert!(matches!(ts[2], Transform::Standardise { .. }));
        let flag = nudge::features::index_of("device_mobile").unwrap();
        assert_eq!(learn_transforms(flag, &[1.0, 1.0], 0.999), None);
        assert_eq!(learn_transforms(flag, &[0.0, 1.0], 0.999).unwrap().len(), 1);
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("nudge-train-aw-{}", std::process::id()));
        let path = dir.join("m.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
