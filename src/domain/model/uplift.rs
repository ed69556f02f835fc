//! The learned voucher response (`uplift` section of the model file) and
//! the per-visitor lifts the service serves from it.
//!
//! # Format
//! One logistic outcome model per arm, fitted on randomised decisions
//! (holdout and exploration). Arm `amount_cents = 0` is "no voucher" and is
//! required. Each arm has an `intercept`, `terms` (as the intent model's,
//! plus the two below) and an optional `covariance`:
//!
//! - the pseudo-input **`voucher_share`** (a term whose `feature` is
//!   `"voucher_share"`): the arm's voucher as a share of the session's
//!   intent value, `min(1, amount / intent)` ([`voucher_share`]; 1 when the
//!   intent value is 0 or less, 0 for the control arm). The service passes
//!   the intent value it decides with, so the same voucher weighs more on a
//!   small basket;
//! - **`times: "voucher_share"`** on a term multiplies its transformed
//!   value by that share (an interaction of a feature, e.g. a
//!   price-sensitivity signal, with the voucher's weight);
//! - **`covariance`** `{index, matrix}`: the covariance of the arm's
//!   coefficients, for the standard error of the lift. `index` lists
//!   positions in the arm's coefficient vector `[intercept, terms[0],
//!   terms[1], ...]` (0 = intercept, `i + 1` = `terms[i]`), strictly
//!   increasing, at most [`MAX_COVARIANCE_DIM`]; `matrix` is the symmetric
//!   covariance of those coefficients; positions not listed have no
//!   variance. The trainer writes the inverse Fisher information of the
//!   penalised fit on its (standardised) design: per arm for independent
//!   per-arm fits; for the pooled fit, whose shared coefficients cancel in
//!   the lift, the treatment arm carries the covariance of its contrast
//!   with the control (tier indicator and interactions) and the control arm
//!   none;
//! - **`lower_bound_z`** (section level, default
//!   [`DEFAULT_LOWER_BOUND_Z`] = 1): how many standard errors the served
//!   lift stays below the estimate.
//!
//! Files written before these fields existed load unchanged (no share
//! terms, no covariance: the point estimate is served).
//!
//! # Served lift of tier `v`
//! 1. Point estimate: `d_v = z_v(x) - z_0(x)`, each `z` the arm's
//!    `intercept + sum coef * value`.
//! 2. Standard error: `se_v^2 = x_v' S_v x_v + x_0' S_0 x_0` over the listed
//!    positions (`x` = 1 for the intercept, else the term's value; an arm
//!    without covariance adds 0). Exact for independent per-arm fits and for
//!    the pooled contrast.
//! 3. Conservative: `d_v - z se_v`. The rule takes the best of several
//!    tiers per visitor and offers only when its value is positive: with
//!    point estimates it picks whichever tier's estimate happens to be too
//!    high (the optimiser's curse), most of all where the data is thin.
//!    Subtracting `z` standard errors offers only where the response is
//!    positive with some confidence; `z = 1` (a one-sided 84 % bound) keeps
//!    offers where the learned response is clear, while `z = 1.96` would
//!    rarely offer on a few hundred rows per tier. It lives in the model
//!    file, not the config, because it belongs to the covariance it scales
//!    and the trainer judges the policy value of the file as served.
//! 4. Monotone in the amount: over the tiers with an arm, ordered by
//!    amount, each lift is raised to the running maximum of the smaller
//!    tiers' ([`monotone_in_amount`]), the smallest monotone majorant. A
//!    larger voucher never does less than a smaller one. It does not change
//!    the rule's choice: a raised tier has the same lift as a cheaper one,
//!    so its expected net value is lower.
//!
//! Tiers without an arm get NaN and keep the config prior. All of it is
//! allocation-free: a fixed array of at most [`MAX_COVARIANCE_DIM`] values
//! per arm and `O(k^2)` for the quadratic form.

use super::{compile_terms, finite, ClientFeatures, CompiledTerm, Input, Model, ModelError};
use super::{ScoreError, Term};
use crate::domain::features::Features;
use crate::domain::policy::{Tier, MAX_TIERS};
use serde::{Deserialize, Serialize};

