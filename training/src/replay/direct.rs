//! The cross-fitted direct model `q(x, a)` of the doubly robust estimator,
//! fitted so no session is predicted by a model that saw it.

use super::estimate;
use super::options::{Options, Reward};
use super::population::SessionUnit;

/// Design row of the direct model for a session and an action.
fn design(s: &SessionUnit, a: i64, o: &Options) -> Vec<f64> {
    let p = s.logged_probability.clamp(1e-6, 1.0 - 1e-6);
    let v = s.value_hint_cents.max(100) as f64;
    let redeemable = s.value_hint_cents >= o.min_order_cents;
    let mut x = vec![1.0, nudge::domain::logistic::logit(p), (v / 10_000.0).ln()];
    x.extend(
        o.tiers
            .iter()
            .map(|t| f64::from(u8::from(*t == a && redeemable))),
    );
    x
}

fn q_value(s: &SessionUnit, a: i64, beta: &[f64], o: &Options) -> f64 {
    let p = estimate::predict(beta, &design(s, a, o));
    match o.reward {
        Reward::Conversion => p,
        Reward::Net => {
            let v = s.value_hint_cents as f64;
            let cost = if s.value_hint_cents >= o.min_order_cents {
                a as f64
            } else {
                0.0
            };
            p * (o.margin_rate * v - cost)
        }
    }
}

/// Cross-fitted direct model: fills `q_candidate` and `q_logged`.
pub(crate) fn fit_direct(units: &mut [SessionUnit], o: &Options) {
    let k = o.folds.max(2);
    let n = units.len();
    for f in 0..k {
        let train: Vec<usize> = (0..n).filter(|i| i % k != f).collect();
        let x: Vec<Vec<f64>> = train
            .iter()
            .map(|&i| design(&units[i], units[i].logged_action_cents, o))
            .collect();
        let y: Vec<bool> = train.iter().map(|&i| units[i].converted).collect();
        let beta = estimate::fit_logistic(&x, &y, o.alpha);
        for i in (f..n).step_by(k) {
            let s = &units[i];
            let qc = q_value(s, s.candidate_action_cents, &beta, o);
            let ql = q_value(s, s.logged_action_cents, &beta, o);
            units[i].q_candidate = qc;
            units[i].q_logged = ql;
        }
    }
}
