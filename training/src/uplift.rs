//! Learning the voucher response (uplift) from randomised decisions:
//! `nudge-train uplift`.
//!
//! # Learners
//! Two, chosen with `--learner` (see [`Learner`] for why the service's logs
//! default to the pooled one and a CSV experiment to the two-model one).
//!
//! **Pooled**: one logistic regression on all randomised rows with shared
//! feature coefficients and one indicator per treatment arm; the served
//! lift of a tier is its indicator's coefficient, the same for every
//! visitor in log-odds.
//!
//! **Two-model (T-learner)**: one L2-regularised logistic regression per arm (arm 0 = control / no
//! voucher, one arm per voucher tier or e-mail treatment), all on the same
//! design matrix: the transforms (clip, log1p, standardisation, one-hot
//! levels) are learned once on the **pooled** training rows of all arms, so
//! every arm reads the same transformed features and `z_v(x) - z_0(x)` is a
//! clean contrast. That is exactly what the model file serves
//! ([`nudge::domain::model::UpliftFile`]): the log-odds lift of tier `v` for a
//! visitor is `z_v(x) - z_0(x)`, added to the intent model's logit. The
//! predicted uplift used for metrics is the probability difference
//! `p_v(x) - p_0(x)` with `p_a = sigmoid(z_a)`.
//!
//! # Which log rows (logs input)
//! Only **randomised** decisions, one row per session:
//! - a session's row is its first decision with `holdout` or `explored`
//!   set (holdout and exploration are hashes of the visitor / session, so
//!   every eligible decision of a session carries the same assignment; the
//!   first one is when the visitor first saw (or did not see) the voucher);
//!   its features are replayed from the logged events through the one
//!   feature path ([`crate::logs`]);
//! - arm: holdout -> 0; explored with reason `exploration_no_voucher` -> 0;
//!   explored with reason `offered` -> `action_cents`; explored decisions
//!   whose drawn voucher was not delivered (budget exhausted or the ledger
//!   unavailable) are dropped and counted: their assignment is unknown from
//!   the log, and they are few when the budget is not binding;
//! - label: the session converted (its `outcome` record).
//!
//! **Why no inverse-propensity weights.** Holdout and exploration are uniform
//! random subsets of the *eligible* decisions, independent of the features
//! given eligibility; within the explored set the action is uniform over
//! {none, tiers}. So, conditional on being eligible, the arm is independent
//! of `x` and of the potential outcomes: the arms are exchangeable samples of
//! the same population, and an unweighted per-arm fit is unbiased for
//! `P(y | x, arm)`. The propensity of the *logging* policy (which mixes the
//! greedy choice) is irrelevant for these rows; weighting them by it would
//! only add variance (and linfa-logistic has no sample weights anyway).
//! The **greedy** (non-randomised) rows are not used: the greedy tier is a
//! function of the model's score, so its rows are confounded.
//! The learned lifts describe eligible visitors, which is also the only
//! population the service applies them to.
//!
//! # Held-out evaluation
//! A seeded split stratified by (arm, label) (`--holdout`, default 30 %,
//! `--seed`). The arms are fitted on the training rows (the written model
//! is that fit: the metrics describe the shipped coefficients). Per
//! treatment arm `v` on the held-out rows:
//! - `mean_predicted_uplift`: mean of `p_v(x) - p_0(x)` over **all**
//!   held-out rows (every arm's: they are one population);
//! - `observed_uplift`: difference of the held-out outcome means of arm `v`
//!   and the control, with its Welch standard error
//!   `sqrt(s_v^2 / n_v + s_0^2 / n_0)` (sample variances) and the normal 95 %
//!   interval `diff +- 1.96 se` (Welch degrees of freedom are in the
//!   thousands here; the interval with `t` quantiles differs in the third
//!   digit of the width at most);
//! - Qini coefficient, uplift AUC and the curves at deciles on the held-out
//!   rows of arm `v` and the control, ranked by `p_v - p_0`
//!   ([`qini`]: scikit-uplift's definitions and normalisation).

#[path = "qini.rs"]
pub mod qini;

