//! Off-policy estimators over per-session units, and the direct reward
//! model (a small ridge logistic regression, cross-fitted).
//!
//! Every estimator here is a pure function of the units: no I/O, no
//! randomness, so the unit tests can check them against hand computations.

use nudge::domain::logistic::sigmoid;
use serde::Serialize;

/// One evaluation unit (a logged session) as the estimators see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Unit {
    /// Probability that the logging policy took the logged action, > 0.
    pub propensity: f64,
    /// The candidate's action equals the logged action.
    pub matched: bool,
    /// Observed reward under the logged action.
    pub reward: f64,
    /// Direct model `q(x, a_candidate)`.
    pub q_candidate: f64,
    /// Direct model `q(x, a_logged)`.
    pub q_logged: f64,
}

impl Unit {
    /// Importance weight `1[a_cand = a_log] / propensity`.
    pub fn weight(&self) -> f64 {
        if self.matched {
            1.0 / self.propensity
        } else {
            0.0
        }
    }
}

/// A point estimate with its standard error and two-sided interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    pub estimate: f64,
    pub se: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    pub fn new(estimate: f64, se: f64, z: f64) -> Self {
        Interval {
            estimate,
            se,
            lo: estimate - z * se,
            hi: estimate + z * se,
        }
    }

    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    /// The same interval times `k` (> 0), e.g. per session -> per day.
    pub fn scaled(&self, k: f64) -> Self {
        Interval {
            estimate: self.estimate * k,
            se: self.se * k,
            lo: self.lo * k,
            hi: self.hi * k,
        }
    }
}

/// Mean of `xs` with the normal-approximation interval
/// `mean ± z · sd / sqrt(n)` (sd with n - 1). NaN for an empty slice; se 0
/// for a single term.
pub fn mean_interval(xs: &[f64], z: f64) -> Interval {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return Interval::new(f64::NAN, f64::NAN, z);
    }
    let mean = xs.iter().sum::<f64>() / n;
    let se = if xs.len() > 1 {
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (var / n).sqrt()
    } else {
        0.0
    };
    Interval::new(mean, se, z)
}

/// IPS: the mean of `w_i r_i`.
pub fn ips(units: &[Unit], z: f64) -> Interval {
    let t: Vec<f64> = units.iter().map(|u| u.weight() * u.reward).collect();
    mean_interval(&t, z)
}

/// Self-normalised IPS: `sum w_i r_i / sum w_i`, with the delta-method
/// standard error `sqrt(sum (w_i (r_i - V))^2) / sum w_i`. NaN when no unit
/// matches.
pub fn snips(units: &[Unit], z: f64) -> Interval {
    let sw: f64 = units.iter().map(Unit::weight).sum();
    if sw <= 0.0 {
        return Interval::new(f64::NAN, f64::NAN, z);
    }
    let v = units.iter().map(|u| u.weight() * u.reward).sum::<f64>() / sw;
    let ss: f64 = units
        .iter()
        .map(|u| (u.weight() * (u.reward - v)).powi(2))
        .sum();
    Interval::new(v, ss.sqrt() / sw, z)
}

/// Doubly robust: the mean of `q(x_i, a_cand) + w_i (r_i - q(x_i, a_log))`.
pub fn dr(units: &[Unit], z: f64) -> Interval {
    mean_interval(&dr_terms(units), z)
}

/// The per-unit terms of [`dr`] (for paired comparisons of two policies
/// on the same units).
pub fn dr_terms(units: &[Unit]) -> Vec<f64> {
    units
        .iter()
        .map(|u| u.q_candidate + u.weight() * (u.reward - u.q_logged))
        .collect()
}

/// Direct method: the mean of `q(x_i, a_cand)`. Its interval only reflects
/// the spread of the predictions, not the model's bias: a reference, not an
/// estimator to trust alone.
pub fn direct(units: &[Unit], z: f64) -> Interval {
    let t: Vec<f64> = units.iter().map(|u| u.q_candidate).collect();
    mean_interval(&t, z)
}

