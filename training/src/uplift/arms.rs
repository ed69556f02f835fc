//! The generic core of every uplift fit: arms on one design matrix, the
//! held-out split stratified by (arm, label), and the two learners, so logs
//! and CSV experiments are fitted by the same code.

use super::options::{Learner, UpliftOptions};
use crate::fit::{fit_logistic, Logistic};
use anyhow::{bail, Context as _, Result};
use ndarray::Array2;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Held-out mask, stratified by (arm, label), seeded: in every stratum the
/// rows are shuffled (ChaCha8, strata in (arm, label) order with one
/// generator) and the first `round(share * n)` are held out.
pub fn split(arm: &[usize], y: &[bool], share: f64, seed: u64) -> Vec<bool> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7570_6c69_6674);
    let mut strata: BTreeMap<(usize, bool), Vec<usize>> = BTreeMap::new();
    for i in 0..arm.len() {
        strata.entry((arm[i], y[i])).or_default().push(i);
    }
    let mut held = vec![false; arm.len()];
    for rows in strata.values_mut() {
        rows.shuffle(&mut rng);
        let n = (share * rows.len() as f64).round() as usize;
        for &i in &rows[..n.min(rows.len())] {
            held[i] = true;
        }
    }
    held
}

/// The rows every learner reads: one design matrix, each row's arm
/// (0 = control) and label, and the arm names (control first).
#[derive(Clone, Copy, Debug)]
pub struct ArmRows<'a> {
    pub x: &'a Array2<f64>,
    pub arm: &'a [usize],
    pub y: &'a [bool],
    pub names: &'a [String],
}

impl<'a> ArmRows<'a> {
    pub fn new(x: &'a Array2<f64>, arm: &'a [usize], y: &'a [bool], names: &'a [String]) -> Self {
        ArmRows { x, arm, y, names }
    }
}

/// One fitted arm.
#[derive(Clone, Debug)]
pub struct ArmFit {
    pub name: String,
    pub model: Logistic,
    pub train_rows: usize,
    pub train_positives: usize,
    pub converged: bool,
}

/// One logistic regression at the options' penalty and solver settings.
fn fit_at(x: &Array2<f64>, y: &[bool], opts: &UpliftOptions) -> Result<Logistic> {
    fit_logistic(
        x,
        y,
        opts.alpha,
        opts.max_iterations,
        opts.gradient_tolerance,
    )
}

/// Fits one logistic model per arm on the training rows `train` of `rows`.
/// Fails, naming the arm, when an arm has fewer than `min_arm_rows`
/// training rows or a single class.
pub fn fit_arms(rows: &ArmRows, train: &[usize], opts: &UpliftOptions) -> Result<Vec<ArmFit>> {
    let ArmRows { x, arm, y, names } = *rows;
    let mut fits = Vec::with_capacity(names.len());
    for (a, name) in names.iter().enumerate() {
        let rows: Vec<usize> = train.iter().copied().filter(|&i| arm[i] == a).collect();
        let pos = rows.iter().filter(|&&i| y[i]).count();
        if rows.len() < opts.min_arm_rows {
            bail!(
                "arm {name:?} has {} training rows (< --min-arm-rows {}): too few to learn its response",
                rows.len(),
                opts.min_arm_rows
            );
        }
        if pos == 0 || pos == rows.len() {
            bail!(
                "arm {name:?}: all {} training rows are {}: cannot fit its response",
                rows.len(),
                if pos == 0 { "negative" } else { "positive" }
            );
        }
        let xa = x.select(ndarray::Axis(0), &rows);
        let ya: Vec<bool> = rows.iter().map(|&i| y[i]).collect();
        let m = fit_at(&xa, &ya, opts).with_context(|| format!("arm {name:?}"))?;
        fits.push(ArmFit {
            name: name.clone(),
            converged: m.gradient_norm_per_row <= opts.gradient_tolerance,
            model: m,
            train_rows: rows.len(),
            train_positives: pos,
        });
    }
    Ok(fits)
}

/// Fits the arms with `opts.learner` (see [`Learner`]).
pub fn fit_with_learner(
    rows: &ArmRows,
    train: &[usize],
    opts: &UpliftOptions,
) -> Result<Vec<ArmFit>> {
    match opts.learner {
        Learner::TwoModel => fit_arms(rows, train, opts),
        Learner::Pooled => fit_pooled(rows, train, opts),
    }
}

