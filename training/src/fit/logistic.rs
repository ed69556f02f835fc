//! The one L2-regularised logistic regression every learner uses (the
//! intent fit, client models from CSV, uplift arms): linfa-logistic with the
//! sign fixed to describe `true` and its own convergence check, since linfa
//! stops silently at the iteration cap.

use anyhow::{bail, Context as _, Result};
use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use nudge::domain::logistic::sigmoid;

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
    fit_logistic_from(x, y, alpha, max_iterations, gradient_tolerance, None)
}

/// [`fit_logistic`] starting the optimiser at `start` (a warm start, e.g.
/// the solution at a neighbouring alpha; ignored if its length does not
/// match `x`). The objective is strictly convex, so the solution is the
/// same up to the convergence tolerance.
pub fn fit_logistic_from(
    x: &Array2<f64>,
    y: &[bool],
    alpha: f64,
    max_iterations: u64,
    gradient_tolerance: f64,
    start: Option<&Logistic>,
) -> Result<Logistic> {
    let n = x.nrows();
    if n == 0 || !y.iter().any(|v| *v) || y.iter().all(|v| *v) {
        bail!("need both converted and non-converted rows to fit");
    }
    let ds = Dataset::new(x.clone(), Array1::from(y.to_vec()));
    let mut lr = LogisticRegression::default();
    if let Some(m) = start.filter(|m| m.coefs.len() == x.ncols()) {
        // linfa models its "positive" class: the more frequent one, on a
        // tie the one seen first (its `label_classes`); the intercept is
        // the last parameter.
        let n_true = y.iter().filter(|v| **v).count();
        let pos_true = match n_true.cmp(&(n - n_true)) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => y[0],
        };
        let sign = if pos_true { 1.0 } else { -1.0 };
        let mut init: Vec<f64> = m.coefs.iter().map(|c| sign * c).collect();
        init.push(sign * m.intercept);
        lr = lr.initial_params(Array1::from(init));
    }
    let fitted = lr
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

#[cfg(test)]
mod tests {
    use super::*;
    use nudge::domain::logistic::logit;

    #[test]
    fn sign_is_fixed_whichever_class_is_more_frequent() {
        // y = true more likely for larger x; try both class balances.
        for pos_share in [0.2, 0.8] {
            let n = 2_000;
            let mut xs = Vec::new();
            let mut ys = Vec::new();
            for i in 0..n {
                let x = (i as f64 / n as f64) * 4.0 - 2.0;
                let p = sigmoid(2.0 * x + logit(pos_share));
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

    #[test]
    fn warm_start_reaches_the_same_solution_whichever_class_is_larger() {
        for pos_share in [0.2, 0.8] {
            let n = 1_000;
            let (mut xs, mut ys) = (Vec::new(), Vec::new());
            for i in 0..n {
                let a = (i as f64 / n as f64) * 4.0 - 2.0;
                let b = ((i as f64) * 0.414_213_562_37).fract() - 0.5;
                let u = ((i as f64) * 0.618_033_988_75).fract();
                xs.extend([a, b]);
                ys.push(u < sigmoid(1.5 * a - b + logit(pos_share)));
            }
            let x = Array2::from_shape_vec((n, 2), xs).unwrap();
            let cold = fit_logistic(&x, &ys, 0.1, 500, 1e-8).unwrap();
            let near = fit_logistic(&x, &ys, 10.0, 500, 1e-8).unwrap();
            let warm = fit_logistic_from(&x, &ys, 0.1, 500, 1e-8, Some(&near)).unwrap();
            // Started at the solution it needs (almost) no iteration: the
            // start is passed in linfa's orientation of the classes.
            let same = fit_logistic_from(&x, &ys, 0.1, 2, 1e-8, Some(&cold)).unwrap();
            let flipped = fit_logistic(&x, &ys, 0.1, 2, 1e-8).unwrap();
            assert!(
                flipped.gradient_norm_per_row > 1e-6,
                "2 iterations from 0 do not suffice"
            );
            for m in [&warm, &same] {
                assert!(m.gradient_norm_per_row <= 1e-8, "{pos_share}: {m:?}");
                for (a, b) in m.coefs.iter().zip(&cold.coefs) {
                    assert!((a - b).abs() < 1e-5, "{pos_share}: {m:?} vs {cold:?}");
                }
                assert!((m.intercept - cold.intercept).abs() < 1e-5);
            }
        }
    }
}
