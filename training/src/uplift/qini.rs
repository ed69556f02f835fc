//! Uplift evaluation curves: the Qini curve, the uplift curve and their
//! normalised areas, defined exactly as scikit-uplift (`sklift.metrics`)
//! defines them, so the numbers are comparable with that library.
//!
//! # Definitions
//! Rows are `(y, score, treated)`: the outcome, the predicted uplift (here
//! the probability difference `p_v(x) - p_0(x)`) and whether the row is in
//! the treatment arm (`false` = control). Sort the rows by `score`
//! descending; let the first `k` rows hold `N_T(k)` treated rows with
//! `Y_T(k)` responders and `N_C(k)` control rows with `Y_C(k)` responders.
//!
//! - **Qini curve**: `Q(k) = Y_T(k) - Y_C(k) * N_T(k) / N_C(k)` (0 while
//!   `N_C(k) = 0`): the extra responders among the treated of the top `k`,
//!   with the control responders scaled to the treated count.
//! - **Uplift curve**: `U(k) = (Y_T(k) / N_T(k) - Y_C(k) / N_C(k)) * k`
//!   (each ratio 0 while its denominator is 0).
//! - Ties: rows with equal scores are one step: the curves are evaluated only
//!   at the last row of each run of equal scores (and at `k = 0`, value 0),
//!   so the order inside a tie does not matter.
//! - Areas: trapezoidal rule over `k` (rows, not fractions).
//! - **Random line**: the straight line from `(0, 0)` to `(n, Q(n))`.
//! - **Perfect curve** (scikit-uplift's `perfect_qini_curve` with
//!   `negative_effect=True`): the Qini curve of the oracle score
//!   `y * treated - y * (1 - treated)` (treated responders first, control
//!   responders last). For the uplift curve, `perfect_uplift_curve`: score
//!   `2 * [y == treated] + (y if control responders > treated
//!   non-responders else treated)`.
//! - **Qini coefficient** (= `sklift.metrics.qini_auc_score`):
//!   `(area(model) - area(random)) / (area(perfect) - area(random))`: the
//!   area between the model's Qini curve and the random line, as a share of
//!   the same area for the perfect ranking. 0 = random ranking, 1 = perfect.
//! - **Uplift AUC** (= `sklift.metrics.uplift_auc_score`): the same
//!   normalisation for the uplift curve.

use serde::Serialize;

/// Cumulative counts at the end of each tie group, plus the leading zero.
struct Steps {
    /// Rows targeted `k` at each step (first entry 0).
    k: Vec<f64>,
    n_t: Vec<f64>,
    y_t: Vec<f64>,
    n_c: Vec<f64>,
    y_c: Vec<f64>,
}

fn order_desc(score: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..score.len()).collect();
    idx.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    idx
}

fn steps(y: &[bool], score: &[f64], treated: &[bool]) -> Steps {
    assert!(
        y.len() == score.len() && y.len() == treated.len(),
        "y, score and treated must have the same length"
    );
    let idx = order_desc(score);
    let mut s = Steps {
        k: vec![0.0],
        n_t: vec![0.0],
        y_t: vec![0.0],
        n_c: vec![0.0],
        y_c: vec![0.0],
    };
    let (mut n_t, mut y_t, mut n_c, mut y_c) = (0.0, 0.0, 0.0, 0.0);
    for (pos, &i) in idx.iter().enumerate() {
        if treated[i] {
            n_t += 1.0;
            y_t += f64::from(u8::from(y[i]));
        } else {
            n_c += 1.0;
            y_c += f64::from(u8::from(y[i]));
        }
        let last_of_group = pos + 1 == idx.len() || score[idx[pos + 1]] != score[i];
        if last_of_group {
            s.k.push((pos + 1) as f64);
            s.n_t.push(n_t);
            s.y_t.push(y_t);
            s.n_c.push(n_c);
            s.y_c.push(y_c);
        }
    }
    s
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

/// `(k, Q(k))` at each step (see the module docs).
pub fn qini_curve(y: &[bool], score: &[f64], treated: &[bool]) -> (Vec<f64>, Vec<f64>) {
    let s = steps(y, score, treated);
    let q = (0..s.k.len())
        .map(|i| s.y_t[i] - s.y_c[i] * ratio(s.n_t[i], s.n_c[i]))
        .collect();
    (s.k, q)
}

/// `(k, U(k))` at each step (see the module docs).
pub fn uplift_curve(y: &[bool], score: &[f64], treated: &[bool]) -> (Vec<f64>, Vec<f64>) {
    let s = steps(y, score, treated);
    let u = (0..s.k.len())
        .map(|i| (ratio(s.y_t[i], s.n_t[i]) - ratio(s.y_c[i], s.n_c[i])) * s.k[i])
        .collect();
    (s.k, u)
}

/// Trapezoidal area under `(x, y)`.
pub fn auc(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2)
        .zip(y.windows(2))
        .map(|(xs, ys)| (xs[1] - xs[0]) * (ys[0] + ys[1]) / 2.0)
        .sum()
}