/// The logging policy's own value: the mean observed reward.
pub fn on_policy(units: &[Unit], z: f64) -> Interval {
    let t: Vec<f64> = units.iter().map(|u| u.reward).collect();
    mean_interval(&t, z)
}

/// Kish effective sample size of the importance weights,
/// `(sum w)^2 / sum w^2` (0 when nothing matches).
pub fn effective_sample_size(units: &[Unit]) -> f64 {
    let sw: f64 = units.iter().map(Unit::weight).sum();
    let sw2: f64 = units.iter().map(|u| u.weight().powi(2)).sum();
    if sw2 > 0.0 {
        sw * sw / sw2
    } else {
        0.0
    }
}

/// Ridge logistic regression by Newton's method: minimises
/// `sum logloss + alpha/2 |beta[1..]|^2` (column 0 is the unpenalised
/// intercept). Small dense problems only (a handful of columns).
// Dense index arithmetic reads best with indices.
#[allow(clippy::needless_range_loop)]
pub fn fit_logistic(x: &[Vec<f64>], y: &[bool], alpha: f64) -> Vec<f64> {
    let d = x.first().map_or(0, Vec::len);
    let mut beta = vec![0.0; d];
    if x.is_empty() {
        return beta;
    }
    for _ in 0..100 {
        let mut g = vec![0.0; d];
        let mut h = vec![vec![0.0; d]; d];
        for (xi, &yi) in x.iter().zip(y) {
            let p = sigmoid(dot(&beta, xi));
            let r = p - f64::from(u8::from(yi));
            let w = (p * (1.0 - p)).max(1e-12);
            for j in 0..d {
                g[j] += r * xi[j];
                for k in 0..=j {
                    h[j][k] += w * xi[j] * xi[k];
                }
            }
        }
        for j in 0..d {
            for k in 0..j {
                h[k][j] = h[j][k];
            }
            if j > 0 {
                g[j] += alpha * beta[j];
                h[j][j] += alpha;
            }
        }
        // Keep the intercept's Hessian invertible on one-class data.
        h[0][0] += 1e-9;
        let Some(step) = solve(h, g) else { break };
        let mut max = 0.0f64;
        for j in 0..d {
            beta[j] -= step[j];
            max = max.max(step[j].abs());
        }
        // All-positive or all-negative data: the intercept runs off; cap it.
        beta[0] = beta[0].clamp(-30.0, 30.0);
        if max < 1e-10 {
            break;
        }
    }
    beta
}

