//! Holdout and exploration: deterministic, salted assignments.
//!
//! - **Holdout**: a fixed share of eligible visitors never gets a voucher,
//!   so the ROI report can compare like with like. Keyed by visitor id when
//!   given (a visitor stays in or out across sessions), else session id.
//! - **Exploration**: among eligible visitors outside the holdout, a share
//!   gets a uniformly random action among {no voucher, each tier}, so the
//!   voucher response can be learned and policies evaluated off-line.
//!
//! Both are hashes of (salt, purpose, key), not coin flips: the same visitor
//! or session always gets the same answer, across replicas and restarts, and
//! a session that asks Decide ten times is not explored ten times.
//!
//! # Cold start
//!
//! While the model file carries no learned voucher response (no uplift arm
//! for any configured tier), the greedy rule offers nothing (see
//! `Policy::offer_on_priors`) and exploration is the only way to learn:
//! [`Experiment::share`] then answers `cold_explore_share` (default 0.30)
//! instead of `explore_share` (default 0.05). The share switches once the
//! model file carries a learned response; no shrinking rule in between.
//! Every propensity is computed with the share that was actually used, so
//! the decision log stays the truth for off-policy evaluation and uplift
//! fitting.
//!
//! # Propensities when the budget refuses
//!
//! Exploration vouchers are paid from a learning budget. When the drawn
//! voucher does not fit (the learning budget, or the main budget it is part
//! of, is spent), the decision ends with no voucher, and the log says what
//! was done: action none, with the probability that the logging policy ends
//! with no voucher *given the budget at that moment*
//! ([`Experiment::propensity_of_none_refused`]): the greedy share when the
//! greedy path would also give nothing, plus the uniform share of "none"
//! and of every tier the budget refuses. Conditioning on the budget state
//! (a function of earlier decisions only) keeps inverse-propensity
//! estimates unbiased, as for any history-dependent logging policy.

use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    /// In [0, 1): share of eligible visitors held out.
    pub holdout_share: f64,
    /// In [0, 1]: share of eligible non-holdout visitors explored once
    /// the model carries a learned voucher response.
    pub explore_share: f64,
    /// In [0, 1]: the share explored while the model has no learned
    /// voucher response at all (cold start).
    pub cold_explore_share: f64,
    pub salt: String,
}

impl Default for Experiment {
    fn default() -> Self {
        Experiment {
            holdout_share: 0.10,
            explore_share: 0.05,
            cold_explore_share: 0.30,
            salt: "nudge-v1".into(),
        }
    }
}

