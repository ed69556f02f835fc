//! Segment thresholds (hot / hesitant / cold) from predictions by the
//! precision / NPV rule, so every model file states where its segments lie.

use nudge::domain::policy::SegmentThresholds;

/// Segment thresholds from predictions `p` and labels `y` (training split):
///
/// - `hot_at_or_above` = the smallest `t` (a predicted value) such that the
///   rows with `p >= t` are at least `min_rows` and converted at a rate
///   (precision) >= `hot_precision`; 1.0 if none;
/// - `cold_below` = the largest `t` such that the rows with `p < t` are at
///   least `min_rows` and did *not* convert at a rate (negative predictive
///   value) >= `cold_npv`; 0.0 if none;
/// - if that would make `cold_below > hot_at_or_above`, `cold_below` is
///   lowered to `hot_at_or_above` (no hesitant band).
pub fn choose_thresholds(
    p: &[f64],
    y: &[bool],
    hot_precision: f64,
    cold_npv: f64,
    min_rows: usize,
) -> SegmentThresholds {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let n = idx.len();
    // below[k] = (rows, negatives) among the k lowest predictions.
    let mut neg_prefix = vec![0usize; n + 1];
    for (k, &i) in idx.iter().enumerate() {
        neg_prefix[k + 1] = neg_prefix[k] + usize::from(!y[i]);
    }
    let total_pos = n - neg_prefix[n];
    let mut hot = 1.0f64;
    let mut cold = 0.0f64;
    // Candidate thresholds are the distinct predicted values; position k is
    // the first row with that value, so "p < t" is idx[..k], "p >= t" idx[k..].
    let mut k = 0;
    let mut hot_found = false;
    while k < n {
        let t = p[idx[k]];
        let below = k;
        let below_neg = neg_prefix[k];
        let above = n - k;
        let above_pos = total_pos - (k - below_neg);
        if !hot_found && above >= min_rows && above_pos as f64 >= hot_precision * above as f64 {
            hot = t;
            hot_found = true;
        }
        if below >= min_rows && below_neg as f64 >= cold_npv * below as f64 {
            cold = t;
        }
        let mut j = k + 1;
        while j < n && p[idx[j]] == t {
            j += 1;
        }
        k = j;
    }
    // All rows below the top value can also be a cold set: "p < +inf" is not
    // a useful rule, so the candidate set above is enough.
    SegmentThresholds {
        hot_at_or_above: hot,
        cold_below: cold.min(hot),
    }
}

/// Segment of one probability: 0 cold, 1 hesitant, 2 hot.
pub fn segment(p: f64, t: &SegmentThresholds) -> usize {
    if p >= t.hot_at_or_above {
        2
    } else if p < t.cold_below {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_follow_the_rule() {
        // 10 rows per predicted value.
        let mut p = Vec::new();
        let mut y = Vec::new();
        for (v, positives) in [(0.05, 0), (0.1, 0), (0.2, 1), (0.4, 4), (0.7, 7), (0.9, 9)] {
            for k in 0..10 {
                p.push(v);
                y.push(k < positives);
            }
        }
        let t = choose_thresholds(&p, &y, 0.75, 0.97, 10);
        // p >= 0.7: 16/20 = 0.8 >= 0.75; p >= 0.4: 20/30 < 0.75.
        assert_eq!(t.hot_at_or_above, 0.7);
        // p < 0.2: 20/20 negatives; p < 0.4: 29/30 = 0.967 < 0.97.
        assert_eq!(t.cold_below, 0.2);
        assert_eq!(segment(0.1, &t), 0);
        assert_eq!(segment(0.2, &t), 1);
        assert_eq!(segment(0.7, &t), 2);
        // Unreachable targets: no hot, no cold.
        let t = choose_thresholds(&p, &y, 0.99, 1.01, 10);
        assert_eq!((t.hot_at_or_above, t.cold_below), (1.0, 0.0));
    }
}
