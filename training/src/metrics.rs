//! Held-out quality metrics for probabilistic binary predictions.
//!
//! - [`roc_auc`]: rank-based (Mann-Whitney U), tied scores get their average
//!   rank, so a tie between a positive and a negative counts one half;
//! - [`log_loss`]: mean negative log-likelihood, probabilities clamped to
//!   `[1e-15, 1 - 1e-15]`;
//! - [`brier`]: mean squared error of the probability.

/// Probability clamp for the log-loss.
pub const LOG_LOSS_EPS: f64 = 1e-15;

/// Area under the ROC curve. `None` when there are no positives or no
/// negatives (the AUC is undefined).
pub fn roc_auc(p: &[f64], y: &[bool]) -> Option<f64> {
    assert_eq!(p.len(), y.len());
    let n_pos = y.iter().filter(|v| **v).count();
    let n_neg = y.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && p[order[j + 1]] == p[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let pos_in_group = order[i..=j].iter().filter(|&&k| y[k]).count();
        rank_sum += avg_rank * pos_in_group as f64;
        i = j + 1;
    }
    let n_pos = n_pos as f64;
    let u = rank_sum - n_pos * (n_pos + 1.0) / 2.0;
    Some(u / (n_pos * n_neg as f64))
}

/// Mean log-loss (natural log). 0 for empty input.
pub fn log_loss(p: &[f64], y: &[bool]) -> f64 {
    assert_eq!(p.len(), y.len());
    if p.is_empty() {
        return 0.0;
    }
    let sum: f64 = p
        .iter()
        .zip(y)
        .map(|(&p, &y)| {
            let p = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
            if y {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    sum / p.len() as f64
}

/// Mean Brier score. 0 for empty input.
pub fn brier(p: &[f64], y: &[bool]) -> f64 {
    assert_eq!(p.len(), y.len());
    if p.is_empty() {
        return 0.0;
    }
    let sum: f64 = p
        .iter()
        .zip(y)
        .map(|(&p, &y)| {
            let t = if y { 1.0 } else { 0.0 };
            (p - t) * (p - t)
        })
        .sum();
    sum / p.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn auc_perfect_inverted_and_undefined() {
        let y = [false, false, true, true];
        close(roc_auc(&[0.1, 0.2, 0.8, 0.9], &y).unwrap(), 1.0);
        close(roc_auc(&[0.9, 0.8, 0.2, 0.1], &y).unwrap(), 0.0);
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(roc_auc(&[], &[]), None);
    }

    #[test]
    fn auc_by_hand_with_ties() {
        // Pairs (pos, neg): positives 0.8, 0.4; negatives 0.4, 0.2, 0.1.
        // 0.8 beats all 3; 0.4 ties one (1/2) and beats two -> 2.5.
        // AUC = (3 + 2.5) / 6.
        let p = [0.8, 0.4, 0.4, 0.2, 0.1];
        let y = [true, true, false, false, false];
        close(roc_auc(&p, &y).unwrap(), 5.5 / 6.0);
        // All scores equal: every pair is a tie -> 0.5.
        close(
            roc_auc(&[0.3; 4], &[true, false, true, false]).unwrap(),
            0.5,
        );
    }

    #[test]
    fn log_loss_by_hand() {
        // -(ln 0.8 + ln(1 - 0.4)) / 2
        let want = -(0.8f64.ln() + 0.6f64.ln()) / 2.0;
        close(log_loss(&[0.8, 0.4], &[true, false]), want);
        // Clamped: a confident wrong answer is large but finite.
        let l = log_loss(&[0.0], &[true]);
        assert!(l.is_finite() && l > 30.0);
        close(log_loss(&[], &[]), 0.0);
    }

    #[test]
    fn brier_by_hand() {
        // ((1 - 0.8)^2 + (0.4 - 0)^2) / 2 = (0.04 + 0.16) / 2
        close(brier(&[0.8, 0.4], &[true, false]), 0.1);
        close(brier(&[1.0, 0.0], &[true, false]), 0.0);
    }
}