fn normalised(actual: (Vec<f64>, Vec<f64>), perfect: (Vec<f64>, Vec<f64>)) -> f64 {
    let (xp, yp) = perfect;
    let (xn, yn) = (*xp.last().unwrap_or(&0.0), *yp.last().unwrap_or(&0.0));
    let base = auc(&[0.0, xn], &[0.0, yn]);
    let perfect = auc(&xp, &yp) - base;
    let actual = auc(&actual.0, &actual.1) - base;
    actual / perfect
}

/// Qini coefficient, = `sklift.metrics.qini_auc_score(y, score, treated)`.
/// NaN when the perfect curve has no area above the random line (e.g. no
/// responders).
pub fn qini_coefficient(y: &[bool], score: &[f64], treated: &[bool]) -> f64 {
    let oracle: Vec<f64> = y
        .iter()
        .zip(treated)
        .map(|(&yi, &ti)| match (yi, ti) {
            (true, true) => 1.0,
            (true, false) => -1.0,
            (false, _) => 0.0,
        })
        .collect();
    normalised(
        qini_curve(y, score, treated),
        qini_curve(y, &oracle, treated),
    )
}

/// Uplift AUC, = `sklift.metrics.uplift_auc_score(y, score, treated)`.
pub fn uplift_auc(y: &[bool], score: &[f64], treated: &[bool]) -> f64 {
    let cr = y.iter().zip(treated).filter(|(&y, &t)| y && !t).count();
    let tn = y.iter().zip(treated).filter(|(&y, &t)| !y && t).count();
    let oracle: Vec<f64> = y
        .iter()
        .zip(treated)
        .map(|(&yi, &ti)| {
            let summand = if cr > tn { yi } else { ti };
            2.0 * f64::from(u8::from(yi == ti)) + f64::from(u8::from(summand))
        })
        .collect();
    normalised(
        uplift_curve(y, score, treated),
        uplift_curve(y, &oracle, treated),
    )
}

/// One point of the reported curves: the top `fraction` of rows by score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CurvePoint {
    pub fraction: f64,
    /// Rows targeted: `round(fraction * n)` (ties broken by row order).
    pub rows: usize,
    pub treated: usize,
    pub treated_responders: usize,
    pub control: usize,
    pub control_responders: usize,
    /// `Q(k)`.
    pub qini: f64,
    /// The random line at `k`: `k / n * Q(n)`.
    pub qini_random: f64,
    /// `U(k)`.
    pub uplift: f64,
}

/// Both curves at the given fractions of the rows (for tables and plots).
pub fn curve_points(
    y: &[bool],
    score: &[f64],
    treated: &[bool],
    fractions: &[f64],
) -> Vec<CurvePoint> {
    let idx = order_desc(score);
    let n = idx.len();
    let mut cum = vec![(0usize, 0usize, 0usize, 0usize); n + 1];
    for (pos, &i) in idx.iter().enumerate() {
        let (mut nt, mut yt, mut nc, mut yc) = cum[pos];
        if treated[i] {
            nt += 1;
            yt += usize::from(y[i]);
        } else {
            nc += 1;
            yc += usize::from(y[i]);
        }
        cum[pos + 1] = (nt, yt, nc, yc);
    }
    let q = |k: usize| {
        let (nt, yt, nc, yc) = cum[k];
        yt as f64 - yc as f64 * ratio(nt as f64, nc as f64)
    };
    let q_all = q(n);
    fractions
        .iter()
        .map(|&f| {
            let k = ((f.clamp(0.0, 1.0) * n as f64).round() as usize).min(n);
            let (nt, yt, nc, yc) = cum[k];
            CurvePoint {
                fraction: f,
                rows: k,
                treated: nt,
                treated_responders: yt,
                control: nc,
                control_responders: yc,
                qini: q(k),
                qini_random: if n == 0 {
                    0.0
                } else {
                    k as f64 / n as f64 * q_all
                },
                uplift: (ratio(yt as f64, nt as f64) - ratio(yc as f64, nc as f64)) * k as f64,
            }
        })
        .collect()
}