use crate::cv;
use crate::data;
use crate::fit::{self, apply, fit_logistic, learn_transforms, Logistic};
use crate::logs::{self, MissingOutcome};
use crate::spec::{self, Spec, Table, Values};
use crate::tabular::Encoder;
use anyhow::{bail, Context as _, Result};
use ndarray::Array2;
use nudge::decision_log::{DecisionRecord, LogRecord};
use nudge::domain::features::{Features, FEATURES};
use nudge::domain::logistic::sigmoid;
use nudge::domain::model::{Input, ModelFile, Term, Transform, UpliftArm, UpliftFile};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

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
    /// training rows ([`choose_alpha`]); otherwise `alpha` is used as is.
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
/// made of. Returns the options with that alpha and the per-alpha scores
/// (empty when no grid is set).
pub fn choose_alpha(
    x: &Array2<f64>,
    arm: &[usize],
    y: &[bool],
    train: &[usize],
    names: &[String],
    opts: &UpliftOptions,
) -> Result<(UpliftOptions, Vec<AlphaCv>)> {
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
    let mut results: Vec<cv::CvResult> = Vec::with_capacity(grid.len());
    for &alpha in grid {
        let fold_opts = UpliftOptions {
            alpha,
            // Folds hold (k-1)/k of each arm: the full-data check applies
            // to the final fit.
            min_arm_rows: 1,
            ..opts.clone()
        };
        let r = cv::cross_validate(y, train, &fold, k, alpha, |tr, valid, _| {
            let started = std::time::Instant::now();
            let fits = fit_with_learner(x, arm, y, tr, names, &fold_opts)?;
            Ok(cv::FoldFit {
                p_valid: valid
                    .iter()
                    .map(|&i| sigmoid(fits[arm[i]].model.logit(x.row(i))))
                    .collect(),
                fit_seconds: started.elapsed().as_secs_f64(),
                converged: fits.iter().all(|f| f.converged),
            })
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

// ---------------------------------------------------------------------------
// The generic core: arms on one design matrix.

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

/// One fitted arm.
#[derive(Clone, Debug)]
pub struct ArmFit {
    pub name: String,
    pub model: Logistic,
    pub train_rows: usize,
    pub train_positives: usize,
    pub converged: bool,
}

/// Fits one logistic model per arm on the training rows `train` of `x`.
/// Fails, naming the arm, when an arm has fewer than `min_arm_rows`
/// training rows or a single class.
pub fn fit_arms(
    x: &Array2<f64>,
    arm: &[usize],
    y: &[bool],
    train: &[usize],
    names: &[String],
    opts: &UpliftOptions,
) -> Result<Vec<ArmFit>> {
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
        let m = fit_logistic(
            &xa,
            &ya,
            opts.alpha,
            opts.max_iterations,
            opts.gradient_tolerance,
        )
        .with_context(|| format!("arm {name:?}"))?;
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
    x: &Array2<f64>,
    arm: &[usize],
    y: &[bool],
    train: &[usize],
    names: &[String],
    opts: &UpliftOptions,
) -> Result<Vec<ArmFit>> {
    match opts.learner {
        Learner::TwoModel => fit_arms(x, arm, y, train, names, opts),
        Learner::Pooled => fit_pooled(x, arm, y, train, names, opts),
    }
}

/// The pooled learner: one logistic regression on the training rows of
/// every arm, design `[x | 1(arm = 1) .. 1(arm = k)]`, returned as one
/// [`ArmFit`] per arm with the shared coefficients and intercept
/// `b + beta_a`. Fails, naming the arm, when an arm has fewer than
/// `min_arm_rows` training rows; an arm may be single-class (its `beta` is
/// then bounded by the penalty).
pub fn fit_pooled(
    x: &Array2<f64>,
    arm: &[usize],
    y: &[bool],
    train: &[usize],
    names: &[String],
    opts: &UpliftOptions,
) -> Result<Vec<ArmFit>> {
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
    let m = fit_logistic(
        &design,
        &ya,
        opts.alpha,
        opts.max_iterations,
        opts.gradient_tolerance,
    )
    .context("pooled uplift model")?;
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

/// Held-out evaluation of one treatment arm against the control.
#[derive(Clone, Debug, Serialize)]
pub struct ArmEvaluation {
    pub arm: String,
    /// Logs: the voucher amount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_cents: Option<i64>,
    pub train_rows: usize,
    pub train_positives: usize,
    pub held_rows: usize,
    pub held_rate: f64,
    pub control_held_rows: usize,
    pub control_held_rate: f64,
    /// Mean of `p_v(x) - p_0(x)` over all held-out rows.
    pub mean_predicted_uplift: f64,
    /// Mean of `z_v(x) - z_0(x)` (the served log-odds lift) over all
    /// held-out rows.
    pub mean_predicted_log_odds_lift: f64,
    /// Held-out mean outcome of the arm minus the control's.
    pub observed_uplift: f64,
    /// Welch standard error of `observed_uplift`.
    pub observed_se: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
    pub mean_predicted_within_ci95: bool,
    /// scikit-uplift's `qini_auc_score` on this arm's and the control's
    /// held-out rows.
    pub qini_coefficient: f64,
    /// scikit-uplift's `uplift_auc_score`, same rows.
    pub uplift_auc: f64,
    pub curve: Vec<qini::CurvePoint>,
    pub converged: bool,
    pub gradient_norm_per_row: f64,
}

/// Everything evaluated on the held-out rows.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub control: String,
    pub control_train_rows: usize,
    pub control_train_positives: usize,
    pub control_converged: bool,
    pub arms: Vec<ArmEvaluation>,
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
    } else {
        f64::NAN
    };
    (m, var)
}

/// Per-arm logits `z_a(x)` of every row in `rows`.
pub fn logits(x: &Array2<f64>, fits: &[ArmFit], rows: &[usize]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|&i| fits.iter().map(|f| f.model.logit(x.row(i))).collect())
        .collect()
}

/// Evaluates the treatment arms (1..) against arm 0 on `held` rows.
pub fn evaluate(
    x: &Array2<f64>,
    arm: &[usize],
    y: &[bool],
    held: &[usize],
    fits: &[ArmFit],
    amounts: Option<&[i64]>,
) -> Evaluation {
    let z = logits(x, fits, held);
    let yf = |i: usize| f64::from(u8::from(y[i]));
    let control_y: Vec<f64> = held
        .iter()
        .filter(|&&i| arm[i] == 0)
        .map(|&i| yf(i))
        .collect();
    let (m0, v0) = mean_var(&control_y);
    let mut arms = Vec::new();
    for (a, f) in fits.iter().enumerate().skip(1) {
        let n = held.len().max(1) as f64;
        let mean_pred = z
            .iter()
            .map(|zi| sigmoid(zi[a]) - sigmoid(zi[0]))
            .sum::<f64>()
            / n;
        let mean_lift = z.iter().map(|zi| zi[a] - zi[0]).sum::<f64>() / n;
        let arm_y: Vec<f64> = held
            .iter()
            .filter(|&&i| arm[i] == a)
            .map(|&i| yf(i))
            .collect();
        let (ma, va) = mean_var(&arm_y);
        let diff = ma - m0;
        let se = (va / arm_y.len() as f64 + v0 / control_y.len() as f64).sqrt();
        let (lo, hi) = (diff - 1.96 * se, diff + 1.96 * se);
        // Qini on this arm's and the control's rows.
        let mut ys = Vec::new();
        let mut score = Vec::new();
        let mut treated = Vec::new();
        for (k, &i) in held.iter().enumerate() {
            if arm[i] == a || arm[i] == 0 {
                ys.push(y[i]);
                score.push(sigmoid(z[k][a]) - sigmoid(z[k][0]));
                treated.push(arm[i] == a);
            }
        }
        arms.push(ArmEvaluation {
            arm: f.name.clone(),
            amount_cents: amounts.map(|v| v[a]),
            train_rows: f.train_rows,
            train_positives: f.train_positives,
            held_rows: arm_y.len(),
            held_rate: ma,
            control_held_rows: control_y.len(),
            control_held_rate: m0,
            mean_predicted_uplift: mean_pred,
            mean_predicted_log_odds_lift: mean_lift,
            observed_uplift: diff,
            observed_se: se,
            ci95_low: lo,
            ci95_high: hi,
            mean_predicted_within_ci95: lo <= mean_pred && mean_pred <= hi,
            qini_coefficient: qini::qini_coefficient(&ys, &score, &treated),
            uplift_auc: qini::uplift_auc(&ys, &score, &treated),
            curve: qini::curve_points(&ys, &score, &treated, &qini::deciles()),
            converged: f.converged,
            gradient_norm_per_row: f.model.gradient_norm_per_row,
        });
    }
    Evaluation {
        control: fits[0].name.clone(),
        control_train_rows: fits[0].train_rows,
        control_train_positives: fits[0].train_positives,
        control_converged: fits[0].converged,
        arms,
    }
}

fn check_opts(opts: &UpliftOptions) -> Result<()> {
    if !(opts.holdout > 0.0 && opts.holdout < 1.0) {
        bail!("--holdout must be in (0, 1): the metrics need held-out rows");
    }
    if !(opts.alpha.is_finite() && opts.alpha > 0.0) {
        bail!("--alpha must be a positive number");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Logs.

/// One randomised session.
#[derive(Clone, Debug)]
pub struct RandomisedRow {
    pub session_id: String,
    pub at_ms: i64,
    pub features: Features,
    /// Arm: the voucher offered (0 = none: holdout or explored "none").
    pub amount_cents: i64,
    pub holdout: bool,
    pub converted: bool,
}

/// What the selection of randomised rows kept and dropped.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Selection {
    /// Sessions with at least one decision (and a label, see the log read).
    pub labelled_sessions: usize,
    /// Sessions with an eligible decision but no randomised one (greedy).
    pub greedy_sessions_excluded: usize,
    pub holdout_sessions: usize,
    pub explored_sessions: usize,
    /// Explored sessions whose drawn voucher was not delivered, by reason.
    pub explored_not_delivered: BTreeMap<String, usize>,
    /// Rows kept per arm (amount in cents).
    pub rows_per_arm: BTreeMap<i64, usize>,
}

/// Replays `records` and keeps one randomised row per session (see the
/// module docs).
pub fn randomised_rows(
    records: &[LogRecord],
    missing: MissingOutcome,
) -> Result<(Vec<RandomisedRow>, logs::LogSummary, Selection)> {
    let (rows, summary) = logs::replay(records, missing);
    // Decisions per session in replay order (stable sort by time).
    let mut decisions: HashMap<&str, Vec<&DecisionRecord>> = HashMap::new();
    for r in records {
        if let LogRecord::Decision(d) = r {
            decisions.entry(d.session_id.as_str()).or_default().push(d);
        }
    }
    for v in decisions.values_mut() {
        v.sort_by_key(|d| d.at_ms);
    }
    let mut next: HashMap<&str, usize> = HashMap::new();
    let mut done: HashMap<String, ()> = HashMap::new();
    let mut eligible_seen: HashMap<String, ()> = HashMap::new();
    let mut sel = Selection::default();
    let mut out = Vec::new();
    for r in &rows {
        let list = decisions
            .get(r.session_id.as_str())
            .context("replayed row without a decision record")?;
        let k = next.entry(list[0].session_id.as_str()).or_insert(0);
        let d = list[*k];
        *k += 1;
        if d.at_ms != r.at_ms {
            bail!(
                "session {}: replayed decision at {} does not match the logged one at {}",
                r.session_id,
                r.at_ms,
                d.at_ms
            );
        }
        if *k == 1 {
            sel.labelled_sessions += 1;
        }
        if d.eligible {
            eligible_seen.insert(r.session_id.clone(), ());
        }
        if done.contains_key(&r.session_id) || !(d.holdout || d.explored) {
            continue;
        }
        done.insert(r.session_id.clone(), ());
        let amount = if d.holdout {
            sel.holdout_sessions += 1;
            0
        } else {
            sel.explored_sessions += 1;
            match d.reason.as_str() {
                "exploration_no_voucher" => 0,
                "offered" if d.action_cents > 0 => d.action_cents,
                other => {
                    *sel.explored_not_delivered
                        .entry(other.to_owned())
                        .or_default() += 1;
                    continue;
                }
            }
        };
        *sel.rows_per_arm.entry(amount).or_default() += 1;
        out.push(RandomisedRow {
            session_id: r.session_id.clone(),
            at_ms: r.at_ms,
            features: r.row.features,
            amount_cents: amount,
            holdout: d.holdout,
            converted: r.row.converted,
        });
    }
    sel.greedy_sessions_excluded = eligible_seen
        .keys()
        .filter(|s| !done.contains_key(*s))
        .count();
    Ok((out, summary, sel))
}

/// Result of a fit on randomised log rows.
#[derive(Clone, Debug)]
pub struct LogsUplift {
    pub uplift: UpliftFile,
    pub evaluation: Evaluation,
    /// Arm amounts, control first.
    pub amounts: Vec<i64>,
    pub dropped_features: Vec<String>,
    /// The penalty of the fit (chosen by CV when a grid was given).
    pub alpha: f64,
    pub alpha_cv: Vec<AlphaCv>,
}

/// Fits the arms on randomised rows and evaluates them (see the module
/// docs). `lineage` is merged into `uplift.training`.
pub fn fit_logs(
    rows: &[RandomisedRow],
    opts: &UpliftOptions,
    lineage: serde_json::Value,
) -> Result<LogsUplift> {
    check_opts(opts)?;
    let mut amounts: Vec<i64> = rows.iter().map(|r| r.amount_cents).collect();
    amounts.sort_unstable();
    amounts.dedup();
    if amounts.first() != Some(&0) {
        bail!(
            "no control rows (holdout or explored without a voucher) in the randomised decisions"
        );
    }
    if amounts.len() < 2 {
        bail!("no treated rows (explored decisions with a voucher) in the randomised decisions");
    }
    let arm: Vec<usize> = rows
        .iter()
        .map(|r| {
            amounts
                .binary_search(&r.amount_cents)
                .expect("amount listed")
        })
        .collect();
    let y: Vec<bool> = rows.iter().map(|r| r.converted).collect();
    let held = split(&arm, &y, opts.holdout, opts.seed);
    let train: Vec<usize> = (0..rows.len()).filter(|&i| !held[i]).collect();
    let held_rows: Vec<usize> = (0..rows.len()).filter(|&i| held[i]).collect();
    // Transforms on the pooled training rows of all arms.
    let mut kept: Vec<(usize, Vec<Transform>)> = Vec::new();
    let mut dropped = Vec::new();
    for (j, def) in FEATURES.iter().enumerate() {
        let raw: Vec<f64> = train.iter().map(|&i| rows[i].features.0[j]).collect();
        match learn_transforms(j, &raw, opts.clip_quantile) {
            Some(ts) => kept.push((j, ts)),
            None => dropped.push(def.name.to_owned()),
        }
    }
    let x = Array2::from_shape_fn((rows.len(), kept.len()), |(i, c)| {
        let (j, ts) = &kept[c];
        apply(ts, rows[i].features.0[*j])
    });
    let names: Vec<String> = amounts
        .iter()
        .map(|a| {
            if *a == 0 {
                "none".to_owned()
            } else {
                format!("{a} cents")
            }
        })
        .collect();
    let (chosen, alpha_cv) = choose_alpha(&x, &arm, &y, &train, &names, opts)?;
    let opts = &chosen;
    let fits = fit_with_learner(&x, &arm, &y, &train, &names, opts)?;
    let evaluation = evaluate(&x, &arm, &y, &held_rows, &fits, Some(&amounts));
    let arms = fits
        .iter()
        .zip(&amounts)
        .map(|(f, &amount_cents)| UpliftArm {
            amount_cents,
            intercept: f.model.intercept,
            terms: kept
                .iter()
                .zip(&f.model.coefs)
                .map(|((j, ts), &coef)| Term {
                    feature: FEATURES[*j].name.to_owned(),
                    category: None,
                    transforms: ts.clone(),
                    coef,
                })
                .collect(),
        })
        .collect();
    let mut training = json!({
        "method": opts.learner.method(),
        "learner": opts.learner,
        "rows": "randomised decisions only (holdout + exploration), one per session (its first randomised decision), unweighted: the arms are uniform random subsets of the eligible decisions",
        "label": "session converted",
        "alpha": opts.alpha,
        "alpha_cv": alpha_cv,
        "cv_folds": if alpha_cv.is_empty() { None } else { Some(opts.cv_folds) },
        "holdout": opts.holdout,
        "seed": opts.seed,
        "clip_quantile": opts.clip_quantile,
        "max_iterations": opts.max_iterations,
        "gradient_tolerance": opts.gradient_tolerance,
        "dropped_features": dropped,
        "rows_per_arm": amounts.iter().enumerate().map(|(a, amt)| {
            json!({
                "amount_cents": amt,
                "rows": arm.iter().filter(|&&v| v == a).count(),
                "train_rows": fits[a].train_rows,
                "train_positives": fits[a].train_positives,
                "converged": fits[a].converged,
            })
        }).collect::<Vec<_>>(),
        "holdout_metrics": evaluation,
    });
    if let (Some(t), serde_json::Value::Object(extra)) = (training.as_object_mut(), lineage) {
        for (k, v) in extra {
            t.insert(k, v);
        }
    }
    Ok(LogsUplift {
        uplift: UpliftFile { arms, training },
        evaluation,
        amounts,
        dropped_features: dropped,
        alpha: opts.alpha,
        alpha_cv,
    })
}

// ---------------------------------------------------------------------------
// CSV experiments.

/// Format tag of an uplift spec.
pub const UPLIFT_SPEC_FORMAT: &str = "nudge-uplift-spec/1";

/// The `[experiment]` table of an uplift spec.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Column holding the assigned arm.
    pub treatment: String,
    /// Its value for the control arm.
    pub control: String,
    /// Its values for the treatment arms (every other value is an error).
    pub treatments: Vec<String>,
    /// Binary outcome columns; the first is the default `--outcome`.
    pub outcomes: Vec<String>,
    #[serde(default = "default_positive")]
    pub positive: Vec<String>,
    #[serde(default = "default_negative")]
    pub negative: Vec<String>,
}

fn default_positive() -> Vec<String> {
    vec!["1".into()]
}

fn default_negative() -> Vec<String> {
    vec!["0".into()]
}

/// An uplift spec: `format = "nudge-uplift-spec/1"`, an `[experiment]`
/// table and `[columns.*]` exactly as in a `nudge-spec/1` feature spec.
#[derive(Clone, Debug)]
pub struct UpliftSpec {
    pub experiment: ExperimentSpec,
    /// The rest of the file (`[columns]`), checked by [`Spec::parse`].
    columns: toml::Table,
}

impl UpliftSpec {
    pub fn parse(text: &str, origin: &str) -> Result<UpliftSpec> {
        let mut t: toml::Table = toml::from_str(text)
            .with_context(|| format!("uplift spec {origin} is not valid TOML"))?;
        let format = t.remove("format");
        if format.as_ref().and_then(|v| v.as_str()) != Some(UPLIFT_SPEC_FORMAT) {
            bail!(
                "uplift spec {origin}: format {format:?}, this build reads {UPLIFT_SPEC_FORMAT:?}"
            );
        }
        let experiment: ExperimentSpec = t
            .remove("experiment")
            .with_context(|| format!("uplift spec {origin}: missing [experiment]"))?
            .try_into()
            .with_context(|| format!("uplift spec {origin}: [experiment]"))?;
        let columns = match t.remove("columns") {
            Some(toml::Value::Table(c)) => c,
            _ => bail!("uplift spec {origin}: missing [columns]"),
        };
        if let Some(k) = t.keys().next() {
            bail!("uplift spec {origin}: unknown key {k:?}");
        }
        let e = &experiment;
        if e.treatments.is_empty() || e.outcomes.is_empty() {
            bail!("uplift spec {origin}: experiment.treatments and experiment.outcomes must not be empty");
        }
        if e.treatments.contains(&e.control) {
            bail!(
                "uplift spec {origin}: {:?} is both control and treatment",
                e.control
            );
        }
        for c in std::iter::once(&e.treatment).chain(&e.outcomes) {
            if columns.contains_key(c) {
                bail!("uplift spec {origin}: column {c:?} is the treatment or an outcome; it must not be listed in [columns]");
            }
        }
        let s = UpliftSpec {
            experiment,
            columns,
        };
        // Validate the columns once through the feature-spec parser.
        s.feature_spec(&s.experiment.outcomes[0], origin)?;
        Ok(s)
    }

    pub fn load(path: &Path) -> Result<(UpliftSpec, Vec<u8>)> {
        let bytes =
            std::fs::read(path).with_context(|| format!("read uplift spec {}", path.display()))?;
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("uplift spec {} is not UTF-8", path.display()))?;
        Ok((UpliftSpec::parse(text, &path.display().to_string())?, bytes))
    }

    /// The `nudge-spec/1` feature spec reading `outcome` as the label, the
    /// treatment column as a categorical and the other outcomes as ignored.
    pub fn feature_spec(&self, outcome: &str, origin: &str) -> Result<Spec> {
        let e = &self.experiment;
        if !e.outcomes.iter().any(|o| o == outcome) {
            bail!(
                "outcome {outcome:?} is not one of the spec's outcomes {:?}",
                e.outcomes
            );
        }
        let mut columns = self.columns.clone();
        let mut kind = |name: &str, k: &str| {
            let mut c = toml::Table::new();
            c.insert("kind".into(), toml::Value::String(k.into()));
            columns.insert(name.into(), toml::Value::Table(c));
        };
        kind(&e.treatment, "categorical");
        for o in e.outcomes.iter().filter(|o| *o != outcome) {
            kind(o, "ignore");
        }
        let mut label = toml::Table::new();
        label.insert("column".into(), outcome.into());
        label.insert("positive".into(), e.positive.clone().into());
        label.insert("negative".into(), e.negative.clone().into());
        let mut t = toml::Table::new();
        t.insert("format".into(), spec::SPEC_FORMAT.into());
        t.insert("label".into(), toml::Value::Table(label));
        t.insert("columns".into(), toml::Value::Table(columns));
        Spec::parse(&t.to_string(), origin)
    }
}

/// A CSV experiment: the feature table (without the treatment column) and
/// the arm of every row (0 = control, `i` = `treatments[i - 1]`).
#[derive(Clone, Debug)]
pub struct CsvExperiment {
    pub table: Table,
    pub arm: Vec<usize>,
    pub names: Vec<String>,
    pub outcome: String,
}

/// Reads CSV bytes through an uplift spec for `outcome`.
pub fn read_experiment(bytes: &[u8], s: &UpliftSpec, outcome: &str) -> Result<CsvExperiment> {
    let fs = s.feature_spec(outcome, "uplift spec")?;
    let mut table = spec::read_csv(bytes, &fs, true)?;
    let e = &s.experiment;
    let pos = table
        .columns
        .iter()
        .position(|c| c.name == e.treatment)
        .context("treatment column missing after reading")?;
    let col = table.columns.remove(pos);
    let Values::Categorical(values) = col.values else {
        bail!("treatment column {:?} is not categorical", e.treatment);
    };
    let names: Vec<String> = std::iter::once(e.control.clone())
        .chain(e.treatments.iter().cloned())
        .collect();
    let arm = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            names.iter().position(|n| n == v).with_context(|| {
                format!(
                    "CSV line {}, column {:?}: {v:?} is neither the control {:?} nor a treatment {:?}",
                    table.lines[i], e.treatment, e.control, e.treatments
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CsvExperiment {
        table,
        arm,
        names,
        outcome: outcome.to_owned(),
    })
}

/// Result of a CSV uplift fit.
#[derive(Clone, Debug)]
pub struct CsvUplift {
    pub evaluation: Evaluation,
    /// Per arm: intercept and terms (client-feature names, as served).
    pub arms: Vec<(String, f64, Vec<Term>)>,
    pub held: Vec<bool>,
    /// Per row, per arm: `p_a(x)`.
    pub p: Vec<Vec<f64>>,
    pub dropped_columns: Vec<String>,
    /// The penalty of the fit (chosen by CV when a grid was given).
    pub alpha: f64,
    pub alpha_cv: Vec<AlphaCv>,
}

/// Fits and evaluates a CSV experiment.
pub fn fit_csv(e: &CsvExperiment, opts: &UpliftOptions) -> Result<CsvUplift> {
    check_opts(opts)?;
    let y = &e.table.y;
    let held = split(&e.arm, y, opts.holdout, opts.seed);
    let train: Vec<usize> = (0..y.len()).filter(|&i| !held[i]).collect();
    let held_rows: Vec<usize> = (0..y.len()).filter(|&i| held[i]).collect();
    let enc = Encoder::learn(&e.table, &train);
    if enc.features.is_empty() {
        bail!("no usable feature: every column is constant or ignored");
    }
    let all: Vec<usize> = (0..y.len()).collect();
    let x = enc.design(&e.table, &all);
    let (chosen, alpha_cv) = choose_alpha(&x, &e.arm, y, &train, &e.names, opts)?;
    let opts = &chosen;
    let fits = fit_with_learner(&x, &e.arm, y, &train, &e.names, opts)?;
    let evaluation = evaluate(&x, &e.arm, y, &held_rows, &fits, None);
    let p = logits(&x, &fits, &all)
        .into_iter()
        .map(|z| z.into_iter().map(sigmoid).collect())
        .collect();
    let arms = fits
        .iter()
        .map(|f| {
            (
                f.name.clone(),
                f.model.intercept,
                enc.terms(&e.table.columns, &f.model.coefs),
            )
        })
        .collect();
    Ok(CsvUplift {
        evaluation,
        arms,
        held,
        p,
        dropped_columns: enc.dropped,
        alpha: opts.alpha,
        alpha_cv,
    })
}

// ---------------------------------------------------------------------------
// The command.

/// `nudge-train uplift` (see the module docs and README "Learning the
/// voucher response").
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("uplift_input").required(true).args(["logs", "spec"])))]
pub struct UpliftArgs {
    /// Service logs (file or directory): fit the tiers' response and write
    /// it into a copy of --model.
    #[arg(long, requires_all = ["model", "out"], conflicts_with_all = ["spec", "data", "outcome"])]
    pub logs: Option<PathBuf>,
    /// Logs: the session model file to extend with the `uplift` section.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Logs: the model file to write (atomically). CSV: an optional JSON
    /// report with every arm's coefficients and the metrics.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Uplift spec (TOML, `nudge-uplift-spec/1`): --data is a CSV experiment.
    #[arg(long, requires = "data")]
    pub spec: Option<PathBuf>,
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// CSV: outcome column (default: the spec's first outcome).
    #[arg(long)]
    pub outcome: Option<String>,
    /// Logs: sessions without an outcome record.
    #[arg(long, value_enum, default_value_t = MissingOutcome::Skip)]
    pub missing_outcome: MissingOutcome,
    /// Learner: two-model (one logistic regression per arm) or pooled
    /// (shared coefficients, one lift per tier). Default: pooled for
    /// --logs (a few hundred randomised rows per tier), two-model for a CSV
    /// experiment.
    #[arg(long, value_enum)]
    pub learner: Option<Learner>,
    /// Fixed L2 penalty (alpha = 1/C of scikit-learn): per arm (two-model),
    /// or of the one pooled model. Without it, alpha is chosen by k-fold CV
    /// over --alphas on the training rows.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Alpha grid searched by CV when --alpha is not given.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1,10,100")]
    pub alphas: Vec<f64>,
    /// Folds of that CV (stratified by arm and outcome, seed --seed).
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    /// Share of rows held out for the metrics (stratified by arm and label).
    #[arg(long, default_value_t = 0.3)]
    pub holdout: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Refuse to fit an arm with fewer training rows.
    #[arg(long, default_value_t = 100)]
    pub min_arm_rows: usize,
    #[arg(long, default_value_t = 1_000)]
    pub max_iterations: u64,
    #[arg(long, default_value_t = 1e-6)]
    pub gradient_tolerance: f64,
    /// Write `row,line,arm,held_out,y,p_<arm>...` for every row (CSV only;
    /// for cross-checks, e.g. with scikit-uplift).
    #[arg(long)]
    pub predictions: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// "1" for a fixed alpha, "10 (5-fold CV: 0.1 0.3412, 1 0.3398, ...)"
/// for a chosen one.
fn alpha_text(alpha: f64, cv: &[AlphaCv]) -> String {
    if cv.is_empty() {
        return format!("{alpha}");
    }
    let scores: Vec<String> = cv
        .iter()
        .map(|c| format!("{} {:.4}", c.alpha, c.mean_log_loss))
        .collect();
    format!("{alpha} (CV log-loss: {})", scores.join(", "))
}

fn learner_name(l: Learner) -> &'static str {
    match l {
        Learner::TwoModel => "two-model",
        Learner::Pooled => "pooled",
    }
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Runs `nudge-train uplift`.
pub fn run(a: &UpliftArgs) -> Result<()> {
    let opts = UpliftOptions {
        alpha: a.alpha.unwrap_or(1.0),
        alphas: a.alpha.is_none().then(|| a.alphas.clone()),
        cv_folds: a.k,
        holdout: a.holdout,
        seed: a.seed,
        min_arm_rows: a.min_arm_rows,
        max_iterations: a.max_iterations,
        gradient_tolerance: a.gradient_tolerance,
        learner: a.learner.unwrap_or(if a.logs.is_some() {
            Learner::Pooled
        } else {
            Learner::TwoModel
        }),
        ..UpliftOptions::default()
    };
    match (&a.logs, &a.spec) {
        (Some(logs), _) => run_logs(a, logs, &opts),
        (None, Some(spec)) => run_csv(a, spec, &opts),
        _ => bail!("pass --logs DIR --model IN --out OUT, or --spec S --data D"),
    }
}

fn warn_not_converged(e: &Evaluation) {
    if !e.control_converged {
        eprintln!("warning: arm {:?} not converged", e.control);
    }
    for arm in e.arms.iter().filter(|a| !a.converged) {
        eprintln!(
            "warning: arm {:?} not converged (|grad|/rows {:.2e})",
            arm.arm, arm.gradient_norm_per_row
        );
    }
}

fn evaluation_text(e: &Evaluation) -> String {
    let mut s = format!(
        "control {:?}: {} training rows ({} positive)\n",
        e.control, e.control_train_rows, e.control_train_positives
    );
    s.push_str("held-out per treatment arm vs control:\n");
    s.push_str("  arm               train   held   rate  ctrl rate  mean pred. uplift  observed diff [95 % CI]        in CI  log-odds lift    Qini  uplift AUC\n");
    for a in &e.arms {
        s.push_str(&format!(
            "  {:<16} {:>6} {:>6} {:>6.4} {:>10.4} {:>18.4}  {:>8.4} [{:>7.4}, {:>7.4}]  {:>7} {:>14.3} {:>7.4} {:>11.4}\n",
            a.arm,
            a.train_rows,
            a.held_rows,
            a.held_rate,
            a.control_held_rate,
            a.mean_predicted_uplift,
            a.observed_uplift,
            a.ci95_low,
            a.ci95_high,
            if a.mean_predicted_within_ci95 { "yes" } else { "NO" },
            a.mean_predicted_log_odds_lift,
            a.qini_coefficient,
            a.uplift_auc
        ));
    }
    s.push_str("Qini curve Q(k) (random line) at deciles of the arm + control held-out rows, ranked by predicted uplift:\n");
    for a in &e.arms {
        s.push_str(&format!("  {:<16}", a.arm));
        for p in a.curve.iter().skip(1) {
            s.push_str(&format!(" {:.0}({:.0})", p.qini, p.qini_random));
        }
        s.push('\n');
    }
    s
}

fn run_csv(a: &UpliftArgs, spec_path: &Path, opts: &UpliftOptions) -> Result<()> {
    if a.model.is_some() {
        bail!("--model applies to --logs only");
    }
    let data_path = a.data.as_ref().expect("clap: --spec requires --data");
    let (s, spec_bytes) = UpliftSpec::load(spec_path)?;
    let outcome = a
        .outcome
        .clone()
        .unwrap_or_else(|| s.experiment.outcomes[0].clone());
    let bytes = std::fs::read(data_path).with_context(|| {
        format!(
            "read {} (the Hillstrom file lives in ../shared/data; see its README)",
            data_path.display()
        )
    })?;
    let e = read_experiment(&bytes, &s, &outcome)
        .with_context(|| format!("{} with spec {}", data_path.display(), spec_path.display()))?;
    let r = fit_csv(&e, opts)?;
    warn_not_converged(&r.evaluation);
    let report = json!({
        "format": "nudge-uplift-report/1",
        "trainer": "nudge-train",
        "crate_version": env!("CARGO_PKG_VERSION"),
        "created_at": fit::created_at(),
        "command": command_line(),
        "method": opts.learner.method(),
        "learner": opts.learner,
        "data": data_path.display().to_string(),
        "data_sha256": data::sha256_hex(&bytes),
        "spec": spec_path.display().to_string(),
        "spec_sha256": data::sha256_hex(&spec_bytes),
        "outcome": outcome,
        "rows": e.table.len(),
        "alpha": r.alpha,
        "alpha_cv": r.alpha_cv,
        "holdout": opts.holdout,
        "seed": opts.seed,
        "dropped_columns": r.dropped_columns,
        "arms": r.arms.iter().map(|(name, intercept, terms)| json!({
            "arm": name, "intercept": intercept, "terms": terms,
        })).collect::<Vec<_>>(),
        "evaluation": r.evaluation,
    });
    if let Some(path) = &a.predictions {
        let mut s = String::from("row,line,arm,held_out,y");
        for n in &e.names {
            s.push_str(&format!(",p_{}", n.replace([' ', ','], "_")));
        }
        s.push('\n');
        for i in 0..e.table.len() {
            s.push_str(&format!(
                "{i},{},{},{},{}",
                e.table.lines[i],
                e.arm[i],
                u8::from(r.held[i]),
                u8::from(e.table.y[i])
            ));
            for p in &r.p[i] {
                s.push_str(&format!(",{p}"));
            }
            s.push('\n');
        }
        fit::write_atomic(path, s.as_bytes())?;
    }
    if let Some(out) = &a.out {
        let mut b = serde_json::to_vec_pretty(&report)?;
        b.push(b'\n');
        fit::write_atomic(out, &b)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "uplift    {} rows of {} (sha256 {}), outcome {:?}, spec {}",
            e.table.len(),
            data_path.display(),
            data::sha256_hex(&bytes),
            outcome,
            spec_path.display()
        );
        println!(
            "fit       {} logistic regression, alpha {}, held-out {:.0} % (seed {}, stratified by arm and outcome)",
            learner_name(opts.learner),
            alpha_text(r.alpha, &r.alpha_cv),
            100.0 * opts.holdout,
            opts.seed
        );
        print!("{}", evaluation_text(&r.evaluation));
    }
    Ok(())
}

