//! Seeded stratified splits and k-fold cross-validation.
//!
//! # Fold rule (reproducible in any language)
//! [`stratified_folds`]: the indices of the positive rows and of the
//! negative rows are each shuffled with a Fisher-Yates shuffle driven by
//! `ChaCha8Rng::seed_from_u64(seed)` (positives first, then negatives, with
//! the same generator), and the `i`-th row of each shuffled class goes to
//! fold `i % k`. Every fold thus holds `floor` or `ceil` of `1/k` of each
//! class. Other tools should not re-implement this: `nudge-train folds`
//! writes the assignment as CSV (`row,fold`), which the scikit-learn parity
//! script reads.
//!
//! [`stratified_holdout`]: same shuffles (seed mixed with a constant so the
//! held-out split and the folds differ); the first `round(share * n_class)`
//! rows of each shuffled class are held out.

use crate::metrics;
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Runs `run(f)` for every fold `f` in `0..k`, spread over the `--threads`
/// cores (at most `k` threads, each taking the next fold), and returns the
/// results in fold order. Both cross-validations (intent and response) fit
/// their folds this way.
pub fn each_fold<T: Send>(k: usize, run: impl Fn(usize) -> T + Sync) -> Vec<T> {
    crate::parallel::each_fold(k, run)
}

fn shuffled_classes(y: &[bool], seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pos: Vec<usize> = (0..y.len()).filter(|&i| y[i]).collect();
    let mut neg: Vec<usize> = (0..y.len()).filter(|&i| !y[i]).collect();
    pos.shuffle(&mut rng);
    neg.shuffle(&mut rng);
    (pos, neg)
}

/// Fold (`0..k`) of each row, stratified by label (see the module docs).
pub fn stratified_folds(y: &[bool], k: usize, seed: u64) -> Vec<usize> {
    assert!(k >= 2, "k >= 2");
    let (pos, neg) = shuffled_classes(y, seed);
    let mut fold = vec![0; y.len()];
    for class in [pos, neg] {
        for (i, row) in class.into_iter().enumerate() {
            fold[row] = i % k;
        }
    }
    fold
}

/// Held-out mask (`true` = held out), stratified by label.
pub fn stratified_holdout(y: &[bool], share: f64, seed: u64) -> Vec<bool> {
    let (pos, neg) = shuffled_classes(y, seed ^ 0x0068_6f6c_646f_7574);
    let mut held = vec![false; y.len()];
    for class in [pos, neg] {
        let n = (share * class.len() as f64).round() as usize;
        for &row in &class[..n.min(class.len())] {
            held[row] = true;
        }
    }
    held
}

/// One validation fold.
#[derive(Clone, Debug, Serialize)]
pub struct FoldResult {
    pub fold: usize,
    pub train_rows: usize,
    pub valid_rows: usize,
    pub valid_positives: usize,
    pub roc_auc: Option<f64>,
    pub log_loss: f64,
    /// Wall time of learning the transforms, building the design matrix and
    /// fitting (not predicting), seconds.
    pub fit_seconds: f64,
    pub converged: bool,
}

/// k-fold results at one alpha.
#[derive(Clone, Debug, Serialize)]
pub struct CvResult {
    pub alpha: f64,
    pub k: usize,
    pub folds: Vec<FoldResult>,
    pub mean_roc_auc: f64,
    pub std_roc_auc: f64,
    pub mean_log_loss: f64,
    pub mean_fit_seconds: f64,
    /// ROC-AUC of the pooled out-of-fold predictions.
    pub oof_roc_auc: Option<f64>,
    /// Out-of-fold prediction of each row of `rows` (same order); not
    /// serialised.
    #[serde(skip)]
    pub oof: Vec<f64>,
}

/// What a fold fit returns: predictions for the validation rows, the fit
/// time in seconds and whether the optimiser converged.
pub struct FoldFit {
    pub p_valid: Vec<f64>,
    pub fit_seconds: f64,
    pub converged: bool,
}

