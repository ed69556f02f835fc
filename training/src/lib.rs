//! nudge-train: offline training for nudge.
//!
//! - [`data`]: generated sessions as JSON lines and decision-moment rows
//!   replayed through the one feature path;
//! - [`fit`]: transforms, logistic regression (linfa-logistic), convergence
//!   check, segment thresholds, the model file;
//! - [`metrics`]: ROC-AUC, log-loss, Brier.
//!
//! The shipped default model is reproduced with
//! `cargo run --release -p nudge-train -- fit --generate 40000 --gen-seed 42 --seed 7 --out models/default.json`
//! (set `SOURCE_DATE_EPOCH` to pin the date in the version and lineage).
pub mod data;
pub mod fit;
pub mod metrics;
