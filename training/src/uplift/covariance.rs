//! The coefficient covariance written with every arm, from which the service
//! computes the standard error of a lift (see
//! [`nudge::domain::model::uplift`]).
//!
//! At a fit of `sum logloss + alpha/2 |w|^2` (intercept not penalised), the
//! covariance is the inverse of the penalised Hessian (the Fisher
//! information of the design at the fitted probabilities plus the penalty):
//! `S = ([1 X]' W [1 X] + alpha diag(0, 1, ..., 1))^-1`, `W = diag(p (1 -
//! p))`, on the standardised design the fit used. It is the Laplace
//! approximation of the posterior under the Gaussian prior that the L2
//! penalty is, so a heavily penalised coefficient gets a small variance, as
//! it should: the penalty is what keeps it near 0.
//!
//! - Two-model: each arm's own `S` over `[intercept, x...]`; the arms are
//!   independent fits, so the lift's variance is the sum of two arms'.
//! - Pooled: one `S` over every column; a treated arm carries the block of
//!   its contrast with the control (its indicator and the interactions,
//!   mapped to its coefficient positions, with the share scales folded in:
//!   `S_uv / (scale_u scale_v)`), the control arm none. The shared
//!   coefficients cancel in `z_v - z_0`, so that block is exactly the lift's
//!   covariance.

use super::arms::{ArmFit, ArmRows};
use super::design::PooledDesign;
use super::options::{Learner, UpliftOptions};
use anyhow::{bail, Result};
use ndarray::Array2;
use nudge::domain::logistic::sigmoid;
use nudge::domain::model::{Covariance, MAX_COVARIANCE_DIM};

/// `([1 X]' W [1 X] + alpha diag(0, 1, ..., 1))^-1` with `W` from the
/// logits `z` of the rows; index 0 is the intercept.
// Dense index arithmetic reads best with indices.
#[allow(clippy::needless_range_loop)]
pub fn inverse_fisher(x: &Array2<f64>, z: &[f64], alpha: f64) -> Result<Vec<Vec<f64>>> {
    let d = x.ncols() + 1;
    let mut h = vec![vec![0.0; d]; d];
    let mut row = vec![1.0; d];
    for (r, &zi) in z.iter().enumerate() {
        let p = sigmoid(zi);
        let w = p * (1.0 - p);
        for j in 1..d {
            row[j] = x[(r, j - 1)];
        }
        for j in 0..d {
            let wj = w * row[j];
            for k in 0..=j {
                h[j][k] += wj * row[k];
            }
        }
    }
    for j in 0..d {
        for k in 0..j {
            h[k][j] = h[j][k];
        }
        if j > 0 {
            h[j][j] += alpha;
        }
    }
    match cholesky_inverse(h) {
        Some(s) => Ok(s),
        None => bail!("the penalised Hessian is not positive definite (a constant design?)"),
    }
}

/// Inverse of a symmetric positive definite matrix through its Cholesky
/// factor; `None` when it is not positive definite.
// Dense index arithmetic reads best with indices.
#[allow(clippy::needless_range_loop)]
pub fn cholesky_inverse(a: Vec<Vec<f64>>) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for j in 0..n {
        let mut s = a[j][j];
        for k in 0..j {
            s -= l[j][k] * l[j][k];
        }
        if s.is_nan() || s <= 0.0 {
            return None;
        }
        l[j][j] = s.sqrt();
        for i in j + 1..n {
            let mut s = a[i][j];
            for k in 0..j {
                s -= l[i][k] * l[j][k];
            }
            l[i][j] = s / l[j][j];
        }
    }
    // L^-1 by forward substitution, then A^-1 = L^-T L^-1.
    let mut li = vec![vec![0.0; n]; n];
    for c in 0..n {
        li[c][c] = 1.0 / l[c][c];
        for i in c + 1..n {
            let mut s = 0.0;
            for k in c..i {
                s -= l[i][k] * li[k][c];
            }
            li[i][c] = s / l[i][i];
        }
    }
    let mut inv = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (i..n).map(|k| li[k][i] * li[k][j]).sum();
            inv[i][j] = s;
            inv[j][i] = s;
        }
    }
    Some(inv)
}

