//! The generic core of every uplift fit: arms on one design matrix, the
//! held-out split stratified by (arm, label), and the two learners, so logs
//! and CSV experiments are fitted by the same code.

use super::design::PooledDesign;
use super::options::{Interactions, Learner, UpliftOptions};
use crate::fit::{fit_logistic_from, Logistic};
use anyhow::{bail, Context as _, Result};
use ndarray::Array2;
use nudge::domain::model::{voucher_share, Covariance};
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
/// (0 = control) and label, and the arm names (control first); for voucher
/// arms also what the interactions read.
#[derive(Clone, Copy, Debug)]
pub struct ArmRows<'a> {
    pub x: &'a Array2<f64>,
    pub arm: &'a [usize],
    pub y: &'a [bool],
    pub names: &'a [String],
    pub voucher: Option<Voucher<'a>>,
}

/// Voucher arms: each arm's amount, each row's intent value and the columns
/// of `x` that are price-sensitivity signals.
#[derive(Clone, Copy, Debug)]
pub struct Voucher<'a> {
    pub amounts: &'a [i64],
    pub intent_cents: &'a [i64],
    pub signals: &'a [usize],
}

impl<'a> ArmRows<'a> {
    pub fn new(x: &'a Array2<f64>, arm: &'a [usize], y: &'a [bool], names: &'a [String]) -> Self {
        ArmRows {
            x,
            arm,
            y,
            names,
            voucher: None,
        }
    }

    pub fn with_voucher(self, voucher: Voucher<'a>) -> Self {
        ArmRows {
            voucher: Some(voucher),
            ..self
        }
    }

    /// Row `i`'s voucher share under arm `a` (0 without voucher arms).
    pub fn share(&self, i: usize, a: usize) -> f64 {
        self.voucher
            .map_or(0.0, |v| voucher_share(v.amounts[a], v.intent_cents[i]))
    }
}

/// One fitted arm. Its coefficients in the model file's order:
/// `[intercept, model.coefs (the columns of x)..., share, share_signals...]`,
/// which is also the order of `covariance.index`.
#[derive(Clone, Debug)]
pub struct ArmFit {
    pub name: String,
    pub model: Logistic,
    /// Coefficient of the voucher share (pooled learner with
    /// interactions, treated arms).
    pub share: Option<f64>,
    /// `(column of x, coefficient)` of `share * x_j`.
    pub share_signals: Vec<(usize, f64)>,
    /// Set by [`super::covariance::add_covariances`] (final fits only).
    pub covariance: Option<Covariance>,
    pub train_rows: usize,
    pub train_positives: usize,
    pub converged: bool,
}

impl ArmFit {
    /// The logit of row `i` of `rows` under this arm, arm index `a`.
    pub fn logit(&self, rows: &ArmRows, i: usize, a: usize) -> f64 {
        let mut z = self.model.logit(rows.x.row(i));
        if self.share.is_some() || !self.share_signals.is_empty() {
            let s = rows.share(i, a);
            z += self.share.unwrap_or(0.0) * s;
            for &(j, e) in &self.share_signals {
                z += e * s * rows.x[(i, j)];
            }
        }
        z
    }
}

/// The solver's solutions of a fit (the pooled regression's, or one per
/// arm), to start a fit of the same rows at another alpha from (a warm
/// start: the same optimum up to the tolerance, fewer iterations).
#[derive(Clone, Debug, Default)]
pub struct Warm(pub Vec<Logistic>);

/// One logistic regression at the options' penalty and solver settings.
fn fit_at(
    x: &Array2<f64>,
    y: &[bool],
    opts: &UpliftOptions,
    start: Option<&Logistic>,
) -> Result<Logistic> {
    fit_logistic_from(
        x,
        y,
        opts.alpha,
        opts.max_iterations,
        opts.gradient_tolerance,
        start,
    )
}

/// Fits one logistic model per arm on the training rows `train` of `rows`.
/// Fails, naming the arm, when an arm has fewer than `min_arm_rows`
/// training rows or a single class.
pub fn fit_arms(rows: &ArmRows, train: &[usize], opts: &UpliftOptions) -> Result<Vec<ArmFit>> {
    Ok(fit_arms_from(rows, train, opts, None)?.0)
}

fn fit_arms_from(
    rows: &ArmRows,
    train: &[usize],
    opts: &UpliftOptions,
    warm: Option<&Warm>,
) -> Result<(Vec<ArmFit>, Warm)> {
    let ArmRows {
        x, arm, y, names, ..
    } = *rows;
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
        let start = warm.and_then(|w| w.0.get(a));
        let m = fit_at(&xa, &ya, opts, start).with_context(|| format!("arm {name:?}"))?;
        fits.push(ArmFit {
            name: name.clone(),
            converged: m.gradient_norm_per_row <= opts.gradient_tolerance,
            model: m,
            share: None,
            share_signals: Vec::new(),
            covariance: None,
            train_rows: rows.len(),
            train_positives: pos,
        });
    }
    let w = Warm(fits.iter().map(|f| f.model.clone()).collect());
    Ok((fits, w))
}

/// Fits the arms with `opts.learner` (see [`Learner`]).
pub fn fit_with_learner(
    rows: &ArmRows,
    train: &[usize],
    opts: &UpliftOptions,
) -> Result<Vec<ArmFit>> {
    Ok(fit_warm(rows, train, opts, None)?.0)
}

