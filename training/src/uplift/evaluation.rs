//! The held-out comparison of every treatment arm with the control
//! (predicted against observed uplift, Qini), so a learned response is
//! judged on rows it did not see.

use super::arms::{ArmFit, ArmRows};
use super::qini;
use nudge::domain::logistic::sigmoid;
use serde::Serialize;

/// Held-out evaluation of one treatment arm against the control.
#[derive(Clone, Debug, Serialize)]
pub struct ArmEvaluation {
    pub arm: String,
    /// Logs: the voucher amount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_cents: Option<i64>,
    pub train_rows: usize,
    pub train_positives: usize,
    pub held_rows: usize,
    pub held_rate: f64,
    pub control_held_rows: usize,
    pub control_held_rate: f64,
    /// Mean of `p_v(x) - p_0(x)` over all held-out rows.
    pub mean_predicted_uplift: f64,
    /// Mean of `z_v(x) - z_0(x)` (the served log-odds lift) over all
    /// held-out rows.
    pub mean_predicted_log_odds_lift: f64,
    /// Held-out mean outcome of the arm minus the control's.
    pub observed_uplift: f64,
    /// Welch standard error of `observed_uplift`.
    pub observed_se: f64,
    pub ci95_low: f64,
    pub ci95_high: f64,
    pub mean_predicted_within_ci95: bool,
    /// scikit-uplift's `qini_auc_score` on this arm's and the control's
    /// held-out rows.
    pub qini_coefficient: f64,
    /// scikit-uplift's `uplift_auc_score`, same rows.
    pub uplift_auc: f64,
    pub curve: Vec<qini::CurvePoint>,
    pub converged: bool,
    pub gradient_norm_per_row: f64,
}

/// Everything evaluated on the held-out rows.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub control: String,
    pub control_train_rows: usize,
    pub control_train_positives: usize,
    pub control_converged: bool,
    pub arms: Vec<ArmEvaluation>,
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
    } else {
        f64::NAN
    };
    (m, var)
}

/// Per-arm logits `z_a(x)` of every row in `idx`.
pub fn logits(rows: &ArmRows, fits: &[ArmFit], idx: &[usize]) -> Vec<Vec<f64>> {
    idx.iter()
        .map(|&i| {
            fits.iter()
                .enumerate()
                .map(|(a, f)| f.logit(rows, i, a))
                .collect()
        })
        .collect()
}

/// Evaluates the treatment arms (1..) against arm 0 on `held` rows.
pub fn evaluate(
    rows: &ArmRows,
    held: &[usize],
    fits: &[ArmFit],
    amounts: Option<&[i64]>,
) -> Evaluation {
    let (arm, y) = (rows.arm, rows.y);
    let z = logits(rows, fits, held);
    let yf = |i: usize| f64::from(u8::from(y[i]));
    let control_y: Vec<f64> = held
        .iter()
        .filter(|&&i| arm[i] == 0)
        .map(|&i| yf(i))
        .collect();
    let (m0, v0) = mean_var(&control_y);
    let mut arms = Vec::new();
    for (a, f) in fits.iter().enumerate().skip(1) {
        let n = held.len().max(1) as f64;
        let mean_pred = z
            .iter()
            .map(|zi| sigmoid(zi[a]) - sigmoid(zi[0]))
            .sum::<f64>()
            / n;
        let mean_lift = z.iter().map(|zi| zi[a] - zi[0]).sum::<f64>() / n;
        let arm_y: Vec<f64> = held
            .iter()
            .filter(|&&i| arm[i] == a)
            .map(|&i| yf(i))
            .collect();
        let (ma, va) = mean_var(&arm_y);
        let diff = ma - m0;
        let se = (va / arm_y.len() as f64 + v0 / control_y.len() as f64).sqrt();
        let (lo, hi) = (diff - 1.96 * se, diff + 1.96 * se);
        // Qini on this arm's and the control's rows.
        let mut ys = Vec::new();
        let mut score = Vec::new();
        let mut treated = Vec::new();
        for (k, &i) in held.iter().enumerate() {
            if arm[i] == a || arm[i] == 0 {
                ys.push(y[i]);
                score.push(sigmoid(z[k][a]) - sigmoid(z[k][0]));
                treated.push(arm[i] == a);
            }
        }
        arms.push(ArmEvaluation {
            arm: f.name.clone(),
            amount_cents: amounts.map(|v| v[a]),
            train_rows: f.train_rows,
            train_positives: f.train_positives,
            held_rows: arm_y.len(),
            held_rate: ma,
            control_held_rows: control_y.len(),
            control_held_rate: m0,
            mean_predicted_uplift: mean_pred,
            mean_predicted_log_odds_lift: mean_lift,
            observed_uplift: diff,
            observed_se: se,
            ci95_low: lo,
            ci95_high: hi,
            mean_predicted_within_ci95: lo <= mean_pred && mean_pred <= hi,
            qini_coefficient: qini::qini_coefficient(&ys, &score, &treated),
            uplift_auc: qini::uplift_auc(&ys, &score, &treated),
            curve: qini::curve_points(&ys, &score, &treated, &qini::deciles()),
            converged: f.converged,
            gradient_norm_per_row: f.model.gradient_norm_per_row,
        });
    }
    Evaluation {
        control: fits[0].name.clone(),
        control_train_rows: fits[0].train_rows,
        control_train_positives: fits[0].train_positives,
        control_converged: fits[0].converged,
        arms,
    }
}
