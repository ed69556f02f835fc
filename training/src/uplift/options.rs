//! The settings of an uplift fit and the choice of learner, kept apart so
//! every step (split, CV, arms, evaluation) reads one set of options.

use anyhow::{bail, Result};
use serde::Serialize;

/// Fit and evaluation settings.
#[derive(Clone, Debug)]
pub struct UpliftOptions {
    /// L2 penalty (alpha / 2 |w|^2 on the summed log-loss; 1 / C of
    /// scikit-learn).
    pub alpha: f64,
    /// Share of rows held out for evaluation, in (0, 1).
    pub holdout: f64,
    pub seed: u64,
    /// An arm needs at least this many training rows.
    pub min_arm_rows: usize,
    pub max_iterations: u64,
    pub gradient_tolerance: f64,
    /// Logs: upper clip of Log/Linear session features at this quantile.
    pub clip_quantile: f64,
    /// Which learner (see [`Learner`]).
    pub learner: Learner,
    /// When set, `alpha` is chosen from this grid by k-fold CV on the
    /// training rows ([`choose_alpha`](super::choose_alpha)); otherwise `alpha` is used as is.
    pub alphas: Option<Vec<f64>>,
    /// Folds of that CV.
    pub cv_folds: usize,
}

/// The uplift learner.
///
/// - **two-model** (T-learner): one logistic regression per arm, every
///   coefficient free. The per-visitor lift `z_v(x) - z_0(x)` can differ in
///   every feature, which is what ranks visitors (Qini) on an experiment
///   with tens of thousands of rows per arm (Hillstrom: 21,000); with a few
///   hundred rows per arm its feature contrasts are mostly noise, and a
///   policy that takes the best tier per visitor picks that noise (the
///   winner's curse): on a simulated day of exploration (about 300 rows per
///   tier) it learned a *negative* 10 EUR lift next to a 20 EUR lift of
///   +0.54 and served worse than its priors.
/// - **pooled**: one logistic regression on all arms' rows with shared
///   feature coefficients and one indicator per treatment arm:
///   `z_a(x) = b + w . x + beta_a` (`beta_0 = 0`), so the served log-odds
///   lift of tier `v` is the constant `beta_v` (the shape of the priors,
///   learned), while `p_v - p_0` still varies with the visitor through
///   `p_0`. Each lift is estimated from every randomised row, the `w` from
///   all arms together, and the L2 penalty shrinks the `beta` toward no
///   lift. The default for the service's logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Learner {
    TwoModel,
    Pooled,
}

impl Learner {
    /// What the model file's lineage and reports say about it.
    pub fn method(self) -> &'static str {
        match self {
            Learner::TwoModel => "two-model (T-learner) logistic regression, one model per arm on shared transforms learned on the pooled randomised training rows",
            Learner::Pooled => "pooled logistic regression on all arms' randomised training rows: shared feature coefficients plus one log-odds lift per treatment arm",
        }
    }
}

impl Default for UpliftOptions {
    fn default() -> Self {
        UpliftOptions {
            learner: Learner::TwoModel,
            alpha: 1.0,
            holdout: 0.3,
            seed: 42,
            min_arm_rows: 100,
            max_iterations: 1_000,
            gradient_tolerance: 1e-6,
            clip_quantile: 0.999,
            alphas: None,
            cv_folds: 5,
        }
    }
}

pub(crate) fn check_opts(opts: &UpliftOptions) -> Result<()> {
    if !(opts.holdout > 0.0 && opts.holdout < 1.0) {
        bail!("--holdout must be in (0, 1): the metrics need held-out rows");
    }
    if !(opts.alpha.is_finite() && opts.alpha > 0.0) {
        bail!("--alpha must be a positive number");
    }
    Ok(())
}