/// k-fold cross-validation over `rows` (indices into `y`), `fold[j]` being
/// the fold of `rows[j]`. `fit_predict(train, valid, alpha)` gets row
/// indices (into `y`).
pub fn cross_validate<F>(
    y: &[bool],
    rows: &[usize],
    fold: &[usize],
    k: usize,
    alpha: f64,
    mut fit_predict: F,
) -> Result<CvResult>
where
    F: FnMut(&[usize], &[usize], f64) -> Result<FoldFit>,
{
    assert_eq!(rows.len(), fold.len());
    let mut oof = vec![f64::NAN; rows.len()];
    let mut folds = Vec::with_capacity(k);
    for f in 0..k {
        let train: Vec<usize> = (0..rows.len())
            .filter(|&j| fold[j] != f)
            .map(|j| rows[j])
            .collect();
        let valid_pos: Vec<usize> = (0..rows.len()).filter(|&j| fold[j] == f).collect();
        let valid: Vec<usize> = valid_pos.iter().map(|&j| rows[j]).collect();
        if valid.is_empty() {
            bail!("fold {f} of {k} is empty ({} rows)", rows.len());
        }
        let r = fit_predict(&train, &valid, alpha)?;
        let yv: Vec<bool> = valid.iter().map(|&i| y[i]).collect();
        for (&j, &p) in valid_pos.iter().zip(&r.p_valid) {
            oof[j] = p;
        }
        folds.push(FoldResult {
            fold: f,
            train_rows: train.len(),
            valid_rows: valid.len(),
            valid_positives: yv.iter().filter(|v| **v).count(),
            roc_auc: metrics::roc_auc(&r.p_valid, &yv),
            log_loss: metrics::log_loss(&r.p_valid, &yv),
            fit_seconds: r.fit_seconds,
            converged: r.converged,
        });
    }
    let aucs: Vec<f64> = folds.iter().filter_map(|f| f.roc_auc).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let mean_auc = mean(&aucs);
    let std_auc = (aucs
        .iter()
        .map(|a| (a - mean_auc) * (a - mean_auc))
        .sum::<f64>()
        / aucs.len().max(1) as f64)
        .sqrt();
    let y_rows: Vec<bool> = rows.iter().map(|&i| y[i]).collect();
    Ok(CvResult {
        alpha,
        k,
        mean_roc_auc: mean_auc,
        std_roc_auc: std_auc,
        mean_log_loss: mean(&folds.iter().map(|f| f.log_loss).collect::<Vec<_>>()),
        mean_fit_seconds: mean(&folds.iter().map(|f| f.fit_seconds).collect::<Vec<_>>()),
        oof_roc_auc: metrics::roc_auc(&oof, &y_rows),
        folds,
        oof,
    })
}

/// The regularisation rule: the alpha with the lowest mean out-of-fold
/// log-loss (a proper scoring rule: the service uses the probabilities
/// themselves, not only their ranking); ties go to the larger alpha (the
/// simpler model).
pub fn select_alpha(results: &[CvResult]) -> usize {
    let mut best = 0;
    for (i, r) in results.iter().enumerate() {
        let b = &results[best];
        if r.mean_log_loss < b.mean_log_loss
            || (r.mean_log_loss == b.mean_log_loss && r.alpha > b.alpha)
        {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_seeded_and_cover_every_row() {
        let y: Vec<bool> = (0..1003).map(|i| i % 7 == 0).collect();
        let f = stratified_folds(&y, 5, 42);
        assert_eq!(f, stratified_folds(&y, 5, 42));
        assert_ne!(f, stratified_folds(&y, 5, 43));
        let pos = y.iter().filter(|v| **v).count();
        for k in 0..5 {
            let n = f.iter().filter(|&&v| v == k).count();
            let p = (0..y.len()).filter(|&i| f[i] == k && y[i]).count();
            assert!((199..=202).contains(&n), "{n}");
            assert!(p == pos / 5 || p == pos / 5 + 1, "{p}");
        }
    }

    #[test]
    fn holdout_is_stratified() {
        let y: Vec<bool> = (0..1000).map(|i| i % 4 == 0).collect();
        let h = stratified_holdout(&y, 0.2, 1);
        assert_eq!(h.iter().filter(|v| **v).count(), 200);
        assert_eq!((0..1000).filter(|&i| h[i] && y[i]).count(), 50);
    }

    #[test]
    fn cv_collects_out_of_fold_predictions_and_selects_by_log_loss() {
        let y: Vec<bool> = (0..100).map(|i| i % 2 == 0).collect();
        let rows: Vec<usize> = (0..100).collect();
        let fold = stratified_folds(&y, 4, 3);
        let r = cross_validate(&y, &rows, &fold, 4, 1.0, |train, valid, _| {
            assert!(train.iter().all(|i| !valid.contains(i)));
            Ok(FoldFit {
                p_valid: valid
                    .iter()
                    .map(|&i| if y[i] { 0.8 } else { 0.2 })
                    .collect(),
                fit_seconds: 0.0,
                converged: true,
            })
        })
        .unwrap();
        assert_eq!(r.mean_roc_auc, 1.0);
        assert!(r.oof.iter().all(|p| p.is_finite()));
        let mut worse = r.clone();
        worse.alpha = 10.0;
        worse.mean_log_loss += 0.1;
        assert_eq!(select_alpha(&[worse.clone(), r.clone()]), 1);
        worse.mean_log_loss = r.mean_log_loss;
        assert_eq!(select_alpha(&[r, worse]), 1, "tie -> larger alpha");
    }
}
