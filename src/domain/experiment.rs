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

use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    /// In [0, 1): share of eligible visitors held out.
    pub holdout_share: f64,
    /// In [0, 1]: share of eligible non-holdout visitors explored.
    pub explore_share: f64,
    pub salt: String,
}

impl Default for Experiment {
    fn default() -> Self {
        Experiment {
            holdout_share: 0.10,
            explore_share: 0.05,
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

    /// When the session is explored, the random action: 0 = no voucher,
    /// `i` = tier `i - 1`, uniform over `0..=tiers`.
    pub fn explore(&self, session_id: &str, tiers: usize) -> Option<usize> {
        if unit(&self.salt, "explore", session_id) >= self.explore_share {
            return None;
        }
        let u = unit(&self.salt, "explore-action", session_id);
        Some(((u * (tiers + 1) as f64) as usize).min(tiers))
    }

    /// Probability that the logging policy takes `action` when the greedy
    /// choice is `greedy` (both 0 = none or `i` = tier `i - 1`): the
    /// epsilon-mixture `(1 - e) [action == greedy] + e / (tiers + 1)`.
    pub fn propensity(&self, action: usize, greedy: usize, tiers: usize) -> f64 {
        let e = self.explore_share;
        let uniform = e / (tiers + 1) as f64;
        if action == greedy {
            1.0 - e + uniform
        } else {
            uniform
        }
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
            .filter_map(|i| x.explore(&format!("s{i}"), 3))
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
        let x = Experiment::default();
        for greedy in 0..=3 {
            let total: f64 = (0..=3).map(|a| x.propensity(a, greedy, 3)).sum();
            assert!((total - 1.0).abs() < 1e-12);
        }
        assert!((x.propensity(2, 2, 3) - (0.95 + 0.0125)).abs() < 1e-12);
    }
}