fn run_logs(a: &UpliftArgs, logs_path: &Path, opts: &UpliftOptions) -> Result<()> {
    let model_path = a.model.as_ref().expect("clap: --logs requires --model");
    let out = a.out.as_ref().expect("clap: --logs requires --out");
    if a.predictions.is_some() {
        bail!("--predictions applies to --spec only");
    }
    let mut file = ModelFile::load(model_path)?;
    file.compile()
        .with_context(|| format!("model {} does not validate", model_path.display()))?;
    if file.input != Input::Session {
        bail!(
            "model {} has input \"client\"; uplift from logs needs a session model (the arms read session features)",
            model_path.display()
        );
    }
    let (files, bytes, records) = logs::read_records(logs_path)?;
    let (rows, summary, sel) = randomised_rows(&records, a.missing_outcome)?;
    eprintln!(
        "logs      {} files, {} sessions, {} decisions; randomised sessions: {} holdout, {} explored ({} explored not delivered), {} greedy sessions excluded; rows per arm {:?}",
        files.len(),
        summary.sessions,
        summary.decisions,
        sel.holdout_sessions,
        sel.explored_sessions,
        sel.explored_not_delivered.values().sum::<usize>(),
        sel.greedy_sessions_excluded,
        sel.rows_per_arm
    );
    if summary.skewed_decisions > 0 {
        eprintln!(
            "warning: {} decisions replay to features different from the logged ones, e.g. {:?}",
            summary.skewed_decisions,
            summary.skew_examples.first()
        );
    }
    let lineage = json!({
        "trainer": "nudge-train",
        "crate_version": env!("CARGO_PKG_VERSION"),
        "created_at": fit::created_at(),
        "command": command_line(),
        "data_sha256": data::sha256_hex(&bytes),
        "data_source": format!("logs: {}", logs_path.display()),
        "base_model": file.version,
        "selection": sel,
        "log_replay": {
            "sessions": summary.sessions,
            "decisions": summary.decisions,
            "sessions_without_outcome": summary.sessions_without_outcome,
            "missing_outcome": a.missing_outcome,
            "skewed_decisions": summary.skewed_decisions,
        },
    });
    let r = fit_logs(&rows, opts, lineage)?;
    warn_not_converged(&r.evaluation);
    file.uplift = Some(r.uplift.clone());
    file.compile()
        .context("the model with the learned uplift does not validate")?;
    let model_bytes = fit::model_json(&file)?;
    fit::write_atomic(out, &model_bytes)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "out": out.display().to_string(),
                "model": file.version,
                "selection": sel,
                "evaluation": r.evaluation,
            }))?
        );
    } else {
        println!(
            "uplift    {} + learned response of {} tiers -> {}",
            file.version,
            r.amounts.len() - 1,
            out.display()
        );
        println!(
            "fit       {} logistic regression on {} randomised sessions, alpha {}, held-out {:.0} % (seed {})",
            learner_name(opts.learner),
            rows.len(),
            alpha_text(r.alpha, &r.alpha_cv),
            100.0 * opts.holdout,
            opts.seed
        );
        print!("{}", evaluation_text(&r.evaluation));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Rows with `logit = -1 + 0.8 x1 - 0.5 x2 + beta_arm`, arms uniform.
    fn rows(n: usize, beta: &[f64], seed: u64) -> (Array2<f64>, Vec<usize>, Vec<bool>) {
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
        let fits = fit_with_learner(&x, &arm, &y, &train, &names, &opts).unwrap();
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
        let (chosen, cv) = choose_alpha(&x, &arm, &y, &train, &names, &opts).unwrap();
        assert_eq!(cv.len(), 3);
        assert!(chosen.alpha < 100.0, "{cv:?}");
        // Same call, same folds, same answer.
        let (again, _) = choose_alpha(&x, &arm, &y, &train, &names, &opts).unwrap();
        assert_eq!(again.alpha, chosen.alpha);
        // Labels that depend on nothing, few rows: the heaviest penalty.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (x, arm, _) = rows(300, &[0.0, 0.0, 0.0], 4);
        let y: Vec<bool> = (0..300).map(|_| rng.random::<f64>() < 0.3).collect();
        let train: Vec<usize> = (0..y.len()).collect();
        let (chosen, cv) = choose_alpha(&x, &arm, &y, &train, &names, &opts).unwrap();
        assert_eq!(chosen.alpha, 100.0, "{cv:?}");
        // No grid: the fixed alpha, no CV.
        let fixed = UpliftOptions {
            alphas: None,
            ..opts
        };
        let (same, cv) = choose_alpha(&x, &arm, &y, &train, &names, &fixed).unwrap();
        assert_eq!((same.alpha, cv.len()), (1.0, 0));
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
        let e = fit_with_learner(&x, &arm, &y, &train, &names, &opts).unwrap_err();
        assert!(e.to_string().contains("\"500 cents\""), "{e}");
    }
}
