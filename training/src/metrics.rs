//! Held-out quality metrics for probabilistic binary predictions.
//!
//! - [`roc_auc`]: rank-based (Mann-Whitney U), tied scores get their average
//!   rank, so a tie between a positive and a negative counts one half;
//! - [`log_loss`]: mean negative log-likelihood, probabilities clamped to
//!   `[1e-15, 1 - 1e-15]`;
//! - [`brier`]: mean squared error of the probability;
//! - [`average_precision`]: PR-AUC as average precision (scikit-learn's
//!   `average_precision_score`: `sum_n (R_n - R_{n-1}) P_n` over the
//!   distinct scores, highest first; tied scores form one step);
//! - [`calibration`]: equal-count bins (deciles) of the predictions with the
//!   mean prediction and the observed rate in each;
//! - [`Confusion`]: the 2x2 table of a "p >= t" rule;
//! - [`roc_curve`]: the ROC points for plotting.

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

/// Cumulative `(true positives, false positives)` when predicting positive
/// at or above each distinct score, highest score first (tied scores move
/// together).
fn threshold_counts(p: &[f64], y: &[bool]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut out = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let t = p[order[i]];
        while i < order.len() && p[order[i]] == t {
            if y[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        out.push((tp, fp));
    }
    out
}

/// Average precision (area under the precision-recall curve, step-wise, as
/// scikit-learn's `average_precision_score`). `None` without positives.
pub fn average_precision(p: &[f64], y: &[bool]) -> Option<f64> {
    assert_eq!(p.len(), y.len());
    let n_pos = y.iter().filter(|v| **v).count();
    if n_pos == 0 {
        return None;
    }
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    for (tp, fp) in threshold_counts(p, y) {
        let recall = tp as f64 / n_pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Some(ap)
}

/// One calibration bin.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CalibrationBin {
    pub rows: usize,
    pub p_min: f64,
    pub p_max: f64,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

/// Calibration table: rows sorted by prediction and cut into `bins`
/// equal-count bins (bin `b` holds sorted positions
/// `[b*n/bins, (b+1)*n/bins)`); empty bins are left out.
pub fn calibration(p: &[f64], y: &[bool], bins: usize) -> Vec<CalibrationBin> {
    assert_eq!(p.len(), y.len());
    let n = p.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    (0..bins)
        .filter_map(|b| {
            let (lo, hi) = (b * n / bins, (b + 1) * n / bins);
            if lo == hi {
                return None;
            }
            let idx = &order[lo..hi];
            let k = idx.len() as f64;
            Some(CalibrationBin {
                rows: idx.len(),
                p_min: p[idx[0]],
                p_max: p[idx[idx.len() - 1]],
                mean_predicted: idx.iter().map(|&i| p[i]).sum::<f64>() / k,
                observed_rate: idx.iter().filter(|&&i| y[i]).count() as f64 / k,
            })
        })
        .collect()
}

/// The 2x2 confusion table of the rule "predicted positive when p >= t".
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Confusion {
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl Confusion {
    pub fn at(p: &[f64], y: &[bool], t: f64) -> Confusion {
        assert_eq!(p.len(), y.len());
        let mut c = Confusion {
            tp: 0,
            fp: 0,
            tn: 0,
            fn_: 0,
        };
        for (&pi, &yi) in p.iter().zip(y) {
            match (pi >= t, yi) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }

    /// tp / (tp + fp); `None` when nothing is predicted positive.
    pub fn precision(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn).
    pub fn recall(&self) -> Option<f64> {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Negative predictive value tn / (tn + fn).
    pub fn npv(&self) -> Option<f64> {
        ratio(self.tn, self.tn + self.fn_)
    }
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// ROC curve points `(false positive rate, true positive rate)` from
/// `(0, 0)` to `(1, 1)`, one point per distinct score (highest first).
pub fn roc_curve(p: &[f64], y: &[bool]) -> Vec<(f64, f64)> {
    assert_eq!(p.len(), y.len());
    let n_pos = y.iter().filter(|v| **v).count().max(1) as f64;
    let n_neg = y.iter().filter(|v| !**v).count().max(1) as f64;
    let mut pts = vec![(0.0, 0.0)];
    pts.extend(
        threshold_counts(p, y)
            .into_iter()
            .map(|(tp, fp)| (fp as f64 / n_neg, tp as f64 / n_pos)),
    );
    pts
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
    #[test]
    fn average_precision_by_hand() {
        // Scores 0.8 (pos) | 0.4 (pos, neg) | 0.2, 0.1 (neg).
        // Step 0.8: P = 1, R = 1/2. Step 0.4: P = 2/3, R = 1.
        // AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
        let p = [0.8, 0.4, 0.4, 0.2, 0.1];
        let y = [true, true, false, false, false];
        close(average_precision(&p, &y).unwrap(), 5.0 / 6.0);
        // Perfect ranking: 1.
        close(average_precision(&[0.9, 0.1], &[true, false]).unwrap(), 1.0);
        // Positive ranked last of 4: R jumps at the end, P = 1/4.
        close(
            average_precision(&[0.1, 0.2, 0.3, 0.4], &[true, false, false, false]).unwrap(),
            0.25,
        );
        assert_eq!(average_precision(&[0.3], &[false]), None);
    }

    #[test]
    fn calibration_bins_by_hand() {
        // 4 rows, 2 bins: {0.1, 0.2} with 0 positives, {0.6, 0.9} with 1.
        let p = [0.9, 0.1, 0.6, 0.2];
        let y = [true, false, false, false];
        let c = calibration(&p, &y, 2);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].rows, 2);
        close(c[0].mean_predicted, 0.15);
        close(c[0].observed_rate, 0.0);
        close(c[1].mean_predicted, 0.75);
        close(c[1].observed_rate, 0.5);
        assert_eq!((c[1].p_min, c[1].p_max), (0.6, 0.9));
        // Deciles of 25 rows: sizes 2 or 3, all rows counted.
        let p: Vec<f64> = (0..25).map(|i| i as f64 / 25.0).collect();
        let y = vec![false; 25];
        let c = calibration(&p, &y, 10);
        assert_eq!(c.len(), 10);
        assert_eq!(c.iter().map(|b| b.rows).sum::<usize>(), 25);
        // Fewer rows than bins: empty bins left out.
        assert_eq!(calibration(&[0.5, 0.6], &[true, false], 10).len(), 2);
    }

    #[test]
    fn confusion_by_hand() {
        let p = [0.9, 0.7, 0.7, 0.3, 0.1];
        let y = [true, false, true, true, false];
        let c = Confusion::at(&p, &y, 0.7);
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (2, 1, 1, 1));
        close(c.precision().unwrap(), 2.0 / 3.0);
        close(c.recall().unwrap(), 2.0 / 3.0);
        close(c.npv().unwrap(), 0.5);
        let none = Confusion::at(&p, &y, 2.0);
        assert_eq!(none.precision(), None);
        assert_eq!(none.recall(), Some(0.0));
    }

    #[test]
    fn roc_curve_by_hand() {
        let p = [0.8, 0.4, 0.4, 0.2];
        let y = [true, true, false, false];
        assert_eq!(
            roc_curve(&p, &y),
            vec![(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
    }
}