/// Deciles 0, 0.1, ..., 1.
pub fn deciles() -> Vec<f64> {
    (0..=10).map(|i| i as f64 / 10.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hand-computed example: 8 rows, scores all distinct.
    //   score: 8 7 6 5 4 3 2 1
    //   treat: T C T C T C T C
    //   y:     1 0 1 0 0 1 0 1
    fn example() -> (Vec<bool>, Vec<f64>, Vec<bool>) {
        let y = [1, 0, 1, 0, 0, 1, 0, 1].map(|v| v == 1).to_vec();
        let s = vec![8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0];
        let t = [1, 0, 1, 0, 1, 0, 1, 0].map(|v| v == 1).to_vec();
        (y, s, t)
    }

    #[test]
    fn qini_curve_by_hand() {
        let (y, s, t) = example();
        let (k, q) = qini_curve(&y, &s, &t);
        assert_eq!(k, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        // k=1: Y_T=1, N_C=0 -> 1 - 0 = 1.
        // k=2: Y_T=1, N_T=1, Y_C=0, N_C=1 -> 1.
        // k=3: Y_T=2, N_T=2, Y_C=0, N_C=1 -> 2.
        // k=4: 2 - 0 = 2. k=5: Y_T=2, N_T=3, N_C=2 -> 2.
        // k=6: Y_C=1, N_T=3, N_C=3 -> 2 - 1 = 1. k=7: N_T=4, N_C=3 -> 2 - 4/3.
        // k=8: Y_C=2, N_T=4, N_C=4 -> 0.
        let want = [0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 2.0 - 4.0 / 3.0, 0.0];
        for (a, b) in q.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        // Area: trapezoids of (0,1,1,2,2,2,1,2/3,0).
        let area = auc(&k, &q);
        let want_area = 0.5 + 1.0 + 1.5 + 2.0 + 2.0 + 1.5 + (1.0 + 2.0 / 3.0) / 2.0 + 1.0 / 3.0;
        assert!((area - want_area).abs() < 1e-12);
        // Random line: Q(n) = 0, area 0. Perfect: treated responders (2)
        // first, then the 4 zeros (2 T, 2 C), then the control responders:
        // a tie group per score value -> k = 0, 2, 6, 8 and
        // Q = 0, 2 - 0, 2 - 0 * 4/2 = 2, 2 - 2 * 4/4 = 0. Area: 2 + 8 + 2 = 12.
        let qc = qini_coefficient(&y, &s, &t);
        assert!((qc - want_area / 12.0).abs() < 1e-12, "{qc}");
        // Reversing the ranking mirrors the sign of the area difference.
        let rev: Vec<f64> = s.iter().map(|v| -v).collect();
        assert!(qini_coefficient(&y, &rev, &t) < 0.0);
    }

    #[test]
    fn uplift_curve_by_hand_and_ties() {
        let (y, s, t) = example();
        let (_, u) = uplift_curve(&y, &s, &t);
        // k=2: (1/1 - 0/1) * 2 = 2; k=4: (2/2 - 0/2) * 4 = 4;
        // k=6: (2/3 - 1/3) * 6 = 2; k=8: (2/4 - 2/4) * 8 = 0.
        assert!((u[2] - 2.0).abs() < 1e-12);
        assert!((u[4] - 4.0).abs() < 1e-12);
        assert!((u[6] - 2.0).abs() < 1e-12);
        assert!(u[8].abs() < 1e-12);
        // A constant score is one tie group: the curve is the random line.
        let flat = vec![0.5; 8];
        let (k, q) = qini_curve(&y, &flat, &t);
        assert_eq!(k, vec![0.0, 8.0]);
        assert_eq!(q, vec![0.0, 0.0]);
        assert!(qini_coefficient(&y, &flat, &t).abs() < 1e-12);
        // The oracle ranking scores 1.
        let oracle: Vec<f64> = y
            .iter()
            .zip(&t)
            .map(|(&a, &b)| f64::from(u8::from(a && b)) - f64::from(u8::from(a && !b)))
            .collect();
        assert!((qini_coefficient(&y, &oracle, &t) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn curve_points_at_fractions() {
        let (y, s, t) = example();
        let p = curve_points(&y, &s, &t, &[0.0, 0.5, 1.0]);
        assert_eq!(p[0].rows, 0);
        assert_eq!(
            (p[1].rows, p[1].treated, p[1].treated_responders),
            (4, 2, 2)
        );
        assert!((p[1].qini - 2.0).abs() < 1e-12);
        assert!((p[1].uplift - 4.0).abs() < 1e-12);
        assert!(p[2].qini.abs() < 1e-12 && p[2].qini_random.abs() < 1e-12);
    }
}