/// The pooled learner: one logistic regression on the training rows of
/// every arm, design `[x | 1(arm = 1) .. 1(arm = k)]`, returned as one
/// [`ArmFit`] per arm with the shared coefficients and intercept
/// `b + beta_a`. Fails, naming the arm, when an arm has fewer than
/// `min_arm_rows` training rows; an arm may be single-class (its `beta` is
/// then bounded by the penalty).
pub fn fit_pooled(rows: &ArmRows, train: &[usize], opts: &UpliftOptions) -> Result<Vec<ArmFit>> {
    let ArmRows { x, arm, y, names } = *rows;
    let k = names.len();
    let mut counts = vec![(0usize, 0usize); k];
    for &i in train {
        counts[arm[i]].0 += 1;
        counts[arm[i]].1 += usize::from(y[i]);
    }
    for (name, (rows, _)) in names.iter().zip(&counts) {
        if *rows < opts.min_arm_rows {
            bail!(
                "arm {name:?} has {rows} training rows (< --min-arm-rows {}): too few to learn its response",
                opts.min_arm_rows
            );
        }
    }
    let p = x.ncols();
    let design = Array2::from_shape_fn((train.len(), p + k - 1), |(r, c)| {
        let i = train[r];
        if c < p {
            x[(i, c)]
        } else {
            f64::from(u8::from(arm[i] == c - p + 1))
        }
    });
    let ya: Vec<bool> = train.iter().map(|&i| y[i]).collect();
    let m = fit_at(&design, &ya, opts).context("pooled uplift model")?;
    let converged = m.gradient_norm_per_row <= opts.gradient_tolerance;
    Ok(names
        .iter()
        .enumerate()
        .map(|(a, name)| ArmFit {
            name: name.clone(),
            model: Logistic {
                coefs: m.coefs[..p].to_vec(),
                intercept: m.intercept + if a == 0 { 0.0 } else { m.coefs[p + a - 1] },
                gradient_norm_per_row: m.gradient_norm_per_row,
            },
            train_rows: counts[a].0,
            train_positives: counts[a].1,
            converged,
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nudge::domain::logistic::sigmoid;
    use rand::Rng;

    /// Rows with `logit = -1 + 0.8 x1 - 0.5 x2 + beta_arm`, arms uniform.
    pub(crate) fn rows(n: usize, beta: &[f64], seed: u64) -> (Array2<f64>, Vec<usize>, Vec<bool>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Array2::zeros((n, 2));
        let mut arm = Vec::with_capacity(n);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let (a, b): (f64, f64) = (
                rng.random::<f64>() * 4.0 - 2.0,
                rng.random::<f64>() * 4.0 - 2.0,
            );
            x[(i, 0)] = a;
            x[(i, 1)] = b;
            let k = rng.random_range(0..beta.len());
            arm.push(k);
            y.push(rng.random::<f64>() < sigmoid(-1.0 + 0.8 * a - 0.5 * b + beta[k]));
        }
        (x, arm, y)
    }

    #[test]
    fn pooled_learner_recovers_constant_lifts_with_shared_coefficients() {
        let beta = [0.0, 0.3, 0.7];
        let (x, arm, y) = rows(30_000, &beta, 1);
        let train: Vec<usize> = (0..y.len()).collect();
        let names: Vec<String> = ["none", "a", "b"].map(String::from).to_vec();
        let opts = UpliftOptions {
            learner: Learner::Pooled,
            ..UpliftOptions::default()
        };
        let fits = fit_with_learner(&ArmRows::new(&x, &arm, &y, &names), &train, &opts).unwrap();
        assert_eq!(fits.len(), 3);
        for f in &fits {
            assert!(f.converged);
            assert_eq!(f.model.coefs, fits[0].model.coefs, "shared coefficients");
        }
        assert!(
            (fits[0].model.coefs[0] - 0.8).abs() < 0.06,
            "{:?}",
            fits[0].model.coefs
        );
        assert!(
            (fits[0].model.coefs[1] + 0.5).abs() < 0.06,
            "{:?}",
            fits[0].model.coefs
        );
        for (a, b) in beta.iter().enumerate().skip(1) {
            let lift = fits[a].model.intercept - fits[0].model.intercept;
            assert!((lift - b).abs() < 0.08, "arm {a}: lift {lift} vs {b}");
        }
        // Per-arm row counts as the two-model learner reports them.
        let n0 = arm.iter().filter(|&&a| a == 0).count();
        assert_eq!(fits[0].train_rows, n0);
    }

    #[test]
    fn pooled_learner_refuses_a_thin_arm_by_name() {
        let (x, mut arm, y) = rows(3_000, &[0.0, 0.3], 2);
        arm.iter_mut().take(2_950).for_each(|a| *a = 0);
        let train: Vec<usize> = (0..y.len()).collect();
        let names: Vec<String> = ["none", "500 cents"].map(String::from).to_vec();
        let opts = UpliftOptions {
            learner: Learner::Pooled,
            ..UpliftOptions::default()
        };
        let e = fit_with_learner(&ArmRows::new(&x, &arm, &y, &names), &train, &opts).unwrap_err();
        assert!(e.to_string().contains("\"500 cents\""), "{e}");
    }
}
