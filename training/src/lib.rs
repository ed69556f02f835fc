//! nudge-train: offline training for nudge.
//!
//! - [`data`]: generated sessions as JSON lines and decision-moment rows
//!   replayed through the one feature path;
//! - [`fit`]: transforms, logistic regression (linfa-logistic), convergence
//!   check, segment thresholds, the model file;
//! - [`metrics`]: ROC-AUC, PR-AUC, log-loss, Brier, calibration, confusion;
//! - [`spec`]: the CSV feature spec (TOML) and the strict CSV reader;
//! - [`tabular`]: client models from CSV: encoder, CV over an alpha grid,
//!   held-out evaluation, the model file;
//! - [`cv`]: seeded stratified folds and held-out splits, cross-validation;
//! - [`eval`]: the evaluation bundle (metrics, calibration, segments);
//! - [`logs`]: the service's JSON-lines logs: replay, skew, generated logs;
//! - [`report`]: the self-contained HTML report (SVG plots) and metrics.json;
//! - [`uplift`]: the learned voucher response (pooled or two-model logistic regression
//!   on randomised decisions), Qini and uplift curves, CSV experiments;
//! - [`replay`]: off-policy evaluation (IPS, SNIPS, doubly robust) of a
//!   candidate model and policy on the service's logs.
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
pub mod replay;
pub mod report;
pub mod spec;
pub mod tabular;
pub mod uplift;