/// [`fit_with_learner`] started at `warm` (the solutions of a fit of the
/// same rows and learner at another alpha), returning its own solutions.
pub fn fit_warm(
    rows: &ArmRows,
    train: &[usize],
    opts: &UpliftOptions,
    warm: Option<&Warm>,
) -> Result<(Vec<ArmFit>, Warm)> {
    match opts.learner {
        Learner::TwoModel => {
            if opts.interactions != Interactions::None {
                bail!("the two-model learner takes no interactions");
            }
            fit_arms_from(rows, train, opts, warm)
        }
        Learner::Pooled => fit_pooled_from(rows, train, opts, warm),
    }
}

/// The pooled learner: one logistic regression on the training rows of
/// every arm, design `[x | 1(arm = 1) .. 1(arm = k) | interactions]` (see
/// [`PooledDesign`] and [`Interactions`]), returned as one [`ArmFit`] per
/// arm: the shared coefficients (plus the signal interactions on treated
/// arms) and intercept `b + beta_a`. Fails, naming the arm, when an arm has
/// fewer than `min_arm_rows` training rows; an arm may be single-class (its
/// `beta` is then bounded by the penalty).
pub fn fit_pooled(rows: &ArmRows, train: &[usize], opts: &UpliftOptions) -> Result<Vec<ArmFit>> {
    Ok(fit_pooled_from(rows, train, opts, None)?.0)
}

fn fit_pooled_from(
    rows: &ArmRows,
    train: &[usize],
    opts: &UpliftOptions,
    warm: Option<&Warm>,
) -> Result<(Vec<ArmFit>, Warm)> {
    let k = rows.names.len();
    let mut counts = vec![(0usize, 0usize); k];
    for &i in train {
        counts[rows.arm[i]].0 += 1;
        counts[rows.arm[i]].1 += usize::from(rows.y[i]);
    }
    for (name, (n, _)) in rows.names.iter().zip(&counts) {
        if *n < opts.min_arm_rows {
            bail!(
                "arm {name:?} has {n} training rows (< --min-arm-rows {}): too few to learn its response",
                opts.min_arm_rows
            );
        }
    }
    let design = PooledDesign::new(rows, train, opts.interactions)?;
    let ya: Vec<bool> = train.iter().map(|&i| rows.y[i]).collect();
    let start = warm.and_then(|w| w.0.first());
    let m = fit_at(&design.matrix(rows, train), &ya, opts, start).context("pooled uplift model")?;
    let converged = m.gradient_norm_per_row <= opts.gradient_tolerance;
    let fits = design.arm_fits(rows, &m, &counts, converged);
    Ok((fits, Warm(vec![m])))
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

    #[test]
    fn pooled_interactions_recover_a_response_that_grows_with_share_and_signal() {
        // Arms none / 500 / 2000; intent 2,000..12,000 cents; logit =
        // -1 + 0.8 x1 - 0.5 x2 + [treated] (0.2 + 4 share x1^+), x1^+ = max(x1, 0).
        let n = 40_000;
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let amounts = [0i64, 500, 2_000];
        let mut x = Array2::zeros((n, 2));
        let (mut arm, mut y, mut intent) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let (a, b): (f64, f64) = (rng.random::<f64>() * 2.0, rng.random::<f64>() * 4.0 - 2.0);
            x[(i, 0)] = a;
            x[(i, 1)] = b;
            let k = rng.random_range(0..3);
            let v = rng.random_range(2_000..12_000i64);
            let share = voucher_share(amounts[k], v);
            let lift = if k > 0 { 0.2 + 4.0 * share * a } else { 0.0 };
            arm.push(k);
            intent.push(v);
            y.push(rng.random::<f64>() < sigmoid(-1.0 + 0.8 * a - 0.5 * b + lift));
        }
        let names: Vec<String> = ["none", "500", "2000"].map(String::from).to_vec();
        let signals = [0usize];
        let rows = ArmRows::new(&x, &arm, &y, &names).with_voucher(Voucher {
            amounts: &amounts,
            intent_cents: &intent,
            signals: &signals,
        });
        let train: Vec<usize> = (0..n).collect();
        let opts = UpliftOptions {
            learner: Learner::Pooled,
            interactions: Interactions::ShareSignals,
            alpha: 0.01,
            ..UpliftOptions::default()
        };
        let fits = fit_with_learner(&rows, &train, &opts).unwrap();
        assert!(fits.iter().all(|f| f.converged));
        assert!(fits[0].share.is_none() && fits[0].share_signals.is_empty());
        let e = fits[2].share_signals[0].1;
        assert!((e - 4.0).abs() < 1.0, "share x signal {e}");
        // The lift of a sensitive visitor grows with the voucher's share.
        let mut probe = x.clone();
        probe[(0, 0)] = 1.5;
        let p = ArmRows { x: &probe, ..rows };
        let lift = |a: usize| fits[a].logit(&p, 0, a) - fits[0].logit(&p, 0, 0);
        assert!(lift(2) > lift(1) + 0.3, "{} vs {}", lift(2), lift(1));
        // Pooled without interactions and two-model take no voucher terms.
        let none = UpliftOptions {
            interactions: Interactions::None,
            ..opts.clone()
        };
        let fits = fit_with_learner(&rows, &train, &none).unwrap();
        assert!(fits.iter().all(|f| f.share.is_none()));
        let two = UpliftOptions {
            learner: Learner::TwoModel,
            ..opts
        };
        assert!(fit_with_learner(&rows, &train, &two).is_err());
    }
}
