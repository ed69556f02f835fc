//! The L2 penalty of the uplift arms chosen by CV on the training rows, by
//! the same rule as the intent fit, so thin arms are shrunk toward no lift
//! instead of learning noise.

use super::arms::{fit_warm, ArmRows, Warm};
use super::options::UpliftOptions;
use crate::cv;
use anyhow::{bail, Context as _, Result};
use nudge::domain::logistic::sigmoid;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// One alpha of the uplift CV.
#[derive(Clone, Debug, Serialize)]
pub struct AlphaCv {
    pub alpha: f64,
    /// Mean over folds of the log-loss of each validation row under its own
    /// arm's model.
    pub mean_log_loss: f64,
}

/// Chooses the L2 penalty by k-fold CV on the training rows, the same rule
/// as the intent fit ([`cv::select_alpha`]: lowest mean out-of-fold
/// log-loss, ties to the larger alpha). Folds are stratified by arm and
/// label (seed `opts.seed`); each fold is fitted with the chosen learner
/// and every validation row is scored by its own arm's model, so the score
/// is the fit of the observed outcomes, which is what the served lifts are
/// made of. Within a fold the alphas run from the largest down, each fit
/// warm-started at the previous one's solution; the folds run on up to
/// `available_parallelism` threads (the result does not depend on it).
/// Returns the options with that alpha and the per-alpha scores (empty when
/// no grid is set).
pub fn choose_alpha(
    rows: &ArmRows,
    train: &[usize],
    opts: &UpliftOptions,
) -> Result<(UpliftOptions, Vec<AlphaCv>)> {
    let ArmRows { arm, y, .. } = *rows;
    let Some(grid) = opts.alphas.as_ref().filter(|g| !g.is_empty()) else {
        return Ok((opts.clone(), Vec::new()));
    };
    if grid.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
        bail!("--alphas must be positive numbers");
    }
    let k = opts.cv_folds.max(2);
    // Stratum = (arm, label), folds dealt round-robin after a seeded shuffle.
    let strata: Vec<usize> = train
        .iter()
        .map(|&i| 2 * arm[i] + usize::from(y[i]))
        .collect();
    let mut fold = vec![0usize; train.len()];
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5eed_cafe);
    for s in 0..=strata.iter().copied().max().unwrap_or(0) {
        let mut idx: Vec<usize> = (0..train.len()).filter(|&j| strata[j] == s).collect();
        idx.shuffle(&mut rng);
        for (n, j) in idx.into_iter().enumerate() {
            fold[j] = n % k;
        }
    }
    let fits = fold_fits(rows, train, &fold, k, grid, opts)?;
    let mut fold_of_row = vec![usize::MAX; y.len()];
    for (&i, &f) in train.iter().zip(&fold) {
        fold_of_row[i] = f;
    }
    let mut fits: Vec<Vec<Option<cv::FoldFit>>> = fits;
    let mut results: Vec<cv::CvResult> = Vec::with_capacity(grid.len());
    for (g, &alpha) in grid.iter().enumerate() {
        // The fits are done; this collects them (same train / validation
        // rows, same order) into cv.rs's per-alpha results.
        let r = cv::cross_validate(y, train, &fold, k, alpha, |_, valid, _| {
            Ok(fits[fold_of_row[valid[0]]][g]
                .take()
                .expect("each fold fit is used once"))
        })
        .with_context(|| format!("cross-validation at alpha {alpha}"))?;
        results.push(r);
    }
    let best = cv::select_alpha(&results);
    let scores = results
        .iter()
        .map(|r| AlphaCv {
            alpha: r.alpha,
            mean_log_loss: r.mean_log_loss,
        })
        .collect();
    Ok((
        UpliftOptions {
            alpha: results[best].alpha,
            ..opts.clone()
        },
        scores,
    ))
}

