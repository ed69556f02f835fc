//! Learning the voucher response (uplift) from randomised decisions:
//! `nudge-train uplift`.
//!
//! # Learners
//! Two (see [`Learner`]); for the service's logs every setting of a grid
//! is fitted and the one whose served rule earns the most on validation
//! rows is kept ([`selection`]); a CSV experiment takes one (two-model by
//! default).
//!
//! **Pooled**: one logistic regression on all randomised rows with shared
//! feature coefficients, one indicator per treatment arm and, optionally,
//! interactions of the treatment with the voucher's share of the intent
//! value and with price-sensitivity signals ([`Interactions`], built by
//! [`design`]): the served lift of tier `v` is `beta_v` plus those
//! interaction terms, so it varies with the visitor and the basket.
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
//! only add variance (and the fits take no sample weights).
//! The **greedy** (non-randomised) rows are not used: the greedy tier is a
//! function of the model's score, so its rows are confounded.
//! The learned lifts describe eligible visitors, which is also the only
//! population the service applies them to.
//!
//! # Held-out evaluation
//! A seeded split stratified by (arm, label) (`--holdout`, default 30 %,
//! `--seed`). The arms are fitted on the training rows (the written model
//! is that fit: the metrics describe the shipped coefficients). On the
//! held-out (validation) rows: the doubly robust and IPS value of the rule
//! serving each setting's file ([`value`]), at its conservative bound and
//! at the point estimate, next to a no-voucher policy and the base model;
//! and per treatment arm `v`:
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
//!
//! # Files
//! - [`options`]: the settings, the learners and their interactions;
//! - [`arms`]: the generic core, arms on one design matrix: the stratified
//!   split and the two learners;
//! - [`design`]: the pooled learner's columns and the way back to arms;
//! - [`covariance`]: each arm's coefficient covariance (inverse Fisher
//!   information of the penalised fit);
//! - [`alpha`]: the penalty chosen by CV on the training rows;
//! - [`evaluation`]: the held-out comparison of every arm with the control;
//! - [`qini`]: the Qini and uplift curves (scikit-uplift's definitions);
//! - [`randomised`]: the service's logs into one randomised row per session;
//! - [`value`]: a model's policy value on randomised rows (DR, IPS);
//! - [`selection`]: the logs' grid of settings fitted, judged by policy
//!   value, the best one as the model file's `uplift` section;
//! - [`experiment`]: CSV experiments read through an uplift spec.

pub mod alpha;
pub mod arms;
pub mod covariance;
pub mod design;
pub mod evaluation;
pub mod experiment;
pub mod options;
pub mod qini;
pub mod randomised;
pub mod selection;
pub mod value;

pub use alpha::{choose_alpha, AlphaCv};
pub use arms::{fit_arms, fit_pooled, fit_with_learner, split, ArmFit, ArmRows, Voucher};
pub use evaluation::{evaluate, logits, ArmEvaluation, Evaluation};
pub use experiment::{
    fit_csv, read_experiment, CsvExperiment, CsvUplift, ExperimentSpec, UpliftSpec,
    UPLIFT_SPEC_FORMAT,
};
pub use options::{Interactions, Learner, Setting, UpliftOptions, PRICE_SIGNALS};
pub use randomised::{
    randomised_rows, randomised_rows_from_logs, shortfall, RandomisedRow, Randomiser, Selection,
};
pub use selection::{fit_logs, Judge, LogsUplift, References, SettingResult};
pub use value::{paired_difference, policy_value, rule_actions, PolicyValue};