/// A uniform number in [0, 1) from (salt, purpose, key).
fn unit(salt: &str, purpose: &str, key: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0]);
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // 53 random bits -> [0, 1).
    (u64::from_be_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

impl Experiment {
    /// Whether the visitor (or session, when no visitor id) is held out.
    pub fn in_holdout(&self, visitor_or_session: &str) -> bool {
        unit(&self.salt, "holdout", visitor_or_session) < self.holdout_share
    }

    /// The exploration share in force: `explore_share` once the model
    /// carries a learned voucher response (`learned`), else
    /// `cold_explore_share`.
    pub fn share(&self, learned: bool) -> f64 {
        if learned {
            self.explore_share
        } else {
            self.cold_explore_share
        }
    }

    /// When the session is explored at exploration share `share`, the
    /// random action: 0 = no voucher, `i` = tier `i - 1`, uniform over
    /// `0..=tiers`.
    pub fn explore(&self, session_id: &str, tiers: usize, share: f64) -> Option<usize> {
        if unit(&self.salt, "explore", session_id) >= share {
            return None;
        }
        let u = unit(&self.salt, "explore-action", session_id);
        Some(((u * (tiers + 1) as f64) as usize).min(tiers))
    }

    /// Probability that the logging policy takes `action` when the greedy
    /// choice is `greedy` (both 0 = none or `i` = tier `i - 1`), at
    /// exploration share `e`: the epsilon-mixture
    /// `(1 - e) [action == greedy] + e / (tiers + 1)`.
    pub fn propensity(action: usize, greedy: usize, tiers: usize, e: f64) -> f64 {
        let uniform = e / (tiers + 1) as f64;
        if action == greedy {
            1.0 - e + uniform
        } else {
            uniform
        }
    }

    /// Probability that the logging policy ends with no voucher when the
    /// budget refuses `refused_tiers` of the `tiers` actions to exploration
    /// (module docs): `(1 - e) [greedy path gives none] + e / (tiers + 1) *
    /// (1 + refused_tiers)`. With nothing refused and a greedy "none" this
    /// is `propensity(0, 0, tiers, e)`.
    pub fn propensity_of_none_refused(
        greedy_gives_none: bool,
        refused_tiers: usize,
        tiers: usize,
        e: f64,
    ) -> f64 {
        debug_assert!(refused_tiers <= tiers);
        let uniform = e / (tiers + 1) as f64;
        let greedy = if greedy_gives_none { 1.0 - e } else { 0.0 };
        greedy + uniform * (1 + refused_tiers.min(tiers)) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_respected_and_assignments_are_stable() {
        let x = Experiment::default();
        let n = 20_000;
        let held = (0..n).filter(|i| x.in_holdout(&format!("v{i}"))).count();
        let share = held as f64 / n as f64;
        assert!((share - 0.10).abs() < 0.01, "{share}");
        assert_eq!(x.in_holdout("v42"), x.in_holdout("v42"));
        let explored: Vec<usize> = (0..n)
            .filter_map(|i| x.explore(&format!("s{i}"), 3, x.share(true)))
            .collect();
        let share = explored.len() as f64 / n as f64;
        assert!((share - 0.05).abs() < 0.01, "{share}");
        for a in 0..=3 {
            let k = explored.iter().filter(|v| **v == a).count() as f64 / explored.len() as f64;
            assert!((k - 0.25).abs() < 0.06, "action {a}: {k}");
        }
        // A different salt reshuffles.
        let y = Experiment {
            salt: "other".into(),
            ..Experiment::default()
        };
        let same = (0..1_000)
            .filter(|i| x.in_holdout(&format!("v{i}")) == y.in_holdout(&format!("v{i}")))
            .count();
        assert!(same < 1_000);
    }

    #[test]
    fn propensities_sum_to_one() {
        for e in [0.0, 0.05, 0.30, 1.0] {
            for greedy in 0..=3 {
                let total: f64 = (0..=3)
                    .map(|a| Experiment::propensity(a, greedy, 3, e))
                    .sum();
                assert!((total - 1.0).abs() < 1e-12);
            }
        }
        assert!((Experiment::propensity(2, 2, 3, 0.05) - (0.95 + 0.0125)).abs() < 1e-12);
    }

    #[test]
    fn the_cold_share_applies_until_a_response_is_learned() {
        let x = Experiment::default();
        assert_eq!(x.share(false), 0.30);
        assert_eq!(x.share(true), 0.05);
        let n = 20_000;
        let cold = (0..n)
            .filter(|i| x.explore(&format!("s{i}"), 3, x.share(false)).is_some())
            .count() as f64
            / n as f64;
        assert!((cold - 0.30).abs() < 0.015, "{cold}");
        // A session explored at the small share is explored at the large
        // one too, with the same action.
        for i in 0..2_000 {
            let s = format!("s{i}");
            if let Some(a) = x.explore(&s, 3, 0.05) {
                assert_eq!(x.explore(&s, 3, 0.30), Some(a));
            }
        }
    }

    #[test]
    fn refused_vouchers_move_their_mass_to_none() {
        for e in [0.05, 0.30, 1.0] {
            // Nothing refused, greedy none: the mixture's own "none".
            let p = Experiment::propensity_of_none_refused(true, 0, 3, e);
            assert!((p - Experiment::propensity(0, 0, 3, e)).abs() < 1e-12);
            // Every tier refused and greedy none: none is certain.
            let p = Experiment::propensity_of_none_refused(true, 3, 3, e);
            assert!((p - 1.0).abs() < 1e-12);
            // The greedy path still gives its tier: only exploration's
            // share of none and of the refused tiers.
            let p = Experiment::propensity_of_none_refused(false, 2, 3, e);
            assert!((p - e * 3.0 / 4.0).abs() < 1e-12);
            // Refusing more never makes none less likely.
            for k in 0..3 {
                assert!(
                    Experiment::propensity_of_none_refused(true, k, 3, e)
                        <= Experiment::propensity_of_none_refused(true, k + 1, 3, e)
                );
            }
        }
    }
}