/// Every fold's fit at every alpha of `grid`: `[fold][alpha]` (see
/// [`choose_alpha`]).
fn fold_fits(
    rows: &ArmRows,
    train: &[usize],
    fold: &[usize],
    k: usize,
    grid: &[f64],
    opts: &UpliftOptions,
) -> Result<Vec<Vec<Option<cv::FoldFit>>>> {
    let mut order: Vec<usize> = (0..grid.len()).collect();
    order.sort_by(|&a, &b| grid[b].total_cmp(&grid[a]));
    let run_fold = |f: usize| -> Result<Vec<Option<cv::FoldFit>>> {
        let tr: Vec<usize> = (0..train.len())
            .filter(|&j| fold[j] != f)
            .map(|j| train[j])
            .collect();
        let va: Vec<usize> = (0..train.len())
            .filter(|&j| fold[j] == f)
            .map(|j| train[j])
            .collect();
        let mut out: Vec<Option<cv::FoldFit>> = (0..grid.len()).map(|_| None).collect();
        let mut warm: Option<Warm> = None;
        for &g in &order {
            let fold_opts = UpliftOptions {
                alpha: grid[g],
                // Folds hold (k-1)/k of each arm: the full-data check
                // applies to the final fit.
                min_arm_rows: 1,
                ..opts.clone()
            };
            let started = std::time::Instant::now();
            let (fits, w) = fit_warm(rows, &tr, &fold_opts, warm.as_ref())
                .with_context(|| format!("CV fold {f}, alpha {}", grid[g]))?;
            out[g] = Some(cv::FoldFit {
                p_valid: va
                    .iter()
                    .map(|&i| sigmoid(fits[rows.arm[i]].logit(rows, i, rows.arm[i])))
                    .collect(),
                fit_seconds: started.elapsed().as_secs_f64(),
                converged: fits.iter().all(|f| f.converged),
            });
            warm = Some(w);
        }
        Ok(out)
    };
    cv::each_fold(k, run_fold).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uplift::arms::tests::rows;
    use crate::uplift::options::Learner;
    use rand::Rng;

    #[test]
    fn cv_shrinks_a_response_that_is_noise_and_keeps_one_that_is_not() {
        let names: Vec<String> = ["none", "a", "b"].map(String::from).to_vec();
        let opts = UpliftOptions {
            learner: Learner::Pooled,
            alphas: Some(vec![0.01, 1.0, 100.0]),
            ..UpliftOptions::default()
        };
        // Strong, well-sampled effects: the lightest penalties fit best.
        let (x, arm, y) = rows(20_000, &[0.0, 0.5, 1.0], 3);
        let train: Vec<usize> = (0..y.len()).collect();
        let strong = ArmRows::new(&x, &arm, &y, &names);
        let (chosen, cv) = choose_alpha(&strong, &train, &opts).unwrap();
        assert_eq!(cv.len(), 3);
        assert!(chosen.alpha < 100.0, "{cv:?}");
        // Same call, same folds, same answer.
        let (again, _) = choose_alpha(&strong, &train, &opts).unwrap();
        assert_eq!(again.alpha, chosen.alpha);
        // Labels that depend on nothing, few rows: the heaviest penalty.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (x, arm, _) = rows(300, &[0.0, 0.0, 0.0], 4);
        let y: Vec<bool> = (0..300).map(|_| rng.random::<f64>() < 0.3).collect();
        let train: Vec<usize> = (0..y.len()).collect();
        let noise = ArmRows::new(&x, &arm, &y, &names);
        let (chosen, cv) = choose_alpha(&noise, &train, &opts).unwrap();
        assert_eq!(chosen.alpha, 100.0, "{cv:?}");
        // No grid: the fixed alpha, no CV.
        let fixed = UpliftOptions {
            alphas: None,
            ..opts
        };
        let (same, cv) = choose_alpha(&noise, &train, &fixed).unwrap();
        assert_eq!((same.alpha, cv.len()), (1.0, 0));
    }
}
