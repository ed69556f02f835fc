//! The pooled learner's design: the shared columns of `x`, one indicator per
//! treatment arm and the interactions with the voucher, and the way back
//! from its coefficients to one [`ArmFit`] per arm (the model file's arms).
//!
//! Columns, for row `i` in arm `a` (`t = [a > 0]`, `share` =
//! [`ArmRows::share`]):
//! - `Base(j)`: `x_ij`;
//! - `Tier(a')`: `[a = a']`, `a' >= 1`;
//! - `Signal(j)`: `t x_ij` for the signal columns;
//! - `Share`: `share / scale`;
//! - `ShareSignal(j)`: `share x_ij / scale_j`.
//!
//! `x` is already standardised; the share columns are divided by their
//! root mean square over the treated training rows (not centred: the
//! control rows must stay 0), so the L2 penalty weighs every column alike
//! and the solver sees one scale. The scales are folded back into the
//! coefficients (and the covariance) of the arms, whose terms read the raw
//! share.

use super::arms::{ArmFit, ArmRows};
use super::options::Interactions;
use crate::fit::Logistic;
use anyhow::{bail, Result};
use ndarray::Array2;

/// One column of the pooled design.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    Base(usize),
    Tier(usize),
    Signal(usize),
    Share,
    ShareSignal(usize),
}

/// The columns and their scales.
#[derive(Clone, Debug)]
pub struct PooledDesign {
    pub cols: Vec<Col>,
    pub scale: Vec<f64>,
}

impl PooledDesign {
    /// The design for `interactions`, scales from the treated rows of
    /// `train`.
    pub fn new(rows: &ArmRows, train: &[usize], interactions: Interactions) -> Result<Self> {
        let p = rows.x.ncols();
        let mut cols: Vec<Col> = (0..p).map(Col::Base).collect();
        cols.extend((1..rows.names.len()).map(Col::Tier));
        if interactions != Interactions::None {
            let Some(v) = rows.voucher else {
                bail!("interactions with the voucher need its amounts and the intent values (service logs)");
            };
            if interactions.signals() {
                cols.extend(v.signals.iter().map(|&j| Col::Signal(j)));
            }
            cols.push(Col::Share);
            if interactions.share_signals() {
                cols.extend(v.signals.iter().map(|&j| Col::ShareSignal(j)));
            }
        }
        let mut d = PooledDesign {
            scale: vec![1.0; cols.len()],
            cols,
        };
        for c in 0..d.cols.len() {
            if matches!(d.cols[c], Col::Share | Col::ShareSignal(_)) {
                let treated: Vec<f64> = train
                    .iter()
                    .filter(|&&i| rows.arm[i] > 0)
                    .map(|&i| d.raw(rows, i, c))
                    .collect();
                let ms = treated.iter().map(|v| v * v).sum::<f64>() / treated.len().max(1) as f64;
                if ms > 0.0 {
                    d.scale[c] = ms.sqrt();
                }
            }
        }
        Ok(d)
    }

    /// Column `c` of row `i` (at its own arm) before scaling.
    fn raw(&self, rows: &ArmRows, i: usize, c: usize) -> f64 {
        let a = rows.arm[i];
        let t = f64::from(u8::from(a > 0));
        match self.cols[c] {
            Col::Base(j) => rows.x[(i, j)],
            Col::Tier(k) => f64::from(u8::from(a == k)),
            Col::Signal(j) => t * rows.x[(i, j)],
            Col::Share => rows.share(i, a),
            Col::ShareSignal(j) => rows.share(i, a) * rows.x[(i, j)],
        }
    }

    /// The design matrix of rows `idx`.
    pub fn matrix(&self, rows: &ArmRows, idx: &[usize]) -> Array2<f64> {
        Array2::from_shape_fn((idx.len(), self.cols.len()), |(r, c)| {
            self.raw(rows, idx[r], c) / self.scale[c]
        })
    }

    fn col(&self, want: Col) -> Option<usize> {
        self.cols.iter().position(|c| *c == want)
    }

    /// Position of design column `c` in a treated arm's coefficient vector
    /// `[intercept, x..., share, share_signals...]` with its scale, for the
    /// columns that make the arm's contrast with the control (`None` for
    /// the shared `Base` columns).
    pub fn contrast_position(&self, c: usize, arm: usize) -> Option<usize> {
        let p = self
            .cols
            .iter()
            .filter(|c| matches!(c, Col::Base(_)))
            .count();
        let has_share = self.col(Col::Share).is_some();
        match self.cols[c] {
            Col::Base(_) => None,
            Col::Tier(k) => (k == arm).then_some(0),
            Col::Signal(j) => Some(1 + j),
            Col::Share => Some(1 + p),
            Col::ShareSignal(j) => {
                let k = self
                    .cols
                    .iter()
                    .filter(|c| matches!(c, Col::ShareSignal(_)))
                    .position(|c| *c == Col::ShareSignal(j))
                    .expect("listed");
                Some(1 + p + usize::from(has_share) + k)
            }
        }
    }

    /// The arms of a fit of this design (`m` over its columns).
    pub fn arm_fits(
        &self,
        rows: &ArmRows,
        m: &Logistic,
        counts: &[(usize, usize)],
        converged: bool,
    ) -> Vec<ArmFit> {
        let p = rows.x.ncols();
        let coef = |c: usize| m.coefs[c] / self.scale[c];
        rows.names
            .iter()
            .enumerate()
            .map(|(a, name)| {
                let mut coefs = m.coefs[..p].to_vec();
                let mut intercept = m.intercept;
                let (mut share, mut share_signals) = (None, Vec::new());
                if a > 0 {
                    for (c, col) in self.cols.iter().enumerate() {
                        match *col {
                            Col::Base(_) => {}
                            Col::Tier(k) if k == a => intercept += m.coefs[c],
                            Col::Tier(_) => {}
                            Col::Signal(j) => coefs[j] += m.coefs[c],
                            Col::Share => share = Some(coef(c)),
                            Col::ShareSignal(j) => share_signals.push((j, coef(c))),
                        }
                    }
                }
                ArmFit {
                    name: name.clone(),
                    model: Logistic {
                        coefs,
                        intercept,
                        gradient_norm_per_row: m.gradient_norm_per_row,
                    },
                    share,
                    share_signals,
                    covariance: None,
                    train_rows: counts[a].0,
                    train_positives: counts[a].1,
                    converged,
                }
            })
            .collect()
    }
}