pub fn predict(beta: &[f64], x: &[f64]) -> f64 {
    sigmoid(dot(beta, x))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting.
// Dense index arithmetic reads best with indices.
#[allow(clippy::needless_range_loop)]
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-300 {
            return None;
        }
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..n {
            let f = a[r][c] / a[c][c];
            if f != 0.0 {
                for k in c..n {
                    a[r][k] -= f * a[c][k];
                }
                b[r] -= f * b[c];
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    const Z: f64 = 1.959_963_984_540_054;

    fn u(propensity: f64, matched: bool, reward: f64, qc: f64, ql: f64) -> Unit {
        Unit {
            propensity,
            matched,
            reward,
            q_candidate: qc,
            q_logged: ql,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Three sessions:
    /// 1. matched, propensity 0.5, reward 10, q_cand = q_log = 6
    /// 2. not matched, propensity 0.25, reward 4, q_cand 8, q_log 3
    /// 3. matched, propensity 0.8, reward 0, q_cand = q_log = 2
    fn units() -> Vec<Unit> {
        vec![
            u(0.5, true, 10.0, 6.0, 6.0),
            u(0.25, false, 4.0, 8.0, 3.0),
            u(0.8, true, 0.0, 2.0, 2.0),
        ]
    }

    #[test]
    fn ips_by_hand() {
        // Terms: 10 / 0.5 = 20, 0, 0 -> mean 20/3; sd^2 = ((40/3)^2 +
        // 2 (20/3)^2) / 2 = 400/3; se = sqrt(400/9) = 20/3.
        let i = ips(&units(), Z);
        assert!(close(i.estimate, 20.0 / 3.0), "{i:?}");
        assert!(close(i.se, 20.0 / 3.0), "{i:?}");
        assert!(close(i.lo, 20.0 / 3.0 - Z * 20.0 / 3.0));
    }

    #[test]
    fn snips_by_hand() {
        // Weights 2, 0, 1.25: V = 20 / 3.25; residual terms
        // 2 (10 - V), 0, 1.25 (0 - V).
        let i = snips(&units(), Z);
        let v = 20.0 / 3.25;
        assert!(close(i.estimate, v));
        let se = ((2.0 * (10.0 - v)).powi(2) + (1.25 * v).powi(2)).sqrt() / 3.25;
        assert!(close(i.se, se));
        // Nothing matched: undefined.
        assert!(snips(&[u(0.5, false, 1.0, 0.0, 0.0)], Z).estimate.is_nan());
    }

    #[test]
    fn dr_by_hand() {
        // Terms: 6 + 2 (10 - 6) = 14; 8 + 0 = 8; 2 + 1.25 (0 - 2) = -0.5.
        let i = dr(&units(), Z);
        let t = [14.0, 8.0, -0.5];
        let m = t.iter().sum::<f64>() / 3.0;
        assert!(close(i.estimate, m));
        let var = t.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 2.0;
        assert!(close(i.se, (var / 3.0).sqrt()));
        // With a perfect direct model, DR is the model's mean whatever the
        // weights.
        let perfect = [u(0.1, true, 5.0, 5.0, 5.0), u(0.9, false, 1.0, 3.0, 1.0)];
        assert!(close(dr(&perfect, Z).estimate, 4.0));
        assert!(close(direct(&perfect, Z).estimate, 4.0));
    }

    #[test]
    fn on_policy_ess_and_edges() {
        assert!(close(on_policy(&units(), Z).estimate, 14.0 / 3.0));
        // ESS = (2 + 1.25)^2 / (4 + 1.5625).
        assert!(close(effective_sample_size(&units()), 3.25 * 3.25 / 5.5625));
        assert_eq!(effective_sample_size(&[u(0.5, false, 1.0, 0.0, 0.0)]), 0.0);
        let one = mean_interval(&[3.0], Z);
        assert_eq!((one.estimate, one.se), (3.0, 0.0));
        assert!(mean_interval(&[], Z).estimate.is_nan());
        // The logging policy evaluated on itself: every unit matches with
        // propensity 1 -> IPS = on-policy mean.
        let all = [u(1.0, true, 3.0, 0.0, 0.0), u(1.0, true, 5.0, 0.0, 0.0)];
        assert_eq!(ips(&all, Z), on_policy(&all, Z));
        let s = mean_interval(&[1.0, 3.0], 2.0).scaled(10.0);
        assert!(close(s.estimate, 20.0) && close(s.se, 10.0) && close(s.hi, 40.0));
    }

    #[test]
    fn logistic_recovers_known_coefficients() {
        // Deterministic grid with y frequencies matching sigmoid(-1 + 2x).
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..21 {
            let xi = -1.0 + 0.1 * f64::from(i);
            let p = sigmoid(-1.0 + 2.0 * xi);
            let pos = (p * 1000.0).round() as usize;
            for k in 0..1000 {
                x.push(vec![1.0, xi]);
                y.push(k < pos);
            }
        }
        let b = fit_logistic(&x, &y, 0.0);
        assert!(
            (b[0] + 1.0).abs() < 2e-3 && (b[1] - 2.0).abs() < 5e-3,
            "{b:?}"
        );
        // One-class data stays finite.
        let b = fit_logistic(&[vec![1.0, 0.5], vec![1.0, -0.5]], &[true, true], 1.0);
        assert!(b.iter().all(|v| v.is_finite()));
        assert!(predict(&b, &[1.0, 0.0]) > 0.99);
    }
}