/// Name of the pseudo-input "voucher share of the intent value".
pub const VOUCHER_SHARE: &str = "voucher_share";
/// Standard errors below the estimate the served lift stays by default.
pub const DEFAULT_LOWER_BOUND_Z: f64 = 1.0;
/// Most coefficients an arm's covariance may cover.
pub const MAX_COVARIANCE_DIM: usize = 128;

/// The voucher's share of the intent value, `min(1, amount / intent)`:
/// 0 for no voucher, 1 when the intent value is not above the amount.
pub fn voucher_share(amount_cents: i64, intent_cents: i64) -> f64 {
    if amount_cents <= 0 {
        0.0
    } else if intent_cents <= amount_cents {
        1.0
    } else {
        amount_cents as f64 / intent_cents as f64
    }
}

/// Learned voucher response (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpliftFile {
    pub arms: Vec<UpliftArm>,
    /// Standard errors subtracted from the lift (default
    /// [`DEFAULT_LOWER_BOUND_Z`]); irrelevant without covariance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_bound_z: Option<f64>,
    /// How it was learned (method, data, metrics); not interpreted.
    #[serde(default)]
    pub training: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpliftArm {
    /// 0 = no voucher (the control arm).
    pub amount_cents: i64,
    pub intercept: f64,
    #[serde(default)]
    pub terms: Vec<Term>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covariance: Option<Covariance>,
}

/// Covariance of some of an arm's coefficients (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Covariance {
    /// Positions in `[intercept, terms...]`, strictly increasing.
    pub index: Vec<usize>,
    /// Symmetric, `index.len()` rows of `index.len()` numbers.
    pub matrix: Vec<Vec<f64>>,
}

/// The compiled section (empty: no learned response).
#[derive(Clone, Debug, Default)]
pub(super) struct CompiledUplift {
    pub(super) arms: Vec<CompiledArm>,
    z: f64,
}

#[derive(Clone, Debug)]
pub(super) struct CompiledArm {
    amount_cents: i64,
    intercept: f64,
    pub(super) terms: Vec<CompiledTerm>,
    cov: Option<CompiledCov>,
}

#[derive(Clone, Debug)]
struct CompiledCov {
    k: usize,
    intercept_slot: Option<usize>,
    /// Slot of each term (`usize::MAX`: not covered).
    term_slot: Vec<usize>,
    /// Row-major `k x k`, symmetric.
    matrix: Vec<f64>,
}

impl CompiledCov {
    /// `s' M s`, clamped at 0 (rounding).
    fn quadratic(&self, s: &[f64]) -> f64 {
        let k = self.k;
        let mut q = 0.0;
        for i in 0..k {
            let row = &self.matrix[i * k..i * k + k];
            let mut acc = 0.5 * row[i] * s[i];
            for j in 0..i {
                acc += row[j] * s[j];
            }
            q += 2.0 * s[i] * acc;
        }
        q.max(0.0)
    }
}

fn invalid(msg: String) -> ModelError {
    ModelError::Invalid(msg)
}

impl Covariance {
    fn compile(&self, n_terms: usize, what: &str) -> Result<CompiledCov, ModelError> {
        let k = self.index.len();
        if k == 0 || k > MAX_COVARIANCE_DIM {
            return Err(invalid(format!(
                "{what}: index must list 1 to {MAX_COVARIANCE_DIM} positions"
            )));
        }
        if self.index.windows(2).any(|w| w[0] >= w[1]) || self.index[k - 1] > n_terms {
            return Err(invalid(format!(
                "{what}: index must be strictly increasing positions in [intercept, terms] (0..={n_terms})"
            )));
        }
        if self.matrix.len() != k || self.matrix.iter().any(|r| r.len() != k) {
            return Err(invalid(format!("{what}: matrix must be {k} x {k}")));
        }
        let mut matrix = vec![0.0; k * k];
        for i in 0..k {
            for j in 0..k {
                let (a, b) = (self.matrix[i][j], self.matrix[j][i]);
                finite(|| format!("{what}.matrix[{i}][{j}]"), a)?;
                if (a - b).abs() > 1e-9 * a.abs().max(b.abs()).max(1e-12) {
                    return Err(invalid(format!(
                        "{what}: matrix is not symmetric at [{i}][{j}]"
                    )));
                }
                matrix[i * k + j] = 0.5 * (a + b);
            }
            if self.matrix[i][i] < 0.0 {
                return Err(invalid(format!("{what}: negative variance at [{i}][{i}]")));
            }
        }
        let mut term_slot = vec![usize::MAX; n_terms];
        let mut intercept_slot = None;
        for (slot, &pos) in self.index.iter().enumerate() {
            match pos {
                0 => intercept_slot = Some(slot),
                p => term_slot[p - 1] = slot,
            }
        }
        Ok(CompiledCov {
            k,
            intercept_slot,
            term_slot,
            matrix,
        })
    }
}

