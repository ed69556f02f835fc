//! The logistic link shared by scoring, the voucher rule and training.

/// The logistic function; total on all of f64 (no NaN for finite input).
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The inverse of [`sigmoid`], with `p` clamped away from 0 and 1.
pub fn logit(p: f64) -> f64 {
    const EPS: f64 = 1e-9;
    let p = p.clamp(EPS, 1.0 - EPS);
    (p / (1.0 - p)).ln()
}
