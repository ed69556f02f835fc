//! nudge-train: offline training for nudge.
//!
//! # Layout
//!
//! Inputs ([`data`], [`logs`], [`spec`]) become rows; the learners
//! ([`fit`], [`tabular`], [`uplift`]) turn rows into model files with
//! [`cv`] and [`metrics`]; [`eval`], [`report`] and [`replay`] judge models;
//! [`retrain`] chains fit, uplift and the off-policy comparison into the
//! nightly loop; [`output`] writes every file. The binary (`main.rs`,
//! `cli/`) only reads flags, calls these and prints.
//!
//! - `main.rs`: the binary; the clap command tree and the dispatch.
//! - `cli/`: one file per command (`fit`, `cv`, `folds`, `evaluate`,
//!   `predict`, `uplift`, `replay`, `retrain`, `generate`, `bench`), each
//!   with its flags and its `run`; `score` (data through a model file, for
//!   `evaluate` and `predict`) and the shared helpers in `cli/mod.rs`.
//! - [`data`]: generated sessions as JSON lines and decision-moment rows
//!   replayed through the one feature path.
//! - [`logs`]: the service's JSON-lines logs (through
//!   [`nudge::decision_log::reader`]): replay, skew, generated logs;
//!   its `stream` module reads a folder in two passes, one session at a time,
//!   for `fit --logs`, `uplift --logs` and `retrain`.
//! - [`spec`]: the CSV feature spec (TOML) and the strict CSV reader.
//! - [`fit`]: the session (intent) model: options, session-grouped CV and
//!   the pipeline, with [`fit::transforms`] (clip, log1p, standardise),
//!   [`fit::logistic`] (the one L2 logistic regression, Newton's method, and
//!   its convergence check) and [`fit::thresholds`] (segment thresholds).
//! - [`tabular`]: client models from CSV: encoder, CV over an alpha grid,
//!   held-out evaluation, the model file.
//! - [`uplift`]: the learned voucher response (pooled logistic regression
//!   with interactions, or two-model, on randomised decisions):
//!   [`uplift::options`] (settings, learners, interaction sets),
//!   [`uplift::arms`] (split and learners), [`uplift::design`] (the pooled
//!   columns), [`uplift::covariance`] (each arm's coefficient covariance),
//!   [`uplift::alpha`] (penalty by CV), [`uplift::evaluation`] (held out
//!   against the control), [`uplift::qini`] (Qini and uplift curves),
//!   [`uplift::randomised`] (the service's logs into randomised rows),
//!   [`uplift::value`] (a model's policy value on them, doubly robust),
//!   [`uplift::selection`] (the settings grid judged by that value) and
//!   [`uplift::experiment`] (CSV experiments).
//! - [`cv`]: seeded stratified folds and held-out splits, cross-validation.
//! - [`metrics`]: ROC-AUC, PR-AUC, log-loss, Brier, calibration, confusion.
//! - [`eval`]: the evaluation bundle (metrics, calibration, segments).
//! - [`report`]: the self-contained HTML report (SVG plots) and metrics.json.
//! - [`replay`]: off-policy evaluation (IPS, SNIPS, doubly robust) of a
//!   candidate model and policy on the service's logs: [`replay::options`],
//!   [`replay::candidate`], [`replay::population`], [`replay::from_logs`]
//!   (logs into the population), [`replay::direct`] (the DR direct model),
//!   [`replay::estimate`] (the estimators), [`replay::report`] (their
//!   report) and [`replay::render`] (as text).
//! - [`retrain`]: the nightly loop as one library call
//!   ([`retrain::run`]): the candidate fitted from the logs, compared with
//!   the serving model on held-out randomised sessions, the better one
//!   written; [`retrain::report`] is its report (`nudge-retrain/1`).
//! - [`output`]: what every written file shares: the atomic write (the
//!   service's [`nudge::files::atomic_write`]), the model file's JSON, the
//!   lineage date.
//!
//! The shipped default model is reproduced with
//! `cargo run --release -p nudge-train -- fit --generate 40000 --gen-seed 42 --seed 7 --alpha 1 --out models/default.json`
//! (set `SOURCE_DATE_EPOCH` to pin the date in the version and lineage).
pub mod cv;
pub mod data;
pub mod eval;
pub mod fit;
pub mod logs;
pub mod metrics;
pub mod output;
pub mod parallel;
pub mod progress;
pub mod replay;
pub mod report;
pub mod retrain;
pub mod spec;
pub mod tabular;
pub mod uplift;