impl UpliftFile {
    pub(super) fn compile(&self, input: Input) -> Result<CompiledUplift, ModelError> {
        let z = self.lower_bound_z.unwrap_or(DEFAULT_LOWER_BOUND_Z);
        finite(|| "uplift.lower_bound_z".into(), z)?;
        if z < 0.0 {
            return Err(invalid("uplift.lower_bound_z must be >= 0".into()));
        }
        let mut arms = Vec::with_capacity(self.arms.len());
        for (i, a) in self.arms.iter().enumerate() {
            finite(|| format!("uplift.arms[{i}].intercept"), a.intercept)?;
            if a.amount_cents < 0 {
                return Err(invalid(format!(
                    "uplift.arms[{i}].amount_cents must be >= 0"
                )));
            }
            if self.arms[..i]
                .iter()
                .any(|b| b.amount_cents == a.amount_cents)
            {
                return Err(invalid(format!(
                    "uplift.arms[{i}]: duplicate amount {}",
                    a.amount_cents
                )));
            }
            let terms = compile_terms(input, &a.terms, &format!("uplift.arms[{i}].terms"), true)?;
            let cov = match &a.covariance {
                None => None,
                Some(c) => Some(c.compile(terms.len(), &format!("uplift.arms[{i}].covariance"))?),
            };
            arms.push(CompiledArm {
                amount_cents: a.amount_cents,
                intercept: a.intercept,
                terms,
                cov,
            });
        }
        if !arms.iter().any(|a| a.amount_cents == 0) {
            return Err(invalid(
                "uplift needs a control arm (amount_cents = 0)".into(),
            ));
        }
        Ok(CompiledUplift { arms, z })
    }
}

impl CompiledArm {
    /// The arm's logit and the variance of its covered coefficients'
    /// contribution, `x' S x`, at the voucher share `share`.
    fn eval(
        &self,
        session: &Features,
        client: &ClientFeatures,
        share: f64,
        model: &str,
    ) -> Result<(f64, f64), ScoreError> {
        let mut slots = [0.0f64; MAX_COVARIANCE_DIM];
        let mut z = self.intercept;
        if let Some(s) = self.cov.as_ref().and_then(|c| c.intercept_slot) {
            slots[s] = 1.0;
        }
        for (i, t) in self.terms.iter().enumerate() {
            let v = t.value(session, client, share, model)?;
            let c = t.coef * v;
            if !c.is_finite() {
                return Err(ScoreError::NotFinite { field: t.field() });
            }
            z += c;
            if let Some(cov) = &self.cov {
                if cov.term_slot[i] != usize::MAX {
                    slots[cov.term_slot[i]] = v;
                }
            }
        }
        let var = self
            .cov
            .as_ref()
            .map_or(0.0, |c| c.quadratic(&slots[..c.k]));
        Ok((z, var))
    }
}

/// The response model's estimates for one decision moment (aligned with the
/// tiers; NaN where the model has no arm for the tier).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LiftEstimates {
    /// The control arm's logit `z_0(x)` (NaN without a learned response).
    pub control_logit: f64,
    /// `z_v(x) - z_0(x)`.
    pub point: [f64; MAX_TIERS],
    /// Its standard error (0 without covariance).
    pub se: [f64; MAX_TIERS],
}

