//! The evaluation of a set of predictions: ranking, probability quality,
//! calibration and the confusion tables at the segment thresholds.

use crate::metrics::{self, CalibrationBin, Confusion};
use nudge::domain::policy::SegmentThresholds;
use serde::Serialize;

/// Rows and conversions of one segment.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SegmentCount {
    pub rows: usize,
    pub converted: usize,
    pub share: f64,
    pub conversion: Option<f64>,
}

/// Everything `evaluate` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    pub rows: usize,
    pub positives: usize,
    pub base_rate: f64,
    pub roc_auc: Option<f64>,
    /// Average precision.
    pub pr_auc: Option<f64>,
    pub log_loss: f64,
    pub brier: f64,
    /// Mean predicted probability (compare with `base_rate`).
    pub mean_predicted: f64,
    /// Equal-count deciles of the predictions.
    pub calibration: Vec<CalibrationBin>,
    pub thresholds: SegmentThresholds,
    /// "Hot" as the positive prediction: `p >= hot_at_or_above`
    /// (precision = conversion of the hot segment).
    pub confusion_hot: Confusion,
    /// "Not cold" as the positive prediction: `p >= cold_below`
    /// (NPV = non-conversion of the cold segment).
    pub confusion_cold: Confusion,
    pub hot_precision: Option<f64>,
    pub cold_npv: Option<f64>,
    pub segments: Segments,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Segments {
    pub hot: SegmentCount,
    pub hesitant: SegmentCount,
    pub cold: SegmentCount,
}

/// Evaluates predictions `p` against labels `y` with segment thresholds `t`.
pub fn evaluate(p: &[f64], y: &[bool], t: SegmentThresholds) -> Evaluation {
    let n = p.len();
    let positives = y.iter().filter(|v| **v).count();
    let confusion_hot = Confusion::at(p, y, t.hot_at_or_above);
    let confusion_cold = Confusion::at(p, y, t.cold_below);
    let seg = |pred: &dyn Fn(f64) -> bool| {
        let (mut rows, mut converted) = (0, 0);
        for (&pi, &yi) in p.iter().zip(y) {
            if pred(pi) {
                rows += 1;
                converted += usize::from(yi);
            }
        }
        SegmentCount {
            rows,
            converted,
            share: rows as f64 / n.max(1) as f64,
            conversion: (rows > 0).then(|| converted as f64 / rows as f64),
        }
    };
    Evaluation {
        rows: n,
        positives,
        base_rate: positives as f64 / n.max(1) as f64,
        roc_auc: metrics::roc_auc(p, y),
        pr_auc: metrics::average_precision(p, y),
        log_loss: metrics::log_loss(p, y),
        brier: metrics::brier(p, y),
        mean_predicted: p.iter().sum::<f64>() / n.max(1) as f64,
        calibration: metrics::calibration(p, y, 10),
        thresholds: t,
        hot_precision: confusion_hot.precision(),
        cold_npv: confusion_cold.npv(),
        confusion_hot,
        confusion_cold,
        segments: Segments {
            hot: seg(&|x| x >= t.hot_at_or_above),
            hesitant: seg(&|x| x < t.hot_at_or_above && x >= t.cold_below),
            cold: seg(&|x| x < t.cold_below),
        },
    }
}

/// A few lines of text for the terminal.
pub fn summary_text(e: &Evaluation) -> String {
    let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    let mut s = format!(
        "rows {} ({} positive, base rate {:.4}, mean p {:.4})\n\
         ROC-AUC {}  PR-AUC {}  log-loss {:.4}  Brier {:.4}\n\
         thresholds: hot p >= {:.4} (precision {}), cold p < {:.4} (NPV {})\n",
        e.rows,
        e.positives,
        e.base_rate,
        e.mean_predicted,
        f(e.roc_auc),
        f(e.pr_auc),
        e.log_loss,
        e.brier,
        e.thresholds.hot_at_or_above,
        f(e.hot_precision),
        e.thresholds.cold_below,
        f(e.cold_npv),
    );
    for (name, c) in [
        ("hot", e.segments.hot),
        ("hesitant", e.segments.hesitant),
        ("cold", e.segments.cold),
    ] {
        s.push_str(&format!(
            "  {name:<9} {:>6} rows ({:>5.1} %), conversion {}\n",
            c.rows,
            100.0 * c.share,
            f(c.conversion)
        ));
    }
    s.push_str("calibration (deciles): mean p -> observed\n");
    for b in &e.calibration {
        s.push_str(&format!(
            "  {:>6} rows  {:.4} -> {:.4}\n",
            b.rows, b.mean_predicted, b.observed_rate
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_partition_the_rows() {
        let p = [0.9, 0.7, 0.5, 0.3, 0.1, 0.05];
        let y = [true, true, false, true, false, false];
        let t = SegmentThresholds {
            hot_at_or_above: 0.7,
            cold_below: 0.3,
        };
        let e = evaluate(&p, &y, t);
        assert_eq!(e.segments.hot.rows, 2);
        assert_eq!(e.segments.hesitant.rows, 2);
        assert_eq!(e.segments.cold.rows, 2);
        assert_eq!(e.hot_precision, Some(1.0));
        assert_eq!(e.cold_npv, Some(1.0));
        assert_eq!(e.segments.hesitant.conversion, Some(0.5));
        assert!(summary_text(&e).contains("ROC-AUC"));
    }
}
