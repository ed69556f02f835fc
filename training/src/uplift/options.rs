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
    /// Pooled learner: which interactions with the voucher it adds (see
    /// [`Interactions`]); the two-model learner takes none.
    pub interactions: Interactions,
    /// Logs: the learner settings tried, each judged by the doubly robust
    /// value of its policy on the validation rows (empty: only `learner`
    /// with `interactions`).
    pub settings: Vec<Setting>,
    /// Written as the model file's `uplift.lower_bound_z`: the served lift
    /// is the estimate minus this many standard errors.
    pub lower_bound_z: f64,
}

/// The pooled learner's interactions with the voucher, all shared across
/// the tiers (a tier enters through its indicator and through its share of
/// the intent value). `share` is the voucher's share of the intent value
/// ([`nudge::domain::model::voucher_share`], 0 for the control) and `s_k`
/// the standardised price-sensitivity signals ([`PRICE_SIGNALS`]); the lift
/// of tier `v` is:
///
/// - `none`: `beta_v` (a constant per tier);
/// - `share`: `beta_v + g share_v`;
/// - `signals`: `beta_v + g share_v + sum_k d_k s_k` (who responds);
/// - `share-signals`: `beta_v + g share_v + sum_k e_k share_v s_k` (who
///   responds, in proportion to the voucher's weight);
/// - `all`: both.
///
/// Shared rather than per tier because a day of exploration gives a few
/// hundred rows per tier: per-tier interactions would triple the
/// coefficients that the per-visitor argmax over tiers then selects noise
/// from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interactions {
    None,
    Share,
    Signals,
    ShareSignals,
    All,
}

impl Interactions {
    /// Adds `g share`.
    pub fn share(self) -> bool {
        self != Interactions::None
    }

    /// Adds `d_k s_k` on treated rows.
    pub fn signals(self) -> bool {
        matches!(self, Interactions::Signals | Interactions::All)
    }

    /// Adds `e_k share s_k`.
    pub fn share_signals(self) -> bool {
        matches!(self, Interactions::ShareSignals | Interactions::All)
    }

    pub fn name(self) -> &'static str {
        match self {
            Interactions::None => "none",
            Interactions::Share => "share",
            Interactions::Signals => "signals",
            Interactions::ShareSignals => "share-signals",
            Interactions::All => "all",
        }
    }
}

/// Session features read as price-sensitivity signals by the pooled
/// learner's interactions (those the feature table lacks are skipped).
pub const PRICE_SIGNALS: &[&str] = &[
    "coupon_field_focus",
    "price_sort",
    "cart_removes",
    "exit_intent",
    "product_views",
    "shipping_info",
    "reviews_opened",
    "tab_hidden",
    "returning_visitor",
];

/// One learner setting of the selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub learner: Learner,
    pub interactions: Interactions,
}

impl Setting {
    /// `two-model`, `pooled`, `pooled+share`, ...
    pub fn name(&self) -> String {
        match (self.learner, self.interactions) {
            (Learner::TwoModel, _) => "two-model".into(),
            (Learner::Pooled, Interactions::None) => "pooled".into(),
            (Learner::Pooled, i) => format!("pooled+{}", i.name()),
        }
    }

    /// The logs' grid: the pooled learner with each of `interactions`,
    /// then the two-model learner (simpler first: ties go to them);
    /// `learner` keeps one of the two.
    pub fn grid(learner: Option<Learner>, interactions: &[Interactions]) -> Vec<Setting> {
        let mut v = Vec::new();
        if learner != Some(Learner::TwoModel) {
            v.extend(interactions.iter().map(|&interactions| Setting {
                learner: Learner::Pooled,
                interactions,
            }));
        }
        if learner != Some(Learner::Pooled) {
            v.push(Setting {
                learner: Learner::TwoModel,
                interactions: Interactions::None,
            });
        }
        v
    }
}

impl Interactions {
    /// Every set, simplest first.
    pub const ALL: [Interactions; 5] = [
        Interactions::None,
        Interactions::Share,
        Interactions::Signals,
        Interactions::ShareSignals,
        Interactions::All,
    ];
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
///   +0.54 and served worse than its priors (point estimates; the served
///   lower bound now absorbs much of that noise, see
///   [`nudge::domain::model::uplift`]).
/// - **pooled**: one logistic regression on all arms' rows with shared
///   feature coefficients and one indicator per treatment arm:
///   `z_a(x) = b + w . x + beta_a` (`beta_0 = 0`), so without interactions
///   the served log-odds lift of tier `v` is the constant `beta_v` (the
///   shape of the priors, learned), while `p_v - p_0` still varies with
///   the visitor through `p_0`; with [`Interactions`] the treated arms add
///   a few shared terms in the voucher's share of the intent value and the
///   price-sensitivity signals, so the lift varies with who the visitor is
///   and what the voucher weighs, with far fewer free coefficients than
///   the two-model learner. Each lift is estimated from every randomised
///   row, the `w` from all arms together, and the L2 penalty shrinks the
///   contrasts toward no lift. For the service's logs every interaction
///   set and the two-model learner are tried and judged by policy value
///   ([`super::selection`]).
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
            interactions: Interactions::None,
            settings: Vec::new(),
            lower_bound_z: nudge::domain::model::DEFAULT_LOWER_BOUND_Z,
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
    if !(opts.lower_bound_z.is_finite() && opts.lower_bound_z >= 0.0) {
        bail!("--lower-bound-z must be a number >= 0");
    }
    let two_model_with_interactions =
        |s: &Setting| s.learner == Learner::TwoModel && s.interactions != Interactions::None;
    if two_model_with_interactions(&Setting {
        learner: opts.learner,
        interactions: opts.interactions,
    }) || opts.settings.iter().any(two_model_with_interactions)
    {
        bail!("the two-model learner takes no interactions (every coefficient is free per arm)");
    }
    Ok(())
}
