//! What a session is worth and the evaluation settings, read once from the
//! config and the flags and shared by every step of the replay.

use crate::logs::MissingOutcome;
use nudge::domain::policy::Policy;
use serde::Serialize;

/// 97.5 % quantile of the standard normal.
pub const Z95: f64 = 1.959_963_984_540_054;

/// What a session is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reward {
    /// Net margin: margin_rate · order value − voucher cost, in cents.
    Net,
    /// Converted (0 / 1).
    Conversion,
}

/// Evaluation settings (from the config and the flags).
#[derive(Clone, Debug)]
pub struct Options {
    pub reward: Reward,
    pub margin_rate: f64,
    pub min_order_cents: i64,
    /// The logging policy's tiers (cents), i.e. the action space.
    pub tiers: Vec<i64>,
    /// Override of the explore share read from the logs.
    pub explore_share: Option<f64>,
    pub missing: MissingOutcome,
    /// Cross-fitting folds of the direct model (>= 2).
    pub folds: usize,
    /// Ridge penalty of the direct model.
    pub alpha: f64,
    /// Days the logs cover (default: span of the decision times).
    pub days: Option<f64>,
    pub z: f64,
}

impl Options {
    pub fn new(policy: &Policy, min_order_cents: i64, reward: Reward) -> Self {
        Options {
            reward,
            margin_rate: policy.margin_rate,
            min_order_cents,
            tiers: policy.tiers.iter().map(|t| t.amount_cents).collect(),
            explore_share: None,
            missing: MissingOutcome::Skip,
            folds: 5,
            alpha: 1.0,
            days: None,
            z: Z95,
        }
    }
}