/// Sets `covariance` on the arms of a final fit on `train` (see the module
/// docs).
pub fn add_covariances(
    rows: &ArmRows,
    train: &[usize],
    opts: &UpliftOptions,
    fits: &mut [ArmFit],
) -> Result<()> {
    match opts.learner {
        Learner::TwoModel => {
            for (a, f) in fits.iter_mut().enumerate() {
                let idx: Vec<usize> = train
                    .iter()
                    .copied()
                    .filter(|&i| rows.arm[i] == a)
                    .collect();
                let x = rows.x.select(ndarray::Axis(0), &idx);
                let z: Vec<f64> = x.rows().into_iter().map(|r| f.model.logit(r)).collect();
                let s = inverse_fisher(&x, &z, opts.alpha)?;
                if s.len() > MAX_COVARIANCE_DIM {
                    bail!(
                        "{} coefficients per arm: more than the model file's covariance holds ({MAX_COVARIANCE_DIM})",
                        s.len()
                    );
                }
                f.covariance = Some(Covariance {
                    index: (0..s.len()).collect(),
                    matrix: s,
                });
            }
        }
        Learner::Pooled => {
            let design = PooledDesign::new(rows, train, opts.interactions)?;
            let x = design.matrix(rows, train);
            let z: Vec<f64> = train
                .iter()
                .map(|&i| fits[rows.arm[i]].logit(rows, i, rows.arm[i]))
                .collect();
            let s = inverse_fisher(&x, &z, opts.alpha)?;
            for (a, f) in fits.iter_mut().enumerate().skip(1) {
                // (position in the arm, column of S, scale), by position.
                let mut at: Vec<(usize, usize, f64)> = (0..design.cols.len())
                    .filter_map(|c| {
                        design
                            .contrast_position(c, a)
                            .map(|pos| (pos, c + 1, design.scale[c]))
                    })
                    .collect();
                at.sort_by_key(|t| t.0);
                if at.len() > MAX_COVARIANCE_DIM {
                    bail!("{} contrast coefficients: more than the model file's covariance holds ({MAX_COVARIANCE_DIM})", at.len());
                }
                f.covariance = Some(Covariance {
                    index: at.iter().map(|t| t.0).collect(),
                    matrix: at
                        .iter()
                        .map(|&(_, u, su)| {
                            at.iter().map(|&(_, v, sv)| s[u][v] / (su * sv)).collect()
                        })
                        .collect(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_inverse_by_hand_and_refuses_indefinite() {
        let a = vec![vec![4.0, 2.0], vec![2.0, 3.0]];
        let inv = cholesky_inverse(a).unwrap();
        // det 8: inverse = [3 -2; -2 4] / 8.
        let want = [[0.375, -0.25], [-0.25, 0.5]];
        for i in 0..2 {
            for j in 0..2 {
                assert!((inv[i][j] - want[i][j]).abs() < 1e-12, "{inv:?}");
            }
        }
        assert!(cholesky_inverse(vec![vec![1.0, 2.0], vec![2.0, 1.0]]).is_none());
    }

    /// The standard error of the lift at `x = 0` (the tier's intercept
    /// contrast) that the written covariance gives matches the spread of
    /// that estimate over independent samples, for both learners.
    #[test]
    fn standard_errors_match_the_spread_over_samples() {
        use crate::uplift::arms::tests::rows;
        use crate::uplift::arms::{fit_with_learner, ArmRows};
        use crate::uplift::options::Learner;
        let names: Vec<String> = ["none", "a"].map(String::from).to_vec();
        for learner in [Learner::Pooled, Learner::TwoModel] {
            let opts = UpliftOptions {
                learner,
                alpha: 0.01,
                ..UpliftOptions::default()
            };
            let (mut lifts, mut ses) = (Vec::new(), Vec::new());
            for seed in 0..30 {
                let (x, arm, y) = rows(3_000, &[0.0, 0.4], 100 + seed);
                let r = ArmRows::new(&x, &arm, &y, &names);
                let train: Vec<usize> = (0..y.len()).collect();
                let mut fits = fit_with_learner(&r, &train, &opts).unwrap();
                add_covariances(&r, &train, &opts, &mut fits).unwrap();
                lifts.push(fits[1].model.intercept - fits[0].model.intercept);
                let var = |f: &ArmFit| f.covariance.as_ref().map_or(0.0, |c| c.matrix[0][0]);
                ses.push((var(&fits[1]) + var(&fits[0])).sqrt());
            }
            let n = lifts.len() as f64;
            let mean = lifts.iter().sum::<f64>() / n;
            let sd = (lifts.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
            let se = ses.iter().sum::<f64>() / n;
            println!("{learner:?}: mean se {se:.4}, spread of the estimates {sd:.4}");
            assert!(
                (se / sd - 1.0).abs() < 0.35,
                "{learner:?}: mean se {se:.4} vs spread {sd:.4} (lift {mean:.3})"
            );
            assert!((mean - 0.4).abs() < 3.0 * sd);
        }
    }

    #[test]
    fn inverse_fisher_of_a_lone_intercept_is_one_over_n_p_q() {
        // n rows at p = 0.2: Var(intercept) = 1 / (n p (1 - p)).
        let x = Array2::<f64>::zeros((500, 0));
        let z = vec![nudge::domain::logistic::logit(0.2); 500];
        let s = inverse_fisher(&x, &z, 1.0).unwrap();
        assert!((s[0][0] - 1.0 / (500.0 * 0.16)).abs() < 1e-12);
    }
}