impl LiftEstimates {
    /// `point - z * se` per tier.
    pub fn lower_bounds(&self, z: f64) -> [f64; MAX_TIERS] {
        std::array::from_fn(|i| self.point[i] - z * self.se[i])
    }
}

/// Raises each finite lift to the running maximum over the tiers with
/// smaller amounts (see the module docs); NaN entries are left alone.
pub fn monotone_in_amount(lifts: &mut [f64; MAX_TIERS], tiers: &[Tier]) {
    let mut order = [0usize; MAX_TIERS];
    let mut n = 0;
    for i in 0..tiers.len().min(MAX_TIERS) {
        if lifts[i].is_finite() {
            // Insertion by amount.
            let mut k = n;
            while k > 0 && tiers[order[k - 1]].amount_cents > tiers[i].amount_cents {
                order[k] = order[k - 1];
                k -= 1;
            }
            order[k] = i;
            n += 1;
        }
    }
    let mut best = f64::NEG_INFINITY;
    for &i in &order[..n] {
        best = best.max(lifts[i]);
        lifts[i] = best;
    }
}

impl Model {
    /// Whether the model carries a learned voucher response.
    pub fn has_uplift(&self) -> bool {
        !self.uplift.arms.is_empty()
    }

    /// Whether the voucher response of at least one of `tiers` is learned
    /// (the model has an arm for its amount). Without one the service is in
    /// cold start: no greedy offer on priors, the cold exploration share.
    pub fn learns_any(&self, tiers: &[Tier]) -> bool {
        tiers.iter().any(|t| {
            self.uplift
                .arms
                .iter()
                .any(|a| a.amount_cents == t.amount_cents && a.amount_cents != 0)
        })
    }

    /// Standard errors the served lift stays below the estimate.
    pub fn lower_bound_z(&self) -> f64 {
        self.uplift.z
    }

    /// Point estimates and standard errors of each tier's log-odds lift at
    /// intent value `intent_cents` (see the module docs).
    pub fn lift_estimates(
        &self,
        session: &Features,
        client: &ClientFeatures,
        intent_cents: i64,
        tiers: &[Tier],
    ) -> Result<LiftEstimates, ScoreError> {
        let mut e = LiftEstimates {
            control_logit: f64::NAN,
            point: [f64::NAN; MAX_TIERS],
            se: [f64::NAN; MAX_TIERS],
        };
        let arms = &self.uplift.arms;
        let Some(control) = arms.iter().find(|a| a.amount_cents == 0) else {
            return Ok(e);
        };
        let (z0, v0) = control.eval(session, client, 0.0, &self.version)?;
        e.control_logit = z0;
        for (i, t) in tiers.iter().take(MAX_TIERS).enumerate() {
            if let Some(arm) = arms.iter().find(|a| a.amount_cents == t.amount_cents) {
                let share = voucher_share(t.amount_cents, intent_cents);
                let (z, v) = arm.eval(session, client, share, &self.version)?;
                e.point[i] = z - z0;
                e.se[i] = (v + v0).sqrt();
            }
        }
        Ok(e)
    }

    /// The served log-odds lift of each tier (aligned with `tiers`): the
    /// estimate minus the model's `lower_bound_z` standard errors, monotone
    /// in the amount; NaN where the model has no arm for the tier (the
    /// caller keeps its prior). Allocation-free.
    pub fn lifts(
        &self,
        session: &Features,
        client: &ClientFeatures,
        intent_cents: i64,
        tiers: &[Tier],
    ) -> Result<[f64; MAX_TIERS], ScoreError> {
        self.lifts_with_z(session, client, intent_cents, tiers, self.uplift.z)
    }

    /// [`Model::lifts`] with another `z` (the trainer compares bounds).
    pub fn lifts_with_z(
        &self,
        session: &Features,
        client: &ClientFeatures,
        intent_cents: i64,
        tiers: &[Tier],
        z: f64,
    ) -> Result<[f64; MAX_TIERS], ScoreError> {
        let e = self.lift_estimates(session, client, intent_cents, tiers)?;
        let mut out = e.lower_bounds(z);
        monotone_in_amount(&mut out, tiers);
        Ok(out)
    }
}

#[cfg(test)]
#[path = "uplift_tests.rs"]
mod tests;
